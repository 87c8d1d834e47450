//! Durable storage of the Raft log for the metadata quorum.
//!
//! Files in the metadata directory:
//! * `raft.log` — entries back to back, each `length u32 | crc32c u32 |
//!   JSON entry`. A torn or corrupt tail (a crash mid-append) is cut off at
//!   start-up; an entry is reported durable only after fsync. Appends are
//!   written at the file's last good length and a failed one is cut off
//!   (see `disk::write`), so entries never follow unaccounted bytes.
//! * `raft-state.json` — the vote, the committed log id and the last purged
//!   log id, replaced atomically.
//!
//! Entries are also kept in memory: the metadata log is small because
//! snapshots let it be purged.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogId, StorageError, StorageIOError,
    Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::{NodeId, TypeConfig};
use crate::disk::write::{self, write_atomically};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct RaftState {
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
}

struct Inner {
    dir: PathBuf,
    file: File,
    /// The length of `raft.log` that holds whole, durable entries.
    len: u64,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    state: RaftState,
}

/// The log store; clones share the same log (one is the reader).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, openraft::AnyError::new(&e)).into()
}

fn encode(entry: &Entry<TypeConfig>) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(entry).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&json).to_be_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

impl LogStore {
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("raft.log");
        let mut bytes = Vec::new();
        if path.exists() {
            File::open(&path)?.read_to_end(&mut bytes)?;
        }
        let mut entries = BTreeMap::new();
        let mut pos = 0usize;
        while pos + 8 <= bytes.len() {
            let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4")) as usize;
            let crc = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().expect("4"));
            let Some(json) = bytes.get(pos + 8..pos + 8 + len) else {
                break;
            };
            if crc32c::crc32c(json) != crc {
                break;
            }
            let Ok(entry) = serde_json::from_slice::<Entry<TypeConfig>>(json) else {
                break;
            };
            entries.insert(entry.log_id.index, entry);
            pos += 8 + len;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        if pos < bytes.len() {
            tracing::warn!(
                truncated_bytes = bytes.len() - pos,
                "metadata log had a torn tail; truncated"
            );
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        let state = std::fs::read(dir.join("raft-state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                file,
                len: pos as u64,
                entries,
                state,
            })),
        })
    }
}

impl Inner {
    fn save_state(&self) -> io::Result<()> {
        let json = serde_json::to_vec(&self.state).map_err(io::Error::other)?;
        write_atomically(&self.dir.join("raft-state.json"), &json)
    }

    /// Writes and fsyncs `entries` at the end of `raft.log`; only then are
    /// they part of the log. A failed write leaves file and memory as they were.
    fn append(&mut self, entries: Vec<Entry<TypeConfig>>) -> io::Result<()> {
        let mut bytes = Vec::new();
        for entry in &entries {
            bytes.extend_from_slice(&encode(entry)?);
        }
        let path = self.dir.join("raft.log");
        write::append_at(&self.file, &path, &bytes, self.len)?;
        if let Err(e) = write::sync_data(&self.file, &path) {
            // Not durable, so not appended: the next append goes here.
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += bytes.len() as u64;
        for entry in entries {
            self.entries.insert(entry.log_id.index, entry);
        }
        Ok(())
    }

    /// Replaces `raft.log` with the in-memory entries (after truncate or purge).
    fn rewrite(&mut self) -> io::Result<()> {
        let mut bytes = Vec::new();
        for entry in self.entries.values() {
            bytes.extend_from_slice(&encode(entry)?);
        }
        let path = self.dir.join("raft.log");
        write_atomically(&path, &bytes)?;
        self.file = OpenOptions::new().read(true).write(true).open(&path)?;
        self.len = bytes.len() as u64;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.inner.lock().await;
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.inner.lock().await;
        let last_purged = inner.state.last_purged;
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| *e.get_log_id())
            .or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.state.vote = Some(*vote);
        inner
            .save_state()
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().await.state.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.state.committed = committed;
        inner
            .save_state()
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().await.state.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.inner.lock().await;
        match inner.append(entries.into_iter().collect()) {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = io_err(
                    ErrorSubject::Logs,
                    ErrorVerb::Write,
                    io::Error::new(e.kind(), e.to_string()),
                );
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.entries.retain(|&index, _| index < log_id.index);
        inner
            .rewrite()
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.state.last_purged = Some(log_id);
        inner
            .save_state()
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        inner.entries.retain(|&index, _| index > log_id.index);
        inner
            .rewrite()
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::write::faults;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn blank(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    async fn indexes(store: &LogStore) -> Vec<u64> {
        store.inner.lock().await.entries.keys().copied().collect()
    }

    #[tokio::test]
    async fn a_failed_append_leaves_the_log_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.log");
        let store = LogStore::open(dir.path()).unwrap();
        store.inner.lock().await.append(vec![blank(1)]).unwrap();
        let good = std::fs::read(&path).unwrap();

        faults::fail_write("raft.log", 5, libc::ENOSPC);
        assert!(store.inner.lock().await.append(vec![blank(2)]).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), good, "short write cut off");
        faults::fail_sync("raft.log", libc::EIO);
        assert!(store.inner.lock().await.append(vec![blank(2)]).is_err());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            good,
            "unsynced write cut off"
        );
        assert_eq!(indexes(&store).await, vec![1]);

        store
            .inner
            .lock()
            .await
            .append(vec![blank(2), blank(3)])
            .unwrap();
        drop(store);
        let reopened = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&reopened).await, vec![1, 2, 3]);
    }
}
