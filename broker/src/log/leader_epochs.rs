//! The leader-epoch cache of one partition: for every leader epoch, the
//! first offset written in it. A follower that comes back after a leader
//! change asks the new leader where its last epoch ended
//! (OffsetsForLeaderEpoch) and truncates whatever it wrote past that point,
//! so replicas never diverge (KIP-101, KIP-279).
//!
//! Stored as `leader-epoch-checkpoint` in the partition directory, in
//! Kafka's format: a version line, a count line, then `epoch start_offset`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::disk::write::write_atomically;

pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_OFFSET: i64 = -1;

#[derive(Debug, Clone)]
pub struct LeaderEpochCache {
    path: PathBuf,
    /// epoch → first offset of that epoch; both strictly increasing.
    epochs: BTreeMap<i32, i64>,
}

impl LeaderEpochCache {
    /// Loads the checkpoint in `dir`; `None` if there is none (a log written
    /// before the cache existed, which the caller rebuilds from batches).
    pub fn load(dir: &Path) -> Option<LeaderEpochCache> {
        let path = dir.join(CHECKPOINT_FILE);
        let text = std::fs::read_to_string(&path).ok()?;
        let mut epochs = BTreeMap::new();
        for line in text.lines().skip(2) {
            let mut fields = line.split_whitespace();
            let (Some(epoch), Some(offset)) = (fields.next(), fields.next()) else {
                continue;
            };
            if let (Ok(epoch), Ok(offset)) = (epoch.parse(), offset.parse()) {
                epochs.insert(epoch, offset);
            }
        }
        Some(LeaderEpochCache { path, epochs })
    }

    pub fn empty(dir: &Path) -> LeaderEpochCache {
        LeaderEpochCache {
            path: dir.join(CHECKPOINT_FILE),
            epochs: BTreeMap::new(),
        }
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.keys().next_back().copied()
    }

    /// The first offset of `epoch`, if it is cached.
    pub fn start_offset_of(&self, epoch: i32) -> Option<i64> {
        self.epochs.get(&epoch).copied()
    }

    pub fn entries(&self) -> Vec<(i32, i64)> {
        self.epochs.iter().map(|(e, o)| (*e, *o)).collect()
    }

    /// Whether [`assign`](Self::assign) of `epoch` would change the cache.
    pub fn is_new(&self, epoch: i32) -> bool {
        epoch >= 0 && self.latest_epoch().is_none_or(|latest| epoch > latest)
    }

    /// Records that `epoch` starts at `start_offset`. Ignored unless the
    /// epoch is newer than every cached one (batches of an epoch arrive in
    /// order, and only the first of them matters). Returns whether it changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if !self.is_new(epoch) {
            return false;
        }
        // A stale entry starting at or after this offset was truncated away.
        self.epochs.retain(|_, start| *start < start_offset);
        self.epochs.insert(epoch, start_offset);
        true
    }

    /// Kafka's `endOffsetFor`: the largest cached epoch not above `requested`
    /// and the offset where it ended (the start of the next epoch, or
    /// `log_end_offset` when `requested` is the latest).
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        if requested == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let Some((_, &next_start)) = self.epochs.range(requested + 1..).next() else {
            // Newer than anything this replica has seen.
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        };
        match self.epochs.range(..=requested).next_back() {
            Some((&floor, _)) => (floor, next_start),
            None => (requested, next_start),
        }
    }

    /// Drops epochs that start at or after `end_offset` (the log was
    /// truncated there).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.epochs.len();
        self.epochs.retain(|_, start| *start < end_offset);
        before != self.epochs.len()
    }

    /// Drops everything (the log was emptied and restarted elsewhere).
    pub fn clear(&mut self) {
        self.epochs.clear();
    }

    pub fn save(&self) -> io::Result<()> {
        let mut text = format!("0\n{}\n", self.epochs.len());
        for (epoch, offset) in &self.epochs {
            text.push_str(&format!("{epoch} {offset}\n"));
        }
        write_atomically(&self.path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kafkas_rules() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = LeaderEpochCache::empty(dir.path());
        assert!(cache.assign(1, 0));
        assert!(!cache.assign(1, 5), "an epoch is assigned once");
        assert!(cache.assign(3, 10));
        assert!(cache.assign(4, 20));
        assert_eq!(cache.end_offset_for(4, 25), (4, 25));
        assert_eq!(cache.end_offset_for(3, 25), (3, 20));
        assert_eq!(
            cache.end_offset_for(2, 25),
            (1, 10),
            "floor epoch 1 ends at 10"
        );
        assert_eq!(cache.end_offset_for(0, 25), (0, 0), "older than all");
        assert_eq!(cache.end_offset_for(7, 25), (-1, -1), "newer than all");
        cache.truncate_from_end(15);
        assert_eq!(cache.entries(), vec![(1, 0), (3, 10)]);
        cache.save().unwrap();
        let loaded = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(loaded.entries(), vec![(1, 0), (3, 10)]);
    }
}
