//! Group administration: ListGroups, DescribeGroups and DeleteGroups, and
//! the per-group summaries the metrics endpoint exports.

use super::{GroupCoordinator, GroupDescription, GroupSummary};
use crate::coordinator::group::GroupState;
use crate::coordinator::offset_store::{group_record, offset_record, OffsetKey, StoreRecord};
use crate::error::ResponseError;

impl GroupCoordinator {
    /// Every group this broker coordinates: (id, protocol type, state).
    pub fn list_groups(&self) -> Vec<(String, String, GroupState)> {
        let state = self.state.lock();
        let mut groups: Vec<_> = state
            .groups
            .iter()
            .map(|(id, e)| {
                (
                    id.clone(),
                    e.group.protocol_type.clone().unwrap_or_default(),
                    e.group.state,
                )
            })
            .collect();
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        groups
    }

    /// A group's state and members; a group this coordinator does not know
    /// is reported Dead, as Kafka does.
    pub fn describe(&self, group_id: &str) -> Result<GroupDescription, ResponseError> {
        let state = self.state.lock();
        state.route(group_id)?;
        Ok(match state.groups.get(group_id) {
            Some(entry) => GroupDescription {
                state: entry.group.state,
                protocol_type: entry.group.protocol_type.clone().unwrap_or_default(),
                // The protocol is only meaningful once a rebalance completed.
                protocol_name: match entry.group.state {
                    GroupState::Stable | GroupState::CompletingRebalance => {
                        entry.group.protocol_name.clone().unwrap_or_default()
                    }
                    _ => String::new(),
                },
                members: entry.group.members().cloned().collect(),
            },
            None => GroupDescription {
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol_name: String::new(),
                members: Vec::new(),
            },
        })
    }

    /// Deletes an empty group with its committed offsets.
    pub fn delete_group(&self, group_id: &str) -> Result<(), ResponseError> {
        let mut state = self.state.lock();
        let partition = state.route(group_id)?;
        let Some(entry) = state.groups.get(group_id) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        match entry.group.state {
            GroupState::Empty => {}
            GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
            _ => return Err(ResponseError::NonEmptyGroup),
        }
        let mut records: Vec<StoreRecord> = state.partitions[&partition]
            .store
            .group_offsets(group_id)
            .into_iter()
            .flatten()
            .map(|((topic, p), _)| {
                offset_record(
                    &OffsetKey {
                        group: group_id.to_string(),
                        topic: topic.clone(),
                        partition: *p,
                    },
                    None,
                )
            })
            .collect();
        records.push(group_record(group_id, None));
        state.append(partition, &records)?;
        if let Some(mut entry) = state.groups.remove(group_id) {
            entry.group.mark_dead();
        }
        tracing::info!(group = group_id, "group deleted");
        Ok(())
    }

    /// Membership and committed offsets of every group, for metrics.
    pub fn summaries(&self) -> Vec<GroupSummary> {
        let state = self.state.lock();
        state
            .groups
            .iter()
            .map(|(id, entry)| {
                let offsets = state
                    .route(id)
                    .ok()
                    .and_then(|p| state.partitions[&p].store.group_offsets(id))
                    .map(|o| {
                        o.iter()
                            .map(|((t, p), v)| (t.clone(), *p, v.offset))
                            .collect()
                    })
                    .unwrap_or_default();
                GroupSummary {
                    group_id: id.clone(),
                    state: entry.group.state,
                    members: entry.group.member_count(),
                    offsets,
                }
            })
            .collect()
    }
}
