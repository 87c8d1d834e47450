//! OffsetsForLeaderEpoch: where a leader epoch ended on this partition's
//! leader. Followers ask it after a leader change to find how much of
//! their log to truncate; consumers ask it to detect a log truncation
//! after they saw a leader change (KIP-320).

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::broker::Broker;
use crate::error::ResponseError;

pub fn offsets_for_leader_epoch(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let image = broker.image();
    let mut response = OffsetForLeaderEpochResponse::default();
    for topic in request.topics {
        let mut result = OffsetForLeaderTopicResult::default();
        result.topic = topic.topic.clone();
        let known = image.topics.get(topic.topic.0.as_str());
        for p in topic.partitions {
            let mut out = EpochEndOffset::default();
            out.partition = p.partition;
            out.leader_epoch = -1;
            out.end_offset = -1;
            let partition = broker.partition(topic.topic.0.as_str(), p.partition);
            let exists = known.is_some_and(|t| (p.partition as usize) < t.partitions.len());
            match partition {
                None if !exists => out.error_code = ResponseError::UnknownTopicOrPartition.code(),
                None => out.error_code = ResponseError::NotLeaderOrFollower.code(),
                Some(partition) => {
                    let role = partition.leadership();
                    let epoch = role.leader_epoch;
                    if !role.is_leader {
                        out.error_code = ResponseError::NotLeaderOrFollower.code();
                    } else if p.current_leader_epoch >= 0 && p.current_leader_epoch < epoch {
                        out.error_code = ResponseError::FencedLeaderEpoch.code();
                    } else if p.current_leader_epoch > epoch {
                        out.error_code = ResponseError::UnknownLeaderEpoch.code();
                    } else {
                        let (epoch, end) = partition.read_log(|log| {
                            log.leader_epochs()
                                .end_offset_for(p.leader_epoch, log.log_end_offset())
                        });
                        out.leader_epoch = epoch;
                        out.end_offset = end;
                    }
                }
            }
            result.partitions.push(out);
        }
        response.topics.push(result);
    }
    response
}
