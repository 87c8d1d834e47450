//! AlterPartitionReassignments, ListPartitionReassignments and ElectLeaders.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ElectLeadersRequest,
    ListPartitionReassignmentsRequest, TopicName,
};
use serde::Serialize;

use super::offsets::TopicPartition;
use super::{name, Admin, Target};
use crate::error::{CliError, Result};

const ELECTION_NOT_NEEDED: i16 = 84;

#[derive(Clone, Debug, Serialize)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

#[derive(Clone, Copy, Debug)]
pub enum ElectionType {
    Preferred,
    Unclean,
}

impl Admin {
    fn timeout_ms_for_moves(&self) -> i32 {
        self.options().timeout.as_millis().min(i32::MAX as u128) as i32
    }

    /// Starts (`Some(replicas)`) or cancels (`None`) the moves, one entry
    /// per partition. Every partition's error is reported, not only the
    /// first.
    pub async fn alter_reassignments(
        &mut self,
        moves: &BTreeMap<TopicPartition, Option<Vec<i32>>>,
    ) -> Result<()> {
        let mut by_topic: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
        for ((topic, partition), replicas) in moves {
            let mut p = ReassignablePartition::default();
            p.partition_index = *partition;
            p.replicas = replicas
                .as_ref()
                .map(|r| r.iter().map(|&b| BrokerId(b)).collect());
            by_topic.entry(topic).or_default().push(p);
        }
        let mut request = AlterPartitionReassignmentsRequest::default();
        request.timeout_ms = self.timeout_ms_for_moves();
        request.allow_replication_factor_change = true;
        request.topics = by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                let mut t = ReassignableTopic::default();
                t.name = TopicName(name(topic));
                t.partitions = partitions;
                t
            })
            .collect();
        let response = self.call(Target::Any, &request, 0).await?;
        self.check(
            Target::Any,
            || "reassigning partitions".into(),
            response.error_code,
            response.error_message.as_ref(),
        )?;
        let mut failures = Vec::new();
        for topic in response.responses {
            for p in topic.partitions {
                if let Err(e) = self.check(
                    Target::Any,
                    || format!("reassigning {}-{}", topic.name.0, p.partition_index),
                    p.error_code,
                    p.error_message.as_ref(),
                ) {
                    failures.push(e);
                }
            }
        }
        match failures.len() {
            0 => Ok(()),
            1 => Err(failures.remove(0)),
            n => {
                for e in &failures[1..] {
                    eprintln!("{e}");
                }
                eprintln!("({n} partitions failed)");
                Err(failures.remove(0))
            }
        }
    }

    pub async fn list_reassignments(&mut self) -> Result<Vec<Reassignment>> {
        let mut request = ListPartitionReassignmentsRequest::default();
        request.timeout_ms = self.timeout_ms_for_moves();
        request.topics = None;
        let response = self.call(Target::Any, &request, 0).await?;
        self.check(
            Target::Any,
            || "listing reassignments".into(),
            response.error_code,
            response.error_message.as_ref(),
        )?;
        let mut moves: Vec<Reassignment> = response
            .topics
            .into_iter()
            .flat_map(|t| {
                let topic = t.name.0.to_string();
                t.partitions.into_iter().map(move |p| Reassignment {
                    topic: topic.clone(),
                    partition: p.partition_index,
                    replicas: p.replicas.iter().map(|b| b.0).collect(),
                    adding: p.adding_replicas.iter().map(|b| b.0).collect(),
                    removing: p.removing_replicas.iter().map(|b| b.0).collect(),
                })
            })
            .collect();
        moves.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(moves)
    }

    /// Elects leaders for `partitions` (`None`: every partition). Returns
    /// the partitions whose leader changed; ELECTION_NOT_NEEDED is not an
    /// error.
    pub async fn elect_leaders(
        &mut self,
        kind: ElectionType,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<TopicPartition>> {
        let version = self.version::<ElectLeadersRequest>(Target::Any, 2).await?;
        if version == 0 && matches!(kind, ElectionType::Unclean) {
            return Err(CliError::failed(
                "the broker does not support unclean elections through ElectLeaders",
                "upgrade the cluster",
            ));
        }
        let mut request = ElectLeadersRequest::default();
        request.election_type = match kind {
            ElectionType::Preferred => 0,
            ElectionType::Unclean => 1,
        };
        request.timeout_ms = self.timeout_ms_for_moves();
        request.topic_partitions = partitions.map(|list| {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (topic, partition) in list {
                by_topic.entry(topic).or_default().push(*partition);
            }
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    let mut t = TopicPartitions::default();
                    t.topic = TopicName(name(topic));
                    t.partitions = partitions;
                    t
                })
                .collect()
        });
        let response = self.send(Target::Any, &request, version).await?;
        self.check(
            Target::Any,
            || "electing leaders".into(),
            response.error_code,
            None,
        )?;
        let mut elected = Vec::new();
        for result in response.replica_election_results {
            for p in result.partition_result {
                if p.error_code == ELECTION_NOT_NEEDED {
                    continue;
                }
                self.check(
                    Target::Any,
                    || format!("electing a leader of {}-{}", result.topic.0, p.partition_id),
                    p.error_code,
                    p.error_message.as_ref(),
                )?;
                elected.push((result.topic.0.to_string(), p.partition_id));
            }
        }
        elected.sort();
        Ok(elected)
    }
}
