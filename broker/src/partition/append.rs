//! The one way to write to a partition: [`Partition::append`], with the
//! append's origin (Kafka's `AppendOrigin`) as the parameter.
//!
//! Every origin runs the same steps under the partition's `log` lock: check
//! the replica's role (and the leader epoch the writer expects), validate and
//! append (the log assigns offsets and updates producer state), then tell
//! waiting fetches and move the high watermark. What differs per origin is
//! only which role is required, which checks apply and how the high
//! watermark moves: a leader's from the ISR, a follower's from its leader.
//! A new kind of write (transaction markers, mirrored batches) is a new
//! [`Append`] variant here, not a new path beside it.

use std::sync::Arc;

use tokio::time::Instant;

use crate::disk::AppendOrigin;
use crate::error::ResponseError;
use crate::log::compression::CompressionType;
use crate::log::control::TxnMarker;
use crate::log::{AppendError, AppendInfo};
use crate::util::now_ms;

use super::{Partition, VerificationGuard};

/// What a client's produce waits for before it is answered (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: no answer at all.
    None,
    /// `acks=1`: once the leader wrote it.
    Leader,
    /// `acks=all` (-1): once the ISR has it; refused up front when the ISR
    /// is smaller than `min.insync.replicas`.
    All,
}

impl Acks {
    /// The produce request's `acks` field; `None` for a value Kafka refuses.
    pub fn from_request(acks: i16) -> Option<Acks> {
        match acks {
            0 => Some(Acks::None),
            1 => Some(Acks::Leader),
            -1 => Some(Acks::All),
            _ => None,
        }
    }
}

/// One append, by origin.
#[derive(Debug, Clone, Copy)]
pub enum Append<'a> {
    /// A producer's batches (Produce), on the leader at its current epoch.
    /// A transactional batch that would open its producer's transaction
    /// here needs `verified`: the guard of a verification with the
    /// coordinator (KIP-890) that no marker has overtaken since.
    Client {
        records: &'a [u8],
        acks: Acks,
        verified: Option<VerificationGuard>,
    },
    /// A coordinator's records, written while it leads the partition at
    /// `leader_epoch`. They are always waited for (the ISR must have them
    /// before the coordinator answers), but not refused below
    /// `min.insync.replicas`: the answer reports that after the append.
    /// Transactional ones (TxnOffsetCommit's offsets) that would open the
    /// producer's transaction here need `verified`, as a client's do.
    Coordinator {
        records: &'a [u8],
        leader_epoch: i32,
        verified: Option<VerificationGuard>,
    },
    /// A transaction marker (WriteTxnMarkers), on the leader at its current
    /// epoch; always waited for, like a coordinator's records.
    TxnMarker {
        producer_id: i64,
        producer_epoch: i16,
        marker: TxnMarker,
    },
    /// A follower's: batches fetched at `fetch_offset` from the leader of
    /// `leader_epoch`, already carrying their offsets, stored as they are;
    /// the follower takes the leader's high watermark (capped by its log end).
    Replication {
        records: &'a [u8],
        leader_epoch: i32,
        fetch_offset: i64,
        leader_high_watermark: i64,
    },
}

impl Append<'_> {
    pub fn origin(&self) -> AppendOrigin {
        match self {
            Append::Client { .. } => AppendOrigin::Client,
            Append::Coordinator { .. } | Append::TxnMarker { .. } => AppendOrigin::Coordinator,
            Append::Replication { .. } => AppendOrigin::Replication,
        }
    }
}

/// A successful append.
#[derive(Debug)]
pub struct Appended {
    pub info: AppendInfo,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// What the writer must wait for before acknowledging: set for
    /// `acks=all` and for coordinator records.
    pub replication: Option<ReplicationWait>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendFailure {
    /// A leader's append on a broker that does not lead the partition (or no
    /// longer at the epoch the writer expected).
    #[error("this broker does not lead the partition")]
    NotLeader,
    /// `acks=all` while the ISR is below `min.insync.replicas`; nothing was
    /// written.
    #[error("{isr_size} in-sync replica(s), min.insync.replicas is {min_isr}")]
    NotEnoughReplicas { isr_size: i32, min_isr: i32 },
    /// A transactional batch would open a transaction the coordinator has
    /// not confirmed (KIP-890): a late or zombie write. Nothing was written.
    #[error("the producer's transaction does not include this partition")]
    UnverifiedTransaction,
    /// A follower's fetched batches no longer fit: the log or the role
    /// changed since the fetch (a truncation, a new leader). Nothing was
    /// written; the next fetch starts from the log as it is.
    #[error("the replica changed since the fetch")]
    Stale,
    #[error(transparent)]
    Log(#[from] AppendError),
}

/// An append the writer waits on: done once the high watermark passes
/// `required_offset` while this broker still leads at `leader_epoch`.
#[derive(Clone)]
pub struct ReplicationWait {
    pub partition: Arc<Partition>,
    pub leader_epoch: i32,
    pub required_offset: i64,
    /// `min.insync.replicas` when the append was made.
    pub min_isr: i32,
}

impl std::fmt::Debug for ReplicationWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationWait")
            .field("partition", &self.partition.tp)
            .field("leader_epoch", &self.leader_epoch)
            .field("required_offset", &self.required_offset)
            .field("min_isr", &self.min_isr)
            .finish()
    }
}

impl ReplicationWait {
    /// Waits until the ISR has everything up to `required_offset`. Fails
    /// with NOT_LEADER_OR_FOLLOWER if leadership moved,
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below `min_isr`
    /// meanwhile, or REQUEST_TIMED_OUT at `deadline`.
    pub async fn wait(&self, deadline: Instant) -> Result<(), ResponseError> {
        let partition = &self.partition;
        let mut changes = partition.subscribe_high_watermark();
        loop {
            {
                let st = partition.replica.lock();
                if !st.is_leader || st.leader_epoch != self.leader_epoch {
                    return Err(ResponseError::NotLeaderOrFollower);
                }
                if partition.high_watermark() >= self.required_offset {
                    return if (st.isr.len() as i32) < self.min_isr {
                        Err(ResponseError::NotEnoughReplicasAfterAppend)
                    } else {
                        Ok(())
                    };
                }
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Err(ResponseError::NotLeaderOrFollower);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return Err(ResponseError::RequestTimedOut),
            }
        }
    }
}

impl Partition {
    /// Appends `append` (see the module doc for the steps). Must run on a
    /// multi-threaded runtime for client and replication appends, which may
    /// fsync or recompress and then leave the async worker.
    pub fn append(self: &Arc<Self>, append: Append<'_>) -> Result<Appended, AppendFailure> {
        let mut log = self.log.lock();
        let origin = append.origin();
        let now = now_ms();
        let (info, replication) = match append {
            Append::Client {
                records,
                acks,
                verified,
            } => {
                let (leader_epoch, isr_size) = self.leader_role(None)?;
                let opens = self.opens_transaction(&log, records);
                if let Some(producer_id) = opens {
                    if !self.verifications.is_current(producer_id, verified) {
                        return Err(AppendFailure::UnverifiedTransaction);
                    }
                }
                let min_isr = log.config().min_insync_replicas;
                if acks == Acks::All && isr_size < min_isr {
                    return Err(AppendFailure::NotEnoughReplicas { isr_size, min_isr });
                }
                // An fsync, recompressing into the topic's codec, or a write
                // that waits for the device may take a while: off the async
                // worker then.
                let may_block = log.config().flush_messages < i64::MAX
                    || log.config().compression != CompressionType::Producer
                    || log.append_may_wait_for_device();
                let info =
                    off_worker_if(may_block, || log.append(records, leader_epoch, origin, now))?;
                if let Some(producer_id) = opens {
                    // The transaction is open here now: no more guard needed.
                    self.verifications.finish(producer_id);
                }
                let wait = (acks == Acks::All).then(|| self.wait_for(&info, leader_epoch, min_isr));
                (info, wait)
            }
            Append::Coordinator {
                records,
                leader_epoch,
                verified,
            } => {
                self.leader_role(Some(leader_epoch))?;
                let opens = self.opens_transaction(&log, records);
                if let Some(producer_id) = opens {
                    if !self.verifications.is_current(producer_id, verified) {
                        return Err(AppendFailure::UnverifiedTransaction);
                    }
                }
                let min_isr = log.config().min_insync_replicas;
                let may_block = log.append_may_wait_for_device();
                let info =
                    off_worker_if(may_block, || log.append(records, leader_epoch, origin, now))?;
                if let Some(producer_id) = opens {
                    self.verifications.finish(producer_id);
                }
                let wait = self.wait_for(&info, leader_epoch, min_isr);
                (info, Some(wait))
            }
            Append::TxnMarker {
                producer_id,
                producer_epoch,
                marker,
            } => {
                let (leader_epoch, _) = self.leader_role(None)?;
                let min_isr = log.config().min_insync_replicas;
                let may_block = log.append_may_wait_for_device();
                let info = off_worker_if(may_block, || {
                    log.append_marker(producer_id, producer_epoch, marker, leader_epoch, now)
                })?;
                // A verification started before the marker is for the
                // transaction it ended: a batch holding its guard is late.
                self.verifications.finish(producer_id);
                let wait = self.wait_for(&info, leader_epoch, min_isr);
                (info, Some(wait))
            }
            Append::Replication {
                records,
                leader_epoch,
                fetch_offset,
                ..
            } => {
                let st = self.replica.lock();
                if st.is_leader || st.leader_epoch != leader_epoch {
                    return Err(AppendFailure::Stale);
                }
                drop(st);
                if log.log_end_offset() != fetch_offset {
                    return Err(AppendFailure::Stale);
                }
                let info = off_worker_if(true, || log.append_replicated(records, now))?;
                (info, None)
            }
        };
        let appended = Appended {
            info,
            log_start_offset: log.log_start_offset(),
            log_end_offset: log.log_end_offset(),
            replication,
        };
        log.prune_replicated_transactions(self.high_watermark());
        drop(log);
        self.after_append(&append, &appended);
        Ok(appended)
    }

    /// The producer whose transaction the first batch of `records` would
    /// open here: a transactional data batch of a producer with no open
    /// transaction in this partition.
    fn opens_transaction(&self, log: &crate::log::PartitionLog, records: &[u8]) -> Option<i64> {
        let header = crate::log::batch::BatchHeader::parse(records).ok()?;
        let opens = header.is_transactional()
            && !header.is_control()
            && log.ongoing_transaction(header.producer_id).is_none();
        opens.then_some(header.producer_id)
    }

    /// A leader's append needs this broker to lead, at `expected_epoch` if
    /// given. Returns the leader epoch and the ISR size. Called with `log`
    /// held, so no role change can come between the check and the write.
    fn leader_role(&self, expected_epoch: Option<i32>) -> Result<(i32, i32), AppendFailure> {
        let st = self.replica.lock();
        if !st.is_leader || expected_epoch.is_some_and(|e| e != st.leader_epoch) {
            return Err(AppendFailure::NotLeader);
        }
        Ok((st.leader_epoch, st.isr.len() as i32))
    }

    fn wait_for(
        self: &Arc<Self>,
        info: &AppendInfo,
        leader_epoch: i32,
        min_isr: i32,
    ) -> ReplicationWait {
        ReplicationWait {
            partition: self.clone(),
            leader_epoch,
            required_offset: info.last_offset + 1,
            min_isr,
        }
    }

    /// Wakes fetches waiting for data and moves the high watermark.
    fn after_append(&self, append: &Append<'_>, appended: &Appended) {
        let end = appended.log_end_offset;
        match append {
            Append::Client { .. } | Append::Coordinator { .. } | Append::TxnMarker { .. } => {
                if !appended.info.duplicate {
                    self.notify(end);
                    self.update_leader_high_watermark();
                }
            }
            Append::Replication {
                leader_high_watermark,
                ..
            } => {
                if appended.info.records > 0 {
                    self.notify(end);
                }
                if *leader_high_watermark >= 0 {
                    self.set_high_watermark((*leader_high_watermark).min(end));
                }
            }
        }
    }
}

/// Runs `write` off the async worker when it may block for long. Only a
/// multi-threaded runtime (the broker's) has other workers to hand the
/// rest to; on a single-threaded one (unit tests) it runs in place.
pub(super) fn off_worker_if<R>(may_block: bool, write: impl FnOnce() -> R) -> R {
    let multi_threaded = || {
        tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
    };
    if may_block && multi_threaded() {
        tokio::task::block_in_place(write)
    } else {
        write()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogConfig;
    use crate::log::batch::test_support::{assign, batch};
    use crate::log::TopicPartition;
    use crate::metadata::records::PartitionRecord;
    use crate::partition::testing::make_leader;
    use crate::partition::LogManager;

    const ME: i32 = 1;

    fn open(dir: &std::path::Path, config: LogConfig) -> (LogManager, Arc<Partition>) {
        let manager = LogManager::open(dir, 0, true).unwrap();
        let tp = TopicPartition::new("t", 0);
        let (partition, _) = manager
            .open_partition(&tp, uuid::Uuid::new_v4(), config)
            .unwrap();
        (manager, partition)
    }

    fn one(value: &[u8]) -> Vec<u8> {
        batch(&[value], 0, (-1, -1, -1))
    }

    fn client(records: &[u8], acks: Acks) -> Append<'_> {
        Append::Client {
            records,
            acks,
            verified: None,
        }
    }

    fn follow(partition: &Partition, leader: i32, leader_epoch: i32) {
        let mut record = PartitionRecord::new(vec![leader, ME]);
        record.leader_epoch = leader_epoch;
        partition.apply_record(&record, ME, 0);
    }

    #[test]
    fn a_client_append_needs_the_leader_role_and_then_moves_the_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let (_manager, partition) = open(dir.path(), LogConfig::default());
        let record = one(b"a");
        assert!(matches!(
            partition.append(client(&record, Acks::Leader)),
            Err(AppendFailure::NotLeader)
        ));
        assert_eq!(partition.log_end_offset(), 0, "nothing written");

        make_leader(&partition, ME, 0, vec![ME]);
        let appended = partition.append(client(&record, Acks::Leader)).unwrap();
        assert_eq!(appended.info.base_offset, 0);
        assert_eq!(appended.log_end_offset, 1);
        assert!(appended.replication.is_none(), "acks=1 waits for nothing");
        assert_eq!(partition.high_watermark(), 1, "a one-replica ISR has it");

        follow(&partition, 2, 1);
        assert!(matches!(
            partition.append(client(&record, Acks::Leader)),
            Err(AppendFailure::NotLeader)
        ));
    }

    #[test]
    fn acks_all_below_min_insync_replicas_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            min_insync_replicas: 2,
            ..LogConfig::default()
        };
        let (_manager, partition) = open(dir.path(), config);
        make_leader(&partition, ME, 0, vec![ME]);
        let record = one(b"a");
        assert!(matches!(
            partition.append(client(&record, Acks::All)),
            Err(AppendFailure::NotEnoughReplicas {
                isr_size: 1,
                min_isr: 2
            })
        ));
        assert_eq!(partition.log_end_offset(), 0);
        // acks=1 does not care about the ISR's size.
        partition.append(client(&record, Acks::Leader)).unwrap();
        assert_eq!(partition.log_end_offset(), 1);
    }

    #[test]
    fn a_coordinator_append_is_refused_at_a_leader_epoch_that_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (_manager, partition) = open(dir.path(), LogConfig::default());
        make_leader(&partition, ME, 3, vec![ME]);
        let record = one(b"offsets");
        let stale = Append::Coordinator {
            records: &record,
            leader_epoch: 2,
            verified: None,
        };
        assert!(matches!(
            partition.append(stale),
            Err(AppendFailure::NotLeader)
        ));
        let current = Append::Coordinator {
            records: &record,
            leader_epoch: 3,
            verified: None,
        };
        let appended = partition.append(current).unwrap();
        let wait = appended
            .replication
            .expect("coordinator writes are waited for");
        assert_eq!((wait.leader_epoch, wait.required_offset), (3, 1));
        assert_eq!(
            partition.read_log(|log| log.leader_epochs().latest_epoch()),
            Some(3),
            "the batch carries the leader epoch"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acks_all_is_done_when_the_followers_have_it_and_fails_when_leadership_moves() {
        let dir = tempfile::tempdir().unwrap();
        let (_manager, partition) = open(dir.path(), LogConfig::default());
        make_leader(&partition, ME, 0, vec![ME, 2]);
        let deadline = Instant::now() + std::time::Duration::from_secs(30);

        let record = one(b"a");
        let appended = partition.append(client(&record, Acks::All)).unwrap();
        let wait = appended.replication.expect("acks=all waits");
        assert_eq!(wait.required_offset, 1);
        assert_eq!(partition.high_watermark(), 0, "follower 2 has not fetched");
        let waiting = tokio::spawn(async move { wait.wait(deadline).await });
        // Follower 2 fetches from offset 1: it has the batch.
        assert_eq!(partition.record_follower_fetch(2, 1, 0, 0), Ok(None));
        assert_eq!(partition.high_watermark(), 1);
        assert_eq!(waiting.await.unwrap(), Ok(()));

        let appended = partition.append(client(&record, Acks::All)).unwrap();
        let wait = appended.replication.expect("acks=all waits");
        let waiting = tokio::spawn(async move { wait.wait(deadline).await });
        follow(&partition, 2, 1);
        assert_eq!(
            waiting.await.unwrap(),
            Err(ResponseError::NotLeaderOrFollower)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replicated_append_needs_the_follower_role_the_fetch_epoch_and_the_fetch_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (_manager, partition) = open(dir.path(), LogConfig::default());
        follow(&partition, 2, 4);
        // What the leader of epoch 4 stored at offset 0.
        let mut fetched = one(b"a");
        assign(&mut fetched, 0, 4, None);
        let replicated = |leader_epoch, fetch_offset| Append::Replication {
            records: &fetched,
            leader_epoch,
            fetch_offset,
            leader_high_watermark: 1,
        };
        assert!(matches!(
            partition.append(replicated(3, 0)),
            Err(AppendFailure::Stale)
        ));
        assert!(matches!(
            partition.append(replicated(4, 1)),
            Err(AppendFailure::Stale)
        ));
        let record = one(b"b");
        assert!(matches!(
            partition.append(client(&record, Acks::Leader)),
            Err(AppendFailure::NotLeader)
        ));
        assert_eq!(partition.log_end_offset(), 0, "nothing written so far");

        let appended = partition.append(replicated(4, 0)).unwrap();
        assert_eq!((appended.info.records, appended.log_end_offset), (1, 1));
        assert!(appended.replication.is_none());
        assert_eq!(
            partition.high_watermark(),
            1,
            "the leader's, capped by our end"
        );
        // The same response again: the log moved on since that fetch.
        assert!(matches!(
            partition.append(replicated(4, 0)),
            Err(AppendFailure::Stale)
        ));

        make_leader(&partition, ME, 5, vec![ME, 2]);
        assert!(matches!(
            partition.append(replicated(4, 1)),
            Err(AppendFailure::Stale)
        ));
    }

    /// An ISR change under the same leader moves the high watermark (and
    /// releases the replica state first: it once deadlocked here).
    #[test]
    fn an_isr_change_under_the_same_leader_moves_the_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let (_manager, partition) = open(dir.path(), LogConfig::default());
        make_leader(&partition, ME, 0, vec![ME, 2]);
        let record = one(b"a");
        partition.append(client(&record, Acks::Leader)).unwrap();
        assert_eq!(partition.high_watermark(), 0, "follower 2 has not fetched");
        let (done, finished) = std::sync::mpsc::channel();
        let shrunk = partition.clone();
        std::thread::spawn(move || {
            let mut record = PartitionRecord::new(vec![ME, 2]);
            record.isr = vec![ME];
            record.partition_epoch = 1;
            done.send(shrunk.apply_record(&record, ME, 0)).unwrap();
        });
        let change = finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the ISR change returns");
        assert_eq!(change, None, "no role change");
        assert_eq!(partition.high_watermark(), 1, "the leader alone is the ISR");
    }

    /// The role check and the write happen under the same lock as a role
    /// change, so a new leader epoch starts exactly where the last append
    /// of the old one ended, with no append of the old epoch after it.
    #[test]
    fn a_new_leader_epoch_starts_exactly_after_the_last_append_of_the_old_one() {
        use std::sync::atomic::{AtomicBool, Ordering};
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let (_manager, partition) = open(dir.path(), LogConfig::default());
            make_leader(&partition, ME, 0, vec![ME]);
            let stop = Arc::new(AtomicBool::new(false));
            let appender = {
                let (partition, stop) = (partition.clone(), stop.clone());
                std::thread::spawn(move || {
                    let record = one(b"a");
                    while !stop.load(Ordering::Relaxed) {
                        partition.append(client(&record, Acks::Leader)).unwrap();
                    }
                })
            };
            while partition.log_end_offset() < 50 {
                std::thread::yield_now();
            }
            make_leader(&partition, ME, 1, vec![ME]);
            let epoch_start = partition.replica.lock().epoch_start_offset;
            stop.store(true, Ordering::Relaxed);
            appender.join().unwrap();
            let end = partition.log_end_offset();
            let (epoch, end_of_epoch_0) =
                partition.read_log(|log| log.leader_epochs().end_offset_for(0, end));
            assert_eq!(epoch, 0);
            assert_eq!(
                end_of_epoch_0, epoch_start,
                "the new epoch began where the role change saw the log end"
            );
            assert_eq!(
                partition.read_log(|log| log.leader_epochs().latest_epoch()),
                Some(1)
            );
        }
    }
}
