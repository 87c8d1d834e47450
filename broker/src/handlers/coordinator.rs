//! FindCoordinator: the coordinator of a group is the leader of its
//! `__consumer_offsets` partition, and that of a transactional id the
//! leader of its `__transaction_state` partition. Each topic is created on
//! the first request for its kind of key, as Kafka does.

use std::collections::BTreeMap;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::coordinator::groups::OFFSETS_TOPIC;
use crate::coordinator::offsets_format::partition_for;
use crate::error::{ApiError, ResponseError};
use crate::metadata::controller::NewTopic;
use crate::transactions::TRANSACTION_STATE_TOPIC;

const GROUP_KEY: i8 = 0;
const TRANSACTION_KEY: i8 = 1;

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
        located.push(match request.key_type {
            GROUP_KEY => locate_group_coordinator(broker, key).await,
            TRANSACTION_KEY => locate_transaction_coordinator(broker, key).await,
            other => Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("unknown coordinator key type {other}"),
            )),
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

/// The internal topic a kind of coordinator lives on, as it is created.
struct CoordinatorTopic {
    name: &'static str,
    num_partitions: i32,
    replication_factor: i64,
    /// `min.insync.replicas` of the topic, capped at its replication factor.
    min_isr: Option<i64>,
    segment_bytes: i64,
}

fn offsets_topic(broker: &Broker) -> CoordinatorTopic {
    let s = &broker.config.settings.offsets_topic;
    CoordinatorTopic {
        name: OFFSETS_TOPIC,
        num_partitions: s.num_partitions,
        replication_factor: s.replication_factor,
        min_isr: None,
        segment_bytes: s.segment_bytes,
    }
}

fn transaction_topic(broker: &Broker) -> CoordinatorTopic {
    let s = &broker.config.settings.transactions;
    CoordinatorTopic {
        name: TRANSACTION_STATE_TOPIC,
        num_partitions: s.num_partitions,
        replication_factor: s.replication_factor,
        min_isr: Some(s.min_isr),
        segment_bytes: s.segment_bytes,
    }
}

pub async fn locate_group_coordinator(broker: &Broker, group: &str) -> Located {
    let topic = offsets_topic(broker);
    ensure_topic(broker, &topic, &broker.groups.creating_offsets_topic).await?;
    let located = locate(broker, &topic, group)?;
    if located.0 == broker.node_id() && broker.groups.check_coordinator(group).is_err() {
        // This broker leads the partition but has not loaded it yet (the
        // topic was just created): load it before sending clients here.
        broker.sync_logs().await;
    }
    Ok(located)
}

pub async fn locate_transaction_coordinator(broker: &Broker, txn_id: &str) -> Located {
    let topic = transaction_topic(broker);
    ensure_topic(broker, &topic, &broker.transactions.creating_topic).await?;
    let located = locate(broker, &topic, txn_id)?;
    if located.0 == broker.node_id() && broker.transactions.check_coordinator(txn_id).is_err() {
        broker.sync_logs().await;
    }
    Ok(located)
}

/// The leader of the partition `key` hashes to.
fn locate(broker: &Broker, topic: &CoordinatorTopic, key: &str) -> Located {
    let image = broker.image();
    let unavailable = |why: String| ApiError::new(ResponseError::CoordinatorNotAvailable, why);
    let partitions = &image
        .topics
        .get(topic.name)
        .ok_or_else(|| unavailable(format!("{} is being created", topic.name)))?
        .partitions;
    let leader = partitions[partition_for(key, partitions.len() as i32) as usize].leader;
    let endpoint = image.brokers.get(&leader).ok_or_else(|| {
        unavailable(format!(
            "the {} partition of this key has no leader",
            topic.name
        ))
    })?;
    Ok((leader, endpoint.host.clone(), endpoint.port))
}

/// Creates the coordinator's topic on first use, as Kafka does.
async fn ensure_topic(
    broker: &Broker,
    topic: &CoordinatorTopic,
    creating: &tokio::sync::Mutex<()>,
) -> Result<(), ApiError> {
    if broker.image().topics.contains_key(topic.name) {
        return Ok(());
    }
    let _creating = creating.lock().await;
    if broker.image().topics.contains_key(topic.name) {
        return Ok(());
    }
    create_topic(broker, topic).await
}

/// Creates a compacted coordinator topic. The replication factor is capped
/// at the live brokers that take new replicas (not cordoned), so a single
/// node works without configuration; the cap is logged.
async fn create_topic(broker: &Broker, topic: &CoordinatorTopic) -> Result<(), ApiError> {
    let wanted = topic.replication_factor;
    let image = broker.image();
    let brokers = image
        .brokers
        .keys()
        .filter(|b| image.is_live(**b) && !image.is_cordoned(**b))
        .count() as i64;
    let replication = wanted.min(brokers).max(1);
    if replication < wanted {
        tracing::warn!(
            wanted,
            brokers,
            "the replication factor of {} is larger than the live brokers; creating it with {replication}",
            topic.name
        );
    }
    let mut configs = BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("segment.bytes".to_string(), topic.segment_bytes.to_string()),
    ]);
    if let Some(min_isr) = topic.min_isr {
        configs.insert(
            "min.insync.replicas".to_string(),
            min_isr.min(replication).to_string(),
        );
    }
    let request = NewTopic {
        name: topic.name.to_string(),
        num_partitions: topic.num_partitions,
        replication_factor: replication as i16,
        assignments: Vec::new(),
        configs,
    };
    match broker.controller.create_topic(request, false).await {
        Ok(created) => {
            tracing::info!(
                partitions = created.partitions.len(),
                replication,
                "created {}",
                topic.name
            );
        }
        Err(e) if e.kind == ResponseError::TopicAlreadyExists => {}
        Err(e) => {
            return Err(ApiError::new(
                ResponseError::CoordinatorNotAvailable,
                format!("cannot create {}: {}", topic.name, e.message),
            ))
        }
    }
    broker.sync_logs().await;
    Ok(())
}
