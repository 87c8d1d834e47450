//! Sparse per-segment indexes, in Kafka's on-disk formats.
//!
//! * Offset index (`<base>.index`): 8-byte entries, `relativeOffset u32 |
//!   position u32`, one every `index.interval.bytes` of log data. Finds the
//!   file position to start scanning for an offset.
//! * Time index (`<base>.timeindex`): 12-byte entries, `timestamp i64 |
//!   relativeOffset u32`, added when a batch raises the segment's largest
//!   timestamp. Finds where to start scanning for a timestamp.
//!
//! Entries live in memory and are appended to the file on flush, at the
//! position the persisted entries end (never `O_APPEND`), so a failed flush
//! is cut off and retried whole. A file that fails its sanity check (size
//! not a multiple of the entry size, entries out of order, positions past
//! the segment) is rebuilt from the log instead.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::disk::write;

/// An index whose entries are `(key, value)` pairs, sorted by both.
#[derive(Debug)]
struct SparseIndex<K, V> {
    path: PathBuf,
    entries: Vec<(K, V)>,
    /// How many entries are already in the file; `None` when the file no
    /// longer matches the entries (a rewrite failed) and must be rewritten.
    persisted: Option<usize>,
    entry_size: usize,
}

impl<K: Copy + Ord, V: Copy> SparseIndex<K, V> {
    fn new(path: PathBuf, entries: Vec<(K, V)>, persisted: usize, entry_size: usize) -> Self {
        SparseIndex {
            path,
            entries,
            persisted: Some(persisted),
            entry_size,
        }
    }

    /// The last entry whose key is `<= key`.
    fn floor(&self, key: K) -> Option<(K, V)> {
        let idx = self.entries.partition_point(|(k, _)| *k <= key);
        idx.checked_sub(1).map(|i| self.entries[i])
    }

    fn flush(&mut self, encode: impl Fn(&(K, V), &mut Vec<u8>)) -> io::Result<()> {
        let Some(persisted) = self.persisted else {
            return self.rewrite(encode);
        };
        if persisted == self.entries.len() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        for entry in &self.entries[persisted..] {
            encode(entry, &mut bytes);
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)?;
        // Not fsynced: indexes are derived data. Crash recovery rebuilds
        // them from the recovery point on, and a clean shutdown syncs the
        // whole file system before it leaves its marker.
        write::append_at(
            &file,
            &self.path,
            &bytes,
            (persisted * self.entry_size) as u64,
        )?;
        self.persisted = Some(self.entries.len());
        Ok(())
    }

    /// Replaces the file with the in-memory entries (after a rebuild or
    /// truncation). On failure the old file stays and the next flush tries
    /// again.
    fn rewrite(&mut self, encode: impl Fn(&(K, V), &mut Vec<u8>)) -> io::Result<()> {
        let mut bytes = Vec::new();
        for entry in &self.entries {
            encode(entry, &mut bytes);
        }
        self.persisted = None;
        write::write_atomically(&self.path, &bytes)?;
        self.persisted = Some(self.entries.len());
        Ok(())
    }
}

fn read_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match File::open(path) {
        Ok(mut f) => {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)?;
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Offset → file position.
#[derive(Debug)]
pub struct OffsetIndex {
    base_offset: i64,
    inner: SparseIndex<u32, u32>,
}

impl OffsetIndex {
    pub fn empty(path: PathBuf, base_offset: i64) -> Self {
        OffsetIndex {
            base_offset,
            inner: SparseIndex::new(path, Vec::new(), 0, 8),
        }
    }

    /// Loads the file if it passes the sanity check against the segment size;
    /// `None` means it must be rebuilt.
    pub fn load(path: PathBuf, base_offset: i64, segment_size: u64) -> io::Result<Option<Self>> {
        let Some(bytes) = read_file(&path)? else {
            return Ok(None);
        };
        if bytes.len() % 8 != 0 {
            return Ok(None);
        }
        let mut entries: Vec<(u32, u32)> = Vec::with_capacity(bytes.len() / 8);
        for chunk in bytes.chunks_exact(8) {
            let rel = u32::from_be_bytes(chunk[0..4].try_into().expect("4"));
            let pos = u32::from_be_bytes(chunk[4..8].try_into().expect("4"));
            if let Some(&(last_rel, last_pos)) = entries.last() {
                if rel <= last_rel || pos <= last_pos {
                    return Ok(None);
                }
            }
            if pos as u64 >= segment_size {
                return Ok(None);
            }
            entries.push((rel, pos));
        }
        let persisted = entries.len();
        Ok(Some(OffsetIndex {
            base_offset,
            inner: SparseIndex::new(path, entries, persisted, 8),
        }))
    }

    pub fn append(&mut self, offset: i64, position: u64) {
        let rel = (offset - self.base_offset) as u32;
        if let Some(&(last, _)) = self.inner.entries.last() {
            if rel <= last {
                return;
            }
        }
        self.inner.entries.push((rel, position as u32));
    }

    /// The position of the last indexed batch starting at or before `offset`
    /// (0 when none is).
    pub fn lookup(&self, offset: i64) -> u64 {
        if offset < self.base_offset {
            return 0;
        }
        let rel = (offset - self.base_offset).min(u32::MAX as i64) as u32;
        self.inner
            .floor(rel)
            .map(|(_, pos)| pos as u64)
            .unwrap_or(0)
    }

    pub fn len_bytes(&self) -> u64 {
        self.inner.entries.len() as u64 * 8
    }

    /// Drops entries at or past `position` (after the log was truncated there).
    pub fn truncate_to_position(&mut self, position: u64) -> io::Result<()> {
        self.inner
            .entries
            .retain(|&(_, pos)| (pos as u64) < position);
        self.inner.rewrite(encode_offset_entry)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush(encode_offset_entry)
    }

    pub fn rewrite(&mut self) -> io::Result<()> {
        self.inner.rewrite(encode_offset_entry)
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

fn encode_offset_entry(entry: &(u32, u32), out: &mut Vec<u8>) {
    out.extend_from_slice(&entry.0.to_be_bytes());
    out.extend_from_slice(&entry.1.to_be_bytes());
}

/// Timestamp → offset.
#[derive(Debug)]
pub struct TimeIndex {
    base_offset: i64,
    inner: SparseIndex<i64, u32>,
}

impl TimeIndex {
    pub fn empty(path: PathBuf, base_offset: i64) -> Self {
        TimeIndex {
            base_offset,
            inner: SparseIndex::new(path, Vec::new(), 0, 12),
        }
    }

    pub fn load(path: PathBuf, base_offset: i64) -> io::Result<Option<Self>> {
        let Some(bytes) = read_file(&path)? else {
            return Ok(None);
        };
        if bytes.len() % 12 != 0 {
            return Ok(None);
        }
        let mut entries: Vec<(i64, u32)> = Vec::with_capacity(bytes.len() / 12);
        for chunk in bytes.chunks_exact(12) {
            let ts = i64::from_be_bytes(chunk[0..8].try_into().expect("8"));
            let rel = u32::from_be_bytes(chunk[8..12].try_into().expect("4"));
            if let Some(&(last_ts, last_rel)) = entries.last() {
                if ts <= last_ts || rel < last_rel {
                    return Ok(None);
                }
            }
            entries.push((ts, rel));
        }
        let persisted = entries.len();
        Ok(Some(TimeIndex {
            base_offset,
            inner: SparseIndex::new(path, entries, persisted, 12),
        }))
    }

    /// Records that the batch ending at `offset` raised the largest timestamp.
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) {
        if let Some(&(last_ts, _)) = self.inner.entries.last() {
            if timestamp <= last_ts {
                return;
            }
        }
        self.inner
            .entries
            .push((timestamp, (offset - self.base_offset) as u32));
    }

    /// The offset from which to scan for the first record with a timestamp
    /// `>= timestamp`: the entry just before the first one that reaches it.
    pub fn lookup(&self, timestamp: i64) -> i64 {
        let idx = self
            .inner
            .entries
            .partition_point(|(ts, _)| *ts < timestamp);
        match idx.checked_sub(1) {
            Some(i) => self.base_offset + self.inner.entries[i].1 as i64,
            None => self.base_offset,
        }
    }

    pub fn last_entry(&self) -> Option<(i64, i64)> {
        self.inner
            .entries
            .last()
            .map(|&(ts, rel)| (ts, self.base_offset + rel as i64))
    }

    pub fn truncate_to_offset(&mut self, offset: i64) -> io::Result<()> {
        let base = self.base_offset;
        self.inner
            .entries
            .retain(|&(_, rel)| base + (rel as i64) < offset);
        self.inner.rewrite(encode_time_entry)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush(encode_time_entry)
    }

    pub fn rewrite(&mut self) -> io::Result<()> {
        self.inner.rewrite(encode_time_entry)
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

fn encode_time_entry(entry: &(i64, u32), out: &mut Vec<u8>) {
    out.extend_from_slice(&entry.0.to_be_bytes());
    out.extend_from_slice(&entry.1.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.index");
        let mut index = OffsetIndex::empty(path.clone(), 100);
        index.append(100, 0);
        index.append(110, 4096);
        index.append(120, 8192);
        index.flush().unwrap();
        assert_eq!(index.lookup(115), 4096);
        assert_eq!(index.lookup(99), 0);
        let loaded = OffsetIndex::load(path.clone(), 100, 10_000)
            .unwrap()
            .unwrap();
        assert_eq!(loaded.lookup(125), 8192);
        // A position past the segment's end means the index is stale.
        assert!(OffsetIndex::load(path.clone(), 100, 5000)
            .unwrap()
            .is_none());
        std::fs::write(&path, [1, 2, 3]).unwrap();
        assert!(OffsetIndex::load(path, 100, 10_000).unwrap().is_none());
    }

    #[test]
    fn time_index_finds_where_to_scan() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = TimeIndex::empty(dir.path().join("0.timeindex"), 0);
        index.maybe_append(1000, 9);
        index.maybe_append(900, 19); // not larger: ignored
        index.maybe_append(2000, 29);
        assert_eq!(index.lookup(500), 0);
        assert_eq!(index.lookup(1500), 9);
        assert_eq!(index.lookup(2000), 9);
        assert_eq!(index.lookup(3000), 29);
    }
}
