//! Committed-offset requests: OffsetCommit (checked against the group),
//! OffsetFetch, and OffsetDelete, which keeps the offsets of topics the
//! group's members still subscribe to.

use std::collections::{BTreeMap, HashSet};

use super::{GroupCoordinator, GroupEntry, TopicOffsets};
use crate::coordinator::group::{Group, GroupState};
use crate::coordinator::offset_store::{offset_record, OffsetKey, StoreRecord, TxnProducer};
use crate::coordinator::offsets_format::OffsetValue;
use crate::error::ResponseError;
use crate::partition::ReplicationWait;
use crate::util::now_ms;

impl GroupCoordinator {
    /// Stores committed offsets after checking the committer against the
    /// group. A group that does not exist yet is created empty (a consumer
    /// that only stores offsets).
    pub fn commit_offsets(
        &self,
        group_id: &str,
        member_id: &str,
        instance: &Option<String>,
        generation: i32,
        offsets: &[(String, i32, OffsetValue)],
    ) -> Result<Option<ReplicationWait>, ResponseError> {
        let mut state = self.state.lock();
        let partition = state.route(group_id)?;
        let now = now_ms();
        let limits = self.config.limits;
        match state.groups.get_mut(group_id) {
            Some(entry) => {
                entry
                    .group
                    .validate_commit(now, member_id, instance, generation)?;
            }
            None if generation < 0 && member_id.is_empty() => {
                state.groups.insert(
                    group_id.to_string(),
                    GroupEntry {
                        group: Group::new(group_id, limits),
                        state_since_ms: now,
                    },
                );
            }
            None => return Err(ResponseError::IllegalGeneration),
        }
        if offsets.is_empty() {
            return Ok(None);
        }
        let records = offset_records(group_id, offsets);
        state.append(partition, &records).map(Some)
    }

    /// TxnOffsetCommit: offsets written inside `txn`'s transaction, pending
    /// until its marker reaches the offsets partition. The committer is
    /// checked as Kafka does for transactional commits (see
    /// `Group::validate_txn_commit`).
    #[allow(clippy::too_many_arguments)]
    pub fn commit_txn_offsets(
        &self,
        group_id: &str,
        txn: TxnProducer,
        member_id: &str,
        instance: &Option<String>,
        generation: i32,
        offsets: &[(String, i32, OffsetValue)],
    ) -> Result<Option<ReplicationWait>, ResponseError> {
        let mut state = self.state.lock();
        let partition = state.route(group_id)?;
        match state.groups.get(group_id) {
            Some(entry) => entry
                .group
                .validate_txn_commit(member_id, instance, generation)?,
            None => {
                // Kafka creates the group (Empty, generation 0) and checks
                // the commit against it: an unknown member or a generation
                // it never had is refused.
                let group = Group::new(group_id, self.config.limits);
                group.validate_txn_commit(member_id, instance, generation)?;
                state.groups.insert(
                    group_id.to_string(),
                    GroupEntry {
                        group,
                        state_since_ms: now_ms(),
                    },
                );
            }
        }
        if offsets.is_empty() {
            return Ok(None);
        }
        let records = offset_records(group_id, offsets);
        state.append_as(partition, &records, Some(txn)).map(Some)
    }

    /// A transaction marker was written to offsets partition `partition`:
    /// the producer's pending offsets there become committed, or go.
    pub fn complete_transaction(&self, partition: i32, producer_id: i64, commit: bool) {
        if let Some(p) = self.state.lock().partitions.get_mut(&partition) {
            p.store.complete_transaction(producer_id, commit);
        }
    }

    /// Whether an open transaction holds offsets of the group (of one
    /// partition, or any): OffsetFetch with `require_stable` answers
    /// UNSTABLE_OFFSET_COMMIT then, and the client retries.
    pub fn has_pending_offsets(
        &self,
        group_id: &str,
        partition: Option<(&str, i32)>,
    ) -> Result<bool, ResponseError> {
        let state = self.state.lock();
        let index = state.route(group_id)?;
        Ok(state.partitions[&index]
            .store
            .has_pending(group_id, partition))
    }

    /// Committed offsets of a group: of the given partitions, or all of
    /// them when `partitions` is `None`.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<TopicOffsets>, ResponseError> {
        let state = self.state.lock();
        let partition = state.route(group_id)?;
        let store = &state.partitions[&partition].store;
        let committed = store.group_offsets(group_id);
        Ok(match partitions {
            Some(requested) => requested
                .into_iter()
                .map(|(topic, indexes)| {
                    let found = indexes
                        .into_iter()
                        .map(|i| {
                            let value = committed.and_then(|c| c.get(&(topic.clone(), i)).cloned());
                            (i, value)
                        })
                        .collect();
                    (topic, found)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<OffsetValue>)>> =
                    BTreeMap::new();
                for ((topic, p), value) in committed.into_iter().flatten() {
                    by_topic
                        .entry(topic.clone())
                        .or_default()
                        .push((*p, Some(value.clone())));
                }
                by_topic.into_iter().collect()
            }
        })
    }

    /// Deletes committed offsets of some partitions (OffsetDelete). Offsets
    /// of topics the group's members subscribe to are kept and reported.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        let mut state = self.state.lock();
        let partition = state.route(group_id)?;
        let Some(entry) = state.groups.get(group_id) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        let subscribed = match entry.group.state {
            GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
            GroupState::Empty => HashSet::new(),
            _ => match entry.group.subscribed_topics() {
                Some(topics) => topics,
                None => return Err(ResponseError::NonEmptyGroup),
            },
        };
        let mut results = Vec::new();
        let mut records = Vec::new();
        for (topic, p) in partitions {
            if subscribed.contains(topic) {
                results.push(Some(ResponseError::GroupSubscribedToTopic));
                continue;
            }
            results.push(None);
            let key = OffsetKey {
                group: group_id.to_string(),
                topic: topic.clone(),
                partition: *p,
            };
            if state.partitions[&partition].store.get(&key).is_some() {
                records.push(offset_record(&key, None));
            }
        }
        if !records.is_empty() {
            state.append(partition, &records)?;
        }
        Ok(results)
    }
}

fn offset_records(group_id: &str, offsets: &[(String, i32, OffsetValue)]) -> Vec<StoreRecord> {
    offsets
        .iter()
        .map(|(topic, p, value)| {
            offset_record(
                &OffsetKey {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *p,
                },
                Some(value),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::coordinator::groups::testing::{coordinator, request, subscription, value};
    use crate::error::ResponseError;

    #[tokio::test]
    async fn offset_delete_keeps_offsets_of_subscribed_topics_of_an_active_group() {
        let dir = tempfile::tempdir().unwrap();
        let (coordinator, _) = coordinator(dir.path());
        let mut req = request("");
        req.protocols = vec![("range".into(), subscription(&["t"]))];
        let member = coordinator.join("g", req.clone()).await.member_id;
        req.member_id = member.clone();
        let joined = coordinator.join("g", req).await;
        coordinator
            .sync("g", &member, &None, joined.generation_id, vec![])
            .await;
        coordinator
            .commit_offsets(
                "g",
                &member,
                &None,
                joined.generation_id,
                &[("t".into(), 0, value(1)), ("u".into(), 0, value(2))],
            )
            .unwrap();
        let results = coordinator
            .delete_offsets("g", &[("t".into(), 0), ("u".into(), 0)])
            .unwrap();
        assert_eq!(
            results,
            vec![Some(ResponseError::GroupSubscribedToTopic), None]
        );
        let left = coordinator.fetch_offsets("g", None).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, "t");
    }
}
