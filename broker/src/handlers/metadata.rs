//! Metadata: brokers, controller, topics and partition leadership, answered
//! from this broker's metadata image. Missing topics are auto-created when
//! the client allows it and `auto.create.topics.enable` is on.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::cluster::{brokers, controller_id};
use super::str_bytes;
use crate::broker::Broker;
use crate::error::ResponseError;
use crate::metadata::controller::validate_topic_name;
use crate::metadata::{MetadataImage, TopicImage};

pub async fn handle(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
    // v0 asks for all topics with an empty list; later versions with null.
    let requested: Option<Vec<(Option<String>, uuid::Uuid)>> = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
                .collect(),
        ),
    };
    let allow_auto_create = version < 4 || request.allow_auto_topic_creation;

    if let Some(requested) = &requested {
        if allow_auto_create && broker.config.settings.topics.auto_create {
            let image = broker.image();
            for (name, _) in requested {
                if let Some(name) = name {
                    if !image.topics.contains_key(name) && validate_topic_name(name).is_ok() {
                        if let Err(e) = broker.auto_create_topic(name).await {
                            tracing::warn!(topic = %name, error = %e, "auto-creation failed");
                        }
                    }
                }
            }
        }
    }

    let image = broker.image();
    let mut response = MetadataResponse::default();
    response.cluster_id = Some(str_bytes(broker.cluster_id.clone()));
    let listed = brokers(broker);
    response.controller_id = BrokerId(controller_id(broker, &listed));
    response.cluster_authorized_operations = i32::MIN;
    response.brokers = listed
        .into_iter()
        .map(|b| {
            let mut m = MetadataResponseBroker::default();
            m.node_id = BrokerId(b.id);
            m.host = str_bytes(b.host);
            m.port = b.port;
            m.rack = b.rack.map(str_bytes);
            m
        })
        .collect();

    response.topics = match requested {
        None => image
            .topics
            .values()
            .map(|t| describe_topic(&image, t))
            .collect(),
        Some(requested) => requested
            .into_iter()
            .map(|(name, id)| {
                let found = match &name {
                    Some(name) => image.topics.get(name),
                    None => image.topic_by_id(&id),
                };
                match found {
                    Some(topic) => describe_topic(&image, topic),
                    None => {
                        let mut t = MetadataResponseTopic::default();
                        t.error_code = match &name {
                            Some(n) if validate_topic_name(n).is_err() => {
                                ResponseError::InvalidTopicException.code()
                            }
                            Some(_) => ResponseError::UnknownTopicOrPartition.code(),
                            None => ResponseError::UnknownTopicId.code(),
                        };
                        t.name = name.map(|n| TopicName(str_bytes(n)));
                        t.topic_id = id;
                        t.topic_authorized_operations = i32::MIN;
                        t
                    }
                }
            })
            .collect(),
    };
    response
}

fn describe_topic(image: &MetadataImage, topic: &TopicImage) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(str_bytes(topic.name.clone())));
    t.topic_id = topic.topic_id;
    t.is_internal = topic.name.starts_with("__");
    t.topic_authorized_operations = i32::MIN;
    t.partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let mut m = MetadataResponsePartition::default();
            m.partition_index = index as i32;
            m.leader_id = BrokerId(p.leader);
            m.leader_epoch = p.leader_epoch;
            m.replica_nodes = p.replicas.iter().copied().map(BrokerId).collect();
            m.isr_nodes = p.isr.iter().copied().map(BrokerId).collect();
            m.offline_replicas = p
                .replicas
                .iter()
                .copied()
                .filter(|b| !image.is_live(*b))
                .map(BrokerId)
                .collect();
            if p.leader < 0 {
                m.error_code = ResponseError::LeaderNotAvailable.code();
            }
            m
        })
        .collect();
    t
}
