//! The group coordinator: the asynchronous face of the group state machine
//! plus the `__consumer_offsets` partitions it owns.
//!
//! This broker coordinates the groups whose offsets partition it leads. When
//! it becomes leader of such a partition it replays it: committed offsets
//! and the last stored metadata of every group come back, so members keep
//! their partitions across a coordinator restart or fail-over. Every commit,
//! every group that becomes stable or empty, and every deletion is appended
//! to that partition before it is acknowledged.
//!
//! Requests that must wait (a JoinGroup until the rebalance completes, a
//! follower's SyncGroup until the leader's assignment arrives) park on a
//! oneshot channel; each change's [`Effect`]s wake the members it concerns.
//! A ticker expires sessions and ends rebalances whose deadline passed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::group::{
    Effect, Group, GroupLimits, GroupState, JoinRequest, JoinResult, Member, Reply, SyncResult,
};
use super::offset_store::{group_record, offset_record, OffsetKey, OffsetStore, StoreRecord};
use super::offsets_format::{partition_for, OffsetValue};
use crate::error::ResponseError;
use crate::log::TopicPartition;
use crate::metadata::MetadataImage;
use crate::partition::{Append, AppendFailure, LogManager, Partition, ReplicationWait};
use crate::util::now_ms;

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Coordinator settings read from the broker configuration.
#[derive(Debug, Clone, Copy)]
pub struct CoordinatorConfig {
    pub limits: GroupLimits,
    /// `offset.metadata.max.bytes`.
    pub max_metadata_bytes: usize,
    /// `offsets.retention.minutes` in milliseconds.
    pub offsets_retention_ms: i64,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            limits: GroupLimits::default(),
            max_metadata_bytes: 4096,
            offsets_retention_ms: 7 * 24 * 3_600_000,
        }
    }
}

enum Waiter {
    Join(oneshot::Sender<JoinResult>),
    Sync(oneshot::Sender<SyncResult>),
}

/// A group and when it entered its current state (for offset expiry).
struct GroupEntry {
    group: Group,
    state_since_ms: i64,
}

/// An offsets partition this broker leads, with its replayed view.
struct OffsetsPartition {
    partition: Arc<Partition>,
    leader_epoch: i32,
    store: OffsetStore,
}

#[derive(Default)]
struct State {
    groups: HashMap<String, GroupEntry>,
    waiters: HashMap<(String, String), Waiter>,
    partitions: HashMap<i32, OffsetsPartition>,
    /// Partitions of `__consumer_offsets`; 0 until the topic exists.
    num_partitions: i32,
    /// Topic ids as of the last metadata seen, to notice a topic deleted
    /// and created again between two updates.
    topic_ids: HashMap<String, uuid::Uuid>,
}

/// Which committed offsets of a group may expire, and counted from when.
enum ExpiryRule {
    /// A group without members: from when it became empty.
    EmptySince(i64),
    /// A stable consumer group: offsets of unsubscribed topics, from their commit.
    NotSubscribed(HashSet<String>),
    /// A group that only stores offsets: from each commit.
    SinceCommit,
}

/// A topic's partitions with their committed offset, if any.
pub type TopicOffsets = (String, Vec<(i32, Option<OffsetValue>)>);

/// What a described group looks like (DescribeGroups).
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<Member>,
}

/// One group's committed offsets and membership, for metrics.
pub struct GroupSummary {
    pub group_id: String,
    pub state: GroupState,
    pub members: usize,
    pub offsets: Vec<(String, i32, i64)>,
}

impl State {
    fn deliver(&mut self, group_id: &str, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Join(member, result) => {
                    if let Some(Waiter::Join(tx)) =
                        self.waiters.remove(&(group_id.to_string(), member))
                    {
                        let _ = tx.send(result);
                    }
                }
                Effect::Sync(member, result) => {
                    if let Some(Waiter::Sync(tx)) =
                        self.waiters.remove(&(group_id.to_string(), member))
                    {
                        let _ = tx.send(result);
                    }
                }
            }
        }
    }

    /// The offsets partition of a group, if this broker coordinates it.
    fn route(&self, group_id: &str) -> Result<i32, ResponseError> {
        if self.num_partitions <= 0 {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let partition = partition_for(group_id, self.num_partitions);
        if self.partitions.contains_key(&partition) {
            Ok(partition)
        } else {
            Err(ResponseError::NotCoordinator)
        }
    }

    /// Appends records to an offsets partition and applies them to its view.
    /// Returns what to wait for before the write counts as durable: the
    /// partition's ISR must have it, as Kafka's coordinator appends with
    /// `acks=all`.
    fn append(
        &mut self,
        partition: i32,
        records: &[StoreRecord],
    ) -> Result<ReplicationWait, ResponseError> {
        let Some(part) = self.partitions.get_mut(&partition) else {
            return Err(ResponseError::NotCoordinator);
        };
        let now = now_ms();
        let batch = OffsetStore::batch(records, now);
        let appended = part.partition.append(Append::Coordinator {
            records: &batch,
            leader_epoch: part.leader_epoch,
        });
        match appended {
            Ok(appended) => {
                for (key, value) in records {
                    part.store.apply_decoded(key.clone(), value.clone());
                }
                // Always set for coordinator appends.
                appended
                    .replication
                    .ok_or(ResponseError::CoordinatorNotAvailable)
            }
            Err(AppendFailure::NotLeader) => Err(ResponseError::NotCoordinator),
            Err(e) => {
                tracing::error!(partition = %part.partition.tp, error = %e, "cannot write to the offsets topic");
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    }

    /// Deletes committed offsets of topics that no longer exist, as Kafka
    /// does when a topic is deleted, so a topic created again under the
    /// same name starts without stale offsets.
    fn drop_offsets_of_deleted_topics(&mut self, image: &MetadataImage) {
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

    /// Logs a state change and stores the group when it became stable or
    /// empty (what a new coordinator needs to carry on).
    fn after_change(&mut self, group_id: &str, before: GroupState) {
        let Some(entry) = self.groups.get_mut(group_id) else {
            return;
        };
        let after = entry.group.state;
        if after == before {
            return;
        }
        let now = now_ms();
        entry.state_since_ms = now;
        tracing::info!(
            group = group_id,
            from = before.name(),
            to = after.name(),
            generation = entry.group.generation_id,
            members = entry.group.member_count(),
            "group state changed"
        );
        if matches!(after, GroupState::Stable | GroupState::Empty) {
            let snapshot = entry.group.snapshot(now);
            if let Ok(partition) = self.route(group_id) {
                // A failed write is logged by `append`; the group carries on
                // in memory and is stored again on its next change.
                let _ = self.append(partition, &[group_record(group_id, Some(&snapshot))]);
            }
        }
    }
}

pub struct GroupCoordinator {
    /// Held while `__consumer_offsets` is created, so concurrent
    /// FindCoordinator requests create it once.
    pub creating_offsets_topic: tokio::sync::Mutex<()>,
    config: CoordinatorConfig,
    logs: Arc<LogManager>,
    node_id: i32,
    state: Mutex<State>,
}

impl GroupCoordinator {
    pub fn new(config: CoordinatorConfig, logs: Arc<LogManager>, node_id: i32) -> Arc<Self> {
        Arc::new(GroupCoordinator {
            creating_offsets_topic: tokio::sync::Mutex::new(()),
            config,
            logs,
            node_id,
            state: Mutex::new(State::default()),
        })
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

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
                    state.waiters.retain(|(g, _), _| *g != group_id);
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

    /// Whether this broker coordinates `group_id` right now.
    pub fn check_coordinator(&self, group_id: &str) -> Result<(), ResponseError> {
        self.state.lock().route(group_id).map(|_| ())
    }

    /// Handles a JoinGroup, waiting for the rebalance to complete if needed.
    pub async fn join(&self, group_id: &str, request: JoinRequest) -> JoinResult {
        let member_id = request.member_id.clone();
        let rx = {
            let mut state = self.state.lock();
            if let Err(e) = state.route(group_id) {
                return JoinResult::error(e, &member_id);
            }
            // A member id means an earlier join; without the group it is stale.
            if !member_id.is_empty() && !state.groups.contains_key(group_id) {
                return JoinResult::error(ResponseError::UnknownMemberId, &member_id);
            }
            let limits = self.config.limits;
            let entry = state
                .groups
                .entry(group_id.to_string())
                .or_insert_with(|| GroupEntry {
                    group: Group::new(group_id, limits),
                    state_since_ms: now_ms(),
                });
            let before = entry.group.state;
            let (reply, effects) = entry.group.join(now_ms(), request);
            // A member admitted now has its id only in the group: members
            // are kept in join order, so it is the last one.
            let parked_id = match &reply {
                Reply::Pending if member_id.is_empty() => entry
                    .group
                    .members()
                    .last()
                    .map(|m| m.member_id.clone())
                    .unwrap_or_default(),
                _ => member_id.clone(),
            };
            state.deliver(group_id, effects);
            state.after_change(group_id, before);
            match reply {
                Reply::Now(result) => return result,
                Reply::Pending => {
                    let (tx, rx) = oneshot::channel();
                    state
                        .waiters
                        .insert((group_id.to_string(), parked_id), Waiter::Join(tx));
                    rx
                }
            }
        };
        rx.await
            .unwrap_or_else(|_| JoinResult::error(ResponseError::NotCoordinator, &member_id))
    }

    /// Handles a SyncGroup, waiting for the leader's assignment if needed.
    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance: &Option<String>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        let rx = {
            let mut state = self.state.lock();
            if let Err(e) = state.route(group_id) {
                return SyncResult::error(e);
            }
            let Some(entry) = state.groups.get_mut(group_id) else {
                return SyncResult::error(ResponseError::UnknownMemberId);
            };
            let before = entry.group.state;
            let (reply, effects) = entry
                .group
                .sync(member_id, instance, generation, assignments);
            state.deliver(group_id, effects);
            state.after_change(group_id, before);
            match reply {
                Reply::Now(result) => return result,
                Reply::Pending => {
                    let (tx, rx) = oneshot::channel();
                    state.waiters.insert(
                        (group_id.to_string(), member_id.to_string()),
                        Waiter::Sync(tx),
                    );
                    rx
                }
            }
        };
        rx.await
            .unwrap_or_else(|_| SyncResult::error(ResponseError::NotCoordinator))
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance: &Option<String>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let mut state = self.state.lock();
        state.route(group_id)?;
        match state.groups.get_mut(group_id) {
            Some(entry) => entry
                .group
                .heartbeat(now_ms(), member_id, instance, generation),
            None => Err(ResponseError::UnknownMemberId),
        }
    }

    /// Removes members; one result per member, in order.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        let mut state = self.state.lock();
        state.route(group_id)?;
        let Some(entry) = state.groups.get_mut(group_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        let before = entry.group.state;
        let (results, effects) = entry.group.leave(now_ms(), members);
        state.deliver(group_id, effects);
        state.after_change(group_id, before);
        Ok(results)
    }

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
        let records: Vec<StoreRecord> = offsets
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
            .collect();
        state.append(partition, &records).map(Some)
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

    /// Expires sessions and completes overdue rebalances in every group.
    pub fn tick(&self) {
        let now = now_ms();
        let mut state = self.state.lock();
        let ids: Vec<String> = state.groups.keys().cloned().collect();
        for id in ids {
            let Some(entry) = state.groups.get_mut(&id) else {
                continue;
            };
            let before = entry.group.state;
            let effects = entry.group.tick(now);
            state.deliver(&id, effects);
            state.after_change(&id, before);
        }
    }

    /// Answers every parked JoinGroup/SyncGroup with NOT_COORDINATOR (at
    /// shutdown), so clients look for the coordinator again.
    pub fn release_waiters(&self) {
        self.state.lock().waiters.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogConfig;
    use crate::metadata::records::PartitionRecord;
    use crate::metadata::TopicImage;
    use std::time::Duration;

    fn request(member_id: &str) -> JoinRequest {
        JoinRequest {
            member_id: member_id.to_string(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            require_known_member_id: true,
        }
    }

    /// A coordinator leading every partition of a 1-partition offsets topic.
    fn coordinator(dir: &std::path::Path) -> (Arc<GroupCoordinator>, MetadataImage) {
        let logs = Arc::new(LogManager::open(dir, 0, true).unwrap());
        let topic_id = uuid::Uuid::new_v4();
        let (partition, _) = logs
            .open_partition(
                &TopicPartition::new(OFFSETS_TOPIC, 0),
                topic_id,
                LogConfig::default(),
            )
            .unwrap();
        // What the replica manager does before the coordinator loads.
        crate::partition::testing::make_leader(&partition, 1, 0, vec![1]);
        let mut image = MetadataImage::default();
        image.topics.insert(
            OFFSETS_TOPIC.to_string(),
            TopicImage {
                name: OFFSETS_TOPIC.to_string(),
                topic_id,
                partitions: vec![PartitionRecord::new(vec![1])],
                configs: Default::default(),
            },
        );
        // The topic the tests commit offsets for.
        let mut t = image.topics[OFFSETS_TOPIC].clone();
        t.name = "t".into();
        image.topics.insert("t".into(), t);
        let config = CoordinatorConfig {
            limits: GroupLimits {
                initial_rebalance_delay_ms: 0,
                ..GroupLimits::default()
            },
            ..CoordinatorConfig::default()
        };
        let coordinator = GroupCoordinator::new(config, logs, 1);
        coordinator.on_metadata(&image);
        (coordinator, image)
    }

    #[tokio::test]
    async fn concurrent_joins_complete_together_and_sync_hands_out_assignments() {
        let dir = tempfile::tempdir().unwrap();
        let (coordinator, _) = coordinator(dir.path());
        let a = coordinator.join("g", request("")).await.member_id;
        let b = coordinator.join("g", request("")).await.member_id;
        let (ra, rb) = tokio::join!(
            coordinator.join("g", request(&a)),
            coordinator.join("g", request(&b))
        );
        assert_eq!(ra.error, None);
        assert_eq!(rb.error, None);
        assert_eq!(ra.generation_id, rb.generation_id);
        let (leader, follower) = if ra.leader == a {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        let assignments = vec![
            (leader.clone(), Bytes::from_static(b"L")),
            (follower.clone(), Bytes::from_static(b"F")),
        ];
        let generation = ra.generation_id;
        let (sf, sl) = tokio::join!(
            coordinator.sync("g", &follower, &None, generation, vec![]),
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                coordinator
                    .sync("g", &leader, &None, generation, assignments)
                    .await
            }
        );
        assert_eq!(sf.assignment, Bytes::from_static(b"F"));
        assert_eq!(sl.assignment, Bytes::from_static(b"L"));
        assert_eq!(
            coordinator.heartbeat("g", &follower, &None, generation),
            Ok(())
        );
    }

    fn value(offset: i64) -> OffsetValue {
        OffsetValue {
            offset,
            leader_epoch: 0,
            metadata: "m".into(),
            commit_timestamp: now_ms(),
            expire_timestamp: None,
        }
    }

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

    /// ConsumerProtocolSubscription v0 naming `topics`.
    fn subscription(topics: &[&str]) -> Bytes {
        let mut b = vec![0u8, 0];
        b.extend((topics.len() as i32).to_be_bytes());
        for t in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
        }
        b.extend((-1i32).to_be_bytes()); // no user data
        Bytes::from(b)
    }

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
