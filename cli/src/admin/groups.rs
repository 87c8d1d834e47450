//! Consumer groups: FindCoordinator, ListGroups, DescribeGroups, OffsetFetch,
//! OffsetCommit, DeleteGroups and OffsetDelete.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Buf;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest,
    GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest,
    TopicName,
};
use kafka_protocol::protocol::Decodable;
use serde::Serialize;

use super::offsets::TopicPartition;
use super::{name, pause, Admin, Target};
use crate::error::{CliError, Result};

const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;

#[derive(Clone, Debug, Serialize)]
pub struct ListedGroup {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub coordinator: i32,
}

#[derive(Clone, Debug, Serialize)]
pub struct Member {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    pub assignment: Vec<TopicPartition>,
}

#[derive(Clone, Debug)]
pub struct GroupDescription {
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<Member>,
    pub coordinator: i32,
}

impl Admin {
    /// The broker coordinating `group`, retried while the cluster is still
    /// electing one.
    pub async fn coordinator(&mut self, group: &str) -> Result<i32> {
        self.find_coordinator(group, 0, || {
            format!("finding the coordinator of group {group}")
        })
        .await
    }

    /// FindCoordinator for `key` of `key_type` (0 a group, 1 a
    /// transactional id), retried while the coordinator is not ready.
    pub async fn find_coordinator(
        &mut self,
        key: &str,
        key_type: i8,
        action: impl Fn() -> String,
    ) -> Result<i32> {
        let mut attempts = 0;
        loop {
            let version = self
                .version::<FindCoordinatorRequest>(Target::Any, 3)
                .await?;
            let mut request = FindCoordinatorRequest::default();
            request.key = name(key);
            request.key_type = key_type;
            let response = self.send(Target::Any, &request, version).await?;
            let retriable = matches!(
                response.error_code,
                COORDINATOR_NOT_AVAILABLE | COORDINATOR_LOAD_IN_PROGRESS | NOT_COORDINATOR
            );
            if retriable && attempts < 20 {
                attempts += 1;
                pause(Duration::from_millis(250)).await;
                continue;
            }
            self.check(
                Target::Any,
                &action,
                response.error_code,
                response.error_message.as_ref(),
            )?;
            let id = response.node_id.0;
            self.learn_addresses([(id, format!("{}:{}", response.host, response.port))]);
            return Ok(id);
        }
    }

    /// Every group of every broker (each broker lists the groups it
    /// coordinates).
    pub async fn list_groups(&mut self, brokers: &[i32]) -> Result<Vec<ListedGroup>> {
        let mut groups = Vec::new();
        for &broker in brokers {
            let target = Target::Broker(broker);
            let response = self.call(target, &ListGroupsRequest::default(), 4).await?;
            self.check(
                target,
                || "listing groups".into(),
                response.error_code,
                None,
            )?;
            groups.extend(response.groups.into_iter().map(|g| ListedGroup {
                group: g.group_id.0.to_string(),
                state: g.group_state.to_string(),
                protocol_type: g.protocol_type.to_string(),
                coordinator: broker,
            }));
        }
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(groups)
    }

    pub async fn describe_group(&mut self, group: &str) -> Result<GroupDescription> {
        let coordinator = self.coordinator(group).await?;
        let target = Target::Broker(coordinator);
        let mut request = DescribeGroupsRequest::default();
        request.groups = vec![GroupId(name(group))];
        let response = self.call(target, &request, 5).await?;
        let Some(described) = response.groups.into_iter().next() else {
            return Err(CliError::failed(
                format!(
                    "{} sent no description of group {group}",
                    self.label(target)
                ),
                "retry; the broker may be restarting",
            ));
        };
        self.check(
            target,
            || format!("describing group {group}"),
            described.error_code,
            described.error_message.as_ref(),
        )?;
        let members = described
            .members
            .into_iter()
            .map(|m| Member {
                member_id: m.member_id.to_string(),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assignment: if described.protocol_type.as_str() == "consumer" {
                    decode_assignment(m.member_assignment)
                } else {
                    Vec::new()
                },
            })
            .collect();
        Ok(GroupDescription {
            state: described.group_state.to_string(),
            protocol_type: described.protocol_type.to_string(),
            protocol: described.protocol_data.to_string(),
            members,
            coordinator,
        })
    }

    /// The group's committed offsets (all partitions it committed for).
    pub async fn committed_offsets(
        &mut self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let target = Target::Broker(self.coordinator(group).await?);
        let version = self.version::<OffsetFetchRequest>(target, 7).await?;
        let mut request = OffsetFetchRequest::default();
        request.group_id = GroupId(name(group));
        request.topics = None;
        let response = self.send(target, &request, version).await?;
        self.check(
            target,
            || format!("fetching the committed offsets of group {group}"),
            response.error_code,
            None,
        )?;
        let mut offsets = BTreeMap::new();
        for topic in response.topics {
            for p in topic.partitions {
                if p.error_code == 0 && p.committed_offset >= 0 {
                    offsets.insert(
                        (topic.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
        Ok(offsets)
    }

    /// Commits offsets as an admin does: outside any generation, which the
    /// coordinator accepts only while the group has no members.
    pub async fn commit_offsets(
        &mut self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<()> {
        let target = Target::Broker(self.coordinator(group).await?);
        let version = self.version::<OffsetCommitRequest>(target, 8).await?;
        let mut request = OffsetCommitRequest::default();
        request.group_id = GroupId(name(group));
        request.generation_id_or_member_epoch = -1;
        request.retention_time_ms = -1;
        let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((topic, partition), offset) in offsets {
            let mut p = OffsetCommitRequestPartition::default();
            p.partition_index = *partition;
            p.committed_offset = *offset;
            p.committed_leader_epoch = -1;
            by_topic.entry(topic).or_default().push(p);
        }
        request.topics = by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                let mut t = OffsetCommitRequestTopic::default();
                t.name = TopicName(name(topic));
                t.partitions = partitions;
                t
            })
            .collect();
        let response = self.send(target, &request, version).await?;
        for topic in response.topics {
            for p in topic.partitions {
                self.check(
                    target,
                    || {
                        format!(
                            "committing offsets of group {group} on {}-{}",
                            topic.name.0, p.partition_index
                        )
                    },
                    p.error_code,
                    None,
                )?;
            }
        }
        Ok(())
    }

    pub async fn delete_group(&mut self, group: &str) -> Result<()> {
        let target = Target::Broker(self.coordinator(group).await?);
        let mut request = DeleteGroupsRequest::default();
        request.groups_names = vec![GroupId(name(group))];
        let response = self.call(target, &request, 2).await?;
        for r in response.results {
            self.check(
                target,
                || format!("deleting group {group}"),
                r.error_code,
                None,
            )?;
        }
        Ok(())
    }

    pub async fn delete_offsets(
        &mut self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<()> {
        let target = Target::Broker(self.coordinator(group).await?);
        let mut t = OffsetDeleteRequestTopic::default();
        t.name = TopicName(name(topic));
        t.partitions = partitions
            .iter()
            .map(|&p| {
                let mut d = OffsetDeleteRequestPartition::default();
                d.partition_index = p;
                d
            })
            .collect();
        let mut request = OffsetDeleteRequest::default();
        request.group_id = GroupId(name(group));
        request.topics = vec![t];
        let response = self.call(target, &request, 0).await?;
        self.check(
            target,
            || format!("deleting offsets of group {group}"),
            response.error_code,
            None,
        )?;
        for topic in response.topics {
            for p in topic.partitions {
                self.check(
                    target,
                    || {
                        format!(
                            "deleting the offset of group {group} on {}-{}",
                            topic.name.0, p.partition_index
                        )
                    },
                    p.error_code,
                    None,
                )?;
            }
        }
        Ok(())
    }
}

/// A consumer member's assignment (Kafka's ConsumerProtocolAssignment,
/// prefixed by its version). Anything undecodable shows as no assignment.
fn decode_assignment(mut bytes: bytes::Bytes) -> Vec<TopicPartition> {
    if bytes.remaining() < 2 {
        return Vec::new();
    }
    let version = bytes.get_i16();
    let Ok(assignment) = ConsumerProtocolAssignment::decode(&mut bytes, version) else {
        return Vec::new();
    };
    assignment
        .assigned_partitions
        .into_iter()
        .flat_map(|tp| {
            let topic = tp.topic.0.to_string();
            tp.partitions.into_iter().map(move |p| (topic.clone(), p))
        })
        .collect()
}
