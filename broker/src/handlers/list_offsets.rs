//! ListOffsets: earliest, latest, max-timestamp and by-timestamp lookups.

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;

use crate::broker::Broker;
use crate::error::ResponseError;
use crate::log::batch::BatchHeader;
use crate::log::PartitionLog;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub async fn handle(
    broker: &Broker,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let image = broker.image();
    let mut response = ListOffsetsResponse::default();
    for topic in request.topics {
        let mut topic_response = ListOffsetsTopicResponse::default();
        topic_response.name = topic.name.clone();
        let found = image.topics.get(topic.name.0.as_str());
        for p in topic.partitions {
            let mut out = ListOffsetsPartitionResponse::default();
            out.partition_index = p.partition_index;
            out.timestamp = -1;
            out.offset = -1;
            out.leader_epoch = -1;
            let assignment = found.and_then(|t| t.partitions.get(p.partition_index as usize));
            let partition = broker.partition(topic.name.0.as_str(), p.partition_index);
            match (assignment, partition) {
                (None, _) => out.error_code = ResponseError::UnknownTopicOrPartition.code(),
                (Some(a), _) if a.leader != broker.node_id() => {
                    out.error_code = ResponseError::NotLeaderOrFollower.code()
                }
                (Some(a), _)
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch < a.leader_epoch =>
                {
                    out.error_code = ResponseError::FencedLeaderEpoch.code()
                }
                (Some(a), _) if p.current_leader_epoch > a.leader_epoch => {
                    out.error_code = ResponseError::UnknownLeaderEpoch.code()
                }
                (Some(_), None) => out.error_code = ResponseError::NotLeaderOrFollower.code(),
                (Some(a), Some(partition)) => {
                    out.leader_epoch = a.leader_epoch;
                    // read_committed (1) consumers see only stable records.
                    let high_watermark = if request.isolation_level == 1 {
                        partition.last_stable_offset()
                    } else {
                        partition.high_watermark()
                    };
                    // A timestamp lookup reads the time index and a batch
                    // from the segment: off the async worker.
                    let found = tokio::task::block_in_place(|| {
                        partition.read_log(|log| lookup(log, p.timestamp, high_watermark))
                    });
                    match found {
                        Ok(Some((offset, timestamp, epoch))) => {
                            out.offset = offset;
                            out.timestamp = timestamp;
                            if let Some(epoch) = epoch {
                                out.leader_epoch = epoch;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(partition = %partition.tp, error = %e, "offset lookup failed");
                            out.error_code = ResponseError::KafkaStorageError.code();
                        }
                    }
                }
            }
            if version < 4 {
                // The field only exists from v4; an older response must leave it unset.
                out.leader_epoch = -1;
            }
            topic_response.partitions.push(out);
        }
        response.topics.push(topic_response);
    }
    response
}

/// (offset, timestamp, leader epoch of the batch) for a ListOffsets query.
/// Consumers only see committed records: "latest" is the high watermark and
/// a lookup never lands at or above it.
fn lookup(
    log: &PartitionLog,
    timestamp: i64,
    high_watermark: i64,
) -> std::io::Result<Option<(i64, i64, Option<i32>)>> {
    let found = lookup_in_log(log, timestamp)?;
    Ok(match timestamp {
        LATEST => Some((high_watermark, -1, None)),
        _ => found.filter(|(offset, _, _)| {
            *offset < high_watermark || timestamp == EARLIEST || timestamp == EARLIEST_LOCAL
        }),
    })
}

fn lookup_in_log(
    log: &PartitionLog,
    timestamp: i64,
) -> std::io::Result<Option<(i64, i64, Option<i32>)>> {
    match timestamp {
        LATEST => Ok(None),
        EARLIEST | EARLIEST_LOCAL => Ok(Some((log.log_start_offset(), -1, None))),
        LATEST_TIERED => Ok(None),
        MAX_TIMESTAMP => match log.find_max_timestamp()? {
            Some((found, bytes)) => {
                let target = found.header.max_timestamp;
                Ok(find_record(
                    &found.header,
                    bytes,
                    target,
                    log.log_start_offset(),
                ))
            }
            None => Ok(None),
        },
        t if t >= 0 => match log.find_by_timestamp(t)? {
            Some((found, bytes)) => {
                Ok(find_record(&found.header, bytes, t, log.log_start_offset()))
            }
            None => Ok(None),
        },
        _ => Ok(None),
    }
}

/// The first record in the batch with a timestamp `>= target` and an offset
/// at or above the log start.
fn find_record(
    header: &BatchHeader,
    bytes: Vec<u8>,
    target: i64,
    log_start: i64,
) -> Option<(i64, i64, Option<i32>)> {
    let epoch = Some(header.partition_leader_epoch);
    if header.is_log_append_time() {
        let offset = header.base_offset.max(log_start);
        return Some((offset, header.max_timestamp, epoch));
    }
    let mut buf = Bytes::from(bytes);
    match RecordBatchDecoder::decode(&mut buf) {
        Ok(set) => set
            .records
            .iter()
            .find(|r| r.timestamp >= target && r.offset >= log_start)
            .map(|r| (r.offset, r.timestamp, epoch)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot decode a stored batch for a timestamp lookup");
            Some((
                header.base_offset.max(log_start),
                header.max_timestamp,
                epoch,
            ))
        }
    }
}
