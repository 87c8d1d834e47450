//! Log compaction ("the log cleaner") for logs whose `cleanup.policy`
//! contains `compact`, following Kafka's semantics.
//!
//! # What a pass does
//!
//! * The *cleanable range* is every segment before the active one, from the
//!   log start on, stopping at the first segment holding a record younger
//!   than `min.compaction.lag.ms` (by the segment's largest batch
//!   timestamp). The active segment is never touched.
//! * The *dirty* part of that range starts at the cleaner checkpoint (kept
//!   per partition by the `LogManager` in `cleaner-offset-checkpoint`, Kafka's
//!   checkpoint format); everything below it was cleaned before. A pass runs
//!   when dirty bytes / cleanable bytes `>= min.cleanable.dirty.ratio`, when
//!   the oldest dirty batch is older than `max.compaction.lag.ms`, or when a
//!   tombstone kept by an earlier pass has passed `delete.retention.ms`.
//! * An in-memory map `key → latest offset` is built over the cleanable
//!   range, then the range is rewritten: a keyed record survives only if it
//!   is the latest for its key; records without a key are kept. A tombstone
//!   (null value) that is the latest for its key is removed once it lies in
//!   the already-cleaned part *and* its batch's largest timestamp is older
//!   than `now - delete.retention.ms`; otherwise it is kept.
//! * Offsets never change. A batch whose records all survive is copied
//!   byte for byte; a partly surviving batch is rewritten with the surviving
//!   records' bytes unchanged, keeping (as Kafka does for v2) its base
//!   offset, last offset delta, base sequence, producer id/epoch, leader
//!   epoch, attributes (codec, timestamp type) and base timestamp; only
//!   `recordsCount`, `batchLength`, `maxTimestamp` (CreateTime) and the CRC
//!   change, and the records are recompressed with the batch's codec. A
//!   batch left with no records is dropped, except the last batch of each
//!   producer id in the range, which stays as an empty batch (header only,
//!   Kafka's `writeEmptyHeader`) so producer state and sequence numbers
//!   survive a rebuild from the log. Fetches at a removed offset get the
//!   next surviving batch (`Segment::find_batch` finds the first batch whose
//!   last offset is at or after it).
//! * Consecutive segments are grouped into one output segment while their
//!   combined input size stays within `segment.bytes` (and their offsets
//!   within the 32-bit relative range of the indexes). The output is based
//!   at the first input segment's base offset, so the log start is kept.
//!
//! # Swap protocol (crash safety)
//!
//! Reading and rewriting happen without the partition lock: segments before
//! the active one only change by being deleted (retention) or truncated,
//! which the swap step detects. For each group:
//!
//! 1. Write the output to `<base>.log.cleaned` (indexes stay in memory) and
//!    fsync it. *(no lock)*
//! 2. Take the partition lock; check that every input segment is still
//!    there, unchanged (same file, same size) and not active — otherwise
//!    delete the `.cleaned` file and stop the pass.
//! 3. Rename `<base>.log.cleaned` → `<base>.log.swap`, fsync the directory.
//!    From here on the output is committed.
//! 4. Delete the input segments (`.log`, `.index`, `.timeindex`), fsync the
//!    directory.
//! 5. Rename `<base>.log.swap` → `<base>.log`, write its indexes, fsync the
//!    directory, and put the segment into the in-memory map. Release the lock.
//!
//! On start-up (`PartitionLog::open`) a `.cleaned` file is an unfinished
//! step 1 and is deleted (its inputs are all intact). A `.swap` file is a
//! committed output whose swap was interrupted in step 3–5: the segments
//! whose base offsets fall in `[swap base, swap's next offset)` are deleted
//! together with stale index files of the swap's base, and the swap is
//! renamed to `.log` (its indexes are then rebuilt from the log). If the
//! output's last records were compacted away, an input segment based past
//! its next offset may survive such a recovery; it then holds only original
//! records at offsets the output does not have, so nothing is lost or
//! duplicated — it is just cleaned again by a later pass.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::batch::{self, BatchHeader, HEADER_SIZE};
use super::compression::{self, seal, Codec, CompressionLevels};
use super::partition_log::PartitionLog;
use super::segment::{self, Segment};
use crate::config::LogConfig;

/// The per-directory file holding each partition's cleaner checkpoint.
pub const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// Batches are written to the output in chunks of about this size.
const WRITE_CHUNK: usize = 1 << 20;

/// A segment before the active one, as the cleaner saw it.
#[derive(Debug, Clone)]
pub struct SegmentSnapshot {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size: u64,
    pub max_timestamp: i64,
    pub file: Arc<File>,
}

/// What the cleaner reads from a log under its lock.
pub struct LogSnapshot {
    pub dir: PathBuf,
    pub config: LogConfig,
    pub log_start_offset: i64,
    pub active_base: i64,
    pub segments: Vec<SegmentSnapshot>,
}

/// One pass's decisions.
pub struct CleanPlan {
    dir: PathBuf,
    config: LogConfig,
    now_ms: i64,
    /// Offsets below this were cleaned by an earlier pass.
    first_dirty: i64,
    /// The end of the cleanable range: the checkpoint after this pass.
    pub first_uncleanable: i64,
    pub dirty_bytes: u64,
    pub cleanable_bytes: u64,
    pub groups: Vec<Vec<SegmentSnapshot>>,
}

/// What a pass did.
#[derive(Debug, Default, Clone, Copy)]
pub struct CleanStats {
    pub segments_before: usize,
    pub segments_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
    /// The new cleaner checkpoint: everything below it is clean.
    pub cleaned_to: i64,
    /// The earliest time a tombstone kept by this pass may be removed.
    pub next_tombstone_expiry: Option<i64>,
}

/// Latest offset per key over the cleanable range, and the last batch of
/// each producer id there.
#[derive(Default)]
pub struct OffsetMap {
    latest: HashMap<Vec<u8>, i64>,
    last_producer_batch: HashMap<i64, i64>,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs one cleaning pass on `log` if it is due (or `force`). `checkpoint`
/// is the partition's cleaner checkpoint, `tombstone_due` the expiry a
/// previous pass reported. Returns `None` when nothing was due.
pub fn clean(
    log: &Mutex<PartitionLog>,
    checkpoint: Option<i64>,
    now_ms: i64,
    tombstone_due: Option<i64>,
    force: bool,
) -> io::Result<Option<CleanStats>> {
    let snapshot = log.lock().cleaner_snapshot();
    let Some(plan) = plan(&snapshot, checkpoint, now_ms, tombstone_due, force)? else {
        return Ok(None);
    };
    tracing::info!(
        dir = %plan.dir.display(),
        segment_groups = plan.groups.len(),
        clean_to = plan.first_uncleanable,
        "log cleaner started"
    );
    let map = build_offset_map(&plan)?;
    let mut stats = CleanStats {
        cleaned_to: plan.first_uncleanable,
        ..CleanStats::default()
    };
    for group in &plan.groups {
        let cleaned_path = cleaned_path(&plan.dir, group[0].base_offset);
        let cleaned = match write_group(&plan, group, &map, &mut stats) {
            Ok(segment) => segment,
            Err(e) => {
                let _ = remove_if_exists(&cleaned_path);
                return Err(e);
            }
        };
        let swapped = log.lock().replace_segments(group, cleaned)?;
        if !swapped {
            // The log changed under us (retention, truncation): stop here;
            // the next pass starts over.
            remove_if_exists(&cleaned_path)?;
            stats.cleaned_to = checkpoint.unwrap_or(snapshot.log_start_offset);
            break;
        }
        stats.segments_before += group.len();
        stats.segments_after += 1;
    }
    Ok(Some(stats))
}

fn cleaned_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.log.cleaned", segment::file_stem(base_offset)))
}

/// Decides whether a pass is due and what it covers.
pub fn plan(
    snapshot: &LogSnapshot,
    checkpoint: Option<i64>,
    now_ms: i64,
    tombstone_due: Option<i64>,
    force: bool,
) -> io::Result<Option<CleanPlan>> {
    let config = &snapshot.config;
    if !config.cleanup_compact {
        return Ok(None);
    }
    let lag_horizon = now_ms.saturating_sub(config.min_compaction_lag_ms);
    let mut cleanable: Vec<SegmentSnapshot> = Vec::new();
    let mut first_uncleanable = snapshot.active_base;
    for s in &snapshot.segments {
        if s.next_offset <= snapshot.log_start_offset && s.base_offset < snapshot.log_start_offset {
            continue; // below the log start: retention's business
        }
        if config.min_compaction_lag_ms > 0 && s.max_timestamp > lag_horizon {
            first_uncleanable = s.base_offset;
            break;
        }
        cleanable.push(s.clone());
    }
    if cleanable.is_empty() {
        return Ok(None);
    }
    let mut first_dirty = checkpoint
        .unwrap_or(snapshot.log_start_offset)
        .max(snapshot.log_start_offset);
    if first_dirty > snapshot.active_base {
        // The log was truncated below the checkpoint: start over.
        first_dirty = snapshot.log_start_offset;
    }
    let cleanable_bytes: u64 = cleanable.iter().map(|s| s.size).sum();
    let dirty: Vec<&SegmentSnapshot> = cleanable
        .iter()
        .filter(|s| s.next_offset > first_dirty && s.size > 0)
        .collect();
    let dirty_bytes: u64 = dirty.iter().map(|s| s.size).sum();
    let ratio = if cleanable_bytes > 0 {
        dirty_bytes as f64 / cleanable_bytes as f64
    } else {
        0.0
    };
    let due_ratio = dirty_bytes > 0 && ratio >= config.min_cleanable_dirty_ratio;
    let due_lag = match dirty.first() {
        Some(s) if config.max_compaction_lag_ms < i64::MAX => {
            let mut header = [0u8; HEADER_SIZE];
            s.file.read_exact_at(&mut header, 0)?;
            let header = BatchHeader::parse(&header).map_err(|e| invalid(e.to_string()))?;
            header.max_timestamp >= 0
                && now_ms.saturating_sub(header.max_timestamp) > config.max_compaction_lag_ms
        }
        _ => false,
    };
    // A tombstone goes once `now - delete.retention.ms` passes its batch's
    // largest timestamp, i.e. once `now > expiry`.
    let due_tombstones = tombstone_due.is_some_and(|t| now_ms > t);
    if !(force || due_ratio || due_lag || due_tombstones) {
        return Ok(None);
    }
    let mut groups: Vec<Vec<SegmentSnapshot>> = Vec::new();
    let mut group_bytes = 0u64;
    for s in cleanable {
        let fits = groups.last().is_some_and(|g| {
            group_bytes + s.size <= config.segment_bytes
                && s.next_offset - g[0].base_offset < i32::MAX as i64
        });
        if fits {
            group_bytes += s.size;
            groups.last_mut().expect("a group").push(s);
        } else {
            group_bytes = s.size;
            groups.push(vec![s]);
        }
    }
    Ok(Some(CleanPlan {
        dir: snapshot.dir.clone(),
        config: config.clone(),
        now_ms,
        first_dirty,
        first_uncleanable,
        dirty_bytes,
        cleanable_bytes,
        groups,
    }))
}

/// Visits every batch of a segment (header and whole bytes).
fn for_each_batch(
    segment: &SegmentSnapshot,
    mut visit: impl FnMut(BatchHeader, Vec<u8>) -> io::Result<()>,
) -> io::Result<()> {
    let mut position = 0u64;
    let mut header = [0u8; HEADER_SIZE];
    while position < segment.size {
        segment.file.read_exact_at(&mut header, position)?;
        let parsed = BatchHeader::parse(&header).map_err(|e| invalid(e.to_string()))?;
        let total = batch::batch_size_at(&header).map_err(|e| invalid(e.to_string()))? as u64;
        if position + total > segment.size {
            return Err(invalid("batch runs past the end of the segment"));
        }
        let mut bytes = vec![0u8; total as usize];
        segment.file.read_exact_at(&mut bytes, position)?;
        visit(parsed, bytes)?;
        position += total;
    }
    Ok(())
}

/// One record inside a (decompressed) batch.
struct RawRecord<'a> {
    /// The record's bytes including its length prefix.
    raw: &'a [u8],
    offset: i64,
    timestamp: i64,
    key: Option<&'a [u8]>,
    tombstone: bool,
}

fn parse_records<'a>(header: &BatchHeader, mut data: &'a [u8]) -> io::Result<Vec<RawRecord<'a>>> {
    let bad = |what: &str| {
        invalid(format!(
            "malformed record in batch {}: {what}",
            header.base_offset
        ))
    };
    let mut records = Vec::with_capacity(header.records_count.max(0) as usize);
    for _ in 0..header.records_count {
        let start = data;
        let length = batch::read_varint(&mut data).ok_or_else(|| bad("length"))?;
        if length < 1 || length as usize > data.len() {
            return Err(bad("length"));
        }
        let prefix = start.len() - data.len();
        let raw = &start[..prefix + length as usize];
        let mut body = &data[1..length as usize];
        data = &data[length as usize..];
        let ts_delta = batch::read_varint(&mut body).ok_or_else(|| bad("timestamp"))?;
        let offset_delta = batch::read_varint(&mut body).ok_or_else(|| bad("offset"))?;
        let key_length = batch::read_varint(&mut body).ok_or_else(|| bad("key length"))?;
        let key = if key_length < 0 {
            None
        } else {
            if key_length as usize > body.len() {
                return Err(bad("key"));
            }
            let (key, rest) = body.split_at(key_length as usize);
            body = rest;
            Some(key)
        };
        let value_length = batch::read_varint(&mut body).ok_or_else(|| bad("value length"))?;
        records.push(RawRecord {
            raw,
            offset: header.base_offset + offset_delta,
            timestamp: header.base_timestamp.saturating_add(ts_delta),
            key,
            tombstone: value_length < 0,
        });
    }
    Ok(records)
}

/// The batch codecs live in `compression`; the cleaner recompresses a
/// rewritten batch in its own codec at the default levels.
fn decompress(codec: i16, data: &[u8]) -> io::Result<Vec<u8>> {
    let codec = Codec::from_id(codec).map_err(|e| invalid(e.to_string()))?;
    compression::decompress(codec, data)
}

fn compress(codec: i16, raw: &[u8]) -> io::Result<Vec<u8>> {
    let codec = Codec::from_id(codec).map_err(|e| invalid(e.to_string()))?;
    compression::compress(codec, CompressionLevels::default(), raw)
}

/// The batch with only `kept` records; every other header field stays.
fn rebuild_batch(
    original: &[u8],
    header: &BatchHeader,
    kept: &[&RawRecord],
) -> io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    for record in kept {
        raw.extend_from_slice(record.raw);
    }
    let payload = compress(header.compression(), &raw)?;
    let mut out = Vec::with_capacity(HEADER_SIZE + payload.len());
    out.extend_from_slice(&original[..HEADER_SIZE]);
    out.extend_from_slice(&payload);
    if !header.is_log_append_time() {
        let max = kept
            .iter()
            .map(|r| r.timestamp)
            .max()
            .unwrap_or(header.max_timestamp);
        out[35..43].copy_from_slice(&max.to_be_bytes());
    }
    out[57..61].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    Ok(seal(out))
}

/// A header-only batch keeping the producer fields and offset range, as
/// Kafka's `DefaultRecordBatch.writeEmptyHeader` (no compression, both
/// timestamps set to the batch's largest).
fn empty_batch(original: &[u8], header: &BatchHeader) -> Vec<u8> {
    let mut out = original[..HEADER_SIZE].to_vec();
    let attributes = header.attributes & !0x07;
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    out[27..35].copy_from_slice(&header.max_timestamp.to_be_bytes());
    out[35..43].copy_from_slice(&header.max_timestamp.to_be_bytes());
    out[57..61].copy_from_slice(&0i32.to_be_bytes());
    seal(out)
}

/// Builds the key → latest offset map over the plan's range.
pub fn build_offset_map(plan: &CleanPlan) -> io::Result<OffsetMap> {
    let mut map = OffsetMap::default();
    for segment in plan.groups.iter().flatten() {
        for_each_batch(segment, |header, bytes| {
            if header.has_producer_id() {
                map.last_producer_batch
                    .insert(header.producer_id, header.base_offset);
            }
            if header.is_control() || header.records_count == 0 {
                return Ok(());
            }
            let data = decompress(header.compression(), &bytes[HEADER_SIZE..])?;
            for record in parse_records(&header, &data)? {
                if let Some(key) = record.key {
                    match map.latest.get_mut(key) {
                        Some(offset) => *offset = (*offset).max(record.offset),
                        None => {
                            map.latest.insert(key.to_vec(), record.offset);
                        }
                    }
                }
            }
            Ok(())
        })?;
    }
    Ok(map)
}

/// What becomes of one batch: `None` drops it.
fn filter_batch(
    plan: &CleanPlan,
    map: &OffsetMap,
    header: &BatchHeader,
    bytes: Vec<u8>,
    stats: &mut CleanStats,
) -> io::Result<Option<Vec<u8>>> {
    let last_of_producer = header.has_producer_id()
        && map.last_producer_batch.get(&header.producer_id) == Some(&header.base_offset);
    if header.is_control() {
        return Ok(Some(bytes));
    }
    if header.records_count == 0 {
        return Ok(last_of_producer.then_some(bytes));
    }
    let data = decompress(header.compression(), &bytes[HEADER_SIZE..])?;
    let records = parse_records(header, &data)?;
    let retention = plan.config.delete_retention_ms;
    let tombstone_expired = header.max_timestamp < plan.now_ms.saturating_sub(retention);
    let mut kept = Vec::with_capacity(records.len());
    for record in &records {
        let latest = match record.key {
            None => true,
            Some(key) => map.latest.get(key).is_none_or(|&l| l <= record.offset),
        };
        if !latest {
            continue;
        }
        if record.tombstone {
            if record.offset < plan.first_dirty && tombstone_expired {
                continue;
            }
            let expiry = header.max_timestamp.saturating_add(retention);
            stats.next_tombstone_expiry = Some(
                stats
                    .next_tombstone_expiry
                    .map_or(expiry, |e| e.min(expiry)),
            );
        }
        kept.push(record);
    }
    stats.records_removed += (records.len() - kept.len()) as u64;
    if kept.len() == records.len() {
        Ok(Some(bytes))
    } else if kept.is_empty() {
        Ok(last_of_producer.then(|| empty_batch(&bytes, header)))
    } else {
        rebuild_batch(&bytes, header, &kept).map(Some)
    }
}

/// Step 1 of the protocol: writes the cleaned form of `group` to
/// `<base>.log.cleaned` and fsyncs it.
pub fn write_group(
    plan: &CleanPlan,
    group: &[SegmentSnapshot],
    map: &OffsetMap,
    stats: &mut CleanStats,
) -> io::Result<Segment> {
    let interval = plan.config.index_interval_bytes;
    let mut out = Segment::create_cleaned(&plan.dir, group[0].base_offset)?;
    let mut pending = Vec::new();
    let mut headers = Vec::new();
    for segment in group {
        stats.bytes_before += segment.size;
        for_each_batch(segment, |header, bytes| {
            if let Some(kept) = filter_batch(plan, map, &header, bytes, stats)? {
                let mut parsed = BatchHeader::parse(&kept).map_err(|e| invalid(e.to_string()))?;
                parsed.base_offset = header.base_offset;
                pending.extend_from_slice(&kept);
                headers.push(parsed);
                if pending.len() >= WRITE_CHUNK {
                    out.append(&pending, &headers, interval, plan.now_ms)?;
                    pending.clear();
                    headers.clear();
                }
            }
            Ok(())
        })?;
    }
    if !pending.is_empty() {
        out.append(&pending, &headers, interval, plan.now_ms)?;
    }
    out.sync_log()?;
    stats.bytes_after += out.size();
    Ok(out)
}

/// The offset after the last batch of a (complete) `.swap` file, or its
/// base offset when it holds none.
fn swap_end_offset(path: &Path, base_offset: i64) -> io::Result<i64> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut end = base_offset;
    let mut position = 0u64;
    let mut header = [0u8; HEADER_SIZE];
    while position + HEADER_SIZE as u64 <= size {
        file.read_exact_at(&mut header, position)?;
        let Ok(parsed) = BatchHeader::parse(&header) else {
            break;
        };
        let Ok(total) = batch::batch_size_at(&header) else {
            break;
        };
        end = end.max(parsed.last_offset() + 1);
        position += total as u64;
    }
    Ok(end)
}

/// Start-up recovery of an interrupted swap (steps 3–5 of the protocol):
/// deletes the segments `<base>.log.swap` replaces, then renames it to
/// `<base>.log`. `bases` (the `.log` files found) is updated.
pub fn complete_swap(dir: &Path, swap_base: i64, bases: &mut Vec<i64>) -> io::Result<()> {
    let stem = segment::file_stem(swap_base);
    let swap = dir.join(format!("{stem}.log.swap"));
    let end = swap_end_offset(&swap, swap_base)?.max(swap_base + 1);
    let replaced = |b: i64| b >= swap_base && b < end;
    for &base in bases.iter().filter(|&&b| replaced(b)) {
        let stem = segment::file_stem(base);
        for ext in ["log", "index", "timeindex"] {
            remove_if_exists(&dir.join(format!("{stem}.{ext}")))?;
        }
    }
    bases.retain(|&b| !replaced(b));
    for ext in ["index", "timeindex"] {
        remove_if_exists(&dir.join(format!("{stem}.{ext}")))?;
    }
    sync_dir(dir)?;
    std::fs::rename(&swap, segment::log_path(dir, swap_base))?;
    sync_dir(dir)?;
    bases.push(swap_base);
    tracing::info!(dir = %dir.display(), base_offset = swap_base, "completed an interrupted log cleaner swap");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::AppendOrigin;
    use crate::log::partition_log::ReadError;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    const RETENTION: i64 = 10_000;

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 1500,
            index_interval_bytes: 1,
            cleanup_compact: true,
            cleanup_delete: false,
            delete_retention_ms: RETENTION,
            ..LogConfig::default()
        }
    }

    /// A batch of `(key, value)` records built by kafka-protocol's encoder.
    fn encode(
        records: &[(&str, Option<&str>)],
        timestamp: i64,
        compression: Compression,
        producer: (i64, i16, i32),
    ) -> Vec<u8> {
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (key, value))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: producer.0,
                producer_epoch: producer.1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // Without a producer the sequences still run on from -1, so
                // the encoder keeps the records in one batch with base -1.
                sequence: producer.2.wrapping_add(i as i32),
                timestamp: timestamp + i as i64,
                key: Some(Bytes::from(key.to_string())),
                value: value.map(|v| Bytes::from(v.to_string())),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    type Seen = Vec<(i64, String, Option<String>)>;

    /// Every record readable from the log start, decoded.
    fn read_all(log: &PartitionLog) -> Seen {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        loop {
            let slice = match log.read(offset, usize::MAX, true, i64::MAX) {
                Ok(Some(slice)) => slice,
                Ok(None) => break,
                Err(ReadError::OffsetOutOfRange { .. }) => break,
                Err(e) => panic!("{e}"),
            };
            let bytes = slice.read().unwrap();
            let mut pos = 0;
            while pos < bytes.len() {
                let header = BatchHeader::parse(&bytes[pos..]).unwrap();
                let total = header.total_size();
                batch::validate(&bytes[pos..pos + total]).unwrap();
                let mut buf = Bytes::copy_from_slice(&bytes[pos..pos + total]);
                let set = RecordBatchDecoder::decode(&mut buf).unwrap();
                for r in set.records {
                    if r.offset >= offset {
                        out.push((
                            r.offset,
                            String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                            r.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                        ));
                    }
                }
                offset = header.last_offset() + 1;
                pos += total;
            }
        }
        out
    }

    /// Keys k0..k9 updated `rounds` times, 5 records a batch, alternating
    /// gzip and uncompressed batches; returns what was written.
    fn fill(log: &mut PartitionLog, rounds: usize, ts: i64) -> Seen {
        let mut written = Vec::new();
        let mut n = 0;
        for round in 0..rounds {
            for _ in 0..2 {
                let records: Vec<(String, String)> = (0..5)
                    .map(|i| {
                        (
                            format!("k{}", (n * 3 + i) % 10),
                            format!("v{round}-{n}-{i}"),
                        )
                    })
                    .collect();
                let refs: Vec<(&str, Option<&str>)> = records
                    .iter()
                    .map(|(k, v)| (k.as_str(), Some(v.as_str())))
                    .collect();
                let compression = if n % 2 == 0 {
                    Compression::Gzip
                } else {
                    Compression::None
                };
                let info = log
                    .append(
                        &encode(&refs, ts, compression, (-1, -1, -1)),
                        0,
                        AppendOrigin::Client,
                        ts,
                    )
                    .unwrap();
                for (i, (k, v)) in records.into_iter().enumerate() {
                    written.push((info.base_offset + i as i64, k, Some(v)));
                }
                n += 1;
            }
        }
        written
    }

    /// The latest record per key among `written` below `end`, plus every
    /// record at or after `end`.
    fn expected(written: &Seen, end: i64) -> Seen {
        let mut latest: HashMap<&str, i64> = HashMap::new();
        for (offset, key, _) in written.iter().filter(|r| r.0 < end) {
            latest.insert(key, *offset);
        }
        written
            .iter()
            .filter(|(offset, key, _)| *offset >= end || latest[key.as_str()] == *offset)
            .cloned()
            .collect()
    }

    fn open(dir: &Path) -> PartitionLog {
        PartitionLog::open_for_test(dir, config(), false).0
    }

    #[test]
    fn keeps_the_latest_value_per_key_with_offsets_and_the_active_segment_intact() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let written = fill(&mut log, 20, 1000);
        assert!(log.segment_count() > 3);
        let active_base = log.cleaner_snapshot().active_base;
        let size_before = log.size_bytes();
        let log = Mutex::new(log);
        let stats = clean(&log, None, 5000, None, false)
            .unwrap()
            .expect("dirty");
        assert_eq!(stats.cleaned_to, active_base);
        assert!(stats.records_removed > 0);

        let log = log.into_inner();
        assert!(log.size_bytes() < size_before);
        // Some batches lost part of their records and were rewritten, in
        // both codecs, keeping their offset range.
        let mut partial = [false; 2];
        for s in log.cleaner_snapshot().segments {
            for_each_batch(&s, |h, _| {
                if h.records_count > 0 && h.records_count < h.last_offset_delta + 1 {
                    partial[h.compression() as usize] = true;
                }
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(partial, [true, true]);
        assert_eq!(read_all(&log), expected(&written, active_base));
        // Nothing new is dirty: the next pass has nothing to do.
        let log = Mutex::new(log);
        assert!(clean(&log, Some(stats.cleaned_to), 6000, None, false)
            .unwrap()
            .is_none());
        // Reopening (clean or after a crash) reads the same.
        drop(log);
        let (log, _) = PartitionLog::open_for_test(dir.path(), config(), false);
        assert_eq!(read_all(&log), expected(&written, active_base));
        // A fetch inside a compacted gap gets the next surviving batch.
        let slice = log.read(1, 1, true, i64::MAX).unwrap().unwrap();
        let header = BatchHeader::parse(&slice.read().unwrap()).unwrap();
        assert!(header.last_offset() >= 1);

        // More updates: the small cleaned segments are grouped this time.
        let mut log = log;
        let mut all = written.clone();
        all.extend(fill(&mut log, 20, 7000));
        let active_base = log.cleaner_snapshot().active_base;
        let log = Mutex::new(log);
        let again = clean(&log, Some(stats.cleaned_to), 8000, None, false)
            .unwrap()
            .expect("dirty again");
        assert!(again.segments_after < again.segments_before, "{again:?}");
        assert_eq!(read_all(&log.lock()), expected(&all, active_base));
    }

    #[test]
    fn tombstones_survive_delete_retention_then_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let mut written = fill(&mut log, 4, 1000);
        let info = log
            .append(
                &encode(
                    &[("k3", None), ("k4", None)],
                    2000,
                    Compression::Gzip,
                    (-1, -1, -1),
                ),
                0,
                AppendOrigin::Client,
                2000,
            )
            .unwrap();
        written.push((info.base_offset, "k3".into(), None));
        written.push((info.base_offset + 1, "k4".into(), None));
        written.extend(fill(&mut log, 4, 3000));
        log.roll().unwrap();
        let log = Mutex::new(log);
        let stats = clean(&log, None, 3500, None, false).unwrap().unwrap();
        assert_eq!(stats.next_tombstone_expiry, None);
        // k3/k4 were rewritten after their tombstones: those are superseded.
        let seen = read_all(&log.lock());
        assert_eq!(seen, expected(&written, i64::MAX));
        assert!(!seen.iter().any(|r| r.2.is_none()));

        // Tombstones that are the latest for their key.
        let info = log
            .lock()
            .append(
                &encode(&[("k1", None)], 4000, Compression::None, (-1, -1, -1)),
                0,
                AppendOrigin::Client,
                4000,
            )
            .unwrap();
        written.push((info.base_offset, "k1".into(), None));
        log.lock().roll().unwrap();
        let stats = clean(&log, Some(stats.cleaned_to), 4500, None, true)
            .unwrap()
            .unwrap();
        assert_eq!(stats.next_tombstone_expiry, Some(4000 + RETENTION));
        let seen = read_all(&log.lock());
        assert!(seen.contains(&(info.base_offset, "k1".into(), None)));
        assert_eq!(seen, expected(&written, i64::MAX));
        // Still within delete.retention.ms: kept.
        let early = clean(
            &log,
            Some(stats.cleaned_to),
            4000 + RETENTION,
            stats.next_tombstone_expiry,
            false,
        )
        .unwrap();
        assert!(early.is_none(), "not due yet");
        let forced = clean(&log, Some(stats.cleaned_to), 4000 + RETENTION, None, true)
            .unwrap()
            .unwrap();
        assert!(read_all(&log.lock()).contains(&(info.base_offset, "k1".into(), None)));
        assert_eq!(forced.next_tombstone_expiry, Some(4000 + RETENTION));
        // Past it, the pass is due and removes the tombstone.
        let late = clean(
            &log,
            Some(forced.cleaned_to),
            4001 + RETENTION,
            forced.next_tombstone_expiry,
            false,
        )
        .unwrap()
        .expect("tombstone expiry makes the pass due");
        assert!(late.next_tombstone_expiry.is_none());
        let seen = read_all(&log.lock());
        assert!(!seen.iter().any(|r| r.1 == "k1"));
        let mut remaining = expected(&written, i64::MAX);
        remaining.retain(|r| r.1 != "k1");
        assert_eq!(seen, remaining);
    }

    #[test]
    fn min_compaction_lag_and_the_active_segment_bound_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config();
        cfg.min_compaction_lag_ms = 1000;
        let (mut log, _) = PartitionLog::open_for_test(dir.path(), cfg, false);
        let old = fill(&mut log, 6, 1000);
        log.roll().unwrap();
        let young_start = log.log_end_offset();
        let young = fill(&mut log, 6, 5000);
        let log = Mutex::new(log);
        let stats = clean(&log, None, 5500, None, false).unwrap().unwrap();
        assert_eq!(stats.cleaned_to, young_start);
        let mut all = old.clone();
        all.extend(young);
        assert_eq!(read_all(&log.lock()), expected(&all, young_start));
    }

    #[test]
    fn the_dirty_ratio_and_max_compaction_lag_decide_when_a_pass_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config();
        cfg.min_cleanable_dirty_ratio = 0.9;
        let (mut log, _) = PartitionLog::open_for_test(dir.path(), cfg.clone(), false);
        fill(&mut log, 6, 1000);
        log.roll().unwrap();
        let log = Mutex::new(log);
        // Everything is dirty: the ratio (1.0) is over 0.9.
        let first = clean(&log, None, 2000, None, false).unwrap().unwrap();
        let checkpoint = first.cleaned_to;
        // A little more data: dirty / cleanable stays under 0.9, no pass.
        fill(&mut log.lock(), 1, 3000);
        log.lock().roll().unwrap();
        assert!(clean(&log, Some(checkpoint), 4000, None, false)
            .unwrap()
            .is_none());
        // max.compaction.lag.ms forces it once the oldest dirty batch is older.
        cfg.max_compaction_lag_ms = 5000;
        log.lock().set_config(cfg);
        assert!(clean(&log, Some(checkpoint), 7000, None, false)
            .unwrap()
            .is_none());
        let forced = clean(&log, Some(checkpoint), 9000, None, false).unwrap();
        assert!(
            forced.is_some(),
            "a dirty batch past max.compaction.lag.ms is due"
        );
    }

    #[test]
    fn the_last_batch_of_each_producer_survives_as_an_empty_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        log.append(
            &encode(
                &[("a", Some("1")), ("b", Some("1"))],
                0,
                Compression::Gzip,
                (9, 0, 0),
            ),
            0,
            AppendOrigin::Client,
            0,
        )
        .unwrap();
        log.append(
            &encode(
                &[("a", Some("2")), ("b", Some("2"))],
                0,
                Compression::Gzip,
                (9, 0, 2),
            ),
            0,
            AppendOrigin::Client,
            0,
        )
        .unwrap();
        log.append(
            &encode(
                &[("a", Some("3")), ("b", Some("3"))],
                0,
                Compression::None,
                (-1, -1, -1),
            ),
            0,
            AppendOrigin::Client,
            0,
        )
        .unwrap();
        log.roll().unwrap();
        let log = Mutex::new(log);
        clean(&log, None, 10, None, true).unwrap().unwrap();
        let mut log = log.into_inner();
        let mut batches = Vec::new();
        for s in log.cleaner_snapshot().segments {
            for_each_batch(&s, |h, _| {
                batches.push(h);
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].base_offset, 2);
        assert_eq!(batches[0].records_count, 0);
        assert_eq!(batches[0].last_offset(), 3);
        assert_eq!(batches[0].last_sequence(), 3);
        // The producer state rebuilt from the log still knows the producer.
        log.close(0).unwrap();
        std::fs::remove_file(
            dir.path()
                .join(super::super::partition_log::PRODUCER_SNAPSHOT),
        )
        .unwrap();
        drop(log);
        let mut log = open(dir.path());
        let retry = log
            .append(
                &encode(
                    &[("a", Some("2")), ("b", Some("2"))],
                    0,
                    Compression::Gzip,
                    (9, 0, 2),
                ),
                0,
                AppendOrigin::Client,
                0,
            )
            .unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.base_offset, 2);
    }

    #[test]
    fn an_emptied_segment_does_not_block_time_retention() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config();
        cfg.segment_bytes = 150;
        cfg.cleanup_delete = true;
        cfg.retention_ms = 1000;
        let (mut log, _) = PartitionLog::open_for_test(dir.path(), cfg, false);
        let keys = ["k0", "k1", "k2", "k3", "k4"];
        for value in ["old", "new"] {
            let records: Vec<(&str, Option<&str>)> =
                keys.iter().map(|k| (*k, Some(value))).collect();
            log.append(
                &encode(&records, 0, Compression::None, (-1, -1, -1)),
                0,
                AppendOrigin::Client,
                0,
            )
            .unwrap();
            log.roll().unwrap();
        }
        log.append(
            &encode(
                &[("x", Some("y"))],
                100_000,
                Compression::None,
                (-1, -1, -1),
            ),
            0,
            AppendOrigin::Client,
            0,
        )
        .unwrap();
        let active_base = log.cleaner_snapshot().active_base;
        let log = Mutex::new(log);
        let stats = clean(&log, None, 2000, None, true).unwrap().unwrap();
        assert_eq!(stats.segments_after, 2, "{stats:?}");
        let mut log = log.into_inner();
        assert_eq!(log.segment_count(), 3);
        assert_eq!(log.apply_retention(5000).unwrap(), 2);
        assert_eq!(log.log_start_offset(), active_base);
    }

    /// Runs the cleaner's write step for the first group and returns the
    /// replaced segments and the written (fsynced) output.
    fn write_first_group(log: &PartitionLog, now: i64) -> (Vec<SegmentSnapshot>, Segment) {
        let mut snapshot = log.cleaner_snapshot();
        // One group covering the whole cleanable range.
        snapshot.config.segment_bytes = u32::MAX as u64;
        let plan = plan(&snapshot, None, now, None, true).unwrap().unwrap();
        assert_eq!(plan.groups.len(), 1);
        let map = build_offset_map(&plan).unwrap();
        let mut stats = CleanStats::default();
        let group = plan.groups[0].clone();
        assert!(group.len() > 1);
        let out = write_group(&plan, &group, &map, &mut stats).unwrap();
        (group, out)
    }

    #[test]
    fn a_crash_before_or_during_the_swap_loses_nothing() {
        for stage in ["cleaned", "swap", "swap-after-delete"] {
            let dir = tempfile::tempdir().unwrap();
            let mut log = open(dir.path());
            let written = fill(&mut log, 20, 1000);
            log.flush(0).unwrap();
            let active_base = log.cleaner_snapshot().active_base;
            let (group, mut out) = write_first_group(&log, 5000);

            let stem = segment::file_stem(out.base_offset);
            match stage {
                "cleaned" => {}
                "swap" => {
                    out.rename_log(dir.path().join(format!("{stem}.log.swap")))
                        .unwrap();
                }
                _ => {
                    out.rename_log(dir.path().join(format!("{stem}.log.swap")))
                        .unwrap();
                    for s in &group {
                        let stem = segment::file_stem(s.base_offset);
                        for ext in ["log", "index", "timeindex"] {
                            remove_if_exists(&dir.path().join(format!("{stem}.{ext}"))).unwrap();
                        }
                    }
                }
            }
            drop(out);
            drop(log); // the crash: nothing closed
            let (log, _) = PartitionLog::open_for_test(dir.path(), config(), false);
            let names: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect();
            assert!(
                !names
                    .iter()
                    .any(|n| n.ends_with(".swap") || n.ends_with(".cleaned")),
                "{stage}: {names:?}"
            );
            let seen = read_all(&log);
            let want = if stage == "cleaned" {
                written.clone()
            } else {
                expected(&written, active_base)
            };
            assert_eq!(seen, want, "{stage}");
            assert_eq!(log.log_end_offset(), written.last().unwrap().0 + 1);
            // A full pass afterwards reaches the same result as without a crash.
            let log = Mutex::new(log);
            clean(&log, None, 5000, None, true).unwrap().unwrap();
            assert_eq!(
                read_all(&log.lock()),
                expected(&written, active_base),
                "{stage}"
            );
        }
    }
}
