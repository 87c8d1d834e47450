//! The group coordinator: the asynchronous face of the group state machine
//! plus the `__consumer_offsets` partitions it owns.
//!
//! This broker coordinates the groups whose offsets partition it leads, and
//! replays that partition when it starts leading it (`replay`), so members
//! keep their partitions across a coordinator restart or fail-over. Every
//! commit, every group that becomes stable or empty, and every deletion is
//! appended to that partition (`offsets_log`) before it is acknowledged.
//!
//! The requests are answered in `membership` (join, sync, heartbeat,
//! leave), `offsets` (commit, fetch, delete) and `admin` (list, describe,
//! delete groups); those that must wait park in `waiters`. `expiry` removes
//! the offsets nobody may read again.

mod admin;
mod expiry;
mod membership;
mod offsets;
mod offsets_log;
mod replay;
#[cfg(test)]
mod testing;
mod waiters;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::group::{Group, GroupLimits, GroupState, Member};
use super::offset_store::OffsetStore;
use super::offsets_format::{partition_for, OffsetValue};
use crate::error::ResponseError;
use crate::partition::{LogManager, Partition};
use waiters::Waiters;

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
    waiters: Waiters,
    partitions: HashMap<i32, OffsetsPartition>,
    /// Partitions of `__consumer_offsets`; 0 until the topic exists.
    num_partitions: i32,
    /// Topic ids as of the last metadata seen, to notice a topic deleted
    /// and created again between two updates.
    topic_ids: HashMap<String, uuid::Uuid>,
}

impl State {
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

    /// Whether this broker coordinates `group_id` right now.
    pub fn check_coordinator(&self, group_id: &str) -> Result<(), ResponseError> {
        self.state.lock().route(group_id).map(|_| ())
    }
}
