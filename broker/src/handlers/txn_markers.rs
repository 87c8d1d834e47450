//! WriteTxnMarkers (v1): a transaction coordinator asks this broker, as
//! the leader of partitions a transaction wrote to, to end the
//! transaction there with a COMMIT or ABORT marker. Every marker is
//! appended first and then all are waited for together (the ISR must have
//! them before the coordinator may call the transaction complete). A marker
//! on a `__consumer_offsets` partition also settles the offsets the
//! transaction committed there.

use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use tokio::time::Instant;

use crate::broker::Broker;
use crate::coordinator::groups::OFFSETS_TOPIC;
use crate::error::ResponseError;
use crate::log::control::TxnMarker;
use crate::log::AppendError;
use crate::partition::{Append, AppendFailure, ReplicationWait};

/// How long the markers' replication is waited for (Kafka's marker
/// requests use `request.timeout.ms`); the coordinator retries after.
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);

/// One partition's marker: where its code goes, and what to wait for.
struct Written {
    marker: usize,
    topic: usize,
    partition: usize,
    wait: ReplicationWait,
    /// The offsets partition whose pending offsets the marker settles.
    offsets_partition: Option<i32>,
    producer_id: i64,
    commit: bool,
}

pub async fn write_txn_markers(
    broker: &Broker,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let image = broker.image();
    let mut response = WriteTxnMarkersResponse::default();
    let mut written = Vec::new();
    for (mi, marker) in request.markers.iter().enumerate() {
        let mut result = WritableTxnMarkerResult::default();
        result.producer_id = marker.producer_id;
        let txn_marker = TxnMarker {
            commit: marker.transaction_result,
            coordinator_epoch: marker.coordinator_epoch,
        };
        for (ti, topic) in marker.topics.iter().enumerate() {
            let mut topic_result = WritableTxnMarkerTopicResult::default();
            topic_result.name = topic.name.clone();
            let name = topic.name.0.as_str();
            for (pi, &index) in topic.partition_indexes.iter().enumerate() {
                let mut partition_result = WritableTxnMarkerPartitionResult::default();
                partition_result.partition_index = index;
                let code = match broker.partition(name, index) {
                    None if image.topics.contains_key(name) => {
                        ResponseError::NotLeaderOrFollower.code()
                    }
                    None => ResponseError::UnknownTopicOrPartition.code(),
                    Some(partition) => {
                        let append = Append::TxnMarker {
                            producer_id: marker.producer_id.0,
                            producer_epoch: marker.producer_epoch,
                            marker: txn_marker,
                        };
                        match partition.append(append) {
                            Ok(appended) => {
                                written.push(Written {
                                    marker: mi,
                                    topic: ti,
                                    partition: pi,
                                    wait: appended.replication.expect("markers are waited for"),
                                    offsets_partition: (name == OFFSETS_TOPIC).then_some(index),
                                    producer_id: marker.producer_id.0,
                                    commit: marker.transaction_result,
                                });
                                0
                            }
                            Err(e) => refusal(&e, name, index).code(),
                        }
                    }
                };
                partition_result.error_code = code;
                topic_result.partitions.push(partition_result);
            }
            result.topics.push(topic_result);
        }
        response.markers.push(result);
    }

    let deadline = Instant::now() + REPLICATION_TIMEOUT;
    let waits = written.iter().map(|w| w.wait.wait(deadline));
    let outcomes = futures::future::join_all(waits).await;
    for (w, outcome) in written.into_iter().zip(outcomes) {
        let code = match outcome {
            Ok(()) => {
                if let Some(offsets_partition) = w.offsets_partition {
                    broker
                        .groups
                        .complete_transaction(offsets_partition, w.producer_id, w.commit);
                }
                0
            }
            Err(e) => e.code(),
        };
        response.markers[w.marker].topics[w.topic].partitions[w.partition].error_code = code;
    }
    response
}

/// The error code for a marker the partition refused.
fn refusal(e: &AppendFailure, topic: &str, partition: i32) -> ResponseError {
    let code = match e {
        AppendFailure::NotLeader | AppendFailure::Stale => ResponseError::NotLeaderOrFollower,
        AppendFailure::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
        // Only client appends are verified.
        AppendFailure::UnverifiedTransaction => ResponseError::InvalidTxnState,
        AppendFailure::Log(AppendError::InvalidProducerEpoch { .. }) => {
            ResponseError::InvalidProducerEpoch
        }
        AppendFailure::Log(AppendError::CoordinatorFenced { .. }) => {
            ResponseError::TransactionCoordinatorFenced
        }
        AppendFailure::Log(AppendError::Io(_) | AppendError::Storage(_)) => {
            ResponseError::KafkaStorageError
        }
        AppendFailure::Log(_) => ResponseError::UnknownServerError,
    };
    tracing::debug!(topic, partition, error = %e, "transaction marker refused");
    code
}
