//! ElectLeaders: preferred elections (leadership back to each partition's
//! first replica, when it is live and in sync) and unclean elections (a
//! leaderless partition gets a live replica even if it is out of sync,
//! accepting the loss of what it missed). Every election is a partition
//! change guarded by the partition epoch, so it cannot undo a newer one.

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};

use super::str_bytes;
use crate::broker::Broker;
use crate::error::ResponseError;
use crate::metadata::elections::{self, ElectionError};

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

pub async fn elect_leaders(
    broker: &Broker,
    request: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    let mut response = ElectLeadersResponse::default();
    let election_type = if version == 0 {
        PREFERRED
    } else {
        request.election_type
    };
    if election_type != PREFERRED && election_type != UNCLEAN {
        response.error_code = ResponseError::InvalidRequest.code();
        return response;
    }
    let image = broker.image();
    // No list means every partition (reporting only those that needed it).
    let all = request.topic_partitions.is_none();
    let requested: Vec<(String, Vec<i32>)> = match request.topic_partitions {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect(),
        None => image
            .topics
            .values()
            .map(|t| (t.name.clone(), (0..t.partitions.len() as i32).collect()))
            .collect(),
    };
    for (name, partitions) in requested {
        let mut result = ReplicaElectionResult::default();
        result.topic = TopicName(str_bytes(name.clone()));
        for index in partitions {
            let outcome = match image.topics.get(&name) {
                Some(topic) if index >= 0 && (index as usize) < topic.partitions.len() => {
                    let decided = if election_type == PREFERRED {
                        elections::preferred_election(&image, topic, index as usize)
                    } else {
                        elections::unclean_election(&image, topic, index as usize)
                    };
                    match decided {
                        Ok(change) => {
                            let unclean = change.unclean;
                            let leader = change.leader.unwrap_or(-1);
                            match broker.controller.change_partitions(vec![change]).await {
                                Ok(()) => {
                                    if unclean {
                                        tracing::warn!(topic = name, partition = index, leader, "unclean leader election requested: records the new leader did not have are lost");
                                    } else {
                                        tracing::info!(
                                            topic = name,
                                            partition = index,
                                            leader,
                                            "leader election"
                                        );
                                    }
                                    Ok(())
                                }
                                Err(e) => Err((e.kind, e.message)),
                            }
                        }
                        Err(ElectionError::NotNeeded) => Err((
                            ResponseError::ElectionNotNeeded,
                            "leader election not needed".to_string(),
                        )),
                        Err(ElectionError::PreferredNotAvailable) => Err((
                            ResponseError::PreferredLeaderNotAvailable,
                            "the preferred replica is not live and in sync".to_string(),
                        )),
                        Err(ElectionError::EligibleNotAvailable) => Err((
                            ResponseError::EligibleLeadersNotAvailable,
                            "no live replica can lead".to_string(),
                        )),
                    }
                }
                _ => Err((
                    ResponseError::UnknownTopicOrPartition,
                    "unknown topic or partition".to_string(),
                )),
            };
            if all && matches!(&outcome, Err((ResponseError::ElectionNotNeeded, _))) {
                continue;
            }
            let mut p = PartitionResult::default();
            p.partition_id = index;
            if let Err((error, message)) = outcome {
                p.error_code = error.code();
                p.error_message = Some(str_bytes(message));
            }
            result.partition_result.push(p);
        }
        if !(all && result.partition_result.is_empty()) {
            response.replica_election_results.push(result);
        }
    }
    response
}
