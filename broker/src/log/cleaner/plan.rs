//! When a log is cleaned, and what a pass covers.
//!
//! * The *cleanable range* is every segment before the active one, from the
//!   log start on, stopping at the first segment holding a record younger
//!   than `min.compaction.lag.ms` (by the segment's largest batch
//!   timestamp): consumers are promised that long to see every record.
//!   It also stops before the first unstable offset: an open transaction
//!   may still be aborted, and its records must not hide older values.
//! * The *dirty* part of that range starts at the cleaner checkpoint (kept
//!   per partition by the `LogManager` in `cleaner-offset-checkpoint`, Kafka's
//!   checkpoint format); everything below it was cleaned before. A pass runs
//!   when dirty bytes / cleanable bytes `>= min.cleanable.dirty.ratio` (so
//!   a pass is worth its rewrite), when the oldest dirty batch is older than
//!   `max.compaction.lag.ms`, or when a tombstone or transaction marker
//!   kept by an earlier pass has passed `delete.retention.ms`.
//! * Consecutive segments are grouped into one output segment while their
//!   combined input size stays within `segment.bytes` (and their offsets
//!   within the 32-bit relative range of the indexes), so compaction does
//!   not leave ever more, ever smaller segments. The output is based at the
//!   first input segment's base offset, so the log start is kept.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::{invalid, LogSnapshot, SegmentSnapshot};
use crate::config::LogConfig;
use crate::log::batch::{BatchHeader, HEADER_SIZE};
use crate::log::txn_index::AbortedTxn;

/// One pass's decisions.
pub struct CleanPlan {
    pub(super) dir: PathBuf,
    pub(super) config: LogConfig,
    pub(super) now_ms: i64,
    /// Offsets below this were cleaned by an earlier pass.
    pub(super) first_dirty: i64,
    /// The end of the cleanable range: the checkpoint after this pass.
    pub first_uncleanable: i64,
    pub dirty_bytes: u64,
    pub cleanable_bytes: u64,
    pub groups: Vec<Vec<SegmentSnapshot>>,
    /// The log's aborted transactions: their records are removed.
    pub(super) aborted: Vec<AbortedTxn>,
    /// The producers whose last batch stays.
    pub(super) active_producers: HashSet<i64>,
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
        let unstable = snapshot
            .first_unstable_offset
            .is_some_and(|f| s.next_offset > f);
        if unstable || (config.min_compaction_lag_ms > 0 && s.max_timestamp > lag_horizon) {
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
        aborted: snapshot.aborted.clone(),
        active_producers: snapshot.active_producers.clone(),
    }))
}
