//! The metadata quorum: a Raft group (openraft) that replicates the
//! metadata log among the voters of `controller.quorum.voters`. A single
//! node without voters configured is a one-voter quorum that elects itself,
//! so the embedded default runs the same code path as a cluster.

mod log_store;
mod network;
mod observer;
mod state_machine;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;

use network::{PeerRequest, PeerResponse, ProposeFailure};

use super::image::MetadataImage;
use super::liveness::Liveness;
use super::records::{ApplyOutcome, MetadataRecord, RecordBatch};

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

/// How long a metadata change may wait for a leader and its commit.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running member of the metadata quorum: a voter (running Raft), or an
/// observer that follows the voters' image.
pub struct MetadataQuorum {
    /// `None` on an observer.
    raft: Option<Raft<TypeConfig>>,
    observer: Option<Arc<observer::Observer>>,
    liveness: Arc<Liveness>,
    node_id: NodeId,
    image: watch::Receiver<Arc<MetadataImage>>,
    applied_index: watch::Receiver<u64>,
}

impl MetadataQuorum {
    /// Opens the metadata log in `dir` and starts Raft with `voters`
    /// (node id → controller address; empty: a quorum of this node alone,
    /// at `address`). Peers are served on `controller_listener` until
    /// `shutdown`. On a fresh cluster the lowest voter initializes the
    /// quorum with the voter set.
    pub async fn start(
        dir: &Path,
        node_id: NodeId,
        address: String,
        voters: BTreeMap<NodeId, String>,
        controller_listener: Option<TcpListener>,
        shutdown: watch::Receiver<bool>,
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
        let liveness = Arc::new(Liveness::default());
        if let Some(listener) = controller_listener {
            let published = network::Published {
                image: image.clone(),
                applied: applied_index.clone(),
            };
            tokio::spawn(network::serve(
                listener,
                raft.clone(),
                liveness.clone(),
                published,
                shutdown,
            ));
        }
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        // Only the lowest voter writes the initial membership; the others
        // learn it from the first leader. (Initializing every voter with the
        // same set is allowed by openraft, but a test run with it hit an
        // openraft debug assertion while the quorum formed.)
        let initializer = voters.keys().next().is_none_or(|first| *first == node_id);
        if !initialized && initializer {
            let members: BTreeMap<NodeId, BasicNode> = if voters.is_empty() {
                BTreeMap::from([(node_id, BasicNode { addr: address })])
            } else {
                voters
                    .into_iter()
                    .map(|(id, addr)| (id, BasicNode { addr }))
                    .collect()
            };
            match raft.initialize(members).await {
                Ok(()) => {}
                // Another voter, initialized with the same set, already
                // asked for this node's vote: the quorum is forming anyway.
                Err(openraft::error::RaftError::APIError(
                    openraft::error::InitializeError::NotAllowed(e),
                )) => tracing::debug!(reason = %e, "quorum already forming"),
                Err(e) => return Err(QuorumError::Raft(e.to_string())),
            }
        }
        Ok(MetadataQuorum {
            raft: Some(raft),
            observer: None,
            liveness,
            node_id,
            image,
            applied_index,
        })
    }

    /// Follows the metadata of `voters` (node id → controller address)
    /// without voting: a broker-only node.
    pub async fn start_observer(
        node_id: NodeId,
        voters: BTreeMap<NodeId, String>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<MetadataQuorum, QuorumError> {
        let (publish, image) = watch::channel(Arc::new(MetadataImage::default()));
        let (applied_tx, applied_index) = watch::channel(0);
        let observer = observer::Observer::new(voters.into_iter().collect());
        tokio::spawn(observer.clone().follow(publish, applied_tx, shutdown));
        Ok(MetadataQuorum {
            raft: None,
            observer: Some(observer),
            liveness: Arc::new(Liveness::default()),
            node_id,
            image,
            applied_index,
        })
    }

    /// Waits until a leader is elected and, on the leader, until everything
    /// committed before now is applied here, so the image it serves is
    /// current. A restarted node may briefly believe it still leads; it
    /// waits out the election that follows.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), QuorumError> {
        let Some(raft) = &self.raft else {
            return self.wait_observer_ready(timeout).await;
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            raft.wait(Some(left))
                .metrics(|m| m.current_leader.is_some(), "leader elected")
                .await
                .map_err(|e| QuorumError::Raft(e.to_string()))?;
            if !self.is_active_controller() {
                return Ok(());
            }
            match raft.ensure_linearizable().await {
                Ok(_) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(QuorumError::Raft(e.to_string()))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "leadership not confirmed yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// An observer is ready once it holds an image and knows the controller.
    async fn wait_observer_ready(&self, timeout: Duration) -> Result<(), QuorumError> {
        let observer = self.observer.as_ref().expect("an observer");
        let mut applied = self.applied_index.clone();
        let mut leader = observer.leader_changes();
        let ready = async {
            let _ = applied.wait_for(|i| *i > 0).await;
            let _ = leader.wait_for(|l| l.is_some()).await;
        };
        tokio::time::timeout(timeout, ready)
            .await
            .map_err(|_| QuorumError::Raft("no voter answered with the metadata".into()))
    }

    pub fn is_active_controller(&self) -> bool {
        let Some(raft) = &self.raft else {
            return false;
        };
        let metrics = raft.metrics().borrow().clone();
        metrics.state == ServerState::Leader && metrics.current_leader == Some(self.node_id)
    }

    pub fn active_controller(&self) -> Option<NodeId> {
        match (&self.raft, &self.observer) {
            (Some(raft), _) => raft.metrics().borrow().current_leader,
            (None, Some(observer)) => observer.leader(),
            (None, None) => None,
        }
    }

    /// The controller address of the active controller, as far as known.
    fn controller_address(&self) -> Option<String> {
        match (&self.raft, &self.observer) {
            (Some(raft), _) => {
                let metrics = raft.metrics().borrow().clone();
                let leader = metrics.current_leader?;
                metrics
                    .membership_config
                    .membership()
                    .get_node(&leader)
                    .map(|n| n.addr.clone())
            }
            (None, Some(observer)) => observer.address_of(observer.leader()?).map(String::from),
            (None, None) => None,
        }
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
    /// On a voter that is not the leader the batch is forwarded to the
    /// leader, retrying while an election is under way.
    pub async fn propose(&self, batch: RecordBatch) -> Result<ApplyOutcome, QuorumError> {
        let deadline = tokio::time::Instant::now() + PROPOSE_TIMEOUT;
        loop {
            let written = match &self.raft {
                Some(raft) => raft.client_write(batch.clone()).await,
                // An observer always forwards to the controller.
                None => Err(openraft::error::RaftError::APIError(
                    openraft::error::ClientWriteError::ForwardToLeader(
                        openraft::error::ForwardToLeader::empty(),
                    ),
                )),
            };
            let outcome = match written {
                Ok(response) => Ok(response.data),
                Err(openraft::error::RaftError::APIError(
                    openraft::error::ClientWriteError::ForwardToLeader(forward),
                )) => match forward
                    .leader_node
                    .map(|n| n.addr)
                    .or_else(|| self.controller_address())
                {
                    Some(addr) => self.forward(&addr, &batch).await,
                    None => Err(QuorumError::NotController),
                },
                Err(e) => Err(QuorumError::Raft(e.to_string())),
            };
            match outcome {
                Ok(outcome) => {
                    return match outcome.error {
                        Some(error) => Err(QuorumError::Rejected(error)),
                        None => Ok(outcome),
                    }
                }
                Err(QuorumError::NotController) if tokio::time::Instant::now() < deadline => {
                    // No leader yet, or it just changed: try again shortly.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends a batch to the leader at `addr` and waits until this node has
    /// applied it, so what the caller reads next includes the change.
    async fn forward(&self, addr: &str, batch: &RecordBatch) -> Result<ApplyOutcome, QuorumError> {
        let request = PeerRequest::Propose(batch.clone());
        let proposed = match network::call_once(addr, &request, PROPOSE_TIMEOUT).await {
            Ok(PeerResponse::Propose(Ok(proposed))) => proposed,
            // Not the leader, or not reachable at all: nothing was proposed,
            // so trying again cannot apply the change twice.
            Ok(PeerResponse::Propose(Err(ProposeFailure::NotLeader))) => {
                return Err(QuorumError::NotController)
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(QuorumError::NotController)
            }
            // Lost mid-way: the change may or may not be committed.
            Err(e) => {
                return Err(QuorumError::Raft(format!(
                    "the controller at {addr} did not answer ({e}); the change may or may not have been applied"
                )))
            }
            Ok(PeerResponse::Propose(Err(ProposeFailure::Failed(e)))) => {
                return Err(QuorumError::Raft(e))
            }
            Ok(_) => return Err(QuorumError::Raft("mismatched quorum response".into())),
        };
        let mut applied = self.applied_index.clone();
        tokio::time::timeout(
            PROPOSE_TIMEOUT,
            applied.wait_for(|i| *i >= proposed.log_index),
        )
        .await
        .map_err(|_| {
            QuorumError::Raft("the change was committed but not applied here in time".into())
        })?
        .map_err(|_| QuorumError::Raft("the metadata quorum stopped".into()))?;
        Ok(proposed.outcome)
    }

    /// Tells the active controller that `broker_id` is alive (locally when
    /// this node is the controller).
    pub async fn send_heartbeat(&self, broker_id: i32) {
        if self.is_active_controller() {
            self.liveness
                .heard_from(broker_id, std::time::Instant::now());
            return;
        }
        let Some(addr) = self.controller_address() else {
            return;
        };
        let request = PeerRequest::BrokerHeartbeat { broker_id };
        if let Err(e) = network::call_once(&addr, &request, Duration::from_secs(2)).await {
            tracing::debug!(controller = addr, error = %e, "heartbeat not delivered");
        }
    }

    /// On the active controller: fences brokers whose session expired and
    /// unfences those heard from again, through the metadata log.
    pub async fn apply_liveness(&self, session_timeout: Duration) {
        let image = self.image();
        let changes = self.liveness.changes_due(
            &image,
            self.is_active_controller(),
            session_timeout,
            std::time::Instant::now(),
        );
        for change in changes {
            let what = match &change {
                MetadataRecord::FenceBroker { broker_id } => {
                    format!("fencing broker {broker_id}: no heartbeat within the session timeout")
                }
                MetadataRecord::UnfenceBroker { broker_id } => {
                    format!("unfencing broker {broker_id}: heartbeats resumed")
                }
                _ => String::new(),
            };
            match self.propose(RecordBatch(vec![change])).await {
                Ok(_) => tracing::warn!("{what}"),
                Err(e) => tracing::warn!(error = %e, "{what} failed"),
            }
        }
    }

    pub async fn shutdown(&self) {
        let Some(raft) = &self.raft else {
            return;
        };
        if let Err(e) = raft.shutdown().await {
            tracing::warn!(error = %e, "metadata quorum did not shut down cleanly");
        }
    }
}
