//! Following the metadata: when this broker starts leading an offsets
//! partition it replays it, so committed offsets and the last stored
//! metadata of every group come back and members keep their partitions
//! across a coordinator restart or fail-over; when it stops leading one, it
//! forgets that partition's groups. Each update also deletes the offsets of
//! topics that no longer exist (see `expiry`).

use std::collections::BTreeMap;

use super::{GroupCoordinator, GroupEntry, OffsetsPartition, OFFSETS_TOPIC};
use crate::coordinator::group::Group;
use crate::coordinator::offset_store::OffsetStore;
use crate::coordinator::offsets_format::partition_for;
use crate::log::TopicPartition;
use crate::metadata::MetadataImage;
use crate::util::now_ms;

impl GroupCoordinator {
    /// Follows the metadata: loads the offsets partitions this broker now
    /// leads and drops the groups of those it no longer leads. Blocking
    /// (replays logs); call after local logs were opened for the image.
    pub fn on_metadata(&self, image: &MetadataImage) {
        let led: BTreeMap<i32, i32> = image
            .topics
            .get(OFFSETS_TOPIC)
            .map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.leader == self.node_id)
                    .map(|(i, p)| (i as i32, p.leader_epoch))
                    .collect()
            })
            .unwrap_or_default();
        let num_partitions = image
            .topics
            .get(OFFSETS_TOPIC)
            .map_or(0, |t| t.partitions.len() as i32);
        let to_load: Vec<(i32, i32)> = {
            let mut state = self.state.lock();
            state.num_partitions = num_partitions;
            let lost: Vec<i32> = state
                .partitions
                .keys()
                .filter(|p| !led.contains_key(p))
                .copied()
                .collect();
            for partition in lost {
                tracing::info!(partition, "no longer coordinator of offsets partition");
                state.partitions.remove(&partition);
                let gone: Vec<String> = state
                    .groups
                    .keys()
                    .filter(|g| partition_for(g, num_partitions) == partition)
                    .cloned()
                    .collect();
                for group_id in gone {
                    state.groups.remove(&group_id);
                    state.waiters.drop_group(&group_id);
                }
            }
            for (partition, epoch) in &led {
                if let Some(p) = state.partitions.get_mut(partition) {
                    p.leader_epoch = *epoch;
                }
            }
            led.iter()
                .filter(|(p, _)| !state.partitions.contains_key(p))
                .map(|(p, e)| (*p, *e))
                .collect()
        };
        let (mut loaded_partitions, mut loaded_groups) = (0, 0);
        let started = std::time::Instant::now();
        for (index, leader_epoch) in to_load {
            let Some(partition) = self.logs.get(&TopicPartition::new(OFFSETS_TOPIC, index)) else {
                continue;
            };
            let store = match partition.read_log(OffsetStore::load) {
                Ok(store) => store,
                Err(e) => {
                    tracing::error!(partition = index, error = %e, "cannot load offsets partition");
                    continue;
                }
            };
            let now = now_ms();
            let mut state = self.state.lock();
            let mut groups = 0;
            for (group_id, value) in store.groups() {
                let group = Group::restore(group_id, self.config.limits, value, now);
                let since = if value.state_timestamp > 0 {
                    value.state_timestamp
                } else {
                    now
                };
                state.groups.insert(
                    group_id.clone(),
                    GroupEntry {
                        group,
                        state_since_ms: since,
                    },
                );
                groups += 1;
            }
            for group_id in store.groups_with_offsets() {
                if !state.groups.contains_key(group_id) {
                    state.groups.insert(
                        group_id.to_string(),
                        GroupEntry {
                            group: Group::new(group_id, self.config.limits),
                            state_since_ms: now,
                        },
                    );
                    groups += 1;
                }
            }
            tracing::debug!(
                partition = index,
                groups,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "loaded offsets partition"
            );
            loaded_groups += groups;
            loaded_partitions += 1;
            state.partitions.insert(
                index,
                OffsetsPartition {
                    partition,
                    leader_epoch,
                    store,
                },
            );
        }
        self.state.lock().drop_offsets_of_deleted_topics(image);
        if loaded_partitions > 0 {
            tracing::info!(
                partitions = loaded_partitions,
                groups = loaded_groups,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "now coordinating the groups of {OFFSETS_TOPIC} partitions"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::coordinator::group::GroupState;
    use crate::coordinator::groups::testing::{coordinator, request, value};
    use crate::coordinator::groups::{CoordinatorConfig, GroupCoordinator, OFFSETS_TOPIC};
    use crate::error::ResponseError;

    #[tokio::test]
    async fn a_reloaded_coordinator_keeps_offsets_and_stable_members() {
        let dir = tempfile::tempdir().unwrap();
        let (coordinator, image) = coordinator(dir.path());
        coordinator
            .commit_offsets("simple", "", &None, -1, &[("t".into(), 0, value(42))])
            .unwrap();
        let member = coordinator.join("g", request("")).await.member_id;
        let joined = coordinator.join("g", request(&member)).await;
        let synced = coordinator
            .sync(
                "g",
                &member,
                &None,
                joined.generation_id,
                vec![(member.clone(), Bytes::from_static(b"A"))],
            )
            .await;
        assert_eq!(synced.error, None);
        coordinator
            .commit_offsets(
                "g",
                &member,
                &None,
                joined.generation_id,
                &[("t".into(), 1, value(7))],
            )
            .unwrap();
        assert_eq!(
            coordinator
                .commit_offsets("g", "", &None, -1, &[("t".into(), 1, value(8))])
                .err(),
            Some(ResponseError::UnknownMemberId),
            "a simple commit to a group with members is refused"
        );

        // A new coordinator replays the partition.
        let logs = coordinator.logs.clone();
        drop(coordinator);
        let reloaded = GroupCoordinator::new(CoordinatorConfig::default(), logs, 1);
        reloaded.on_metadata(&image);
        let fetched = reloaded.fetch_offsets("simple", None).unwrap();
        assert_eq!(fetched[0].1[0].1.as_ref().map(|v| v.offset), Some(42));
        let fetched = reloaded
            .fetch_offsets("g", Some(vec![("t".into(), vec![1, 2])]))
            .unwrap();
        assert_eq!(fetched[0].1[0].1.as_ref().map(|v| v.offset), Some(7));
        assert_eq!(fetched[0].1[1].1, None);
        // The member carries on without rejoining.
        assert_eq!(
            reloaded.heartbeat("g", &member, &None, joined.generation_id),
            Ok(())
        );
        assert_eq!(reloaded.describe("g").unwrap().state, GroupState::Stable);
        assert_eq!(reloaded.list_groups().len(), 2);
        assert_eq!(
            reloaded.delete_group("g"),
            Err(ResponseError::NonEmptyGroup)
        );
        reloaded.delete_group("simple").unwrap();
        assert_eq!(reloaded.fetch_offsets("simple", None).unwrap().len(), 0);
        assert_eq!(
            reloaded.delete_group("simple"),
            Err(ResponseError::GroupIdNotFound)
        );
    }

    #[test]
    fn groups_of_partitions_led_elsewhere_are_not_coordinated_here() {
        let dir = tempfile::tempdir().unwrap();
        let (coordinator, mut image) = coordinator(dir.path());
        assert_eq!(coordinator.check_coordinator("g"), Ok(()));
        let topic = image.topics.get_mut(OFFSETS_TOPIC).unwrap();
        topic.partitions[0].leader = 2;
        coordinator.on_metadata(&image);
        assert_eq!(
            coordinator.check_coordinator("g"),
            Err(ResponseError::NotCoordinator)
        );
    }
}
