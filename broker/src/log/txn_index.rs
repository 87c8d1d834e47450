//! A segment's aborted-transaction index, `<base>.txnindex`, in Kafka's
//! format: one 34-byte entry per transaction whose ABORT marker is in the
//! segment: `version i16 = 0 | producer id i64 | first offset i64 |
//! last offset i64 (the marker's) | last stable offset i64` (the LSO when
//! the marker was written). A `read_committed` fetch is told the aborted
//! transactions that overlap what it reads, so the consumer drops their
//! records (KIP-98).
//!
//! The entries are kept in memory (a segment rarely holds many) and the
//! file is rewritten when a flush finds them changed. It is a derived
//! file: after an unclean shutdown the log rebuilds every segment's index
//! from the markers in the log.

use std::io;
use std::path::{Path, PathBuf};

use crate::disk::write;
use crate::util::remove_if_exists;

const ENTRY_SIZE: usize = 34;
const VERSION: i16 = 0;

/// One aborted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of its ABORT marker.
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

#[derive(Debug)]
pub struct TxnIndex {
    path: PathBuf,
    entries: Vec<AbortedTxn>,
    dirty: bool,
}

impl TxnIndex {
    pub fn empty(path: PathBuf) -> TxnIndex {
        TxnIndex {
            path,
            entries: Vec::new(),
            dirty: false,
        }
    }

    /// Loads the file at `path` (none: no aborted transactions). A torn
    /// last entry is dropped.
    pub fn load(path: PathBuf) -> io::Result<TxnIndex> {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let entries = bytes
            .chunks_exact(ENTRY_SIZE)
            .filter(|e| i16::from_be_bytes([e[0], e[1]]) == VERSION)
            .map(|e| {
                let field = |at: usize| i64::from_be_bytes(e[at..at + 8].try_into().expect("8"));
                AbortedTxn {
                    producer_id: field(2),
                    first_offset: field(10),
                    last_offset: field(18),
                    last_stable_offset: field(26),
                }
            })
            .collect();
        Ok(TxnIndex {
            path,
            entries,
            dirty: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    pub fn append(&mut self, entry: AbortedTxn) {
        self.entries.push(entry);
        self.dirty = true;
    }

    /// Replaces every entry (a rebuild from the log, or the cleaner's
    /// output taking its sources' entries).
    pub fn replace(&mut self, entries: Vec<AbortedTxn>) {
        if entries != self.entries {
            self.entries = entries;
            self.dirty = true;
        }
    }

    /// Drops the transactions whose marker is at or after `offset`.
    pub fn truncate_to(&mut self, offset: i64) {
        let before = self.entries.len();
        self.entries.retain(|e| e.last_offset < offset);
        self.dirty |= self.entries.len() != before;
    }

    /// Writes the file if the entries changed since the last write.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.dirty {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Writes the file (atomically); with no entries there is none.
    pub fn rewrite(&mut self) -> io::Result<()> {
        if self.entries.is_empty() {
            remove_if_exists(&self.path)?;
        } else {
            let mut bytes = Vec::with_capacity(self.entries.len() * ENTRY_SIZE);
            for e in &self.entries {
                bytes.extend_from_slice(&VERSION.to_be_bytes());
                for field in [
                    e.producer_id,
                    e.first_offset,
                    e.last_offset,
                    e.last_stable_offset,
                ] {
                    bytes.extend_from_slice(&field.to_be_bytes());
                }
            }
            write::write_atomically(&self.path, &bytes)?;
        }
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: first,
        }
    }

    #[test]
    fn entries_round_trip_in_kafkas_34_byte_format_and_truncate_by_marker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut index = TxnIndex::empty(path.clone());
        index.append(entry(7, 3, 10));
        index.append(entry(8, 5, 20));
        index.flush().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 68);
        let loaded = TxnIndex::load(path.clone()).unwrap();
        assert_eq!(loaded.entries(), &[entry(7, 3, 10), entry(8, 5, 20)]);

        let mut loaded = loaded;
        loaded.truncate_to(20);
        loaded.flush().unwrap();
        assert_eq!(
            TxnIndex::load(path.clone()).unwrap().entries(),
            &[entry(7, 3, 10)]
        );
        loaded.truncate_to(0);
        loaded.flush().unwrap();
        assert!(!path.exists(), "an empty index has no file");
    }
}
