//! Writing a group's cleaned form to a new segment, beside the segments it
//! will replace: `<base>.log.cleaned`, fsynced before the swap makes it the
//! log's, so a crash at any point leaves either the old or the new segments
//! (see `partition_log::swap`).

use std::io;

use super::compact::{filter_batch, OffsetMap, TxnProgress};
use super::plan::CleanPlan;
use super::{for_each_batch, invalid, CleanStats, SegmentSnapshot};
use crate::log::batch::BatchHeader;
use crate::log::segment::Segment;

/// Batches are written to the output in chunks of about this size.
const WRITE_CHUNK: usize = 1 << 20;

/// Writes the cleaned form of `group` to `<base>.log.cleaned` and fsyncs
/// it; its indexes, aborted-transaction index included, stay in memory
/// until the swap.
pub fn write_group(
    plan: &CleanPlan,
    group: &[SegmentSnapshot],
    map: &OffsetMap,
    txns: &mut TxnProgress,
    stats: &mut CleanStats,
) -> io::Result<Segment> {
    let interval = plan.config.index_interval_bytes;
    let mut out = Segment::create_cleaned(&plan.dir, group[0].base_offset)?;
    let mut pending = Vec::new();
    let mut headers = Vec::new();
    for segment in group {
        stats.bytes_before += segment.size;
        for_each_batch(segment, |header, bytes| {
            if let Some(kept) = filter_batch(plan, map, txns, &header, bytes, stats)? {
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
    // The group's aborted transactions are those whose marker is in it and
    // stayed. (Markers are only ever appended to the active segment, so a
    // segment the cleaner reads keeps the entries it had in the snapshot.)
    let end = group.last().map_or(group[0].base_offset, |s| s.next_offset);
    let aborted = plan
        .aborted
        .iter()
        .filter(|a| a.last_offset >= group[0].base_offset && a.last_offset < end)
        .filter(|a| !txns.removed_aborts.contains(&a.last_offset))
        .copied()
        .collect();
    out.set_aborted(aborted);
    stats.bytes_after += out.size();
    Ok(out)
}
