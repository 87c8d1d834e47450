//! What a fetcher knows of each partition it follows, and of its fetch
//! session with the leader.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::log::TopicPartition;
use crate::partition::Partition;

/// One followed partition as its fetcher sees it.
#[derive(Clone)]
pub(super) struct FetchState {
    pub(super) partition: Arc<Partition>,
    pub(super) leader_epoch: i32,
    /// False until the log was truncated to agree with this leader epoch.
    pub(super) truncated: bool,
    /// After an error, the partition waits until then.
    pub(super) retry_at: Option<Instant>,
    /// Leader's high watermark minus our log end at the last fetch.
    pub(super) lag: i64,
    /// What the leader's fetch session holds for this partition: the
    /// session's generation and what was sent in it.
    pub(super) in_session: Option<(u64, SessionEntry)>,
}

/// What the leader's session remembers of a partition; the follower sends
/// the partition again whenever this changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SessionEntry {
    pub(super) fetch_offset: i64,
    pub(super) log_start: i64,
    pub(super) leader_epoch: i32,
}

impl FetchState {
    pub(super) fn ready(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }
}

/// What a fetcher task and its manager share.
pub(super) struct Shared {
    pub(super) partitions: Mutex<HashMap<TopicPartition, FetchState>>,
    /// Partitions no longer fetched here that a leader's session may still
    /// hold, with that session's generation: the next fetch forgets them.
    pub(super) removed: Mutex<Vec<(TopicPartition, u64)>>,
    pub(super) wake: Notify,
}

impl Shared {
    /// Removes the partitions `remove` picks, remembering those the
    /// leader's session holds so the next fetch forgets them.
    pub(super) fn remove_where(
        &self,
        mut remove: impl FnMut(&TopicPartition, &FetchState) -> bool,
    ) {
        let mut removed = self.removed.lock();
        self.partitions.lock().retain(|tp, state| {
            if !remove(tp, state) {
                return true;
            }
            if let Some((generation, _)) = state.in_session {
                removed.push((tp.clone(), generation));
            }
            false
        });
    }
}

/// The follower's side of its fetch session with one leader. What the
/// leader holds for each partition is kept in the partition's
/// [`FetchState::in_session`], tagged with the session's generation, so a
/// new session makes every partition's entry stale at once.
pub(super) struct FetchSession {
    /// 0: none yet (the next fetch is a full one).
    pub(super) id: i32,
    pub(super) epoch: i32,
    pub(super) generation: u64,
}

impl FetchSession {
    pub(super) fn new() -> FetchSession {
        static GENERATIONS: AtomicU64 = AtomicU64::new(1);
        FetchSession {
            id: 0,
            epoch: 0,
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// Updates a partition's fetch state if it is still followed at `epoch`.
pub(super) fn update_state(
    shared: &Shared,
    tp: &TopicPartition,
    epoch: i32,
    partition: &Arc<Partition>,
    f: impl FnOnce(&mut FetchState),
) {
    let mut partitions = shared.partitions.lock();
    if let Some(state) = partitions.get_mut(tp) {
        if state.leader_epoch == epoch && Arc::ptr_eq(&state.partition, partition) {
            f(state);
        }
    }
}
