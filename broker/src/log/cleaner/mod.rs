//! Log compaction ("the log cleaner") for logs whose `cleanup.policy`
//! contains `compact`, following Kafka's semantics: a keyed record is kept
//! only while it is the latest for its key, so a compacted topic holds the
//! last value of every key instead of growing with every update.
//!
//! A pass over one log: `plan` decides whether it is due and which segments
//! it covers, `compact` decides which records survive, `output` writes each
//! group of segments, cleaned, to one new segment file, and the partition
//! log swaps that in for the group (`partition_log::swap`, crash-safe).
//! Offsets never change, and the active segment is never touched.
//!
//! Reading and rewriting happen without the partition lock, so a large
//! pass does not stall appends: segments before the active one only change
//! by being deleted (retention) or truncated, which the swap step detects.

pub mod compact;
pub mod output;
pub mod plan;

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;

use super::batch::{self, BatchHeader, HEADER_SIZE};
use super::partition_log::PartitionLog;
use super::segment;
use crate::config::LogConfig;
use crate::util::remove_if_exists;
use compact::{build_offset_map, TxnProgress};
use output::write_group;
use plan::plan;

/// The per-directory file holding each partition's cleaner checkpoint.
pub const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

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
    /// Where the oldest transaction not surely ended starts.
    pub first_unstable_offset: Option<i64>,
    /// Every aborted transaction of the log (from the segments' indexes).
    pub aborted: Vec<super::txn_index::AbortedTxn>,
    /// The producers the partition knows (not expired).
    pub active_producers: HashSet<i64>,
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
    /// The earliest time a tombstone or transaction marker kept by this
    /// pass may be removed.
    pub next_tombstone_expiry: Option<i64>,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
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
    let mut txns = TxnProgress::default();
    let mut stats = CleanStats {
        cleaned_to: plan.first_uncleanable,
        ..CleanStats::default()
    };
    for group in &plan.groups {
        let cleaned_path = segment::cleaned_path(&plan.dir, group[0].base_offset);
        let cleaned = match write_group(&plan, group, &map, &mut txns, &mut stats) {
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

#[cfg(test)]
mod tests;
