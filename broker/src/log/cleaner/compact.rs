//! Which records survive a pass.
//!
//! An in-memory map `key → latest offset` is built over the cleanable range,
//! then each batch keeps a keyed record only if it is the latest for its
//! key; records without a key are kept. A tombstone (null value) that is the
//! latest for its key is removed once it lies in the already-cleaned part
//! *and* its batch's largest timestamp is older than
//! `now - delete.retention.ms`, so consumers that read the log from the
//! start in that time still see the delete; otherwise it is kept.
//!
//! A batch whose records all survive is kept byte for byte, a partly
//! surviving one is rebuilt with the survivors (`batch::codec`). A batch
//! left with no records is dropped, except the last batch of each producer
//! id in the range, which stays as an empty batch so producer state and
//! sequence numbers survive a rebuild from the log; "each producer" means
//! each producer the partition still knows: one idle past
//! `producer.id.expiration.ms` has been forgotten and keeps nothing.
//!
//! The records of aborted transactions are removed (they neither count as
//! a key's latest value nor stay). A transaction marker goes, as Kafka's
//! cleaner does it, once nothing is left for it to close (no record of an
//! aborted transaction ever is; a committed one's records may all have
//! been superseded) and, like a tombstone, it lies in the already-cleaned
//! part and is older than `delete.retention.ms`, so a consumer reading the
//! log in that time still sees the end of the transaction. An ABORT
//! marker's aborted-transaction index entry goes with it. The last batch
//! of a producer is kept even when it is a marker: it holds the producer's
//! epoch, which fences zombies after a rebuild.
//!
//! Fetches at a removed offset get the next surviving batch
//! (`Segment::find_batch` finds the first batch whose last offset is at or
//! after it).

use std::collections::{HashMap, HashSet};
use std::io;

use super::plan::CleanPlan;
use super::{for_each_batch, CleanStats};
use crate::log::batch::{codec, records, BatchHeader};
use crate::log::control::parse_marker;

/// Latest offset per key over the cleanable range, and the last batch of
/// each producer id there.
#[derive(Default)]
pub struct OffsetMap {
    latest: HashMap<Vec<u8>, i64>,
    last_producer_batch: HashMap<i64, i64>,
    /// Aborted transactions by producer id: (first offset, marker offset).
    aborted: HashMap<i64, Vec<(i64, i64)>>,
}

impl OffsetMap {
    /// Whether `header` heads a batch of an aborted transaction.
    fn is_aborted(&self, header: &BatchHeader) -> bool {
        header.is_transactional()
            && !header.is_control()
            && self.aborted.get(&header.producer_id).is_some_and(|txns| {
                txns.iter()
                    .any(|&(first, last)| first <= header.base_offset && header.base_offset < last)
            })
    }
}

/// What a pass learns of transactions as it goes through the range in
/// offset order.
#[derive(Default)]
pub struct TxnProgress {
    /// Producers whose transaction being read has records that stay.
    with_records: HashSet<i64>,
    /// The offsets of the ABORT markers this pass removed.
    pub removed_aborts: HashSet<i64>,
}

/// Builds the key → latest offset map over the plan's range.
pub fn build_offset_map(plan: &CleanPlan) -> io::Result<OffsetMap> {
    let mut map = OffsetMap::default();
    for a in &plan.aborted {
        map.aborted
            .entry(a.producer_id)
            .or_default()
            .push((a.first_offset, a.last_offset));
    }
    for segment in plan.groups.iter().flatten() {
        for_each_batch(segment, |header, bytes| {
            if header.has_producer_id() {
                map.last_producer_batch
                    .insert(header.producer_id, header.base_offset);
            }
            if header.is_control() || header.records_count == 0 || map.is_aborted(&header) {
                return Ok(());
            }
            let data = codec::decompress(&header, &bytes)?;
            for record in records::parse(&header, &data)? {
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
pub(super) fn filter_batch(
    plan: &CleanPlan,
    map: &OffsetMap,
    txns: &mut TxnProgress,
    header: &BatchHeader,
    bytes: Vec<u8>,
    stats: &mut CleanStats,
) -> io::Result<Option<Vec<u8>>> {
    let last_of_producer = header.has_producer_id()
        && plan.active_producers.contains(&header.producer_id)
        && map.last_producer_batch.get(&header.producer_id) == Some(&header.base_offset);
    if header.is_control() {
        let keep = keep_marker(plan, txns, header, &bytes, last_of_producer, stats);
        return Ok(keep.then_some(bytes));
    }
    if header.records_count == 0 {
        return Ok(last_of_producer.then_some(bytes));
    }
    if map.is_aborted(header) {
        stats.records_removed += header.records_count as u64;
        return Ok(last_of_producer.then(|| codec::empty_batch(&bytes, header)));
    }
    let data = codec::decompress(header, &bytes)?;
    let records = records::parse(header, &data)?;
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
    if header.is_transactional() && !kept.is_empty() {
        txns.with_records.insert(header.producer_id);
    }
    if kept.len() == records.len() {
        Ok(Some(bytes))
    } else if kept.is_empty() {
        Ok(last_of_producer.then(|| codec::empty_batch(&bytes, header)))
    } else {
        codec::rebuild_batch(&bytes, header, &kept).map(Some)
    }
}

/// Whether a control batch stays (see the module comment).
fn keep_marker(
    plan: &CleanPlan,
    txns: &mut TxnProgress,
    header: &BatchHeader,
    bytes: &[u8],
    last_of_producer: bool,
    stats: &mut CleanStats,
) -> bool {
    let closes_records = txns.with_records.remove(&header.producer_id);
    if closes_records || last_of_producer {
        return true;
    }
    let retention = plan.config.delete_retention_ms;
    let expired = header.max_timestamp < plan.now_ms.saturating_sub(retention);
    if header.base_offset < plan.first_dirty && expired {
        if parse_marker(header, bytes).is_some_and(|m| !m.commit) {
            txns.removed_aborts.insert(header.base_offset);
        }
        stats.records_removed += header.records_count as u64;
        return false;
    }
    let expiry = header.max_timestamp.saturating_add(retention);
    stats.next_tombstone_expiry = Some(
        stats
            .next_tombstone_expiry
            .map_or(expiry, |e| e.min(expiry)),
    );
    true
}
