//! Committed offsets nobody may read again: those past their retention
//! (Kafka's KIP-211 rules), and those of topics that were deleted. Both are
//! removed with tombstones in the offsets topic, like any other deletion.

use std::collections::HashSet;

use super::{GroupCoordinator, State};
use crate::coordinator::group::GroupState;
use crate::coordinator::offset_store::{group_record, offset_record, OffsetKey, StoreRecord};
use crate::coordinator::offsets_format::OffsetValue;
use crate::metadata::MetadataImage;
use crate::util::now_ms;

/// Which committed offsets of a group may expire, and counted from when.
enum ExpiryRule {
    /// A group without members: from when it became empty.
    EmptySince(i64),
    /// A stable consumer group: offsets of unsubscribed topics, from their commit.
    NotSubscribed(HashSet<String>),
    /// A group that only stores offsets: from each commit.
    SinceCommit,
}

impl State {
    /// Deletes committed offsets of topics that no longer exist, as Kafka
    /// does when a topic is deleted, so a topic created again under the
    /// same name starts without stale offsets.
    pub(super) fn drop_offsets_of_deleted_topics(&mut self, image: &MetadataImage) {
        let recreated: HashSet<String> = self
            .topic_ids
            .iter()
            .filter(|(name, id)| image.topics.get(*name).is_some_and(|t| t.topic_id != **id))
            .map(|(name, _)| name.clone())
            .collect();
        self.topic_ids = image
            .topics
            .values()
            .map(|t| (t.name.clone(), t.topic_id))
            .collect();
        let partitions: Vec<i32> = self.partitions.keys().copied().collect();
        for partition in partitions {
            let records: Vec<StoreRecord> = self.partitions[&partition]
                .store
                .keys()
                .filter(|k| !image.topics.contains_key(&k.topic) || recreated.contains(&k.topic))
                .map(|k| offset_record(&k, None))
                .collect();
            if !records.is_empty() {
                tracing::info!(
                    offsets = records.len(),
                    "deleting committed offsets of deleted topics"
                );
                let _ = self.append(partition, &records);
            }
        }
    }
}

impl GroupCoordinator {
    /// Removes committed offsets past `offsets.retention.minutes`, with
    /// Kafka's rules (KIP-211): a group without members loses them that
    /// long after it became empty; a stable consumer group only loses those
    /// of topics none of its members subscribes to, that long after their
    /// commit; a group that only stores offsets (no protocol) loses each
    /// that long after its commit. An offset committed with its own
    /// retention (OffsetCommit v2-v4) expires at that time instead. An empty
    /// group left without offsets is removed. Returns how many offsets
    /// expired.
    pub fn expire_offsets(&self) -> usize {
        let now = now_ms();
        let retention = self.config.offsets_retention_ms;
        let mut state = self.state.lock();
        let candidates: Vec<(String, ExpiryRule, bool)> = state
            .groups
            .iter()
            .filter_map(|(id, e)| {
                let group = &e.group;
                let rule = match (&group.protocol_type, group.state) {
                    (Some(_), GroupState::Empty) => ExpiryRule::EmptySince(e.state_since_ms),
                    (Some(p), GroupState::Stable) if p == "consumer" => {
                        ExpiryRule::NotSubscribed(group.subscribed_topics()?)
                    }
                    (None, _) => ExpiryRule::SinceCommit,
                    _ => return None,
                };
                Some((id.clone(), rule, group.state == GroupState::Empty))
            })
            .collect();
        let mut expired_total = 0;
        for (group_id, rule, empty) in candidates {
            let Ok(partition) = state.route(&group_id) else {
                continue;
            };
            let offsets = state.partitions[&partition].store.group_offsets(&group_id);
            let expired = |topic: &str, v: &OffsetValue| {
                if let ExpiryRule::NotSubscribed(topics) = &rule {
                    if topics.contains(topic) {
                        return false;
                    }
                }
                if let Some(at) = v.expire_timestamp {
                    return now >= at;
                }
                let base = match rule {
                    ExpiryRule::EmptySince(since) => since,
                    _ => v.commit_timestamp,
                };
                now.saturating_sub(base) >= retention
            };
            let mut records: Vec<StoreRecord> = offsets
                .into_iter()
                .flatten()
                .filter(|((topic, _), v)| expired(topic, v))
                .map(|((topic, p), _)| {
                    offset_record(
                        &OffsetKey {
                            group: group_id.clone(),
                            topic: topic.clone(),
                            partition: *p,
                        },
                        None,
                    )
                })
                .collect();
            let expired = records.len();
            let remove_group = empty && offsets.map_or(0, |o| o.len()) == expired;
            if remove_group {
                records.push(group_record(&group_id, None));
            }
            if records.is_empty() || state.append(partition, &records).is_err() {
                continue;
            }
            expired_total += expired;
            if expired > 0 {
                tracing::info!(group = %group_id, offsets = expired, "committed offsets expired");
            }
            if remove_group {
                state.groups.remove(&group_id);
                tracing::info!(group = %group_id, "empty group without offsets removed");
            }
        }
        expired_total
    }
}

#[cfg(test)]
mod tests {
    use crate::coordinator::groups::testing::{coordinator, request, subscription, value};
    use crate::coordinator::groups::OFFSETS_TOPIC;
    use crate::coordinator::offsets_format::OffsetValue;
    use crate::error::ResponseError;
    use crate::util::now_ms;

    #[tokio::test]
    async fn offsets_expire_by_kafkas_retention_rules() {
        let dir = tempfile::tempdir().unwrap();
        let (coordinator, _) = coordinator(dir.path());
        let at = |offset, commit_timestamp| OffsetValue {
            commit_timestamp,
            ..value(offset)
        };
        let now = now_ms();
        // A group that only stores offsets: each counts from its commit.
        coordinator
            .commit_offsets(
                "simple",
                "",
                &None,
                -1,
                &[("t".into(), 0, at(1, 0)), ("t".into(), 1, at(2, now))],
            )
            .unwrap();
        // An explicit retention (OffsetCommit v2-v4) wins over the broker's.
        let mut short = at(3, now);
        short.expire_timestamp = Some(now - 1);
        coordinator
            .commit_offsets("simple", "", &None, -1, &[("t".into(), 2, short)])
            .unwrap();

        // A stable consumer group subscribed to "t": its "t" offsets stay
        // however old; an old offset of another topic goes.
        let mut req = request("");
        req.protocols = vec![("range".into(), subscription(&["t"]))];
        let member = coordinator.join("stable", req.clone()).await.member_id;
        req.member_id = member.clone();
        let generation = coordinator.join("stable", req).await.generation_id;
        coordinator
            .sync("stable", &member, &None, generation, vec![])
            .await;
        coordinator
            .commit_offsets(
                "stable",
                &member,
                &None,
                generation,
                &[("t".into(), 0, at(4, 0)), ("u".into(), 0, at(5, 0))],
            )
            .unwrap();

        // An empty consumer group: counted from when it became empty, not
        // from the (old) commits.
        let mut req = request("");
        req.protocols = vec![("range".into(), subscription(&["t"]))];
        let member = coordinator.join("emptied", req.clone()).await.member_id;
        req.member_id = member.clone();
        let generation = coordinator.join("emptied", req).await.generation_id;
        coordinator
            .sync("emptied", &member, &None, generation, vec![])
            .await;
        coordinator
            .commit_offsets(
                "emptied",
                &member,
                &None,
                generation,
                &[("t".into(), 0, at(6, 0))],
            )
            .unwrap();
        coordinator
            .leave("emptied", &[(member.clone(), None)])
            .unwrap();

        assert_eq!(
            coordinator.expire_offsets(),
            3,
            "simple t-0, simple t-2, stable u-0"
        );
        let partitions = |group: &str| -> Vec<(String, i32)> {
            coordinator
                .fetch_offsets(group, None)
                .unwrap()
                .into_iter()
                .flat_map(|(t, ps)| ps.into_iter().map(move |(p, _)| (t.clone(), p)))
                .collect()
        };
        assert_eq!(partitions("simple"), vec![("t".to_string(), 1)]);
        assert_eq!(partitions("stable"), vec![("t".to_string(), 0)]);
        assert_eq!(partitions("emptied"), vec![("t".to_string(), 0)]);

        // Once the empty group has been empty for the retention, its
        // offsets go and so does the group.
        coordinator
            .state
            .lock()
            .groups
            .get_mut("emptied")
            .unwrap()
            .state_since_ms = 0;
        assert_eq!(coordinator.expire_offsets(), 1);
        assert!(partitions("emptied").is_empty());
        assert_eq!(
            coordinator.delete_group("emptied"),
            Err(ResponseError::GroupIdNotFound)
        );
    }

    #[test]
    fn offsets_of_a_deleted_topic_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (coordinator, mut image) = coordinator(dir.path());
        coordinator
            .commit_offsets(
                "g",
                "",
                &None,
                -1,
                &[("kept".into(), 0, value(1)), ("gone".into(), 0, value(2))],
            )
            .unwrap();
        image
            .topics
            .insert("kept".into(), image.topics[OFFSETS_TOPIC].clone());
        coordinator.on_metadata(&image);
        let left = coordinator.fetch_offsets("g", None).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, "kept");
    }
}
