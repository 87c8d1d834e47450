//! Produce: validate and append record batches, then acknowledge with the
//! assigned base offset (or the original one for a retried idempotent batch).

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};

use super::str_bytes;
use crate::broker::Broker;
use crate::error::ResponseError;
use crate::log::{AppendError, AppendInfo};
use crate::util::now_ms;

pub async fn handle(
    broker: &Broker,
    request: ProduceRequest,
    version: i16,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let image = broker.image();
    let mut response = ProduceResponse::default();
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
            let result = match (topic, &partition_data.records) {
                _ if !matches!(acks, -1..=1) => Err((
                    ResponseError::InvalidRequiredAcks,
                    format!("acks={acks} is not 0, 1 or -1"),
                )),
                (None, _) if version >= 13 => Err((
                    ResponseError::UnknownTopicId,
                    "unknown topic id".to_string(),
                )),
                (None, _) => Err((
                    ResponseError::UnknownTopicOrPartition,
                    "unknown topic".to_string(),
                )),
                (_, None) => Err((ResponseError::CorruptMessage, "no records".to_string())),
                (Some(topic), Some(records)) => {
                    append(broker, topic, partition_data.index, records, acks, version)
                }
            };
            match result {
                Ok((info, log_start)) => {
                    p.base_offset = info.base_offset;
                    p.log_append_time_ms = info.log_append_time;
                    p.log_start_offset = log_start;
                }
                Err((error, message)) => {
                    p.error_code = error.code();
                    p.error_message = Some(str_bytes(message));
                }
            }
            topic_response.partition_responses.push(p);
        }
        if let Some(topic) = topic {
            topic_response.name = TopicName(str_bytes(topic.name.clone()));
        }
        response.responses.push(topic_response);
    }
    if acks == 0 {
        None
    } else {
        Some(response)
    }
}

fn append(
    broker: &Broker,
    topic: &crate::metadata::TopicImage,
    index: i32,
    records: &[u8],
    acks: i16,
    version: i16,
) -> Result<(AppendInfo, i64), (ResponseError, String)> {
    let Some(assignment) = topic.partitions.get(index as usize) else {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("partition {index} does not exist"),
        ));
    };
    if assignment.leader != broker.node_id() {
        return Err((
            ResponseError::NotLeaderOrFollower,
            "this broker is not the leader".into(),
        ));
    }
    let Some(partition) = broker.partition(&topic.name, index) else {
        return Err((
            ResponseError::NotLeaderOrFollower,
            "the partition log is not open yet".into(),
        ));
    };
    let mut log = partition.log.lock();
    if acks == -1 && (assignment.isr.len() as i32) < log.config().min_insync_replicas {
        return Err((
            ResponseError::NotEnoughReplicas,
            format!(
                "{} in-sync replica(s), min.insync.replicas is {}",
                assignment.isr.len(),
                log.config().min_insync_replicas
            ),
        ));
    }
    let may_fsync = log.config().flush_messages < i64::MAX;
    let result = if may_fsync {
        tokio::task::block_in_place(|| log.append(records, assignment.leader_epoch, now_ms()))
    } else {
        log.append(records, assignment.leader_epoch, now_ms())
    };
    let log_start = log.log_start_offset();
    let end = log.log_end_offset();
    drop(log);
    match result {
        Ok(info) => {
            if !info.duplicate {
                partition.notify(end);
                broker
                    .metrics
                    .record_produce(&topic.name, info.bytes, info.records);
            }
            Ok((info, log_start))
        }
        Err(e) => {
            let code = match &e {
                AppendError::Corrupt(crate::log::batch::BatchError::BadCrc { .. })
                | AppendError::Corrupt(crate::log::batch::BatchError::Truncated(_))
                | AppendError::Corrupt(crate::log::batch::BatchError::BadLength(_)) => {
                    ResponseError::CorruptMessage
                }
                AppendError::Corrupt(_) if version >= 8 => ResponseError::InvalidRecord,
                AppendError::Corrupt(_) => ResponseError::CorruptMessage,
                AppendError::TooLarge { .. } => ResponseError::MessageTooLarge,
                AppendError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
                AppendError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
                AppendError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
                AppendError::Transactional => ResponseError::InvalidTxnState,
                AppendError::Io(_) => ResponseError::KafkaStorageError,
            };
            if matches!(e, AppendError::Io(_)) {
                tracing::error!(topic = %topic.name, partition = index, error = %e, "append failed");
            } else {
                tracing::debug!(topic = %topic.name, partition = index, error = %e, "produce rejected");
            }
            broker.metrics.record_produce_error(code);
            Err((code, e.to_string()))
        }
    }
}
