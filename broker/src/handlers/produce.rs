//! Produce: validate and append record batches, then acknowledge with the
//! assigned base offset (or the original one for a retried idempotent batch).
//!
//! `acks=0` gets no response, `acks=1` is answered once the leader wrote the
//! batch, and `acks=all` once the whole ISR has it (the high watermark passed
//! it) — refused up front with NOT_ENOUGH_REPLICAS when the ISR is below
//! `min.insync.replicas`. The wait is event driven (a watch on the high
//! watermark) and bounded by the request's timeout.
//!
//! The two halves are separate: [`append`] writes in request order, and the
//! [`PendingProduce`] it returns waits for the ISR. The connection appends
//! each produce request as it arrives and lets the waits of several requests
//! overlap (their responses still go out in order), so a connection's
//! throughput is not one request per replication round trip.
//!
//! A transactional producer's first batch to a partition in a transaction
//! is verified first (KIP-890 part 1, [`verify`]): the coordinator must
//! confirm the partition is in the producer's open transaction, or the
//! batch is refused with INVALID_TXN_STATE rather than left hanging.

use std::collections::HashMap;

use futures::future::join_all;
use tokio::time::{Duration, Instant};

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};

use super::str_bytes;
use crate::broker::Broker;
use crate::error::ResponseError;
use crate::log::batch::BatchHeader;
use crate::log::AppendError;
use crate::partition::{Acks, Append, AppendFailure, Appended, ReplicationWait, VerificationGuard};
use crate::transactions::VerificationFailure;

/// The outcome of each partition's KIP-890 verification, by (topic, partition).
pub type Verified = HashMap<(String, i32), Result<VerificationGuard, ResponseError>>;

/// An appended batch an `acks=all` response must wait for.
struct PendingReplication {
    topic: usize,
    partition: usize,
    wait: ReplicationWait,
}

/// A produce request whose batches are appended, waiting (for `acks=all`)
/// until the ISR has them.
pub struct PendingProduce {
    acks: i16,
    deadline: Instant,
    response: ProduceResponse,
    pending: Vec<PendingReplication>,
}

pub async fn handle(
    broker: &Broker,
    request: ProduceRequest,
    version: i16,
) -> Option<ProduceResponse> {
    let verified = verify(broker, &request).await;
    append(broker, request, version, &verified)
        .finish(broker)
        .await
}

/// KIP-890 part 1: asks the coordinator of the request's transactional id
/// whether each partition whose first batch would open the producer's
/// transaction there is in that transaction. Partitions where it is
/// already open (or that this broker does not lead) need no answer.
pub async fn verify(broker: &Broker, request: &ProduceRequest) -> Verified {
    let mut verified = Verified::new();
    let Some(txn_id) = request.transactional_id.as_ref() else {
        return verified;
    };
    let mut asked = Vec::new();
    let mut producer = None;
    for topic in &request.topic_data {
        for data in &topic.partition_data {
            let Some(header) = data
                .records
                .as_ref()
                .and_then(|r| BatchHeader::parse(r).ok())
            else {
                continue;
            };
            if !header.is_transactional() || header.is_control() {
                continue;
            }
            // v13 names topics by id; the rest of the produce path says
            // no to an unknown one.
            let Some(partition) = broker.partition(topic.name.0.as_str(), data.index) else {
                continue;
            };
            if partition.ongoing_transaction(header.producer_id).is_some() {
                continue;
            }
            let guard = partition.begin_verification(header.producer_id);
            producer.get_or_insert((header.producer_id, header.producer_epoch));
            asked.push((partition, guard));
        }
    }
    let Some((producer_id, producer_epoch)) = producer else {
        return verified;
    };
    let partitions: Vec<(String, i32)> = asked
        .iter()
        .map(|(p, _)| (p.tp.topic.clone(), p.tp.partition))
        .collect();
    let answers = broker
        .transactions
        .verify(txn_id.0.as_str(), producer_id, producer_epoch, &partitions)
        .await;
    for ((partition, guard), answer) in asked.into_iter().zip(answers) {
        let outcome = match answer {
            Ok(()) => Ok(guard),
            Err(e) => {
                partition.abandon_verification(producer_id, guard);
                Err(verification_error(e))
            }
        };
        verified.insert(
            (partition.tp.topic.clone(), partition.tp.partition),
            outcome,
        );
    }
    verified
}

/// What a producer is told when its transaction could not be verified, as
/// Kafka answers Produce: coordinator trouble is NOT_ENOUGH_REPLICAS,
/// which every client retries.
fn verification_error(e: ResponseError) -> ResponseError {
    match VerificationFailure::of(e) {
        VerificationFailure::Retriable => ResponseError::NotEnoughReplicas,
        VerificationFailure::Fenced => ResponseError::InvalidProducerEpoch,
        VerificationFailure::NotInTransaction => ResponseError::InvalidTxnState,
    }
}

/// Validates and appends every partition's batches; nothing here waits.
pub fn append(
    broker: &Broker,
    request: ProduceRequest,
    version: i16,
    verified: &Verified,
) -> PendingProduce {
    let acks = request.acks;
    let valid_acks = Acks::from_request(acks);
    let deadline = Instant::now() + Duration::from_millis(request.timeout_ms.max(0) as u64);
    let image = broker.image();
    let mut response = ProduceResponse::default();
    let mut pending = Vec::new();
    for topic_data in request.topic_data {
        // v13 names topics by id (KIP-516); earlier versions by name.
        let topic = if version >= 13 {
            image.topic_by_id(&topic_data.topic_id)
        } else {
            image.topics.get(topic_data.name.0.as_str())
        };
        let mut topic_response = TopicProduceResponse::default();
        topic_response.name = topic_data.name.clone();
        topic_response.topic_id = topic_data.topic_id;
        for partition_data in topic_data.partition_data {
            let mut p = PartitionProduceResponse::default();
            p.index = partition_data.index;
            p.base_offset = -1;
            p.log_append_time_ms = -1;
            p.log_start_offset = -1;
            let result = match (valid_acks, topic, &partition_data.records) {
                (None, _, _) => Err(refused(
                    ResponseError::InvalidRequiredAcks,
                    format!("acks={acks} is not 0, 1 or -1"),
                )),
                (_, None, _) if version >= 13 => Err(refused(
                    ResponseError::UnknownTopicId,
                    "unknown topic id".to_string(),
                )),
                (_, None, _) => Err(refused(
                    ResponseError::UnknownTopicOrPartition,
                    "unknown topic".to_string(),
                )),
                (_, _, None) => Err(refused(
                    ResponseError::CorruptMessage,
                    "no records".to_string(),
                )),
                (Some(acks), Some(topic), Some(records)) => {
                    match verified.get(&(topic.name.clone(), partition_data.index)) {
                        Some(Err(e)) => Err(refused(
                            *e,
                            "the transaction coordinator did not confirm this partition is in the producer's transaction".to_string(),
                        )),
                        verification => {
                            let guard = verification.and_then(|v| v.as_ref().ok()).copied();
                            let partition = partition_data.index;
                            append_partition(broker, topic, partition, records, acks, guard, version)
                        }
                    }
                }
            };
            match result {
                Ok(appended) => {
                    p.base_offset = appended.info.base_offset;
                    p.log_append_time_ms = appended.info.log_append_time;
                    p.log_start_offset = appended.log_start_offset;
                    if let Some(wait) = appended.replication {
                        pending.push(PendingReplication {
                            topic: response.responses.len(),
                            partition: topic_response.partition_responses.len(),
                            wait,
                        });
                    }
                }
                Err(refusal) => {
                    p.error_code = refusal.error.code();
                    p.error_message = Some(str_bytes(refusal.message));
                    p.record_errors = refusal
                        .record_errors
                        .into_iter()
                        .map(|(index, message)| {
                            let mut e = BatchIndexAndErrorMessage::default();
                            e.batch_index = index;
                            e.batch_index_error_message = Some(str_bytes(message));
                            e
                        })
                        .collect();
                }
            }
            topic_response.partition_responses.push(p);
        }
        if let Some(topic) = topic {
            topic_response.name = TopicName(str_bytes(topic.name.clone()));
        }
        response.responses.push(topic_response);
    }
    PendingProduce {
        acks,
        deadline,
        response,
        pending,
    }
}

impl PendingProduce {
    /// Waits until the ISR has every `acks=all` batch (or the request's
    /// timeout), then answers; `None` for `acks=0`.
    pub async fn finish(self, broker: &Broker) -> Option<ProduceResponse> {
        let PendingProduce {
            acks,
            deadline,
            mut response,
            pending,
        } = self;
        if acks == 0 {
            return None;
        }
        let outcomes = join_all(pending.iter().map(|p| p.wait.wait(deadline))).await;
        for (wait, outcome) in pending.iter().zip(outcomes) {
            if let Err(error) = outcome {
                let p = &mut response.responses[wait.topic].partition_responses[wait.partition];
                p.error_code = error.code();
                p.error_message = Some(str_bytes(match error {
                    ResponseError::NotEnoughReplicasAfterAppend => {
                        "written, but the ISR fell below min.insync.replicas".to_string()
                    }
                    ResponseError::RequestTimedOut => {
                        "the in-sync replicas did not confirm the write in time".to_string()
                    }
                    _ => "leadership moved before the in-sync replicas confirmed the write"
                        .to_string(),
                }));
                broker.metrics.record_produce_error(error);
            }
        }
        Some(response)
    }
}

/// Appends one partition's batches through the partition's entry point and
/// maps a refusal to the produce error Kafka gives for it.
fn append_partition(
    broker: &Broker,
    topic: &crate::metadata::TopicImage,
    index: i32,
    records: &[u8],
    acks: Acks,
    verified: Option<VerificationGuard>,
    version: i16,
) -> Result<Appended, Refusal> {
    let Some(assignment) = topic.partitions.get(index as usize) else {
        return Err(refused(
            ResponseError::UnknownTopicOrPartition,
            format!("partition {index} does not exist"),
        ));
    };
    let not_leader = || {
        Err(refused(
            ResponseError::NotLeaderOrFollower,
            format!("broker {} does not lead this partition", broker.node_id()),
        ))
    };
    if assignment.leader != broker.node_id() {
        return not_leader();
    }
    let Some(partition) = broker.partition(&topic.name, index) else {
        return not_leader();
    };
    let append = Append::Client {
        records,
        acks,
        verified,
    };
    let e = match partition.append(append) {
        Ok(appended) => {
            if !appended.info.duplicate {
                broker.metrics.record_produce(
                    &topic.name,
                    appended.info.bytes,
                    appended.info.records,
                );
            }
            return Ok(appended);
        }
        Err(AppendFailure::NotLeader | AppendFailure::Stale) => return not_leader(),
        Err(e @ AppendFailure::UnverifiedTransaction) => {
            broker
                .metrics
                .record_produce_error(ResponseError::InvalidTxnState);
            return Err(refused(ResponseError::InvalidTxnState, e.to_string()));
        }
        Err(e @ AppendFailure::NotEnoughReplicas { .. }) => {
            broker
                .metrics
                .record_produce_error(ResponseError::NotEnoughReplicas);
            return Err(refused(ResponseError::NotEnoughReplicas, e.to_string()));
        }
        Err(AppendFailure::Log(e)) => e,
    };
    let code = match &e {
        AppendError::Corrupt(crate::log::batch::BatchError::BadCrc { .. })
        | AppendError::Corrupt(crate::log::batch::BatchError::Truncated(_))
        | AppendError::Corrupt(crate::log::batch::BatchError::BadLength(_)) => {
            ResponseError::CorruptMessage
        }
        AppendError::Corrupt(_) | AppendError::InvalidRecords { .. } if version >= 8 => {
            ResponseError::InvalidRecord
        }
        AppendError::InvalidRecords { .. } => ResponseError::CorruptMessage,
        AppendError::Corrupt(_) => ResponseError::CorruptMessage,
        AppendError::TooLarge { .. } => ResponseError::MessageTooLarge,
        AppendError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        AppendError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        AppendError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
        // Only markers carry a coordinator epoch.
        AppendError::CoordinatorFenced { .. } => ResponseError::TransactionCoordinatorFenced,
        // Retriable: the client tries again, and the append succeeds
        // once space returns or leadership moves off this broker.
        AppendError::Io(_) | AppendError::Storage(_) => ResponseError::KafkaStorageError,
        // Only replicated appends check contiguity.
        AppendError::NonContiguous { .. } => ResponseError::UnknownServerError,
    };
    if matches!(e, AppendError::Io(_)) {
        tracing::error!(topic = %topic.name, partition = index, error = %e, "append failed");
    } else if matches!(e, AppendError::Storage(_)) {
        tracing::debug!(topic = %topic.name, partition = index, error = %e, "append refused");
    } else {
        tracing::debug!(topic = %topic.name, partition = index, error = %e, "produce rejected");
    }
    broker.metrics.record_produce_error(code);
    let mut refusal = refused(code, e.to_string());
    if let AppendError::InvalidRecords { errors } = e {
        if version >= 8 {
            refusal.record_errors = errors;
        }
    }
    Err(refusal)
}

/// Why a partition's batches were not appended: the error, its message,
/// and (Produce v8+) the rejected records' indexes in their batch.
struct Refusal {
    error: ResponseError,
    message: String,
    record_errors: Vec<(i32, String)>,
}

fn refused(error: ResponseError, message: impl Into<String>) -> Refusal {
    Refusal {
        error,
        message: message.into(),
        record_errors: Vec::new(),
    }
}
