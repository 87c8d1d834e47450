//! FindCoordinator: the coordinator of a group is the leader of its
//! `__consumer_offsets` partition. The topic is created on the first
//! request for a group, as Kafka does. Transactions are not implemented,
//! so transaction keys are answered COORDINATOR_NOT_AVAILABLE.

use std::collections::BTreeMap;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::coordinator::groups::OFFSETS_TOPIC;
use crate::coordinator::offsets_format::partition_for;
use crate::error::{ApiError, ResponseError};
use crate::metadata::controller::NewTopic;

const GROUP_KEY: i8 = 0;

/// Where a key's coordinator is: (node, host, port) or why it is not known.
type Located = Result<(i32, String, i32), ApiError>;

pub async fn find_coordinator(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys: Vec<String> = if version >= 4 {
        request
            .coordinator_keys
            .iter()
            .map(|k| k.to_string())
            .collect()
    } else {
        vec![request.key.to_string()]
    };
    let mut located = Vec::with_capacity(keys.len());
    for key in &keys {
        located.push(if request.key_type == GROUP_KEY {
            locate_group_coordinator(broker, key).await
        } else {
            Err(ApiError::new(
                ResponseError::CoordinatorNotAvailable,
                "transactions are not supported by this broker",
            ))
        });
    }

    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = keys
            .into_iter()
            .zip(located)
            .map(|(key, found)| {
                let mut c = Coordinator::default();
                c.key = str_bytes(key);
                match found {
                    Ok((node, host, port)) => {
                        c.node_id = BrokerId(node);
                        c.host = str_bytes(host);
                        c.port = port;
                    }
                    Err(e) => {
                        c.node_id = BrokerId(-1);
                        c.port = -1;
                        c.error_code = e.code();
                        c.error_message = Some(str_bytes(e.message));
                    }
                }
                c
            })
            .collect();
    } else {
        match located.into_iter().next().expect("one key") {
            Ok((node, host, port)) => {
                response.node_id = BrokerId(node);
                response.host = str_bytes(host);
                response.port = port;
            }
            Err(e) => {
                response.error_code = e.code();
                if version >= 1 {
                    response.error_message = Some(str_bytes(e.message));
                }
                response.node_id = BrokerId(-1);
                response.port = -1;
            }
        }
    }
    response
}

async fn locate_group_coordinator(broker: &Broker, group: &str) -> Located {
    let mut image = broker.image();
    if !image.topics.contains_key(OFFSETS_TOPIC) {
        let _creating = broker.groups.creating_offsets_topic.lock().await;
        if !broker.image().topics.contains_key(OFFSETS_TOPIC) {
            create_offsets_topic(broker).await?;
        }
        image = broker.image();
    }
    let unavailable = |why: &str| ApiError::new(ResponseError::CoordinatorNotAvailable, why);
    let topic = image
        .topics
        .get(OFFSETS_TOPIC)
        .ok_or_else(|| unavailable("the offsets topic is being created"))?;
    let partition = partition_for(group, topic.partitions.len() as i32);
    let leader = topic.partitions[partition as usize].leader;
    let endpoint = image
        .brokers
        .get(&leader)
        .ok_or_else(|| unavailable("the offsets partition of this group has no leader"))?;
    if leader == broker.node_id() && broker.groups.check_coordinator(group).is_err() {
        // This broker leads the partition but has not loaded it yet (the
        // topic was just created): load it before sending clients here.
        broker.sync_logs().await;
    }
    Ok((leader, endpoint.host.clone(), endpoint.port))
}

/// Creates `__consumer_offsets` (compacted, `offsets.topic.*` settings).
/// The replication factor is capped at the live brokers, so a single node
/// works without configuration; the cap is logged.
async fn create_offsets_topic(broker: &Broker) -> Result<(), ApiError> {
    let settings = &broker.config.settings.offsets_topic;
    let wanted = settings.replication_factor;
    let image = broker.image();
    let brokers = image.brokers.keys().filter(|b| image.is_live(**b)).count() as i64;
    let replication = wanted.min(brokers).max(1);
    if replication < wanted {
        tracing::warn!(
            wanted,
            brokers,
            "offsets.topic.replication.factor is larger than the live brokers; creating {OFFSETS_TOPIC} with {replication}"
        );
    }
    let configs = BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        (
            "segment.bytes".to_string(),
            settings.segment_bytes.to_string(),
        ),
    ]);
    let request = NewTopic {
        name: OFFSETS_TOPIC.to_string(),
        num_partitions: settings.num_partitions,
        replication_factor: replication as i16,
        assignments: Vec::new(),
        configs,
    };
    match broker.controller.create_topic(request, false).await {
        Ok(topic) => {
            tracing::info!(
                partitions = topic.partitions.len(),
                replication,
                "created {OFFSETS_TOPIC}"
            );
        }
        Err(e) if e.kind == ResponseError::TopicAlreadyExists => {}
        Err(e) => {
            return Err(ApiError::new(
                ResponseError::CoordinatorNotAvailable,
                format!("cannot create {OFFSETS_TOPIC}: {}", e.message),
            ))
        }
    }
    broker.sync_logs().await;
    Ok(())
}
