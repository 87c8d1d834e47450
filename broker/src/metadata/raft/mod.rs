//! The metadata quorum: a Raft group (openraft) that replicates the
//! metadata log. A single node is a one-voter quorum that elects itself, so
//! the embedded default runs the same code path as a cluster.

mod log_store;
mod network;
mod state_machine;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use tokio::sync::watch;

use super::image::MetadataImage;
use super::records::{ApplyOutcome, RecordBatch};

pub type NodeId = u64;
pub type Node = BasicNode;

openraft::declare_raft_types!(
    /// Types of the metadata quorum.
    pub TypeConfig:
        D = RecordBatch,
        R = ApplyOutcome,
);

#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("metadata storage error: {0}")]
    Storage(#[from] std::io::Error),
    #[error("metadata quorum error: {0}")]
    Raft(String),
    #[error("this node is not the active controller")]
    NotController,
    #[error("metadata change rejected: {0}")]
    Rejected(String),
}

/// A running member of the metadata quorum.
pub struct MetadataQuorum {
    raft: Raft<TypeConfig>,
    node_id: NodeId,
    image: watch::Receiver<Arc<MetadataImage>>,
    applied_index: watch::Receiver<u64>,
}

impl MetadataQuorum {
    /// Opens the metadata log in `dir` and starts Raft. A fresh directory is
    /// initialized as a one-voter quorum of this node.
    pub async fn start(
        dir: &Path,
        node_id: NodeId,
        address: String,
    ) -> Result<MetadataQuorum, QuorumError> {
        let config = Config {
            cluster_name: "tideline-metadata".into(),
            heartbeat_interval: 100,
            election_timeout_min: 300,
            election_timeout_max: 600,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(1000),
            max_in_snapshot_log_to_keep: 100,
            ..Default::default()
        }
        .validate()
        .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let (publish, image) = watch::channel(Arc::new(MetadataImage::default()));
        let (applied_tx, applied_index) = watch::channel(0);
        let log_store = log_store::LogStore::open(dir)?;
        let state_machine = state_machine::StateMachine::open(dir, publish, applied_tx)?;
        let raft = Raft::new(
            node_id,
            Arc::new(config),
            network::Network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        if !initialized {
            let members = BTreeMap::from([(node_id, BasicNode { addr: address })]);
            raft.initialize(members)
                .await
                .map_err(|e| QuorumError::Raft(e.to_string()))?;
        }
        Ok(MetadataQuorum {
            raft,
            node_id,
            image,
            applied_index,
        })
    }

    /// Waits until a leader is elected and this node has applied everything
    /// committed before now, so the image it serves is current.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), QuorumError> {
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "leader elected")
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        if self.is_active_controller() {
            self.raft
                .ensure_linearizable()
                .await
                .map_err(|e| QuorumError::Raft(e.to_string()))?;
        }
        Ok(())
    }

    pub fn is_active_controller(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        metrics.state == ServerState::Leader && metrics.current_leader == Some(self.node_id)
    }

    pub fn active_controller(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// The latest applied image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// Fires whenever a new image is applied.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    pub fn applied_index(&self) -> u64 {
        *self.applied_index.borrow()
    }

    /// Replicates a batch of records and returns once it is committed and
    /// applied here; a batch the image rejects comes back as `Rejected`.
    pub async fn propose(&self, batch: RecordBatch) -> Result<ApplyOutcome, QuorumError> {
        match self.raft.client_write(batch).await {
            Ok(response) => match response.data.error {
                Some(error) => Err(QuorumError::Rejected(error)),
                None => Ok(response.data),
            },
            Err(openraft::error::RaftError::APIError(
                openraft::error::ClientWriteError::ForwardToLeader(_),
            )) => Err(QuorumError::NotController),
            Err(e) => Err(QuorumError::Raft(e.to_string())),
        }
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "metadata quorum did not shut down cleanly");
        }
    }
}
