//! CreateTopics, DeleteTopics and CreatePartitions: checked and committed by
//! the controller, then reflected in local logs before the response, so a
//! client may produce as soon as it hears back.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use uuid::Uuid;

use super::{configs, message, str_bytes};
use crate::broker::Broker;
use crate::error::{ApiError, ResponseError};
use crate::metadata::controller::NewTopic;

pub async fn create_topics(
    broker: &Broker,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut response = CreateTopicsResponse::default();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for topic in &request.topics {
        *counts.entry(topic.name.0.to_string()).or_default() += 1;
    }
    let mut created_any = false;
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        result.num_partitions = -1;
        result.replication_factor = -1;
        if counts[&name] > 1 {
            result.error_code = ResponseError::InvalidRequest.code();
            result.error_message = Some(str_bytes(format!(
                "topic '{name}' appears more than once in the request"
            )));
            response.topics.push(result);
            continue;
        }
        let mut config_map = BTreeMap::new();
        let mut null_config = None;
        for c in &topic.configs {
            match &c.value {
                Some(v) => {
                    config_map.insert(c.name.to_string(), v.to_string());
                }
                None => null_config = Some(c.name.to_string()),
            }
        }
        let new_topic = NewTopic {
            name: name.clone(),
            num_partitions: topic.num_partitions,
            replication_factor: topic.replication_factor,
            assignments: topic
                .assignments
                .iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                .collect(),
            configs: config_map,
        };
        let outcome = match null_config {
            Some(key) => Err(ApiError::new(
                ResponseError::InvalidConfig,
                format!("config '{key}' has a null value"),
            )),
            None => {
                broker
                    .controller
                    .create_topic(new_topic, request.validate_only)
                    .await
            }
        };
        match outcome {
            Ok(created) => {
                created_any |= !request.validate_only;
                result.topic_id = if request.validate_only {
                    Uuid::nil()
                } else {
                    created.topic_id
                };
                result.num_partitions = created.partitions.len() as i32;
                result.replication_factor = created
                    .partitions
                    .first()
                    .map(|p| p.replicas.len())
                    .unwrap_or(0) as i16;
                if version >= 5 {
                    let image = broker.image();
                    result.configs = Some(
                        configs::topic_entries(broker, &image, &created, false, false)
                            .into_iter()
                            .map(|e| {
                                let mut c = CreatableTopicConfigs::default();
                                c.name = e.name;
                                c.value = e.value;
                                c.read_only = e.read_only;
                                c.config_source = e.config_source;
                                c.is_sensitive = e.is_sensitive;
                                c
                            })
                            .collect(),
                    );
                }
                tracing::info!(topic = %name, partitions = result.num_partitions, validate_only = request.validate_only, "topic created");
            }
            Err(e) => {
                result.error_code = e.code();
                result.error_message = message(&e);
            }
        }
        response.topics.push(result);
    }
    if created_any {
        broker.sync_logs().await;
    }
    response
}

pub async fn delete_topics(broker: &Broker, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut response = DeleteTopicsResponse::default();
    // v6 names topics in `topics` (by name or id); earlier versions in `topic_names`.
    let mut wanted: Vec<(Option<String>, Uuid)> = request
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), Uuid::nil()))
        .collect();
    wanted.extend(
        request
            .topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
    );
    let mut deleted_any = false;
    for (name, id) in wanted {
        let image = broker.image();
        let found = match &name {
            Some(n) => image.topics.get(n),
            None => image.topic_by_id(&id),
        };
        let mut result = DeletableTopicResult::default();
        result.name = name.clone().map(|n| TopicName(str_bytes(n)));
        result.topic_id = id;
        match found {
            None => {
                let kind = if name.is_some() {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::UnknownTopicId
                };
                result.error_code = kind.code();
                result.error_message = Some(str_bytes("topic does not exist"));
            }
            Some(topic) => {
                result.name = Some(TopicName(str_bytes(topic.name.clone())));
                result.topic_id = topic.topic_id;
                match broker.controller.delete_topic(topic.topic_id).await {
                    Ok(()) => {
                        deleted_any = true;
                        tracing::info!(topic = %topic.name, "topic deleted");
                    }
                    Err(e) => {
                        result.error_code = e.code();
                        result.error_message = message(&e);
                    }
                }
            }
        }
        response.responses.push(result);
    }
    if deleted_any {
        broker.sync_logs().await;
    }
    response
}

pub async fn create_partitions(
    broker: &Broker,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    let mut changed = false;
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        let assignments = topic
            .assignments
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.broker_ids.into_iter().map(|b| b.0).collect())
            .collect();
        match broker
            .controller
            .create_partitions(
                topic.name.0.as_str(),
                topic.count,
                assignments,
                request.validate_only,
            )
            .await
        {
            Ok(()) => changed |= !request.validate_only,
            Err(e) => {
                result.error_code = e.code();
                result.error_message = message(&e);
            }
        }
        response.results.push(result);
    }
    if changed {
        broker.sync_logs().await;
    }
    response
}
