//! Committed offsets: OffsetCommit, TxnOffsetCommit (offsets inside a
//! transaction), OffsetFetch (single group before v8, several groups from
//! v8; `require_stable` from v7) and OffsetDelete. Offsets live in the group's
//! `__consumer_offsets` partition; see `coordinator::groups`.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};

use super::str_bytes;
use crate::broker::Broker;
use crate::coordinator::groups::OFFSETS_TOPIC;
use crate::coordinator::offset_store::TxnProducer;
use crate::coordinator::offsets_format::{partition_for, OffsetValue};
use crate::error::ResponseError;
use crate::metadata::MetadataImage;
use crate::partition::VerificationGuard;
use crate::transactions::VerificationFailure;
use crate::util::now_ms;
use std::time::Duration;
use tokio::time::Instant;

/// A topic's partitions, each with the error found for it, if any.
type PartitionErrors = (String, Vec<(i32, Option<ResponseError>)>);

fn partition_exists(image: &MetadataImage, topic: &str, partition: i32) -> bool {
    image
        .topics
        .get(topic)
        .is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions.len())
}

/// How long a commit waits for the offsets partition's ISR (Kafka's
/// `offsets.commit.timeout.ms` default).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn offset_commit(
    broker: &Broker,
    request: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let image = broker.image();
    let max_metadata = broker.groups.config().max_metadata_bytes;
    let now = now_ms();
    // Per partition: the error found before reaching the coordinator, if any.
    let mut checked: Vec<PartitionErrors> = Vec::new();
    let mut to_commit = Vec::new();
    for topic in &request.topics {
        let name = topic.name.to_string();
        let mut partitions = Vec::new();
        for p in &topic.partitions {
            let metadata = p.committed_metadata.as_deref().unwrap_or("");
            let error = if !partition_exists(&image, &name, p.partition_index) {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if metadata.len() > max_metadata {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                to_commit.push((
                    name.clone(),
                    p.partition_index,
                    OffsetValue {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: metadata.to_string(),
                        commit_timestamp: now,
                        // v2-v4 may ask for their own retention (-1: the broker's).
                        expire_timestamp: (version <= 4 && request.retention_time_ms >= 0)
                            .then(|| now.saturating_add(request.retention_time_ms)),
                    },
                ));
                None
            };
            partitions.push((p.partition_index, error));
        }
        checked.push((name, partitions));
    }
    let outcome = broker.groups.commit_offsets(
        &request.group_id,
        &request.member_id,
        &request.group_instance_id.as_ref().map(|s| s.to_string()),
        request.generation_id_or_member_epoch,
        &to_commit,
    );
    // A commit is acknowledged once the offsets partition's ISR has it, so
    // a coordinator fail-over cannot lose it (Kafka maps the replication
    // errors of commits as below).
    let outcome = match outcome {
        Ok(Some(write)) => write
            .wait(Instant::now() + COMMIT_TIMEOUT)
            .await
            .map_err(|e| match e {
                ResponseError::NotLeaderOrFollower => ResponseError::NotCoordinator,
                ResponseError::RequestTimedOut => ResponseError::RequestTimedOut,
                _ => ResponseError::CoordinatorNotAvailable,
            }),
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    let mut response = OffsetCommitResponse::default();
    response.topics = checked
        .into_iter()
        .map(|(name, partitions)| {
            let mut t = OffsetCommitResponseTopic::default();
            t.name = TopicName(str_bytes(name));
            t.partitions = partitions
                .into_iter()
                .map(|(index, error)| {
                    let mut p = OffsetCommitResponsePartition::default();
                    p.partition_index = index;
                    p.error_code = error.or_else(|| outcome.err()).map_or(0, |e| e.code());
                    p
                })
                .collect();
            t
        })
        .collect();
    response
}

/// TxnOffsetCommit: offsets committed inside a transaction, pending in
/// the group's offsets partition until the transaction's marker lands.
pub async fn txn_offset_commit(
    broker: &Broker,
    request: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let image = broker.image();
    let max_metadata = broker.groups.config().max_metadata_bytes;
    let now = now_ms();
    let mut checked: Vec<PartitionErrors> = Vec::new();
    let mut to_commit = Vec::new();
    for topic in &request.topics {
        let name = topic.name.to_string();
        let mut partitions = Vec::new();
        for p in &topic.partitions {
            let metadata = p.committed_metadata.as_deref().unwrap_or("");
            let error = if !partition_exists(&image, &name, p.partition_index) {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if metadata.len() > max_metadata {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                to_commit.push((
                    name.clone(),
                    p.partition_index,
                    OffsetValue {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 2 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: metadata.to_string(),
                        commit_timestamp: now,
                        expire_timestamp: None,
                    },
                ));
                None
            };
            partitions.push((p.partition_index, error));
        }
        checked.push((name, partitions));
    }
    let verified = match verify_offsets_partition(broker, &request).await {
        Ok(verified) => verified,
        Err(e) => return txn_offset_commit_response(checked, Err(e), version),
    };
    let txn = TxnProducer {
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        verified,
    };
    // Members are named from v3 on; older producers commit as outsiders.
    let (member, instance, generation) = if version >= 3 {
        (
            request.member_id.to_string(),
            request.group_instance_id.as_ref().map(|s| s.to_string()),
            request.generation_id,
        )
    } else {
        (String::new(), None, -1)
    };
    let outcome = broker.groups.commit_txn_offsets(
        &request.group_id,
        txn,
        &member,
        &instance,
        generation,
        &to_commit,
    );
    let outcome = match outcome {
        Ok(Some(write)) => write
            .wait(Instant::now() + COMMIT_TIMEOUT)
            .await
            .map_err(|e| match e {
                ResponseError::NotLeaderOrFollower => ResponseError::NotCoordinator,
                ResponseError::RequestTimedOut => ResponseError::RequestTimedOut,
                _ => ResponseError::CoordinatorNotAvailable,
            }),
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    txn_offset_commit_response(checked, outcome, version)
}

/// The answer to a TxnOffsetCommit: each partition's own error, or else
/// the commit's outcome.
fn txn_offset_commit_response(
    checked: Vec<PartitionErrors>,
    outcome: Result<(), ResponseError>,
    version: i16,
) -> TxnOffsetCommitResponse {
    // PRODUCER_FENCED is newer than TxnOffsetCommit v0-2.
    let outcome = outcome.map_err(|e| match e {
        ResponseError::ProducerFenced if version < 3 => ResponseError::InvalidProducerEpoch,
        e => e,
    });
    let mut response = TxnOffsetCommitResponse::default();
    response.topics = checked
        .into_iter()
        .map(|(name, partitions)| {
            let mut t = TxnOffsetCommitResponseTopic::default();
            t.name = TopicName(str_bytes(name));
            t.partitions = partitions
                .into_iter()
                .map(|(index, error)| {
                    let mut p = TxnOffsetCommitResponsePartition::default();
                    p.partition_index = index;
                    p.error_code = error.or_else(|| outcome.err()).map_or(0, |e| e.code());
                    p
                })
                .collect();
            t
        })
        .collect();
    response
}

/// KIP-890 for offsets, as Kafka does it since 3.6: the first
/// TxnOffsetCommit of a transaction to the group's offsets partition is
/// verified with the transaction's coordinator, as a produce's first batch
/// to a partition is, so a late or zombie commit cannot leave offsets
/// pending (and the group's offsets unstable) with no transaction to end
/// them. Returns the guard to append with; none is needed once the
/// transaction is open in the partition, or where this broker does not
/// hold the partition (the commit then answers NOT_COORDINATOR).
async fn verify_offsets_partition(
    broker: &Broker,
    request: &TxnOffsetCommitRequest,
) -> Result<Option<VerificationGuard>, ResponseError> {
    let partitions = broker
        .image()
        .topics
        .get(OFFSETS_TOPIC)
        .map_or(0, |t| t.partitions.len() as i32);
    if partitions == 0 {
        return Ok(None);
    }
    let index = partition_for(&request.group_id, partitions);
    let Some(partition) = broker.partition(OFFSETS_TOPIC, index) else {
        return Ok(None);
    };
    let producer_id = request.producer_id.0;
    if partition.ongoing_transaction(producer_id).is_some() {
        return Ok(None);
    }
    let guard = partition.begin_verification(producer_id);
    let answer = broker
        .transactions
        .verify(
            request.transactional_id.as_str(),
            producer_id,
            request.producer_epoch,
            &[(OFFSETS_TOPIC.to_string(), index)],
        )
        .await
        .pop()
        .unwrap_or(Err(ResponseError::CoordinatorNotAvailable));
    match answer {
        Ok(()) => Ok(Some(guard)),
        Err(e) => {
            partition.abandon_verification(producer_id, guard);
            // Coordinator trouble: the client looks the group coordinator
            // up again and retries.
            Err(match VerificationFailure::of(e) {
                VerificationFailure::Retriable => ResponseError::CoordinatorNotAvailable,
                VerificationFailure::Fenced => ResponseError::ProducerFenced,
                VerificationFailure::NotInTransaction => ResponseError::InvalidTxnState,
            })
        }
    }
}

pub fn offset_fetch(
    broker: &Broker,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        for group in request.groups {
            let requested = group.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes))
                    .collect()
            });
            let mut g = OffsetFetchResponseGroup::default();
            let unstable = |topic: &str, index: i32| {
                request.require_stable
                    && broker
                        .groups
                        .has_pending_offsets(&group.group_id, Some((topic, index)))
                        .unwrap_or(false)
            };
            match broker.groups.fetch_offsets(&group.group_id, requested) {
                Ok(topics) => {
                    g.topics = topics
                        .into_iter()
                        .map(|(name, partitions)| {
                            let mut t = OffsetFetchResponseTopics::default();
                            t.name = TopicName(str_bytes(name.clone()));
                            t.partitions = partitions
                                .into_iter()
                                .map(|(index, value)| {
                                    let mut p = OffsetFetchResponsePartitions::default();
                                    p.partition_index = index;
                                    let (offset, epoch, metadata) = if unstable(&name, index) {
                                        p.error_code = ResponseError::UnstableOffsetCommit.code();
                                        unpack(None)
                                    } else {
                                        unpack(value)
                                    };
                                    p.committed_offset = offset;
                                    p.committed_leader_epoch = epoch;
                                    p.metadata = Some(str_bytes(metadata));
                                    p
                                })
                                .collect();
                            t
                        })
                        .collect();
                }
                Err(e) => g.error_code = e.code(),
            }
            g.group_id = group.group_id;
            response.groups.push(g);
        }
        return response;
    }
    let requested = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect::<Vec<_>>()
    });
    // v7 may ask for offsets no open transaction will still change
    // (`require_stable`, KIP-447).
    let unstable = |topic: &str, index: i32| {
        version >= 7
            && request.require_stable
            && broker
                .groups
                .has_pending_offsets(&request.group_id, Some((topic, index)))
                .unwrap_or(false)
    };
    match broker
        .groups
        .fetch_offsets(&request.group_id, requested.clone())
    {
        Ok(topics) => {
            response.topics = topics
                .into_iter()
                .map(|(name, partitions)| {
                    let mut t = OffsetFetchResponseTopic::default();
                    t.name = TopicName(str_bytes(name.clone()));
                    t.partitions = partitions
                        .into_iter()
                        .map(|(index, value)| {
                            let mut p = OffsetFetchResponsePartition::default();
                            p.partition_index = index;
                            let (offset, epoch, metadata) = if unstable(&name, index) {
                                p.error_code = ResponseError::UnstableOffsetCommit.code();
                                unpack(None)
                            } else {
                                unpack(value)
                            };
                            p.committed_offset = offset;
                            if version >= 5 {
                                p.committed_leader_epoch = epoch;
                            }
                            p.metadata = Some(str_bytes(metadata));
                            p
                        })
                        .collect();
                    t
                })
                .collect();
        }
        // v2+ carries a group-level error; v1 repeats it on every partition.
        Err(e) if version >= 2 => response.error_code = e.code(),
        Err(e) => {
            response.topics = requested
                .unwrap_or_default()
                .into_iter()
                .map(|(name, partitions)| {
                    let mut t = OffsetFetchResponseTopic::default();
                    t.name = TopicName(str_bytes(name));
                    t.partitions = partitions
                        .into_iter()
                        .map(|index| {
                            let mut p = OffsetFetchResponsePartition::default();
                            p.partition_index = index;
                            p.committed_offset = -1;
                            p.metadata = Some(str_bytes(""));
                            p.error_code = e.code();
                            p
                        })
                        .collect();
                    t
                })
                .collect();
        }
    }
    response
}

/// (offset, leader epoch, metadata); -1, -1, "" when nothing is committed.
fn unpack(value: Option<OffsetValue>) -> (i64, i32, String) {
    match value {
        Some(v) => (v.offset, v.leader_epoch, v.metadata),
        None => (-1, -1, String::new()),
    }
}

pub fn offset_delete(broker: &Broker, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let image = broker.image();
    let mut response = OffsetDeleteResponse::default();
    let mut known = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            if partition_exists(&image, &topic.name, p.partition_index) {
                known.push((topic.name.to_string(), p.partition_index));
            }
        }
    }
    let results = match broker.groups.delete_offsets(&request.group_id, &known) {
        Ok(results) => results,
        Err(e) => {
            response.error_code = e.code();
            return response;
        }
    };
    let mut results = known.into_iter().zip(results);
    for topic in request.topics {
        let mut t = OffsetDeleteResponseTopic::default();
        for p in &topic.partitions {
            let mut r = OffsetDeleteResponsePartition::default();
            r.partition_index = p.partition_index;
            r.error_code = if partition_exists(&image, &topic.name, p.partition_index) {
                results
                    .next()
                    .and_then(|(_, error)| error)
                    .map_or(0, |e| e.code())
            } else {
                ResponseError::UnknownTopicOrPartition.code()
            };
            t.partitions.push(r);
        }
        t.name = topic.name;
        response.topics.push(t);
    }
    response
}
