//! Fetch: return record batches from the requested offsets, long-polling
//! until `min_bytes` are available or `max_wait_ms` passes. Waiting is
//! event driven: consumers wake when the high watermark moves (they read
//! below it), followers when the log end moves (they read up to it).
//!
//! A fetch naming a replica id comes from a follower: its fetch offset is
//! its log end, which the replica manager records before reading (that is
//! how the leader's high watermark advances). Replicas a reassignment is
//! adding are throttled by `leader.replication.throttled.rate`.
//!
//! Limits follow KIP-74: `partition_max_bytes` per partition and `max_bytes`
//! for the response, except that the first batch of the first non-empty
//! partition is always returned whole so a large batch cannot stall a consumer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use tokio::time::Instant;

use super::str_bytes;
use crate::broker::Broker;
use crate::error::ResponseError;
use crate::log::{Partition, ReadError};

/// Kafka's FINAL_EPOCH and INITIAL_EPOCH of fetch sessions (KIP-227).
const SESSION_INITIAL_EPOCH: i32 = 0;

struct Target {
    topic_index: usize,
    partition_index: usize,
    partition: Option<Arc<Partition>>,
    error: Option<ResponseError>,
    fetch_offset: i64,
    max_bytes: usize,
    /// A follower fetch subject to the replication throttle.
    throttled: bool,
}

pub async fn handle(broker: &Broker, request: FetchRequest, version: i16) -> FetchResponse {
    let mut response = FetchResponse::default();
    // Sessions are not kept: every fetch is a full fetch (session id 0),
    // which Kafka clients accept. An incremental fetch of an unknown session
    // is refused so the client starts over with a full one.
    if version >= 7 && request.session_id != 0 && request.session_epoch > SESSION_INITIAL_EPOCH {
        response.error_code = ResponseError::FetchSessionIdNotFound.code();
        return response;
    }
    let image = broker.image();
    // v15 moved the replica id into ReplicaState (KIP-903).
    let replica_id = if version >= 15 {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    };
    let follower = (replica_id >= 0).then_some(replica_id);
    let mut targets = Vec::new();
    for (ti, topic) in request.topics.iter().enumerate() {
        let found = if version >= 13 {
            image.topic_by_id(&topic.topic_id)
        } else {
            image.topics.get(topic.topic.0.as_str())
        };
        let mut topic_response = FetchableTopicResponse::default();
        topic_response.topic = match found {
            Some(t) => TopicName(str_bytes(t.name.clone())),
            None => topic.topic.clone(),
        };
        topic_response.topic_id = topic.topic_id;
        for (pi, p) in topic.partitions.iter().enumerate() {
            let mut data = PartitionData::default();
            data.partition_index = p.partition;
            data.high_watermark = -1;
            data.last_stable_offset = -1;
            data.log_start_offset = -1;
            data.records = Some(Bytes::new());
            topic_response.partitions.push(data);
            let mut target = Target {
                topic_index: ti,
                partition_index: pi,
                partition: None,
                error: None,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                throttled: false,
            };
            match found.and_then(|t| t.partitions.get(p.partition as usize).map(|a| (t, a))) {
                None if found.is_none() && version >= 13 => {
                    target.error = Some(ResponseError::UnknownTopicId)
                }
                None => target.error = Some(ResponseError::UnknownTopicOrPartition),
                Some((t, assignment)) => {
                    if assignment.leader != broker.node_id() {
                        target.error = Some(ResponseError::NotLeaderOrFollower);
                    } else if p.current_leader_epoch >= 0
                        && p.current_leader_epoch < assignment.leader_epoch
                    {
                        target.error = Some(ResponseError::FencedLeaderEpoch);
                    } else if p.current_leader_epoch > assignment.leader_epoch {
                        target.error = Some(ResponseError::UnknownLeaderEpoch);
                    } else {
                        target.partition = broker.partition(&t.name, p.partition);
                        match (&target.partition, follower) {
                            (None, _) => target.error = Some(ResponseError::NotLeaderOrFollower),
                            (Some(partition), Some(id)) => {
                                if let Err(e) =
                                    broker
                                        .replicas
                                        .on_follower_fetch(partition, id, p.fetch_offset)
                                {
                                    target.error = Some(e);
                                }
                                target.throttled = partition.replica.lock().adding.contains(&id);
                            }
                            (Some(_), None) => {}
                        }
                    }
                }
            }
            targets.push(target);
        }
        response.responses.push(topic_response);
    }

    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let deadline = Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = if request.max_bytes <= 0 {
        usize::MAX
    } else {
        request.max_bytes as usize
    };
    loop {
        // Subscribe before reading so an append between the read and the
        // wait still wakes us.
        let mut watchers: Vec<_> = targets
            .iter()
            .filter_map(|t| t.partition.as_ref())
            .map(|p| match follower {
                Some(_) => p.subscribe(),
                None => p.subscribe_high_watermark(),
            })
            .collect();
        let (total, any_error) = collect(
            broker,
            &mut response,
            &targets,
            max_bytes,
            follower.is_some(),
        );
        if total >= min_bytes.max(1)
            || any_error
            || Instant::now() >= deadline
            || watchers.is_empty()
        {
            return response;
        }
        let changed = select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Reads every target into the response; returns bytes read and whether
/// any partition reported an error (which ends the wait, as in Kafka).
fn collect(
    broker: &Broker,
    response: &mut FetchResponse,
    targets: &[Target],
    max_bytes: usize,
    for_follower: bool,
) -> (usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
    for target in targets {
        let data = &mut response.responses[target.topic_index].partitions[target.partition_index];
        if let Some(error) = target.error {
            data.error_code = error.code();
            if let Some(partition) = &target.partition {
                // A follower out of range needs these to recover.
                data.log_start_offset = partition.log.lock().log_start_offset();
                data.high_watermark = partition.high_watermark();
            }
            any_error = true;
            continue;
        }
        let partition = target
            .partition
            .as_ref()
            .expect("no error means a partition");
        let remaining = max_bytes.saturating_sub(total);
        let mut limit = target.max_bytes.min(remaining);
        if target.throttled && broker.replicas.leader_throttle.is_exceeded() {
            limit = 0;
        }
        let hw = partition.high_watermark();
        let (slice, start) = {
            let log = partition.log.lock();
            // Followers replicate everything; consumers see committed records.
            let upper_bound = if for_follower {
                log.log_end_offset()
            } else {
                hw
            };
            let start = log.log_start_offset();
            let min_one = total == 0 && limit > 0;
            (
                log.read(target.fetch_offset, limit, min_one, upper_bound),
                start,
            )
        };
        data.high_watermark = hw;
        data.last_stable_offset = hw;
        data.log_start_offset = start;
        data.error_code = 0;
        match slice {
            Ok(Some(slice)) => match slice.read() {
                Ok(bytes) => {
                    total += bytes.len();
                    if target.throttled {
                        broker.replicas.leader_throttle.record(bytes.len());
                    }
                    if !for_follower {
                        broker
                            .metrics
                            .record_fetch(&partition.tp.topic, bytes.len() as u64);
                    }
                    data.records = Some(Bytes::from(bytes));
                }
                Err(e) => {
                    tracing::error!(partition = %partition.tp, error = %e, "read failed");
                    data.error_code = ResponseError::KafkaStorageError.code();
                    any_error = true;
                }
            },
            Ok(None) => data.records = Some(Bytes::new()),
            Err(ReadError::OffsetOutOfRange { .. }) => {
                data.error_code = ResponseError::OffsetOutOfRange.code();
                data.records = Some(Bytes::new());
                any_error = true;
            }
            Err(ReadError::Io(e)) => {
                tracing::error!(partition = %partition.tp, error = %e, "read failed");
                data.error_code = ResponseError::KafkaStorageError.code();
                any_error = true;
            }
            // An offline log directory serves nothing.
            Err(ReadError::Storage(_)) => {
                data.error_code = ResponseError::KafkaStorageError.code();
                any_error = true;
            }
        }
    }
    (total, any_error)
}
