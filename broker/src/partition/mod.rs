//! A partition hosted by this broker: the one owner of its log and its
//! replication state, and the one place that writes to it.
//!
//! Everything that changes a partition goes through a method here: an append
//! of any origin (`append`), a role change from the metadata, follower
//! progress and ISR proposals (`leadership`), a follower's truncation
//! (`follower`), DeleteRecords on a leader (`delete_records`), and the log
//! directory's upkeep (`manager`). Callers never see the locks, so a
//! leadership check and the write it guards cannot drift apart.
//!
//! Locks: `log` (the partition log) and `replica` (leadership, ISR, follower
//! progress). Order: `replica` may be taken while `log` is held, never the
//! other way round. An append holds `log` throughout and checks `replica`
//! inside it; a role change takes both the same way, so an append sees the
//! role entirely before or entirely after a change.
//!
//! Dependencies point one way: `partition` uses `log` (storage) and is used
//! by `replication` (fetchers, ISR changes through the controller), the
//! handlers and the coordinators.

pub mod append;
mod delete_records;
mod follower;
mod leadership;
pub mod manager;
pub mod replica_state;
pub mod verification;

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::LogConfig;
use crate::log::change_listener::{Change, ChangeListener, Listeners};
use crate::log::{PartitionLog, TopicPartition};
pub use append::{Acks, Append, AppendFailure, Appended, ReplicationWait};
pub use delete_records::DeletedRecords;
pub use leadership::{IsrProposal, Leadership, RoleChange};
pub use manager::LogManager;
pub use replica_state::{FollowerProgress, ReplicaState};
pub use verification::VerificationGuard;

/// A partition hosted by this broker: its log, its replication state, and
/// three signals: the log end offset moved (follower fetches wait on it),
/// the high watermark moved or the replica's role changed (consumer fetches
/// and `acks=all` produces wait on it), and a replica's log start or the
/// replica set changed (DeleteRecords waits on it for the low watermark).
pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    log: Mutex<PartitionLog>,
    /// Leadership, ISR and follower progress. Taken after `log`, never before.
    replica: Mutex<ReplicaState>,
    end_offset: watch::Sender<i64>,
    high_watermark: watch::Sender<i64>,
    /// This replica's log start moved, a follower's fetch reported a new
    /// one, or the role or replica set changed.
    replica_log_starts: watch::Sender<()>,
    /// Fetch sessions holding this partition (see `change_listener`).
    listeners: Listeners,
    /// KIP-890 verifications of transactional producers in flight.
    verifications: verification::Verifications,
}

/// Where a partition's log stands, read at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOffsets {
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub size_bytes: u64,
}

impl Partition {
    /// A partition around an opened log; it starts with no role (the
    /// metadata gives it one) and `high_watermark` from the checkpoint.
    fn new(tp: TopicPartition, topic_id: Uuid, log: PartitionLog, high_watermark: i64) -> Self {
        let (end_offset, _) = watch::channel(log.log_end_offset());
        let high_watermark = high_watermark.clamp(log.log_start_offset(), log.log_end_offset());
        let mut log = log;
        // Ended transactions a rebuild found are settled below it.
        log.prune_replicated_transactions(high_watermark);
        let (high_watermark, _) = watch::channel(high_watermark);
        let (replica_log_starts, _) = watch::channel(());
        Partition {
            tp,
            topic_id,
            log: Mutex::new(log),
            replica: Mutex::new(ReplicaState::default()),
            end_offset,
            high_watermark,
            replica_log_starts,
            listeners: Listeners::default(),
            verifications: verification::Verifications::default(),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.end_offset.subscribe()
    }

    /// Tells waiting fetches that new data (or a new log start) is there.
    pub fn notify(&self, end_offset: i64) {
        self.end_offset.send_replace(end_offset);
        self.tell_listeners(Change::Data);
    }

    /// Registers a fetch session's listener for this partition's changes.
    pub fn listen(&self, listener: &Arc<ChangeListener>) {
        self.listeners.add(listener);
    }

    fn tell_listeners(&self, change: Change) {
        self.listeners.tell(&self.tp, self.topic_id, change);
    }

    /// Consumers read below this offset: every in-sync replica has it.
    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// Moves the high watermark (a follower takes its leader's, capped by
    /// its own log end).
    fn set_high_watermark(&self, offset: i64) {
        let changed = self.high_watermark.send_if_modified(|hw| {
            let changed = *hw != offset;
            *hw = offset;
            changed
        });
        if changed {
            self.tell_listeners(Change::HighWatermark);
        }
    }

    /// Moves the high watermark forward to `offset` (never back).
    fn advance_high_watermark(&self, offset: i64) {
        let advanced = self.high_watermark.send_if_modified(|hw| {
            let advanced = offset > *hw;
            if advanced {
                *hw = offset;
            }
            advanced
        });
        if advanced {
            self.tell_listeners(Change::HighWatermark);
        }
    }

    /// Wakes everything waiting on the high watermark (the role changed).
    fn wake_waiters(&self) {
        self.high_watermark.send_modify(|_| {});
        self.tell_listeners(Change::Role);
    }

    /// Signals that a replica's log start, or the set of replicas, changed.
    pub fn subscribe_replica_log_starts(&self) -> watch::Receiver<()> {
        self.replica_log_starts.subscribe()
    }

    fn replica_log_starts_changed(&self) {
        self.replica_log_starts.send_replace(());
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log.lock().log_start_offset()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log.lock().log_end_offset()
    }

    pub fn size_bytes(&self) -> u64 {
        self.log.lock().size_bytes()
    }

    pub fn offsets(&self) -> LogOffsets {
        let log = self.log.lock();
        LogOffsets {
            log_start_offset: log.log_start_offset(),
            log_end_offset: log.log_end_offset(),
            size_bytes: log.size_bytes(),
        }
    }

    /// Runs `read` on the log as it is now, with nothing appended meanwhile
    /// (a fetch, an offset lookup, a coordinator loading its state).
    pub fn read_log<R>(&self, read: impl FnOnce(&PartitionLog) -> R) -> R {
        read(&self.log.lock())
    }

    /// `read_committed` consumers read below this offset: the high
    /// watermark, or the start of the oldest transaction not yet ended
    /// (and replicated) if that is lower.
    pub fn last_stable_offset(&self) -> i64 {
        let high_watermark = self.high_watermark();
        self.log.lock().last_stable_offset(high_watermark)
    }

    /// The first offset of `producer_id`'s open transaction here.
    pub fn ongoing_transaction(&self, producer_id: i64) -> Option<i64> {
        self.log.lock().ongoing_transaction(producer_id)
    }

    /// Starts a KIP-890 verification of `producer_id`'s transaction here:
    /// append with the guard once the coordinator confirmed it.
    pub fn begin_verification(&self, producer_id: i64) -> VerificationGuard {
        self.verifications.begin(producer_id)
    }

    /// The coordinator did not confirm the verification.
    pub fn abandon_verification(&self, producer_id: i64, guard: VerificationGuard) {
        self.verifications.abandon(producer_id, guard);
    }

    /// Every producer with state here, for DescribeProducers.
    pub fn producers(&self) -> Vec<(i64, crate::log::producer_state::ProducerEntry)> {
        self.log.lock().producers()
    }

    pub fn min_insync_replicas(&self) -> i32 {
        self.log.lock().config().min_insync_replicas
    }

    /// Applies a changed topic config (a no-op when it is the same).
    pub fn set_config(&self, config: &LogConfig) {
        let mut log = self.log.lock();
        if log.config() != config {
            log.set_config(config.clone());
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Partitions for unit tests elsewhere in the crate, which have no
    //! metadata to give them a role.
    use super::*;
    use crate::metadata::records::PartitionRecord;

    /// Makes this broker (`me`) lead `partition` at `leader_epoch`, with
    /// `replicas` all in sync.
    pub fn make_leader(partition: &Partition, me: i32, leader_epoch: i32, replicas: Vec<i32>) {
        let mut record = PartitionRecord::new(replicas);
        record.leader = me;
        record.leader_epoch = leader_epoch;
        partition.apply_record(&record, me, 0);
    }

    /// Partition `t-0` of a log manager in `dir`, led by broker `me` with
    /// `replicas`, holding `n` one-record batches; its high watermark is
    /// `n` once the followers have them.
    pub fn led_partition(
        dir: &std::path::Path,
        me: i32,
        config: crate::config::LogConfig,
        n: i64,
        replicas: Vec<i32>,
    ) -> (LogManager, Arc<Partition>) {
        let manager = LogManager::open(dir, 0, true).unwrap();
        let (partition, _) = manager
            .open_partition(
                &crate::log::TopicPartition::new("t", 0),
                uuid::Uuid::new_v4(),
                config,
            )
            .unwrap();
        make_leader(&partition, me, 0, replicas);
        // Keyed, so compacted configs take it too.
        let records = crate::log::batch::test_support::keyed_batch(b"key", b"value");
        for _ in 0..n {
            let append = Append::Client {
                records: &records,
                acks: Acks::Leader,
                verified: None,
            };
            partition.append(append).unwrap();
        }
        (manager, partition)
    }
}
