//! The Raft state machine: applies committed metadata batches to the
//! [`MetadataImage`] and publishes each new image to the broker.
//!
//! Snapshots are the serialized image (`snapshot.json`, replaced
//! atomically); on start-up the last snapshot is loaded and Raft re-applies
//! the committed entries after it.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Node, NodeId, TypeConfig};
use crate::disk::write::write_atomically;
use crate::metadata::image::MetadataImage;
use crate::metadata::records::ApplyOutcome;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StoredSnapshot {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    snapshot_id: String,
    image: MetadataImage,
}

pub struct StateMachine {
    dir: PathBuf,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    image: Arc<MetadataImage>,
    publish: watch::Sender<Arc<MetadataImage>>,
    /// The offset of the last applied entry, for `/metrics`.
    applied_index: watch::Sender<u64>,
}

fn io_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::new(
        ErrorSubject::StateMachine,
        verb,
        openraft::AnyError::new(&e),
    )
    .into()
}

impl StateMachine {
    pub fn open(
        dir: &Path,
        publish: watch::Sender<Arc<MetadataImage>>,
        applied_index: watch::Sender<u64>,
    ) -> io::Result<StateMachine> {
        let stored: StoredSnapshot = match std::fs::read(dir.join("snapshot.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => StoredSnapshot::default(),
            Err(e) => return Err(e),
        };
        let image = Arc::new(stored.image);
        publish.send_replace(image.clone());
        applied_index.send_replace(stored.last_applied.map_or(0, |l| l.index));
        Ok(StateMachine {
            dir: dir.to_path_buf(),
            last_applied: stored.last_applied,
            membership: stored.membership,
            image,
            publish,
            applied_index,
        })
    }

    fn snapshot_path(&self) -> PathBuf {
        self.dir.join("snapshot.json")
    }

    fn stored(&self) -> StoredSnapshot {
        StoredSnapshot {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            snapshot_id: self
                .last_applied
                .map(|l| format!("{}-{}", l.leader_id, l.index))
                .unwrap_or_else(|| "empty".into()),
            image: (*self.image).clone(),
        }
    }
}

/// Builds a snapshot from a copy of the state taken when building starts.
pub struct SnapshotBuilder {
    path: PathBuf,
    stored: StoredSnapshot,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let bytes = serde_json::to_vec(&self.stored).map_err(|e| io_err(ErrorVerb::Write, e))?;
        write_atomically(&self.path, &bytes).map_err(|e| io_err(ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta: SnapshotMeta {
                last_log_id: self.stored.last_applied,
                last_membership: self.stored.membership.clone(),
                snapshot_id: self.stored.snapshot_id.clone(),
            },
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), StorageError<NodeId>> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyOutcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut outcomes = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => outcomes.push(ApplyOutcome::default()),
                EntryPayload::Normal(batch) => {
                    let outcome = Arc::make_mut(&mut self.image).apply(&batch);
                    if let Some(error) = &outcome.error {
                        tracing::info!(%error, "metadata batch rejected at apply");
                    }
                    outcomes.push(outcome);
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                    outcomes.push(ApplyOutcome::default());
                }
            }
        }
        self.publish.send_replace(self.image.clone());
        if let Some(last) = self.last_applied {
            self.applied_index.send_replace(last.index);
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            path: self.snapshot_path(),
            stored: self.stored(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let stored: StoredSnapshot =
            serde_json::from_slice(&bytes).map_err(|e| io_err(ErrorVerb::Read, e))?;
        write_atomically(&self.snapshot_path(), &bytes).map_err(|e| io_err(ErrorVerb::Write, e))?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.image = Arc::new(stored.image);
        self.publish.send_replace(self.image.clone());
        if let Some(last) = meta.last_log_id {
            self.applied_index.send_replace(last.index);
        }
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let bytes = match std::fs::read(self.snapshot_path()) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(ErrorVerb::Read, e)),
        };
        let stored: StoredSnapshot =
            serde_json::from_slice(&bytes).map_err(|e| io_err(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta: SnapshotMeta {
                last_log_id: stored.last_applied,
                last_membership: stored.membership,
                snapshot_id: stored.snapshot_id,
            },
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
