//! Change listeners: how a fetch session learns which of its partitions
//! changed without looking at every one of them on every fetch.
//!
//! A session registers one listener with each of its partitions. When a
//! partition's log end or log start moves ([`Change::Data`]), its high
//! watermark moves ([`Change::HighWatermark`]) or its role changes
//! ([`Change::Role`]), it records itself in the listener and wakes the
//! listener's waiting fetch when the change is one that fetch waits for:
//! followers wait for data, consumers (who read below the high watermark)
//! for the high watermark. Every change is recorded either way, so the
//! next response still carries, say, a follower's new high watermark.
//!
//! Partitions hold listeners weakly: an evicted session's listener goes
//! away with it and is dropped from the partition's list at its next change.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::Notify;
use uuid::Uuid;

use super::TopicPartition;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The log end or log start offset moved.
    Data,
    HighWatermark,
    /// Leadership or the replica set changed.
    Role,
}

/// The partitions that changed since the listener was last drained, and a
/// wake-up for the fetch waiting on it.
pub struct ChangeListener {
    /// Followers wait for data, everybody else for the high watermark.
    waits_for_data: bool,
    changed: Mutex<Vec<(TopicPartition, Uuid)>>,
    wake: Notify,
}

impl ChangeListener {
    pub fn new(waits_for_data: bool) -> Arc<ChangeListener> {
        Arc::new(ChangeListener {
            waits_for_data,
            changed: Mutex::new(Vec::new()),
            wake: Notify::new(),
        })
    }

    /// The partitions that changed since the last call (each once).
    pub fn take_changed(&self) -> Vec<(TopicPartition, Uuid)> {
        let mut changed = std::mem::take(&mut *self.changed.lock());
        changed.sort_unstable();
        changed.dedup();
        changed
    }

    /// Waits for a change of the kind this listener wakes for; returns at
    /// once if one happened since the previous wait.
    pub async fn changed(&self) {
        self.wake.notified().await
    }

    fn record(&self, tp: &TopicPartition, topic_id: Uuid, change: Change) {
        self.changed.lock().push((tp.clone(), topic_id));
        let wakes = match change {
            Change::Data => self.waits_for_data,
            Change::HighWatermark => !self.waits_for_data,
            Change::Role => true,
        };
        if wakes {
            // A stored permit covers a change between a drain and the wait.
            self.wake.notify_one();
        }
    }
}

/// A partition's registered listeners.
#[derive(Default)]
pub struct Listeners {
    listeners: Mutex<Vec<Weak<ChangeListener>>>,
}

impl Listeners {
    /// Registers `listener` (once, however often it is called).
    pub fn add(&self, listener: &Arc<ChangeListener>) {
        let mut listeners = self.listeners.lock();
        let weak = Arc::downgrade(listener);
        if !listeners.iter().any(|l| l.ptr_eq(&weak)) {
            listeners.push(weak);
        }
    }

    pub fn tell(&self, tp: &TopicPartition, topic_id: Uuid, change: Change) {
        self.listeners.lock().retain(|l| match l.upgrade() {
            Some(listener) => {
                listener.record(tp, topic_id, change);
                true
            }
            None => false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listener_collects_every_change_and_wakes_only_for_its_kind() {
        let tp = TopicPartition::new("t", 0);
        let id = Uuid::new_v4();
        let listeners = Listeners::default();
        let follower = ChangeListener::new(true);
        listeners.add(&follower);
        listeners.add(&follower);
        listeners.tell(&tp, id, Change::HighWatermark);
        let woke = tokio::time::timeout(std::time::Duration::from_millis(20), follower.changed());
        assert!(
            woke.await.is_err(),
            "a follower does not wake for the high watermark"
        );
        listeners.tell(&tp, id, Change::Data);
        follower.changed().await;
        assert_eq!(
            follower.take_changed(),
            vec![(tp.clone(), id)],
            "once, though told twice"
        );
        assert!(follower.take_changed().is_empty());

        drop(follower);
        listeners.tell(&tp, id, Change::Data);
        assert!(
            listeners.listeners.lock().is_empty(),
            "a dropped listener is forgotten"
        );
    }
}
