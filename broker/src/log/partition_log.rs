//! The log of one partition: an ordered set of segments in the directory
//! `<log.dir>/<topic>-<partition>/`, the log start offset, and the producer
//! state that makes appends idempotent.
//!
//! Appends validate every batch, assign offsets, roll segments by size, age
//! and index fullness, and fsync per `flush.messages`; the segment a roll
//! closed is fsynced in the background (`flusher`). Reads return the file
//! region holding the batches from an offset on, so the caller copies the
//! bytes outside any lock. Retention deletes whole segments; the log
//! cleaner's compacted segments replace the originals through `swap`. The
//! log start may also move inside a segment (DeleteRecords,
//! `advance_log_start`): nothing below it is read from then on, and the
//! segments wholly below it are deleted. The caller checkpoints it.
//!
//! Every append is admitted by the log directory's health first (a full
//! directory refuses client and replication appends, an offline one
//! everything), and every failed write is reported to it. A failed append
//! changes nothing a reader or the next append can see: the segment stays
//! at its last good length, the indexes and producer state are untouched,
//! and the leader-epoch checkpoint is replaced before the data is written
//! (an epoch that starts at the log end is valid either way).

mod swap;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch::{self, codec, BatchError, BatchHeader, HEADER_SIZE};
use super::compression::CompressionType;
use super::control::{self, TxnMarker};
use super::flusher::RollFlushes;
use super::leader_epochs::LeaderEpochCache;
use super::producer_state::{
    BatchMetadata, CompletedTxn, MarkerCheck, ProducerEntry, ProducerState, SequenceCheck,
};
use super::segment::{BatchPosition, Segment};
use super::txn_index::AbortedTxn;
use crate::config::log_config::{LogConfig, TimestampType};
use crate::disk::{AppendOrigin, LogDirHealth, StorageRefusal};

pub const PRODUCER_SNAPSHOT: &str = "producer-state.json";

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("corrupt record batch: {0}")]
    Corrupt(#[from] BatchError),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
    #[error("out of order sequence number: expected {expected}, got {got}")]
    OutOfOrderSequence { expected: i32, got: i32 },
    #[error("producer epoch is stale (current {current})")]
    InvalidProducerEpoch { current: i16 },
    #[error("timestamp {timestamp} is out of the allowed range")]
    InvalidTimestamp { timestamp: i64 },
    /// Records Kafka refuses one by one (a keyless record for a compacted
    /// topic): each record's index in its batch and why. Nothing of the
    /// request's batches is stored.
    #[error("one or more records have been rejected")]
    InvalidRecords { errors: Vec<(i32, String)> },
    #[error("transaction marker from coordinator epoch {got}, the partition has seen {current}")]
    CoordinatorFenced { current: i32, got: i32 },
    #[error("replicated batch at offset {got} does not continue the log at {expected}")]
    NonContiguous { expected: i64, got: i64 },
    #[error("{0}")]
    Storage(#[from] StorageRefusal),
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("{0}")]
    Storage(#[from] StorageRefusal),
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// The log start may not pass the high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("offset {offset} is above the high watermark {high_watermark}")]
pub struct AboveHighWatermark {
    pub offset: i64,
    pub high_watermark: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker's timestamp when the topic uses LogAppendTime, else -1.
    pub log_append_time: i64,
    pub records: i64,
    pub bytes: u64,
    /// The batch was a retry of one already written; nothing was appended.
    pub duplicate: bool,
}

pub use super::segment::ReadSlice;

/// What start-up found.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecoveryReport {
    pub segments: usize,
    pub recovered_segments: usize,
    pub truncated_bytes: u64,
}

pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    producers: ProducerState,
    leader_epochs: LeaderEpochCache,
    /// Everything below this offset is known to be fsynced (and so is
    /// everything below what `roll_flushes` completed since).
    recovery_point: i64,
    /// fsyncs of rolled segments running in the background.
    roll_flushes: RollFlushes,
    unflushed_messages: i64,
    last_flush_ms: i64,
    /// The log directory's: admits appends, hears of failed writes.
    health: Arc<LogDirHealth>,
    /// The active segment writes with `O_DIRECT` (see `direct_tail`).
    direct_writes: bool,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`. After an unclean shutdown
    /// (`clean == false`) every segment from the one holding
    /// `recovery_point` on is validated batch by batch and a bad tail is
    /// truncated; later segments after a truncation are removed.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        clean: bool,
        recovery_point: i64,
        log_start_checkpoint: i64,
        now_ms: i64,
        health: Arc<LogDirHealth>,
    ) -> io::Result<(PartitionLog, RecoveryReport)> {
        std::fs::create_dir_all(dir)?;
        let mut bases = Vec::new();
        let mut swaps = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name().to_string_lossy().to_string();
            if let Some(stem) = name.strip_suffix(".log") {
                if let Ok(base) = stem.parse::<i64>() {
                    bases.push(base);
                }
            } else if let Some(base) = name
                .strip_suffix(".log.swap")
                .and_then(|stem| stem.parse::<i64>().ok())
            {
                swaps.push(base);
            } else if name.ends_with(".tmp")
                || name.ends_with(".cleaned")
                || name.ends_with(".swap")
            {
                // An unfinished cleaner output (see `swap`): the
                // segments it was to replace are all still there.
                std::fs::remove_file(dir.join(&name))?;
            }
        }
        // A `.swap` file is a complete, fsynced cleaner output whose swap
        // was interrupted: finish it (see the protocol in `swap`).
        swaps.sort_unstable();
        for swap_base in swaps {
            swap::complete_swap(dir, swap_base, &mut bases)?;
        }
        bases.sort_unstable();
        let mut report = RecoveryReport::default();
        let mut segments = BTreeMap::new();
        // The segment holding the recovery point and all after it are suspect.
        let first_suspect = bases
            .iter()
            .rev()
            .find(|&&b| b <= recovery_point)
            .copied()
            .unwrap_or(i64::MIN);
        let mut cut = false;
        for base in bases {
            if cut {
                // A tear in an earlier segment means these were never acknowledged as a whole.
                let (segment, _) = Segment::open(dir, base, false, config.index_interval_bytes)?;
                segment.delete_files()?;
                continue;
            }
            let recover = !clean && base >= first_suspect;
            let (segment, outcome) =
                Segment::open(dir, base, recover, config.index_interval_bytes)?;
            report.segments += 1;
            if recover {
                report.recovered_segments += 1;
            }
            if outcome.truncated_bytes > 0 {
                report.truncated_bytes += outcome.truncated_bytes;
                cut = true;
            }
            if segment.is_empty() && !segments.is_empty() {
                segment.delete_files()?;
                continue;
            }
            segments.insert(base, segment);
        }
        let producer_path = dir.join(PRODUCER_SNAPSHOT);
        let snapshot = if clean {
            ProducerState::load(&producer_path)
        } else {
            None
        };
        let _ = std::fs::remove_file(&producer_path);
        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset: 0,
            producers: ProducerState::default(),
            leader_epochs: LeaderEpochCache::empty(dir),
            recovery_point: 0,
            roll_flushes: RollFlushes::default(),
            unflushed_messages: 0,
            last_flush_ms: now_ms,
            health,
            direct_writes: false,
        };
        if log.segments.is_empty() {
            let base = log_start_checkpoint.max(0);
            log.segments.insert(base, Segment::create(dir, base)?);
        }
        let first_base = *log.segments.keys().next().expect("one segment");
        log.log_start_offset = log_start_checkpoint
            .max(first_base)
            .min(log.log_end_offset());
        match snapshot {
            Some(state) => log.producers = state,
            // After a crash the aborted-transaction indexes are rebuilt
            // too: they may lag the markers in the log.
            None => log.rebuild_producer_state(!clean)?,
        }
        log.leader_epochs = match LeaderEpochCache::load(dir) {
            Some(cache) => cache,
            None => log.rebuild_leader_epochs()?,
        };
        let end = log.log_end_offset();
        log.update_leader_epochs(|cache| cache.truncate_from_end(end))?;
        log.recovery_point = log.log_end_offset();
        Ok((log, report))
    }

    /// Rebuilds the producer state from every batch in the log and, with
    /// `indexes`, each segment's aborted-transaction index from its markers.
    fn rebuild_producer_state(&mut self, indexes: bool) -> io::Result<()> {
        let mut state = ProducerState::default();
        let mut aborted_by_segment = Vec::new();
        for segment in self.segments.values() {
            let mut aborted = Vec::new();
            let mut failed = None;
            segment.for_each_batch(|b| {
                let marker = if b.header.is_control() {
                    match segment.read_at(b.position, b.header.total_size()) {
                        Ok(bytes) => control::parse_marker(&b.header, &bytes),
                        Err(e) => {
                            failed.get_or_insert(e);
                            None
                        }
                    }
                } else {
                    None
                };
                if let Some(done) = state.record(&b.header, marker) {
                    if !done.commit {
                        aborted.push(aborted_entry(&state, done));
                    }
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            aborted_by_segment.push((segment.base_offset, aborted));
        }
        if indexes {
            for (base, aborted) in aborted_by_segment {
                if let Some(segment) = self.segments.get_mut(&base) {
                    segment.set_aborted(aborted);
                }
            }
        }
        self.producers = state;
        Ok(())
    }

    /// The epoch cache of a log written before it existed, from the
    /// leader epochs stamped on its batches.
    fn rebuild_leader_epochs(&self) -> io::Result<LeaderEpochCache> {
        let mut cache = LeaderEpochCache::empty(&self.dir);
        for segment in self.segments.values() {
            segment.for_each_batch(|b| {
                cache.assign(b.header.partition_leader_epoch, b.header.base_offset);
            })?;
        }
        cache.save()?;
        Ok(cache)
    }

    /// A log in `dir` with nothing checkpointed and no reserve (tests).
    #[cfg(test)]
    pub(crate) fn open_for_test(
        dir: &Path,
        config: LogConfig,
        clean: bool,
    ) -> (PartitionLog, RecoveryReport) {
        let health = LogDirHealth::without_reserve(dir);
        PartitionLog::open(dir, config, clean, 0, 0, 0, health).unwrap()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn leader_epochs(&self) -> &LeaderEpochCache {
        &self.leader_epochs
    }

    /// Starts `epoch` at the log end (this replica became its leader).
    pub fn assign_leader_epoch(&mut self, epoch: i32) -> io::Result<()> {
        let end = self.log_end_offset();
        let result = self.update_leader_epochs(|cache| cache.assign(epoch, end));
        self.reported(result)
    }

    /// Applies `change` to a copy of the leader-epoch cache and, if it
    /// changed anything, replaces the checkpoint file before the cache: a
    /// failed write leaves both as they were.
    fn update_leader_epochs(
        &mut self,
        change: impl FnOnce(&mut LeaderEpochCache) -> bool,
    ) -> io::Result<()> {
        let mut next = self.leader_epochs.clone();
        if change(&mut next) {
            next.save()?;
            self.leader_epochs = next;
        }
        Ok(())
    }

    /// Tells the directory's health about a failed write.
    fn reported<T>(&self, result: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &result {
            self.health.record_failure(e, &self.dir);
        }
        result
    }

    fn reported_append<T>(&self, result: Result<T, AppendError>) -> Result<T, AppendError> {
        if let Err(AppendError::Io(e)) = &result {
            self.health.record_failure(e, &self.dir);
        }
        result
    }

    /// Makes the active segment (and each one after it) write with
    /// `O_DIRECT` from the broker's own buffers, or through the page cache.
    pub fn set_direct_writes(&mut self, enabled: bool) {
        self.direct_writes = enabled;
        self.active_mut().set_direct_writes(enabled);
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    pub fn recovery_point(&self) -> i64 {
        self.recovery_point.max(self.roll_flushes.durable_up_to())
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn producer_count(&self) -> usize {
        self.producers.producer_count()
    }

    /// The first offset `read_committed` consumers may not read yet (see
    /// `ProducerState::first_unstable_offset`).
    pub fn first_unstable_offset(&self, high_watermark: i64) -> Option<i64> {
        self.producers.first_unstable_offset(high_watermark)
    }

    /// The last stable offset: `read_committed` consumers read below it.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.first_unstable_offset(high_watermark)
            .map_or(high_watermark, |f| f.min(high_watermark))
    }

    /// Forgets ended transactions whose markers the ISR has.
    pub fn prune_replicated_transactions(&mut self, high_watermark: i64) {
        if self.producers.has_unreplicated() {
            self.producers.prune_replicated(high_watermark);
        }
    }

    /// The first offset of `producer_id`'s open transaction here.
    pub fn ongoing_transaction(&self, producer_id: i64) -> Option<i64> {
        self.producers.ongoing_transaction(producer_id)
    }

    /// Forgets producers idle for `expiration_ms` (see
    /// `ProducerState::remove_expired`); returns how many.
    pub fn remove_expired_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        self.producers
            .remove_expired(now_ms.saturating_sub(expiration_ms))
    }

    /// Every producer with state in this partition.
    pub fn producers(&self) -> Vec<(i64, ProducerEntry)> {
        self.producers
            .producers()
            .map(|(pid, e)| (pid, e.clone()))
            .collect()
    }

    /// The aborted transactions a `read_committed` fetch from `from` up to
    /// `upper_bound` must be told of: those whose marker is at or after
    /// `from` and that began before `upper_bound`, as (producer id, first
    /// offset), oldest first.
    pub fn aborted_transactions(&self, from: i64, upper_bound: i64) -> Vec<(i64, i64)> {
        let first = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(from, |(&b, _)| b);
        let mut found: Vec<(i64, i64)> = self
            .segments
            .range(first..)
            .flat_map(|(_, s)| s.aborted())
            .filter(|a| a.last_offset >= from && a.first_offset < upper_bound)
            .map(|a| (a.producer_id, a.first_offset))
            .collect();
        found.sort_by_key(|&(_, first)| first);
        found
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has a segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has a segment")
    }

    /// Validates and appends the batches in `records` (a produce request's
    /// record set for this partition, or the coordinator's records).
    pub fn append(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
        origin: AppendOrigin,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        let result = self.append_leader(records, leader_epoch, origin, now_ms);
        self.reported_append(result)
    }

    fn append_leader(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
        origin: AppendOrigin,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        // Split and validate every batch before touching the log.
        let mut spans = Vec::new();
        for span in batch::batch_spans(records) {
            let (pos, size) = span?;
            if size > self.config.max_message_bytes {
                return Err(AppendError::TooLarge {
                    size,
                    max: self.config.max_message_bytes,
                });
            }
            let header = batch::validate_produced(&records[pos..pos + size])?;
            if self.config.cleanup_compact && origin == AppendOrigin::Client {
                check_keys(&header, &records[pos..pos + size], &self.dir)?;
            }
            if self.config.timestamp_type == TimestampType::CreateTime {
                self.check_timestamps(&header, now_ms)?;
            }
            spans.push((pos, size, header));
        }
        if spans.is_empty() {
            return Err(BatchError::BadCount(0).into());
        }
        for (_, _, header) in &spans {
            match self.producers.check(header) {
                SequenceCheck::Accept => {}
                SequenceCheck::Duplicate(meta) if spans.len() == 1 => {
                    return Ok(self.duplicate_info(meta, header));
                }
                SequenceCheck::Duplicate(meta) => {
                    return Err(AppendError::OutOfOrderSequence {
                        expected: meta.last_seq + 1,
                        got: header.base_sequence,
                    })
                }
                SequenceCheck::OutOfOrder { expected, got } => {
                    return Err(AppendError::OutOfOrderSequence { expected, got })
                }
                SequenceCheck::StaleEpoch { current } => {
                    return Err(AppendError::InvalidProducerEpoch { current })
                }
            }
        }

        let (bytes, spans) = self.recompress_produced(records, spans, origin)?;
        let markers = vec![None; spans.len()];
        self.write_new(&bytes, &spans, &markers, leader_epoch, origin, now_ms)
    }

    /// Appends a transaction marker for `producer_id` (WriteTxnMarkers on
    /// the leader). A marker from an older producer epoch or an older
    /// coordinator is refused.
    pub fn append_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        marker: TxnMarker,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        let result =
            match self
                .producers
                .check_marker(producer_id, producer_epoch, marker.coordinator_epoch)
            {
                MarkerCheck::StaleProducerEpoch { current } => {
                    Err(AppendError::InvalidProducerEpoch { current })
                }
                MarkerCheck::StaleCoordinatorEpoch { current } => {
                    Err(AppendError::CoordinatorFenced {
                        current,
                        got: marker.coordinator_epoch,
                    })
                }
                MarkerCheck::Accept => {
                    let bytes = control::marker_batch(producer_id, producer_epoch, marker, now_ms);
                    let header = BatchHeader::parse(&bytes).map_err(AppendError::Corrupt);
                    header.and_then(|header| {
                        let spans = [(0, bytes.len(), header)];
                        let origin = AppendOrigin::Coordinator;
                        self.write_new(
                            &bytes,
                            &spans,
                            &[Some(marker)],
                            leader_epoch,
                            origin,
                            now_ms,
                        )
                    })
                }
            };
        self.reported_append(result)
    }

    /// Assigns offsets to validated batches (`spans` in `bytes`) and
    /// writes them, as the leader at `leader_epoch`.
    fn write_new(
        &mut self,
        bytes: &[u8],
        spans: &[(usize, usize, BatchHeader)],
        markers: &[Option<TxnMarker>],
        leader_epoch: i32,
        origin: AppendOrigin,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        self.health.admit(origin, bytes.len())?;
        self.maybe_roll(bytes.len() as u64, now_ms)?;
        let log_append_time = match self.config.timestamp_type {
            TimestampType::LogAppendTime => Some(now_ms),
            TimestampType::CreateTime => None,
        };
        let mut next = self.log_end_offset();
        let base_offset = next;
        let mut headers = Vec::with_capacity(spans.len());
        // Each batch is written as a rewritten copy of its header and the
        // rest of it as received: the records are not copied again.
        let mut header_bytes = Vec::with_capacity(spans.len());
        for (pos, size, header) in spans {
            let mut copy: [u8; HEADER_SIZE] = bytes[*pos..pos + HEADER_SIZE]
                .try_into()
                .expect("a validated batch has a header");
            let rest = &bytes[pos + HEADER_SIZE..pos + size];
            batch::assign_header(&mut copy, rest, next, leader_epoch, log_append_time);
            header_bytes.push(copy);
            let mut assigned = *header;
            assigned.base_offset = next;
            assigned.partition_leader_epoch = leader_epoch;
            if let Some(ts) = log_append_time {
                assigned.max_timestamp = ts;
            }
            next += header.records_count as i64;
            headers.push(assigned);
        }
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * spans.len());
        for ((pos, size, _), header) in spans.iter().zip(&header_bytes) {
            parts.push(header);
            parts.push(&bytes[pos + HEADER_SIZE..pos + size]);
        }
        let count = self.write_batches(&parts, &headers, markers, now_ms)?;
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_append_time: log_append_time.unwrap_or(-1),
            records: count,
            bytes: bytes.len() as u64,
            duplicate: false,
        })
    }

    /// The bytes to store for a client's batches: as sent, or with every
    /// batch in the topic's `compression.type` codec when it names one.
    /// Returns the new bytes and each batch's position, size and header.
    #[allow(clippy::type_complexity)]
    fn recompress_produced<'a>(
        &self,
        records: &'a [u8],
        spans: Vec<(usize, usize, BatchHeader)>,
        origin: AppendOrigin,
    ) -> Result<(Cow<'a, [u8]>, Vec<(usize, usize, BatchHeader)>), AppendError> {
        let target = match self.config.compression {
            CompressionType::Codec(codec) if origin == AppendOrigin::Client => codec,
            _ => return Ok((Cow::Borrowed(records), spans)),
        };
        let mut bytes = Vec::with_capacity(records.len());
        let mut rewritten = Vec::with_capacity(spans.len());
        for (pos, size, header) in spans {
            let original = &records[pos..pos + size];
            let start = bytes.len();
            match codec::recompress(original, &header, target, self.config.compression_levels)? {
                None => bytes.extend_from_slice(original),
                Some(batch) => bytes.extend_from_slice(&batch),
            }
            let size = bytes.len() - start;
            if size > self.config.max_message_bytes {
                return Err(AppendError::TooLarge {
                    size,
                    max: self.config.max_message_bytes,
                });
            }
            rewritten.push((start, size, BatchHeader::parse(&bytes[start..])?));
        }
        Ok((Cow::Owned(bytes), rewritten))
    }

    /// Appends batches fetched from the partition's leader, which already
    /// carry their offsets and leader epochs: they are validated and stored
    /// as they are, and must continue the log exactly.
    pub fn append_replicated(
        &mut self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        let result = self.append_follower(records, now_ms);
        self.reported_append(result)
    }

    fn append_follower(&mut self, records: &[u8], now_ms: i64) -> Result<AppendInfo, AppendError> {
        let mut spans = Vec::new();
        let mut next = self.log_end_offset();
        for span in batch::batch_spans(records) {
            // A fetch response may end with a partial batch: stop there.
            let Ok((pos, size)) = span else {
                break;
            };
            let header = batch::validate(&records[pos..pos + size])?;
            if header.last_offset() < next {
                // Already have it (the leader's batch straddles our end).
                continue;
            }
            if header.base_offset != next {
                return Err(AppendError::NonContiguous {
                    expected: next,
                    got: header.base_offset,
                });
            }
            next = header.last_offset() + 1;
            spans.push((pos, size, header));
        }
        let base_offset = self.log_end_offset();
        let Some((first, _, _)) = spans.first() else {
            return Ok(AppendInfo {
                base_offset,
                last_offset: base_offset - 1,
                log_append_time: -1,
                records: 0,
                bytes: 0,
                duplicate: false,
            });
        };
        let (last_pos, last_size, _) = spans.last().expect("not empty");
        let bytes = &records[*first..last_pos + last_size];
        self.health.admit(AppendOrigin::Replication, bytes.len())?;
        self.maybe_roll(bytes.len() as u64, now_ms)?;
        let headers: Vec<BatchHeader> = spans.iter().map(|(_, _, h)| *h).collect();
        let markers: Vec<Option<TxnMarker>> = spans
            .iter()
            .map(|(pos, size, h)| control::parse_marker(h, &records[*pos..pos + size]))
            .collect();
        let count = self.write_batches(&[bytes], &headers, &markers, now_ms)?;
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_append_time: -1,
            records: count,
            bytes: bytes.len() as u64,
            duplicate: false,
        })
    }

    /// Writes validated batches with their offsets and epochs assigned
    /// (given in pieces, in order) to the active segment, and records them
    /// in the producer state (with what each control batch's marker says),
    /// the aborted-transaction index and the leader-epoch cache; fsyncs per
    /// `flush.messages`. Returns the record count.
    fn write_batches(
        &mut self,
        parts: &[&[u8]],
        headers: &[BatchHeader],
        markers: &[Option<TxnMarker>],
        now_ms: i64,
    ) -> Result<i64, AppendError> {
        if headers
            .iter()
            .any(|h| self.leader_epochs.is_new(h.partition_leader_epoch))
        {
            self.update_leader_epochs(|cache| {
                let mut changed = false;
                for h in headers {
                    changed |= cache.assign(h.partition_leader_epoch, h.base_offset);
                }
                changed
            })?;
        }
        let interval = self.config.index_interval_bytes;
        // Nothing below changes unless the data is in the file.
        self.active_mut()
            .append_parts(parts, headers, interval, now_ms)?;
        let mut count = 0;
        for (header, marker) in headers.iter().zip(markers) {
            if let Some(done) = self.producers.record(header, *marker) {
                if !done.commit {
                    let entry = aborted_entry(&self.producers, done);
                    self.active_mut().record_abort(entry);
                }
            }
            count += header.records_count as i64;
        }
        self.unflushed_messages += count;
        if self.unflushed_messages >= self.config.flush_messages {
            self.flush_inner(now_ms)?;
        }
        Ok(count)
    }

    /// Removes everything at and after `offset` (a follower diverged from
    /// its leader). Returns whether anything was removed.
    pub fn truncate_to(&mut self, offset: i64) -> io::Result<bool> {
        let result = self.truncate_to_inner(offset);
        self.reported(result)
    }

    fn truncate_to_inner(&mut self, offset: i64) -> io::Result<bool> {
        if offset >= self.log_end_offset() {
            return Ok(false);
        }
        if offset <= self.log_start_offset {
            self.restart_at(offset.max(self.log_start_offset))?;
            return Ok(true);
        }
        // The first segment starts at or below the log start, hence below
        // `offset`: at least one segment stays.
        let doomed: Vec<i64> = self.segments.range(offset..).map(|(b, _)| *b).collect();
        for base in doomed {
            if let Some(segment) = self.segments.remove(&base) {
                segment.delete_files()?;
            }
        }
        let direct = self.direct_writes;
        let active = self.active_mut();
        active.set_direct_writes(direct);
        active.truncate_to(offset)?;
        self.after_truncation(offset)?;
        Ok(true)
    }

    /// Deletes every segment and restarts the log empty at `offset` (a
    /// follower whose log ends before the leader's log start).
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> io::Result<()> {
        let result = self.restart_at(offset);
        self.reported(result)
    }

    fn restart_at(&mut self, offset: i64) -> io::Result<()> {
        let old = std::mem::take(&mut self.segments);
        for segment in old.values() {
            if let Err(e) = segment.delete_files() {
                self.segments = old;
                return Err(e);
            }
        }
        match Segment::create(&self.dir, offset) {
            Ok(mut segment) => {
                segment.set_direct_writes(self.direct_writes);
                self.segments.insert(offset, segment)
            }
            Err(e) => {
                // Still readable through the open handles; a restart finds
                // an empty directory and fetches everything again.
                self.segments = old;
                return Err(e);
            }
        };
        self.log_start_offset = offset;
        self.producers = ProducerState::default();
        self.leader_epochs.clear();
        self.after_truncation(offset)
    }

    fn after_truncation(&mut self, offset: i64) -> io::Result<()> {
        // A truncation that removed a marker reopens its transaction, and
        // one that removed all of a producer's tracked batches hides its
        // last sequence: in both cases only the log itself tells.
        if self.producers.has_seen_transactions() || !self.producers.truncate_to(offset) {
            self.rebuild_producer_state(false)?;
        }
        self.recovery_point = self.recovery_point().min(self.log_end_offset());
        self.roll_flushes.invalidate();
        // Always rewritten: `restart_at` cleared the cache in memory.
        self.update_leader_epochs(|cache| {
            cache.truncate_from_end(offset);
            true
        })
    }

    fn duplicate_info(&self, meta: BatchMetadata, header: &BatchHeader) -> AppendInfo {
        AppendInfo {
            base_offset: meta.first_offset,
            last_offset: meta.last_offset,
            log_append_time: -1,
            records: header.records_count as i64,
            bytes: 0,
            duplicate: true,
        }
    }

    fn check_timestamps(&self, header: &BatchHeader, now_ms: i64) -> Result<(), AppendError> {
        let before = self.config.timestamp_before_max_ms;
        let after = self.config.timestamp_after_max_ms;
        if before < i64::MAX && now_ms.saturating_sub(header.base_timestamp) > before {
            return Err(AppendError::InvalidTimestamp {
                timestamp: header.base_timestamp,
            });
        }
        if after < i64::MAX && header.max_timestamp.saturating_sub(now_ms) > after {
            return Err(AppendError::InvalidTimestamp {
                timestamp: header.max_timestamp,
            });
        }
        Ok(())
    }

    fn maybe_roll(&mut self, incoming: u64, now_ms: i64) -> io::Result<()> {
        let config = &self.config;
        let active = self.active();
        if active.is_empty() {
            return Ok(());
        }
        let too_big = active.size() + incoming > config.segment_bytes;
        let too_old = active
            .first_append_ms
            .is_some_and(|first| now_ms - first >= config.max_segment_ms());
        let index_full = active.index_full(config.segment_index_bytes);
        let offsets_overflow =
            active.next_offset - active.base_offset > i32::MAX as i64 - 1_000_000;
        if too_big || too_old || index_full || offsets_overflow {
            self.roll_inner()?;
        }
        Ok(())
    }

    /// Starts a new active segment at the log end offset; the old one is
    /// fsynced in the background.
    pub fn roll(&mut self) -> io::Result<()> {
        let result = self.roll_inner();
        self.reported(result)
    }

    fn roll_inner(&mut self) -> io::Result<()> {
        let next = self.log_end_offset();
        if self.active().base_offset == next {
            return Ok(());
        }
        // The old segments are fsynced in the background (`flusher`):
        // this append must not wait for them.
        let mut pending = Vec::new();
        for segment in self.unflushed_segments() {
            pending.extend(segment.prepare_background_flush()?);
        }
        self.roll_flushes
            .submit(pending, next, self.health.clone(), self.dir.clone());
        // The old segment's tail memory goes back to the pool.
        self.active_mut().set_direct_writes(false);
        let mut segment = Segment::create(&self.dir, next)?;
        segment.set_direct_writes(self.direct_writes);
        self.segments.insert(next, segment);
        Ok(())
    }

    /// The segments that may hold data above the recovery point.
    fn unflushed_segments(&mut self) -> impl Iterator<Item = &mut Segment> {
        let recovery_point = self.recovery_point();
        self.segments.values_mut().filter(move |segment| {
            segment.base_offset >= recovery_point || segment.next_offset > recovery_point
        })
    }

    /// fsyncs unflushed data and advances the recovery point.
    pub fn flush(&mut self, now_ms: i64) -> io::Result<()> {
        let result = self.flush_inner(now_ms);
        self.reported(result)
    }

    fn flush_inner(&mut self, now_ms: i64) -> io::Result<()> {
        for segment in self.unflushed_segments() {
            segment.flush()?;
        }
        self.recovery_point = self.log_end_offset();
        self.unflushed_messages = 0;
        self.last_flush_ms = now_ms;
        Ok(())
    }

    /// Whether `flush.ms` says unflushed data has waited long enough.
    pub fn flush_due(&self, now_ms: i64) -> bool {
        self.unflushed_messages > 0
            && self.config.flush_ms < i64::MAX
            && now_ms - self.last_flush_ms >= self.config.flush_ms
    }

    pub fn has_unflushed(&self) -> bool {
        self.unflushed_messages > 0
    }

    /// The file region holding batches from `offset` on, at most `max_bytes`
    /// (but always the whole first batch when `min_one`), stopping before
    /// `upper_bound` (the high watermark for consumers).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        upper_bound: i64,
    ) -> Result<Option<ReadSlice>, ReadError> {
        self.health.check_readable()?;
        let end = self.log_end_offset();
        if offset < self.log_start_offset || offset > end {
            return Err(ReadError::OffsetOutOfRange {
                offset,
                start: self.log_start_offset,
                end,
            });
        }
        if offset >= upper_bound.min(end) {
            return Ok(None);
        }
        let from = self
            .segments
            .range(..=offset)
            .next_back()
            .map(|(b, _)| *b)
            .unwrap_or(offset);
        for segment in self.segments.range(from..).map(|(_, s)| s) {
            let Some(found) = segment.find_batch(offset)? else {
                continue;
            };
            if found.header.base_offset >= upper_bound {
                return Ok(None);
            }
            let mut limit = segment.size();
            if upper_bound < segment.next_offset {
                limit = self.position_of(segment, upper_bound)?;
            }
            let available = (limit - found.position) as usize;
            let first = found.header.total_size().min(available);
            let len = if min_one {
                available.min(max_bytes.max(first))
            } else {
                available.min(max_bytes)
            };
            if len == 0 {
                return Ok(None);
            }
            return Ok(Some(segment.slice(found.position, len)));
        }
        Ok(None)
    }

    /// File position of the first batch at or after `offset` in `segment`.
    fn position_of(&self, segment: &Segment, offset: i64) -> io::Result<u64> {
        Ok(match segment.find_batch(offset)? {
            Some(b) if b.header.base_offset >= offset => b.position,
            Some(b) => b.position + b.header.total_size() as u64,
            None => segment.size(),
        })
    }

    /// Whether the next append may wait for the device rather than only
    /// copy into the page cache: the active segment writes directly now,
    /// or dirty pages are close to the kernel's writeback threshold, where
    /// buffered writes get throttled.
    pub fn append_may_wait_for_device(&self) -> bool {
        (self.direct_writes && super::direct_tail::write_directly_now())
            || crate::disk::writeback::under_pressure()
    }

    /// The batch holding the first record at or above the log start with a
    /// timestamp `>= timestamp`.
    pub fn find_by_timestamp(
        &self,
        timestamp: i64,
    ) -> io::Result<Option<(BatchPosition, Vec<u8>)>> {
        for segment in self.segments.values() {
            if segment.next_offset <= self.log_start_offset {
                continue;
            }
            if let Some(found) = segment.find_batch_by_time(timestamp, self.log_start_offset)? {
                let bytes = segment.read_at(found.position, found.header.total_size())?;
                return Ok(Some((found, bytes)));
            }
        }
        Ok(None)
    }

    /// The batch holding the record with the largest timestamp.
    pub fn find_max_timestamp(&self) -> io::Result<Option<(BatchPosition, Vec<u8>)>> {
        let Some(segment) = self.segments.values().max_by_key(|s| s.max_timestamp) else {
            return Ok(None);
        };
        if segment.max_timestamp < 0 && segment.is_empty() {
            return Ok(None);
        }
        let Some(found) = segment.find_batch_by_time(segment.max_timestamp, segment.base_offset)?
        else {
            return Ok(None);
        };
        let bytes = segment.read_at(found.position, found.header.total_size())?;
        Ok(Some((found, bytes)))
    }

    /// Applies `retention.ms` and `retention.bytes` (for `cleanup.policy`
    /// containing `delete`), deleting whole segments from the oldest on.
    /// Returns how many segments were deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> io::Result<usize> {
        let result = self.apply_retention_inner(now_ms);
        self.reported(result)
    }

    fn apply_retention_inner(&mut self, now_ms: i64) -> io::Result<usize> {
        if !self.config.cleanup_delete {
            return self.delete_segments_below_start();
        }
        let mut doomed = 0;
        let count = self.segments.len();
        let mut remaining = self.size_bytes() as i64;
        // Empty segments before the active one (a compacted group whose
        // records were all removed) do not stop retention: they go with the
        // first later segment that does.
        let mut empty_before = 0;
        for (i, segment) in self.segments.values().enumerate() {
            let is_active = i + 1 == count;
            if !is_active && segment.is_empty() {
                empty_before += 1;
                continue;
            }
            let expired = self.config.retention_ms >= 0
                && segment.max_timestamp >= 0
                && now_ms - segment.max_timestamp > self.config.retention_ms;
            let over_size = !is_active
                && self.config.retention_bytes >= 0
                && remaining - segment.size() as i64 >= self.config.retention_bytes;
            let below_start = !is_active && segment.next_offset <= self.log_start_offset;
            if !(expired || over_size || below_start) || segment.is_empty() {
                break;
            }
            remaining -= segment.size() as i64;
            doomed += 1 + empty_before;
            empty_before = 0;
        }
        if doomed == 0 {
            return Ok(0);
        }
        if doomed == count {
            // Kafka rolls so that the log keeps an (empty) active segment.
            self.roll_inner()?;
        }
        self.delete_oldest(doomed)
    }

    /// Moves the log start offset forward to `offset` (the records below it
    /// are deleted: DeleteRecords on a leader, or a follower taking its
    /// leader's log start) and deletes the segments wholly below it. It
    /// never moves back, and never past `high_watermark`: records not yet
    /// committed may still be truncated away. Returns whether it moved.
    pub fn advance_log_start(
        &mut self,
        offset: i64,
        high_watermark: i64,
    ) -> Result<bool, AboveHighWatermark> {
        let high_watermark = high_watermark.min(self.log_end_offset());
        if offset > high_watermark {
            return Err(AboveHighWatermark {
                offset,
                high_watermark,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(false);
        }
        self.log_start_offset = offset;
        // Reads below the new start are refused from here on, whether or
        // not the files go now: a segment that cannot be deleted yet is
        // deleted by the next retention pass, which removes segments below
        // the log start under any cleanup policy.
        let deleted = self.delete_segments_below_start();
        if let Err(e) = self.reported(deleted) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot delete the segments below the new log start yet");
        }
        Ok(true)
    }

    /// Deletes the segments before the active one that lie wholly below the
    /// log start.
    fn delete_segments_below_start(&mut self) -> io::Result<usize> {
        let count = self.segments.len();
        let doomed = self
            .segments
            .values()
            .take(count - 1)
            .take_while(|s| s.next_offset <= self.log_start_offset)
            .count();
        self.delete_oldest(doomed)
    }

    fn delete_oldest(&mut self, n: usize) -> io::Result<usize> {
        for _ in 0..n {
            let Some((_, segment)) = self.segments.pop_first() else {
                break;
            };
            segment.delete_files()?;
        }
        let first = *self.segments.keys().next().expect("active segment kept");
        self.log_start_offset = self.log_start_offset.max(first);
        Ok(n)
    }

    /// What the log cleaner needs to know about the segments before the
    /// active one (they are immutable until retention deletes them).
    pub(crate) fn cleaner_snapshot(&self) -> super::cleaner::LogSnapshot {
        let active_base = self.active().base_offset;
        super::cleaner::LogSnapshot {
            dir: self.dir.clone(),
            config: self.config.clone(),
            log_start_offset: self.log_start_offset,
            active_base,
            segments: self
                .segments
                .range(..active_base)
                .map(|(_, s)| super::cleaner::SegmentSnapshot {
                    base_offset: s.base_offset,
                    next_offset: s.next_offset,
                    size: s.size(),
                    max_timestamp: s.max_timestamp,
                    file: s.file(),
                })
                .collect(),
            // Ended transactions whose marker may still be truncated count
            // as open here: the high watermark is not known to the log.
            first_unstable_offset: self.producers.first_unstable_offset(i64::MIN),
            aborted: self
                .segments
                .values()
                .flat_map(|s| s.aborted().iter().copied())
                .collect(),
            active_producers: self.producers.producers().map(|(pid, _)| pid).collect(),
        }
    }

    /// Closes the log after a final flush, writing the producer snapshot so
    /// the next start can skip rebuilding it.
    pub fn close(&mut self, now_ms: i64) -> io::Result<()> {
        self.flush(now_ms)?;
        let saved = self.producers.save(&self.dir.join(PRODUCER_SNAPSHOT));
        self.reported(saved)
    }

    pub fn health(&self) -> &Arc<LogDirHealth> {
        &self.health
    }
}

/// A compacted topic keeps the latest record per key, so a record without
/// a key cannot be stored in one (Kafka's `validateKey`).
fn check_keys(header: &BatchHeader, batch: &[u8], dir: &Path) -> Result<(), AppendError> {
    let data =
        codec::decompress(header, batch).map_err(|_| BatchError::BadRecords("undecodable"))?;
    let records = super::batch::records::parse(header, &data)
        .map_err(|_| BatchError::BadRecords("malformed record"))?;
    let partition = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let errors: Vec<(i32, String)> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.key.is_none())
        .map(|(i, _)| {
            let message = format!(
                "Compacted topic cannot accept message without key in topic partition {partition}."
            );
            (i as i32, message)
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppendError::InvalidRecords { errors })
    }
}

/// The aborted-transaction index entry of `done`, with the last stable
/// offset the producer state has right after it.
fn aborted_entry(state: &ProducerState, done: CompletedTxn) -> AbortedTxn {
    AbortedTxn {
        producer_id: done.producer_id,
        first_offset: done.first_offset,
        last_offset: done.last_offset,
        last_stable_offset: state
            .first_unstable_offset(done.last_offset + 1)
            .unwrap_or(done.last_offset + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::AppendOrigin;
    use crate::log::batch::test_support::batch;

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 300,
            index_interval_bytes: 1,
            ..LogConfig::default()
        }
    }

    #[test]
    fn append_read_roll_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open_for_test(dir.path(), config(), true);
        for i in 0..10 {
            let info = log
                .append(
                    &batch(&[b"abcdefghij", b"k"], i, (-1, -1, -1)),
                    0,
                    AppendOrigin::Client,
                    1000,
                )
                .unwrap();
            assert_eq!(info.base_offset, i * 2);
        }
        assert_eq!(log.log_end_offset(), 20);
        assert!(log.segment_count() > 1, "rolled by segment.bytes");
        let slice = log.read(7, 1, true, i64::MAX).unwrap().unwrap();
        let bytes = slice.read().unwrap();
        let header = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(header.base_offset, 6);
        assert!(log.read(21, 100, true, i64::MAX).is_err());
        assert!(log.read(20, 100, true, i64::MAX).unwrap().is_none());
        log.close(1000).unwrap();
        drop(log);
        let (log, report) = PartitionLog::open(
            dir.path(),
            config(),
            true,
            20,
            0,
            0,
            crate::disk::LogDirHealth::without_reserve(dir.path()),
        )
        .unwrap();
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(log.log_end_offset(), 20);
    }

    #[test]
    fn retention_deletes_old_segments_and_advances_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config();
        cfg.retention_ms = 1000;
        let (mut log, _) = PartitionLog::open_for_test(dir.path(), cfg, true);
        for i in 0..10 {
            log.append(
                &batch(
                    &[b"0123456789012345678901234567890123456789"],
                    i,
                    (-1, -1, -1),
                ),
                0,
                AppendOrigin::Client,
                0,
            )
            .unwrap();
        }
        let deleted = log.apply_retention(10_000).unwrap();
        assert!(deleted > 0);
        assert_eq!(log.log_start_offset(), log.log_end_offset());
        assert!(matches!(
            log.read(0, 10, true, i64::MAX),
            Err(ReadError::OffsetOutOfRange { .. })
        ));
    }

    #[test]
    fn idempotent_retries_return_the_original_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open_for_test(dir.path(), config(), true);
        let first = batch(&[b"a", b"b"], 0, (5, 0, 0));
        assert_eq!(
            log.append(&first, 0, AppendOrigin::Client, 0)
                .unwrap()
                .base_offset,
            0
        );
        let again = log.append(&first, 0, AppendOrigin::Client, 0).unwrap();
        assert!(again.duplicate);
        assert_eq!(again.base_offset, 0);
        assert_eq!(log.log_end_offset(), 2);
        let gap = batch(&[b"c"], 0, (5, 0, 7));
        assert!(matches!(
            log.append(&gap, 0, AppendOrigin::Client, 0),
            Err(AppendError::OutOfOrderSequence { .. })
        ));
    }

    #[test]
    fn a_truncation_that_removes_every_tracked_batch_of_a_producer_keeps_its_older_ones_known() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open_for_test(dir.path(), config(), true);
        // Ten one-record batches of producer 5: only the last five are tracked.
        let batches: Vec<Vec<u8>> = (0..10).map(|seq| batch(&[b"v"], 0, (5, 0, seq))).collect();
        for (offset, b) in batches.iter().enumerate() {
            let info = log.append(b, 0, AppendOrigin::Client, 0).unwrap();
            assert_eq!(info.base_offset, offset as i64);
        }
        // A new leader had only the first five: the tracked ones go.
        log.truncate_to(5).unwrap();
        // A retry of a batch that stayed is recognised, not stored twice.
        let again = log.append(&batches[4], 0, AppendOrigin::Client, 0).unwrap();
        assert!(again.duplicate, "seq 4 is still in the log at offset 4");
        assert_eq!((again.base_offset, log.log_end_offset()), (4, 5));
        // And the sequence goes on from it.
        let next = log.append(&batches[5], 0, AppendOrigin::Client, 0).unwrap();
        assert_eq!((next.base_offset, next.duplicate), (5, false));
    }

    fn append_one(log: &mut PartitionLog, value: &[u8]) -> AppendInfo {
        log.append(
            &batch(&[value], 0, (-1, -1, -1)),
            0,
            AppendOrigin::Client,
            0,
        )
        .unwrap()
    }

    #[test]
    fn a_roll_leaves_the_fsync_to_the_background_and_the_recovery_point_follows_it() {
        use crate::log::flusher;
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open_for_test(dir.path(), LogConfig::default(), true);
        let before = log.recovery_point();
        for _ in 0..3 {
            append_one(&mut log, b"value");
        }
        let paused = flusher::pause();
        log.roll().unwrap();
        assert_eq!(log.segment_count(), 2);
        assert_eq!(log.recovery_point(), before, "the fsync has not run yet");
        drop(paused);
        flusher::wait_for_all();
        assert_eq!(log.recovery_point(), 3);
    }

    #[test]
    fn a_truncation_makes_background_flushes_in_flight_count_for_nothing() {
        use crate::log::flusher;
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open_for_test(dir.path(), LogConfig::default(), true);
        for _ in 0..10 {
            append_one(&mut log, b"value");
        }
        let paused = flusher::pause();
        log.roll().unwrap(); // a flush of everything below 10 is queued
        log.truncate_to(5).unwrap();
        for _ in 0..7 {
            append_one(&mut log, b"other"); // 5..12, not fsynced
        }
        drop(paused);
        flusher::wait_for_all();
        assert!(
            log.recovery_point() <= 5,
            "recovery point {} covers unsynced data",
            log.recovery_point()
        );
        log.flush(0).unwrap();
        assert_eq!(log.recovery_point(), 12);
    }

    /// Appends one-record batches at offsets `0..n`, stamped `1000 + offset`.
    fn append_stamped(log: &mut PartitionLog, n: i64) {
        for i in 0..n {
            let records = batch(&[b"0123456789"], 1000 + i, (-1, -1, -1));
            log.append(&records, 0, AppendOrigin::Client, 0).unwrap();
        }
    }

    /// Base offsets of the segment files in `dir`.
    fn segment_bases(dir: &Path) -> Vec<i64> {
        let mut bases: Vec<i64> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().to_string_lossy().to_string();
                name.strip_suffix(".log")?.parse().ok()
            })
            .collect();
        bases.sort_unstable();
        bases
    }

    fn base_offset_read_at(log: &PartitionLog, offset: i64) -> i64 {
        let slice = log.read(offset, 1, true, i64::MAX).unwrap().unwrap();
        BatchHeader::parse(&slice.read().unwrap())
            .unwrap()
            .base_offset
    }

    #[test]
    fn the_log_start_moves_inside_a_segment_and_nothing_below_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open_for_test(dir.path(), LogConfig::default(), true);
        append_stamped(&mut log, 10);
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.advance_log_start(4, 10), Ok(true));
        assert_eq!(log.log_start_offset(), 4);
        assert!(matches!(
            log.read(3, 100, true, i64::MAX),
            Err(ReadError::OffsetOutOfRange { start: 4, .. })
        ));
        assert_eq!(base_offset_read_at(&log, 4), 4);
        // A timestamp below the new start finds the first record at or above it.
        let (found, _) = log.find_by_timestamp(1000).unwrap().unwrap();
        assert_eq!(found.header.base_offset, 4);
        assert_eq!(log.segment_count(), 1, "the active segment stays");
    }

    #[test]
    fn the_log_start_never_moves_back_nor_past_the_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open_for_test(dir.path(), LogConfig::default(), true);
        append_stamped(&mut log, 10);
        assert_eq!(log.advance_log_start(6, 8), Ok(true));
        assert_eq!(log.advance_log_start(3, 8), Ok(false), "back: a no-op");
        assert_eq!(log.advance_log_start(6, 8), Ok(false), "the same: a no-op");
        assert_eq!(
            log.advance_log_start(9, 8),
            Err(AboveHighWatermark {
                offset: 9,
                high_watermark: 8
            })
        );
        assert_eq!(
            log.advance_log_start(11, i64::MAX),
            Err(AboveHighWatermark {
                offset: 11,
                high_watermark: 10
            }),
            "never past the log end either"
        );
        assert_eq!(log.log_start_offset(), 6);
        // Up to the end: nothing is left to read, and appends go on there.
        assert_eq!(log.advance_log_start(10, 10), Ok(true));
        assert!(log.read(10, 100, true, i64::MAX).unwrap().is_none());
        append_stamped(&mut log, 1);
        assert_eq!(base_offset_read_at(&log, 10), 10);
    }

    #[test]
    fn segments_wholly_below_the_new_log_start_are_deleted_and_the_checkpointed_start_survives() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open_for_test(dir.path(), config(), true);
        append_stamped(&mut log, 20);
        let bases = segment_bases(dir.path());
        assert!(bases.len() >= 4, "300-byte segments: {bases:?}");
        // Inside the third segment: the two before it go, it stays.
        let start = bases[2] + 1;
        assert_eq!(log.advance_log_start(start, 20), Ok(true));
        assert_eq!(segment_bases(dir.path()), bases[2..]);
        assert_eq!(log.segment_count(), bases.len() - 2);
        log.close(0).unwrap();
        drop(log);

        let reopen = |log_start_checkpoint| {
            let health = LogDirHealth::without_reserve(dir.path());
            PartitionLog::open(
                dir.path(),
                config(),
                true,
                20,
                log_start_checkpoint,
                0,
                health,
            )
            .unwrap()
            .0
        };
        let log = reopen(start);
        assert_eq!(log.log_start_offset(), start);
        assert!(log.read(start - 1, 100, true, i64::MAX).is_err());
        assert_eq!(base_offset_read_at(&log, start), start);
        drop(log);
        // Without the checkpoint only the first segment's base is known:
        // the records below the start in that segment would come back.
        assert_eq!(reopen(0).log_start_offset(), bases[2]);
    }
}

/// A write that fails part-way, on each file the log writes, must leave
/// the file and everything in memory as they were.
#[cfg(test)]
mod failed_writes {
    use super::*;
    use crate::disk::write::faults;
    use crate::disk::{AppendOrigin, DirState};
    use crate::log::batch::test_support::batch;

    pub(super) fn open_log(dir: &Path, config: LogConfig) -> PartitionLog {
        PartitionLog::open_for_test(dir, config, true).0
    }

    pub(super) fn append(
        log: &mut PartitionLog,
        value: &[u8],
        epoch: i32,
    ) -> Result<AppendInfo, AppendError> {
        log.append(
            &batch(&[value], 0, (-1, -1, -1)),
            epoch,
            AppendOrigin::Client,
            0,
        )
    }

    /// What a reader or the next append can observe.
    fn observable(log: &PartitionLog) -> (i64, u64, Vec<(i32, i64)>, Vec<u8>) {
        let segment = log.active().path().to_path_buf();
        (
            log.log_end_offset(),
            log.size_bytes(),
            log.leader_epochs().entries(),
            std::fs::read(segment).unwrap(),
        )
    }

    fn values(log: &PartitionLog) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while let Some(slice) = log.read(offset, 1, true, i64::MAX).unwrap() {
            let bytes = slice.read().unwrap();
            let header = BatchHeader::parse(&bytes).unwrap();
            // Test batches hold one uncompressed record: its value ends the batch.
            out.push(bytes[bytes.len() - 2..bytes.len() - 1].to_vec());
            offset = header.last_offset() + 1;
        }
        out
    }

    #[test]
    fn a_short_segment_write_is_cut_off_and_the_next_append_lands_where_it_should() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open_log(dir.path(), LogConfig::default());
        append(&mut log, b"a", 0).unwrap();
        let before = observable(&log);
        faults::fail_write(".log", 30, libc::ENOSPC);
        assert!(matches!(append(&mut log, b"b", 0), Err(AppendError::Io(_))));
        assert_eq!(observable(&log), before);
        assert_eq!(log.health().state(), DirState::Full);
        assert!(
            matches!(append(&mut log, b"c", 0), Err(AppendError::Storage(_))),
            "refused until space returns"
        );
        // Space returned (a fresh health stands in for the next sample).
        log.health = LogDirHealth::without_reserve(dir.path());
        let info = append(&mut log, b"d", 0).unwrap();
        assert_eq!(info.base_offset, 1, "nothing took an offset");
        assert_eq!(values(&log), vec![b"a".to_vec(), b"d".to_vec()]);
        // After a crash, recovery finds exactly the acknowledged batches.
        drop(log);
        let (log, report) = PartitionLog::open_for_test(dir.path(), LogConfig::default(), false);
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(values(&log), vec![b"a".to_vec(), b"d".to_vec()]);
    }

    #[test]
    fn a_failed_leader_epoch_checkpoint_fails_the_append_before_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open_log(dir.path(), LogConfig::default());
        append(&mut log, b"a", 0).unwrap();
        let file = dir
            .path()
            .join(super::super::leader_epochs::CHECKPOINT_FILE);
        let checkpoint = std::fs::read(&file).unwrap();
        let before = observable(&log);
        faults::fail_write("leader-epoch-checkpoint", 4, libc::ENOSPC);
        assert!(append(&mut log, b"b", 1).is_err());
        assert_eq!(observable(&log), before, "no data, no new epoch");
        assert_eq!(std::fs::read(&file).unwrap(), checkpoint);
    }

    #[test]
    fn a_failed_background_fsync_of_a_rolled_segment_takes_the_directory_offline() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open_log(dir.path(), LogConfig::default());
        append(&mut log, b"a", 0).unwrap();
        let fragment = format!("{}/", dir.path().display());
        faults::fail_sync_on_any_thread(&fragment, libc::EIO);
        log.roll().unwrap();
        crate::log::flusher::wait_for_all();
        assert_eq!(log.health().state(), DirState::Offline);
        assert_eq!(
            log.recovery_point(),
            0,
            "a failed fsync made nothing durable"
        );
        assert!(matches!(
            append(&mut log, b"b", 0),
            Err(AppendError::Storage(StorageRefusal::Offline { .. }))
        ));
    }

    #[test]
    fn a_failed_fsync_takes_the_directory_offline() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            flush_messages: 1,
            ..LogConfig::default()
        };
        let mut log = open_log(dir.path(), config);
        append(&mut log, b"a", 0).unwrap();
        faults::fail_sync(".log", libc::EIO);
        assert!(matches!(append(&mut log, b"b", 0), Err(AppendError::Io(_))));
        assert_eq!(log.health().state(), DirState::Offline);
        assert!(matches!(
            append(&mut log, b"c", 0),
            Err(AppendError::Storage(StorageRefusal::Offline { .. }))
        ));
        assert!(matches!(
            log.read(0, 100, true, i64::MAX),
            Err(ReadError::Storage(_))
        ));
    }

    #[test]
    fn failed_index_flushes_are_retried_whole() {
        for file in [".index", ".timeindex"] {
            let dir = tempfile::tempdir().unwrap();
            let config = LogConfig {
                index_interval_bytes: 1,
                ..LogConfig::default()
            };
            let mut log = open_log(dir.path(), config.clone());
            for (i, v) in [b"a", b"b", b"c"].iter().enumerate() {
                log.append(
                    &batch(&[*v], 1000 + i as i64, (-1, -1, -1)),
                    0,
                    AppendOrigin::Client,
                    0,
                )
                .unwrap();
            }
            let path = dir
                .path()
                .join(format!("{}{file}", super::super::segment::file_stem(0)));
            faults::fail_write(file, 5, libc::ENOSPC);
            assert!(log.flush(0).is_err(), "{file}");
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            assert_eq!(len, 0, "{file}: the partial entries were cut off");
            log.health = LogDirHealth::without_reserve(dir.path());
            log.flush(0).unwrap();
            log.close(0).unwrap();
            drop(log);
            // A clean open loads the indexes as written and finds every batch.
            let (log, _) = PartitionLog::open(
                dir.path(),
                config,
                true,
                3,
                0,
                0,
                LogDirHealth::without_reserve(dir.path()),
            )
            .unwrap();
            assert_eq!(values(&log).len(), 3, "{file}");
            let entry = if file == ".index" { 8 } else { 12 };
            assert_eq!(std::fs::metadata(&path).unwrap().len() % entry, 0);
            assert!(std::fs::metadata(&path).unwrap().len() > 0);
            assert_eq!(
                log.find_by_timestamp(1002)
                    .unwrap()
                    .unwrap()
                    .0
                    .header
                    .base_offset,
                2
            );
        }
    }

    #[test]
    fn a_failed_producer_snapshot_keeps_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open_log(dir.path(), LogConfig::default());
        log.append(&batch(&[b"a"], 0, (7, 0, 0)), 0, AppendOrigin::Client, 0)
            .unwrap();
        log.close(0).unwrap();
        let path = dir.path().join(PRODUCER_SNAPSHOT);
        let snapshot = std::fs::read(&path).unwrap();
        log.append(&batch(&[b"b"], 0, (7, 0, 1)), 0, AppendOrigin::Client, 0)
            .unwrap();
        faults::fail_write(PRODUCER_SNAPSHOT, 3, libc::ENOSPC);
        assert!(log.close(0).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), snapshot);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

/// Transactions in the log: open ones bound the last stable offset,
/// markers end them, aborts are indexed, and a crash or a truncation
/// rebuilds all of it from the log.
#[cfg(test)]
mod transactions {
    use super::failed_writes::{append, open_log};
    use super::*;
    use crate::disk::AppendOrigin;
    use crate::log::batch::test_support::batch;

    fn txn_append(log: &mut PartitionLog, pid: i64, seq: i32) -> AppendInfo {
        let records =
            crate::log::batch::test_support::transactional(batch(&[b"t"], 0, (pid, 0, seq)));
        log.append(&records, 0, AppendOrigin::Client, 0).unwrap()
    }

    fn marker(commit: bool, coordinator_epoch: i32) -> TxnMarker {
        TxnMarker {
            commit,
            coordinator_epoch,
        }
    }

    #[test]
    fn transactions_bound_the_last_stable_offset_and_aborts_are_indexed_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let config = || LogConfig {
            segment_bytes: 300,
            ..LogConfig::default()
        };
        let mut log = open_log(dir.path(), config());
        append(&mut log, b"plain", 0).unwrap(); // offset 0
        txn_append(&mut log, 1, 0); // 1: producer 1 opens a transaction
        txn_append(&mut log, 2, 0); // 2: producer 2 too
        txn_append(&mut log, 1, 1); // 3
        let end = log.log_end_offset();
        assert_eq!(log.last_stable_offset(end), 1);
        assert_eq!(log.ongoing_transaction(1), Some(1));

        // Producer 1 aborts (marker at 4), producer 2 commits (marker at 5).
        log.append_marker(1, 0, marker(false, 3), 0, 0).unwrap();
        assert_eq!(log.last_stable_offset(log.log_end_offset()), 2);
        assert_eq!(
            log.last_stable_offset(4),
            1,
            "an ended transaction is unstable until its marker is replicated"
        );
        log.append_marker(2, 0, marker(true, 3), 0, 0).unwrap();
        let end = log.log_end_offset();
        assert_eq!(end, 6);
        assert_eq!(log.last_stable_offset(end), end);
        assert_eq!(log.ongoing_transaction(1), None);
        assert_eq!(log.aborted_transactions(0, end), vec![(1, 1)]);
        assert_eq!(log.aborted_transactions(5, end), vec![], "marker before 5");
        assert_eq!(log.aborted_transactions(0, 1), vec![], "begins at 1");

        // Markers of an older coordinator or producer epoch are fenced.
        assert!(matches!(
            log.append_marker(2, 0, marker(true, 2), 0, 0),
            Err(AppendError::CoordinatorFenced { current: 3, got: 2 })
        ));
        txn_append(&mut log, 2, 1); // 6: producer 2's next transaction
        let bumped = crate::log::batch::test_support::transactional(batch(&[b"t"], 0, (2, 1, 0)));
        log.append(&bumped, 0, AppendOrigin::Client, 0).unwrap(); // 7, epoch 1
        assert!(matches!(
            log.append_marker(2, 0, marker(false, 3), 0, 0),
            Err(AppendError::InvalidProducerEpoch { current: 1 })
        ));

        // A crash: the producer state and the aborted-transaction index
        // are rebuilt from the log, open transaction included.
        let txnindex = dir
            .path()
            .join(format!("{}.txnindex", super::super::segment::file_stem(0)));
        log.flush(0).unwrap();
        drop(log);
        std::fs::remove_file(txnindex).ok();
        let (log, _) = PartitionLog::open_for_test(dir.path(), config(), false);
        let end = log.log_end_offset();
        assert_eq!(log.aborted_transactions(0, end), vec![(1, 1)]);
        assert_eq!(log.ongoing_transaction(2), Some(6));
        assert_eq!(log.last_stable_offset(end), 6);

        // A truncation that removes a marker reopens its transaction.
        let mut log = log;
        log.truncate_to(5).unwrap();
        assert_eq!(log.ongoing_transaction(2), Some(2));
        assert_eq!(log.last_stable_offset(5), 2);
        log.truncate_to(4).unwrap();
        assert_eq!(log.aborted_transactions(0, 4), vec![], "the abort is gone");
        assert_eq!(log.ongoing_transaction(1), Some(1));
    }
}
