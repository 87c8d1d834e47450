//! The log directory: every partition log in it, the checkpoint files that
//! make restarts fast and safe, and the background work (retention, flushes,
//! checkpoints) that keeps logs within their configs.
//!
//! Files at the top of the directory, in Kafka's formats:
//! * `meta.properties` — cluster id and node id this directory belongs to.
//! * `recovery-point-offset-checkpoint` — per partition, the offset below
//!   which data was fsynced; recovery after a crash starts there.
//! * `log-start-offset-checkpoint` — per partition, the log start offset.
//!   Written periodically, and at once when DeleteRecords moved a log
//!   start (before the request is answered) or a follower took its
//!   leader's: the deleted records must not come back after a crash.
//! * `replication-offset-checkpoint` — per partition, the high watermark, so
//!   a restarted replica never exposes records that were not committed.
//! * `cleaner-offset-checkpoint` — per compacted partition, the offset below
//!   which the log cleaner has compacted the log (see `cleaner`).
//! * `.tideline_clean_shutdown` — present only after a clean stop; lets the
//!   next start skip validating segment contents.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use super::Partition;
use crate::config::LogConfig;
use crate::disk::write::{sync_dir, write_atomically};
use crate::disk::{DirState, LogDirHealth};
use crate::log::cleaner;
use crate::log::partition_log::{PartitionLog, RecoveryReport};
use crate::log::TopicPartition;
use crate::util::now_ms;

const CLEAN_SHUTDOWN_FILE: &str = ".tideline_clean_shutdown";
const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
const LOG_START_FILE: &str = "log-start-offset-checkpoint";
const HIGH_WATERMARK_FILE: &str = "replication-offset-checkpoint";
const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// When the tombstones each compacted partition kept may go (ms since the
/// epoch), in the checkpoint format; without it a restart would forget them
/// until new data makes the log dirty again.
const TOMBSTONE_EXPIRY_FILE: &str = "cleaner-tombstone-expiry-checkpoint";

pub struct LogManager {
    dir: PathBuf,
    /// Whether the previous run stopped cleanly (read once at start-up).
    was_clean: bool,
    recovery_points: HashMap<TopicPartition, i64>,
    log_starts: HashMap<TopicPartition, i64>,
    high_watermarks: HashMap<TopicPartition, i64>,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    cleaner: Mutex<CleanerState>,
    /// Serialises cleaning passes.
    cleaner_running: Mutex<()>,
    /// Serialises checkpoint writes: they share temporary files, and an
    /// older snapshot of the offsets must not replace a newer one.
    checkpointing: Mutex<()>,
    /// Whether the directory takes appends (full, offline).
    health: Arc<LogDirHealth>,
    /// `log.direct.io.enable` is `true` or `auto`: active segments keep
    /// direct-write tails (when those write directly: `direct_tail::set_policy`).
    direct_writes: bool,
}

/// The log cleaner's per-partition bookkeeping.
#[derive(Default)]
struct CleanerState {
    /// Below this offset a partition's log is compacted (persisted).
    checkpoints: HashMap<TopicPartition, i64>,
    /// When a kept tombstone may be removed (persisted with the checkpoints).
    tombstone_due: HashMap<TopicPartition, i64>,
}

impl LogManager {
    /// Takes ownership of the log directory (creating it if needed) and
    /// reads the checkpoints; logs are opened as the metadata names them.
    /// `reserved_bytes` is `log.dir.reserved.bytes` (-1: automatic),
    /// `direct_writes`: `log.direct.io.enable` is not `false`.
    pub fn open(dir: &Path, reserved_bytes: i64, direct_writes: bool) -> io::Result<LogManager> {
        std::fs::create_dir_all(dir)?;
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let was_clean = marker.exists();
        if was_clean {
            std::fs::remove_file(&marker)?;
            let _ = sync_dir(dir);
        }
        Ok(LogManager {
            dir: dir.to_path_buf(),
            was_clean,
            recovery_points: read_checkpoint(&dir.join(RECOVERY_POINT_FILE)),
            log_starts: read_checkpoint(&dir.join(LOG_START_FILE)),
            high_watermarks: read_checkpoint(&dir.join(HIGH_WATERMARK_FILE)),
            partitions: RwLock::new(HashMap::new()),
            cleaner: Mutex::new(CleanerState {
                checkpoints: read_checkpoint(&dir.join(cleaner::CHECKPOINT_FILE)),
                tombstone_due: read_checkpoint(&dir.join(TOMBSTONE_EXPIRY_FILE)),
            }),
            cleaner_running: Mutex::new(()),
            checkpointing: Mutex::new(()),
            health: Arc::new(LogDirHealth::new(dir, reserved_bytes)),
            direct_writes,
        })
    }

    pub fn health(&self) -> &Arc<LogDirHealth> {
        &self.health
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn was_clean_shutdown(&self) -> bool {
        self.was_clean
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.partitions.read().get(tp).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }

    /// Opens the partition's log (recovering it if the last stop was not
    /// clean), or creates it. A directory left by an earlier topic of the
    /// same name (another topic id) is deleted first.
    pub fn open_partition(
        &self,
        tp: &TopicPartition,
        topic_id: Uuid,
        config: LogConfig,
    ) -> io::Result<(Arc<Partition>, RecoveryReport)> {
        if let Some(existing) = self.get(tp) {
            if existing.topic_id == topic_id {
                return Ok((existing, RecoveryReport::default()));
            }
            self.remove_partition(tp)?;
        }
        let dir = self.dir.join(tp.dir_name());
        match read_partition_metadata(&dir) {
            Some(id) if id != topic_id => {
                tracing::info!(partition = %tp, "removing the log of a deleted topic with the same name");
                std::fs::remove_dir_all(&dir)?;
            }
            _ => {}
        }
        let existed = dir.exists();
        let recovery_point = self.recovery_points.get(tp).copied().unwrap_or(0);
        let log_start = self.log_starts.get(tp).copied().unwrap_or(0);
        let clean = self.was_clean || !existed;
        let (mut log, report) = PartitionLog::open(
            &dir,
            config,
            clean,
            recovery_point,
            log_start,
            now_ms(),
            self.health.clone(),
        )?;
        log.set_direct_writes(self.direct_writes);
        if report.truncated_bytes > 0 {
            tracing::warn!(
                partition = %tp,
                truncated_bytes = report.truncated_bytes,
                log_end_offset = log.log_end_offset(),
                "recovery truncated a torn or corrupt log tail"
            );
        }
        write_partition_metadata(&dir, topic_id)?;
        let high_watermark = self.high_watermarks.get(tp).copied().unwrap_or(0);
        let partition = Arc::new(Partition::new(tp.clone(), topic_id, log, high_watermark));
        self.partitions
            .write()
            .insert(tp.clone(), partition.clone());
        Ok((partition, report))
    }

    /// Deletes a partition's log (its topic was deleted). Its directory is
    /// renamed first so a crash mid-delete cannot resurrect it.
    pub fn remove_partition(&self, tp: &TopicPartition) -> io::Result<()> {
        let removed = self.partitions.write().remove(tp);
        {
            let mut cleaner = self.cleaner.lock();
            cleaner.checkpoints.remove(tp);
            cleaner.tombstone_due.remove(tp);
        }
        let dir = self.dir.join(tp.dir_name());
        if removed.is_some() || dir.exists() {
            let doomed = self.dir.join(format!(
                "{}.{}-delete",
                tp.dir_name(),
                Uuid::new_v4().simple()
            ));
            if dir.exists() {
                std::fs::rename(&dir, &doomed)?;
                let _ = sync_dir(&self.dir);
                std::fs::remove_dir_all(&doomed)?;
            }
            if let Some(partition) = removed {
                // Wake fetches parked on it so they notice it is gone.
                partition.notify(-1);
            }
        }
        Ok(())
    }

    /// Partition directories on disk that the metadata no longer knows, and
    /// leftovers of interrupted deletes.
    pub fn stray_dirs(&self, known: &dyn Fn(&TopicPartition) -> bool) -> io::Result<Vec<PathBuf>> {
        let mut stray = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with("__cluster_metadata") {
                continue;
            }
            if name.ends_with("-delete") {
                stray.push(entry.path());
                continue;
            }
            if let Some(tp) = TopicPartition::from_dir_name(&name) {
                if !known(&tp) {
                    stray.push(entry.path());
                }
            }
        }
        Ok(stray)
    }

    /// Applies retention to every log; returns deleted segment count.
    pub fn apply_retention(&self) -> usize {
        let mut deleted = 0;
        for partition in self.all() {
            let mut log = partition.log.lock();
            let before = log.log_start_offset();
            match log.apply_retention(now_ms()) {
                Ok(n) => deleted += n,
                Err(e) => {
                    tracing::error!(partition = %partition.tp, error = %e, "retention failed")
                }
            }
            let after = log.log_start_offset();
            if after != before {
                tracing::info!(partition = %partition.tp, log_start_offset = after, "retention advanced the log start offset");
                let end = log.log_end_offset();
                drop(log);
                partition.notify(end);
            }
        }
        deleted
    }

    /// Forgets, in every log, the producers idle for `expiration_ms`
    /// (`producer.id.expiration.ms`); returns how many.
    pub fn remove_expired_producers(&self, expiration_ms: i64) -> usize {
        let now = now_ms();
        self.all()
            .iter()
            .map(|p| p.log.lock().remove_expired_producers(now, expiration_ms))
            .sum()
    }

    /// Runs the log cleaner over every compacted log that is due (see
    /// `cleaner`); returns how many logs were cleaned. Blocking.
    pub fn clean_logs(&self) -> usize {
        // The cleaner's output would eat into the reserve the broker keeps
        // for its own writes.
        if self.health.state() != DirState::Writable {
            return 0;
        }
        let _running = self.cleaner_running.lock();
        let mut cleaned = 0;
        for partition in self.all() {
            if !partition.log.lock().config().cleanup_compact {
                continue;
            }
            let tp = &partition.tp;
            let (checkpoint, due) = {
                let state = self.cleaner.lock();
                (
                    state.checkpoints.get(tp).copied(),
                    state.tombstone_due.get(tp).copied(),
                )
            };
            match cleaner::clean(&partition.log, checkpoint, now_ms(), due, false) {
                Ok(Some(stats)) => {
                    cleaned += 1;
                    let mut state = self.cleaner.lock();
                    state.checkpoints.insert(tp.clone(), stats.cleaned_to);
                    match stats.next_tombstone_expiry {
                        Some(t) => state.tombstone_due.insert(tp.clone(), t),
                        None => state.tombstone_due.remove(tp),
                    };
                    tracing::info!(
                        partition = %tp,
                        segments_before = stats.segments_before,
                        segments_after = stats.segments_after,
                        bytes_before = stats.bytes_before,
                        bytes_after = stats.bytes_after,
                        records_removed = stats.records_removed,
                        cleaned_to = stats.cleaned_to,
                        next_tombstone_expiry = stats.next_tombstone_expiry,
                        "log cleaner compacted a log"
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(partition = %tp, error = %e, "log cleaning failed");
                    // Out of space affects every append; other errors here
                    // may be the data's (a corrupt batch), not the disk's.
                    if crate::disk::health::classify(&e)
                        == crate::disk::health::FailureKind::NoSpace
                    {
                        self.health.record_failure(&e, &self.dir);
                    }
                }
            }
        }
        if cleaned > 0 {
            if let Err(e) = self.write_cleaner_checkpoint() {
                tracing::error!(error = %e, "cannot write the cleaner checkpoint");
            }
        }
        cleaned
    }

    fn write_cleaner_checkpoint(&self) -> io::Result<()> {
        let live = self.partitions.read();
        let state = self.cleaner.lock();
        let of_live = |map: &HashMap<TopicPartition, i64>| {
            let mut entries: Vec<(TopicPartition, i64)> = map
                .iter()
                .filter(|(tp, _)| live.contains_key(*tp))
                .map(|(tp, value)| (tp.clone(), *value))
                .collect();
            entries.sort();
            entries
        };
        let (checkpoints, tombstones) =
            (of_live(&state.checkpoints), of_live(&state.tombstone_due));
        drop(state);
        drop(live);
        write_checkpoint(&self.dir.join(cleaner::CHECKPOINT_FILE), &checkpoints)?;
        write_checkpoint(&self.dir.join(TOMBSTONE_EXPIRY_FILE), &tombstones)
    }

    /// Flushes logs whose `flush.ms` has elapsed.
    pub fn flush_due(&self) {
        let now = now_ms();
        for partition in self.all() {
            let mut log = partition.log.lock();
            if log.flush_due(now) {
                if let Err(e) = log.flush(now) {
                    tracing::error!(partition = %partition.tp, error = %e, "flush failed");
                }
            }
        }
    }

    /// Writes the recovery-point, log-start and high-watermark checkpoints.
    pub fn write_checkpoints(&self) -> io::Result<()> {
        let _one_at_a_time = self.checkpointing.lock();
        let mut recovery = Vec::new();
        let mut starts = Vec::new();
        let mut high_watermarks = Vec::new();
        for partition in self.all() {
            let log = partition.log.lock();
            recovery.push((partition.tp.clone(), log.recovery_point()));
            starts.push((partition.tp.clone(), log.log_start_offset()));
            high_watermarks.push((partition.tp.clone(), partition.high_watermark()));
        }
        let written = write_checkpoint(&self.dir.join(RECOVERY_POINT_FILE), &recovery)
            .and_then(|()| write_checkpoint(&self.dir.join(LOG_START_FILE), &starts))
            .and_then(|()| write_checkpoint(&self.dir.join(HIGH_WATERMARK_FILE), &high_watermarks));
        if let Err(e) = &written {
            self.health.record_failure(e, &self.dir);
        }
        written
    }

    /// Writes the log-start checkpoint now (blocking): a log start moved by
    /// DeleteRecords is acknowledged only once it is on disk.
    pub fn write_log_start_checkpoint(&self) -> io::Result<()> {
        let _one_at_a_time = self.checkpointing.lock();
        let starts: Vec<(TopicPartition, i64)> = self
            .all()
            .into_iter()
            .map(|p| (p.tp.clone(), p.log_start_offset()))
            .collect();
        let written = write_checkpoint(&self.dir.join(LOG_START_FILE), &starts);
        if let Err(e) = &written {
            self.health.record_failure(e, &self.dir);
        }
        written
    }

    /// Flushes and closes every log, then leaves the clean-shutdown marker.
    pub fn shutdown(&self) -> io::Result<()> {
        if self.health.state() == DirState::Offline {
            // Nothing written there can be trusted: no marker, so the next
            // start validates every log from its recovery point.
            tracing::error!(dir = %self.dir.display(), "log directory offline: not closing the logs; the next start recovers them");
            return Ok(());
        }
        let now = now_ms();
        for partition in self.all() {
            partition.log.lock().close(now)?;
        }
        self.write_checkpoints()?;
        // Everything the marker vouches for (indexes, producer snapshots)
        // must be on disk before the marker is.
        sync_filesystem(&self.dir)?;
        write_atomically(&self.dir.join(CLEAN_SHUTDOWN_FILE), b"")?;
        Ok(())
    }
}

fn sync_filesystem(dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let handle = std::fs::File::open(dir)?;
    // SAFETY: the descriptor is valid for the duration of the call.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Kafka's checkpoint format: version line, count line, then `topic partition offset`.
fn write_checkpoint(path: &Path, entries: &[(TopicPartition, i64)]) -> io::Result<()> {
    let mut text = format!("0\n{}\n", entries.len());
    for (tp, offset) in entries {
        text.push_str(&format!("{} {} {}\n", tp.topic, tp.partition, offset));
    }
    write_atomically(path, text.as_bytes())
}

fn read_checkpoint(path: &Path) -> HashMap<TopicPartition, i64> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let topic = parts.next()?;
            let partition = parts.next()?.parse().ok()?;
            let offset = parts.next()?.parse().ok()?;
            Some((TopicPartition::new(topic, partition), offset))
        })
        .collect()
}

fn write_partition_metadata(dir: &Path, topic_id: Uuid) -> io::Result<()> {
    let path = dir.join(PARTITION_METADATA_FILE);
    if read_partition_metadata(dir) == Some(topic_id) {
        return Ok(());
    }
    write_atomically(
        &path,
        format!("version: 0\ntopic_id: {topic_id}\n").as_bytes(),
    )
}

fn read_partition_metadata(dir: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(dir.join(PARTITION_METADATA_FILE)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("topic_id:"))
        .and_then(|id| id.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::AppendOrigin;

    #[test]
    fn checkpoints_round_trip_and_topic_names_with_dashes_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        write_checkpoint(&path, &[(TopicPartition::new("a-b", 3), 42)]).unwrap();
        let read = read_checkpoint(&path);
        assert_eq!(read.get(&TopicPartition::new("a-b", 3)), Some(&42));
        assert_eq!(
            TopicPartition::from_dir_name("my-topic-12"),
            Some(TopicPartition::new("my-topic", 12))
        );
    }

    /// A manager of `dir` holding the (empty) partition `t-0`.
    fn manager_with_partition(dir: &Path) -> (LogManager, TopicPartition, Arc<Partition>) {
        let manager = LogManager::open(dir, 0, true).unwrap();
        let tp = TopicPartition::new("t", 0);
        let (partition, _) = manager
            .open_partition(&tp, Uuid::new_v4(), LogConfig::default())
            .unwrap();
        (manager, tp, partition)
    }

    #[test]
    fn a_failed_checkpoint_write_keeps_the_previous_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (manager, _, partition) = manager_with_partition(dir.path());
        manager.write_checkpoints().unwrap();
        let path = dir.path().join(LOG_START_FILE);
        let before = std::fs::read(&path).unwrap();
        let batch = crate::log::batch::test_support::batch(&[b"x"], 0, (-1, -1, -1));
        let mut log = partition.log.lock();
        log.append(&batch, 0, AppendOrigin::Client, 0).unwrap();
        log.roll().unwrap();
        log.append(&batch, 0, AppendOrigin::Client, 0).unwrap();
        log.apply_retention(i64::MAX / 2).unwrap();
        drop(log);
        crate::disk::write::faults::fail_write(LOG_START_FILE, 2, libc::ENOSPC);
        assert!(manager.write_checkpoints().is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
        manager.write_checkpoints().unwrap();
        assert_ne!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_log_start_moved_by_delete_records_survives_a_crash_once_checkpointed() {
        let dir = tempfile::tempdir().unwrap();
        let tp = TopicPartition::new("t", 0);
        let id = Uuid::new_v4();
        {
            let manager = LogManager::open(dir.path(), 0, true).unwrap();
            let (partition, _) = manager
                .open_partition(&tp, id, LogConfig::default())
                .unwrap();
            crate::partition::testing::make_leader(&partition, 1, 0, vec![1]);
            let batch = crate::log::batch::test_support::batch(&[b"x"], 0, (-1, -1, -1));
            for _ in 0..10 {
                let append = crate::partition::Append::Client {
                    records: &batch,
                    acks: crate::partition::Acks::Leader,
                    verified: None,
                };
                partition.append(append).unwrap();
            }
            // The periodic checkpoint ran before the deletion.
            manager.write_checkpoints().unwrap();
            partition.delete_records(7).unwrap();
            manager.write_log_start_checkpoint().unwrap();
            // A crash: no shutdown, no further checkpoint.
        }
        let manager = LogManager::open(dir.path(), 0, true).unwrap();
        assert!(!manager.was_clean_shutdown());
        let (partition, _) = manager
            .open_partition(&tp, id, LogConfig::default())
            .unwrap();
        assert_eq!(partition.log_start_offset(), 7);
        assert_eq!(partition.log_end_offset(), 10);
    }

    #[test]
    fn the_cleaner_compacts_compacted_logs_and_checkpoints_its_progress() {
        let dir = tempfile::tempdir().unwrap();
        let manager = LogManager::open(dir.path(), 0, true).unwrap();
        let config = LogConfig {
            cleanup_compact: true,
            cleanup_delete: false,
            segment_bytes: 200,
            ..LogConfig::default()
        };
        let tp = TopicPartition::new("c", 0);
        let (partition, _) = manager
            .open_partition(&tp, Uuid::new_v4(), config.clone())
            .unwrap();
        let (plain, _) = manager
            .open_partition(
                &TopicPartition::new("d", 0),
                Uuid::new_v4(),
                LogConfig::default(),
            )
            .unwrap();
        for i in 0..20u8 {
            let batch = keyed_batch(b"key", Some(&[i]));
            partition
                .log
                .lock()
                .append(&batch, 0, AppendOrigin::Client, 0)
                .unwrap();
            plain
                .log
                .lock()
                .append(&batch, 0, AppendOrigin::Client, 0)
                .unwrap();
        }
        let before = partition.log.lock().size_bytes();
        assert_eq!(manager.clean_logs(), 1);
        assert!(partition.log.lock().size_bytes() < before);
        let checkpoints = read_checkpoint(&dir.path().join(cleaner::CHECKPOINT_FILE));
        assert!(checkpoints.get(&tp).is_some_and(|&o| o > 0));
        assert_eq!(checkpoints.len(), 1);
        assert_eq!(manager.clean_logs(), 0, "nothing dirty");
    }

    #[test]
    fn tombstones_kept_by_a_pass_are_removed_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            cleanup_compact: true,
            cleanup_delete: false,
            segment_bytes: 200,
            ..LogConfig::default()
        };
        let tp = TopicPartition::new("c", 0);
        let id = Uuid::new_v4();
        {
            let manager = LogManager::open(dir.path(), 0, true).unwrap();
            let (partition, _) = manager.open_partition(&tp, id, config.clone()).unwrap();
            let mut log = partition.log.lock();
            // Written at time 0: long past delete.retention.ms.
            log.append(
                &keyed_batch(b"gone", Some(b"v")),
                0,
                AppendOrigin::Client,
                0,
            )
            .unwrap();
            log.append(&keyed_batch(b"gone", None), 0, AppendOrigin::Client, 0)
                .unwrap();
            for i in 0..20u8 {
                log.append(
                    &keyed_batch(b"other", Some(&[i])),
                    0,
                    AppendOrigin::Client,
                    0,
                )
                .unwrap();
            }
            drop(log);
            // The first pass keeps the tombstone (it was in the dirty part)
            // and notes when it may go.
            assert_eq!(manager.clean_logs(), 1);
            manager.shutdown().unwrap();
        }
        let manager = LogManager::open(dir.path(), 0, true).unwrap();
        let (partition, _) = manager.open_partition(&tp, id, config).unwrap();
        let before = partition.log.lock().size_bytes();
        assert_eq!(
            manager.clean_logs(),
            1,
            "the kept tombstone's expiry was remembered"
        );
        assert!(partition.log.lock().size_bytes() < before);
    }

    /// An uncompressed one-record batch with a key (`None`: a tombstone).
    fn keyed_batch(key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
        use kafka_protocol::records::*;
        let record = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 0,
            key: Some(bytes::Bytes::copy_from_slice(key)),
            value: value.map(bytes::Bytes::copy_from_slice),
            headers: Default::default(),
        };
        let mut buf = bytes::BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, [&record], &options).unwrap();
        buf.to_vec()
    }

    #[test]
    fn a_recreated_topic_does_not_inherit_old_data() {
        let dir = tempfile::tempdir().unwrap();
        let (manager, tp, partition) = manager_with_partition(dir.path());
        partition
            .log
            .lock()
            .append(
                &crate::log::batch::test_support::batch(&[b"x"], 0, (-1, -1, -1)),
                0,
                AppendOrigin::Client,
                0,
            )
            .unwrap();
        let (partition, _) = manager
            .open_partition(&tp, Uuid::new_v4(), LogConfig::default())
            .unwrap();
        assert_eq!(partition.log.lock().log_end_offset(), 0);
    }
}
