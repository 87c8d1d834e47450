//! DescribeProducers (KIP-664, v0): the producers with state in each
//! partition this broker leads, with their epoch, last sequence and
//! timestamp, the coordinator epoch of their last marker, and where their
//! open transaction starts (-1: none). `tideline txn producers` shows it,
//! and `tideline txn abort` finds a hanging transaction's producer with it.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::str_bytes;
use crate::broker::Broker;
use crate::error::ResponseError;

pub fn describe_producers(
    broker: &Broker,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let image = broker.image();
    let mut response = DescribeProducersResponse::default();
    for topic in request.topics {
        let mut topic_response = TopicResponse::default();
        topic_response.name = topic.name.clone();
        let name = topic.name.0.as_str();
        let assignments = image.topics.get(name);
        for index in topic.partition_indexes {
            let mut out = PartitionResponse::default();
            out.partition_index = index;
            let assignment = assignments.and_then(|t| t.partitions.get(index as usize));
            let partition = broker.partition(name, index);
            match (assignment, partition) {
                (None, _) => out.error_code = ResponseError::UnknownTopicOrPartition.code(),
                (Some(a), Some(partition)) if a.leader == broker.node_id() => {
                    let mut producers = partition.producers();
                    producers.sort_by_key(|(pid, _)| *pid);
                    out.active_producers = producers
                        .into_iter()
                        .map(|(pid, entry)| {
                            let mut p = ProducerState::default();
                            p.producer_id = ProducerId(pid);
                            p.producer_epoch = entry.epoch as i32;
                            p.last_sequence = entry.last_sequence();
                            p.last_timestamp = entry.last_timestamp;
                            p.coordinator_epoch = entry.coordinator_epoch;
                            p.current_txn_start_offset = entry.txn_first_offset.unwrap_or(-1);
                            p
                        })
                        .collect();
                }
                (Some(_), _) => {
                    out.error_code = ResponseError::NotLeaderOrFollower.code();
                    out.error_message = Some(str_bytes("this broker does not lead the partition"));
                }
            }
            topic_response.partitions.push(out);
        }
        response.topics.push(topic_response);
    }
    response
}
