//! AlterPartitionReassignments and ListPartitionReassignments (KIP-455):
//! move partitions between brokers (add the new replicas, let them catch
//! up, switch, remove the old ones — see `metadata::reassignment`), cancel
//! a move, and list the moves in progress. The operator drives scaling with
//! exactly these APIs.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};

use super::str_bytes;
use crate::broker::Broker;
use crate::error::{ApiError, ResponseError};
use crate::metadata::reassignment;
use crate::metadata::MetadataImage;

pub async fn alter_partition_reassignments(
    broker: &Broker,
    request: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    let mut response = AlterPartitionReassignmentsResponse::default();
    // v0 had no such flag: replication factor changes were allowed.
    let allow_rf_change = version == 0 || request.allow_replication_factor_change;
    response.allow_replication_factor_change = allow_rf_change;
    for topic in request.topics {
        let mut t = ReassignableTopicResponse::default();
        t.name = topic.name.clone();
        for p in topic.partitions {
            let target: Option<Vec<i32>> = p.replicas.map(|r| r.into_iter().map(|b| b.0).collect());
            let outcome = reassign(
                broker,
                topic.name.0.as_str(),
                p.partition_index,
                target,
                allow_rf_change,
            )
            .await;
            let mut out = ReassignablePartitionResponse::default();
            out.partition_index = p.partition_index;
            if let Err(e) = outcome {
                out.error_code = e.code();
                out.error_message = Some(str_bytes(e.message));
            }
            t.partitions.push(out);
        }
        response.responses.push(t);
    }
    response
}

async fn reassign(
    broker: &Broker,
    topic_name: &str,
    index: i32,
    target: Option<Vec<i32>>,
    allow_rf_change: bool,
) -> Result<(), ApiError> {
    let image = broker.image();
    let unknown = || {
        ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("{topic_name}-{index} does not exist"),
        )
    };
    let topic = image.topics.get(topic_name).ok_or_else(unknown)?;
    let p = topic
        .partitions
        .get(usize::try_from(index).map_err(|_| unknown())?)
        .ok_or_else(unknown)?;
    let change = match target {
        None => reassignment::cancel(topic.topic_id, index, p).ok_or_else(|| {
            ApiError::new(
                ResponseError::NoReassignmentInProgress,
                format!("no reassignment of {topic_name}-{index} is in progress"),
            )
        })?,
        Some(target) => {
            validate_target(&image, &target)?;
            let current = reassignment::original_replicas(p);
            if !allow_rf_change && target.len() != current.len() {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicationFactor,
                    format!(
                        "the replication factor would change from {} to {}",
                        current.len(),
                        target.len()
                    ),
                ));
            }
            match reassignment::start(topic.topic_id, index, p, &target) {
                Some(change) => change,
                None => return Ok(()),
            }
        }
    };
    broker.controller.change_partitions(vec![change]).await?;
    tracing::info!(
        topic = topic_name,
        partition = index,
        "partition reassignment changed"
    );
    Ok(())
}

fn validate_target(image: &MetadataImage, target: &[i32]) -> Result<(), ApiError> {
    let invalid = |m: String| ApiError::new(ResponseError::InvalidReplicaAssignment, m);
    if target.is_empty() {
        return Err(invalid("the target replica list is empty".into()));
    }
    let mut seen = target.to_vec();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != target.len() {
        return Err(invalid(
            "the target replica list names a broker twice".into(),
        ));
    }
    if let Some(b) = target.iter().find(|b| !image.brokers.contains_key(b)) {
        return Err(invalid(format!("broker {b} is not registered")));
    }
    Ok(())
}

pub fn list_partition_reassignments(
    broker: &Broker,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let image = broker.image();
    let mut response = ListPartitionReassignmentsResponse::default();
    let wanted: Option<Vec<(String, Vec<i32>)>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    for topic in image.topics.values() {
        let selected: Option<&Vec<i32>> = match &wanted {
            None => None,
            Some(list) => match list.iter().find(|(n, _)| *n == topic.name) {
                Some((_, partitions)) => Some(partitions),
                None => continue,
            },
        };
        let mut t = OngoingTopicReassignment::default();
        t.name = TopicName(str_bytes(topic.name.clone()));
        for (i, p) in topic.partitions.iter().enumerate() {
            if selected.is_some_and(|s| !s.contains(&(i as i32))) {
                continue;
            }
            if p.adding_replicas.is_empty() && p.removing_replicas.is_empty() {
                continue;
            }
            let ids = |v: &[i32]| v.iter().copied().map(BrokerId).collect();
            let mut out = OngoingPartitionReassignment::default();
            out.partition_index = i as i32;
            out.replicas = ids(&p.replicas);
            out.adding_replicas = ids(&p.adding_replicas);
            out.removing_replicas = ids(&p.removing_replicas);
            t.partitions.push(out);
        }
        if !t.partitions.is_empty() {
            response.topics.push(t);
        }
    }
    response
}
