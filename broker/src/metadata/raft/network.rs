//! The transport between metadata-quorum voters, over each voter's
//! controller listener (`controller.listener.names`).
//!
//! One request per frame, answered in order on the same connection:
//!
//! ```text
//! frame = length u32 (big endian) | JSON of PeerRequest / PeerResponse
//! ```
//!
//! Besides openraft's three RPCs (AppendEntries, Vote, InstallSnapshot),
//! a voter that is not the leader forwards metadata changes with `Propose`,
//! so any node may take a controller-bound request. A single node with no
//! voters configured never sends an RPC: it is a quorum of one.

use std::io;
use std::time::Duration;

use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::Raft;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{Node, NodeId, TypeConfig};
use crate::metadata::image::MetadataImage;
use crate::metadata::liveness::Liveness;
use crate::metadata::records::{ApplyOutcome, RecordBatch};

/// Snapshots travel in one frame; the metadata image stays far below this.
const MAX_FRAME: usize = 256 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    /// A metadata change from a voter that is not the leader.
    Propose(RecordBatch),
    /// "Broker N is alive", sent to the active controller.
    BrokerHeartbeat {
        broker_id: i32,
    },
    /// An observer asks for the image once it is newer than `known_index`
    /// (held up to a few seconds while it is not).
    FetchImage {
        known_index: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Propose(Result<Proposed, ProposeFailure>),
    /// Whether the receiver is the active controller and took the heartbeat.
    BrokerHeartbeat {
        accepted: bool,
    },
    /// The receiver's applied index, its view of the leader, and its image
    /// if newer than what the observer knew.
    Image {
        index: u64,
        leader: Option<NodeId>,
        image: Option<MetadataImage>,
    },
}

/// What a voter serves observers from: its applied image and index.
#[derive(Clone)]
pub struct Published {
    pub image: watch::Receiver<std::sync::Arc<MetadataImage>>,
    pub applied: watch::Receiver<u64>,
}

/// A forwarded change once committed: its outcome and its log index, so
/// the forwarding node can wait until it has applied it too.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proposed {
    pub outcome: ApplyOutcome,
    pub log_index: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeFailure {
    #[error("the receiving voter is not the leader")]
    NotLeader,
    #[error("{0}")]
    Failed(String),
}

async fn write_frame<T: Serialize>(stream: &mut TcpStream, message: &T) -> io::Result<()> {
    let body = serde_json::to_vec(message).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await
}

async fn read_frame<T: for<'de> Deserialize<'de>>(stream: &mut TcpStream) -> io::Result<T> {
    let len = stream.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("quorum frame of {len} bytes exceeds {MAX_FRAME}"),
        ));
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Serves peers on the controller listener until shutdown.
pub async fn serve(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    liveness: std::sync::Arc<Liveness>,
    published: Published,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (mut stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "controller listener accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let raft = raft.clone();
        let liveness = liveness.clone();
        let published = published.clone();
        tokio::spawn(async move {
            loop {
                let request: PeerRequest = match read_frame(&mut stream).await {
                    Ok(request) => request,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "closing quorum connection");
                        break;
                    }
                };
                let response = answer(&raft, &liveness, &published, request).await;
                if write_frame(&mut stream, &response).await.is_err() {
                    break;
                }
            }
        });
    }
}

async fn answer(
    raft: &Raft<TypeConfig>,
    liveness: &Liveness,
    published: &Published,
    request: PeerRequest,
) -> PeerResponse {
    match request {
        PeerRequest::FetchImage { known_index } => {
            let mut applied = published.applied.clone();
            let _ = tokio::time::timeout(
                super::observer::LONG_POLL,
                applied.wait_for(|i| *i > known_index),
            )
            .await;
            // The index first: the state machine publishes the image before
            // the index, so the image read next is at least this new.
            let index = *published.applied.borrow();
            let image = (index > known_index).then(|| (**published.image.borrow()).clone());
            PeerResponse::Image {
                index,
                leader: raft.metrics().borrow().current_leader,
                image,
            }
        }
        PeerRequest::BrokerHeartbeat { broker_id } => {
            let metrics = raft.metrics().borrow().clone();
            let accepted = metrics.current_leader == Some(metrics.id);
            if accepted {
                liveness.heard_from(broker_id, std::time::Instant::now());
            }
            PeerResponse::BrokerHeartbeat { accepted }
        }
        PeerRequest::AppendEntries(rpc) => {
            PeerResponse::AppendEntries(raft.append_entries(rpc).await)
        }
        PeerRequest::InstallSnapshot(rpc) => {
            PeerResponse::InstallSnapshot(raft.install_snapshot(rpc).await)
        }
        PeerRequest::Vote(rpc) => PeerResponse::Vote(raft.vote(rpc).await),
        PeerRequest::Propose(batch) => {
            PeerResponse::Propose(match raft.client_write(batch).await {
                Ok(written) => Ok(Proposed {
                    outcome: written.data,
                    log_index: written.log_id.index,
                }),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    Err(ProposeFailure::NotLeader)
                }
                Err(e) => Err(ProposeFailure::Failed(e.to_string())),
            })
        }
    }
}

/// Sends one request to `addr` on a fresh connection (forwarded proposals
/// are rare; Raft traffic uses the long-lived [`PeerClient`] connections).
pub async fn call_once(
    addr: &str,
    request: &PeerRequest,
    timeout: Duration,
) -> io::Result<PeerResponse> {
    tokio::time::timeout(timeout, async {
        let mut stream = crate::util::connect_to_peer(addr).await?;
        let _ = stream.set_nodelay(true);
        write_frame(&mut stream, request).await?;
        read_frame(&mut stream).await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("{addr} did not answer")))?
}

#[derive(Clone, Default)]
pub struct Network;

/// The connection to one peer, reopened after any failure.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    conn: Option<TcpStream>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        PeerClient {
            target,
            addr: node.addr.clone(),
            conn: None,
        }
    }
}

/// Why one RPC did not get an answer.
enum CallError {
    /// No connection could be made: openraft backs off before retrying.
    Unreachable(io::Error),
    Network(io::Error),
}

impl PeerClient {
    async fn call(
        &mut self,
        request: &PeerRequest,
        ttl: Duration,
    ) -> Result<PeerResponse, CallError> {
        if self.conn.is_none() {
            let connected =
                tokio::time::timeout(CONNECT_TIMEOUT, crate::util::connect_to_peer(&self.addr))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
                    .and_then(|r| r)
                    .map_err(CallError::Unreachable)?;
            let _ = connected.set_nodelay(true);
            self.conn = Some(connected);
        }
        let stream = self.conn.as_mut().expect("connected above");
        let exchange = async {
            write_frame(stream, request).await?;
            read_frame::<PeerResponse>(stream).await
        };
        let result = match tokio::time::timeout(ttl, exchange).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time")),
        };
        result.map_err(|e| {
            // The stream may hold half a frame: start over next time.
            self.conn = None;
            CallError::Network(e)
        })
    }

    fn rpc_error<E: std::error::Error>(&self, error: CallError) -> RPCError<NodeId, Node, E> {
        match error {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }

    fn unexpected<E: std::error::Error>(&self) -> RPCError<NodeId, Node, E> {
        let e = io::Error::new(io::ErrorKind::InvalidData, "mismatched quorum response");
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        match self
            .call(&PeerRequest::AppendEntries(rpc), option.hard_ttl())
            .await
        {
            Ok(PeerResponse::AppendEntries(Ok(r))) => Ok(r),
            Ok(PeerResponse::AppendEntries(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.unexpected()),
            Err(e) => Err(self.rpc_error(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .call(&PeerRequest::InstallSnapshot(rpc), option.hard_ttl())
            .await
        {
            Ok(PeerResponse::InstallSnapshot(Ok(r))) => Ok(r),
            Ok(PeerResponse::InstallSnapshot(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.unexpected()),
            Err(e) => Err(self.rpc_error(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        match self.call(&PeerRequest::Vote(rpc), option.hard_ttl()).await {
            Ok(PeerResponse::Vote(Ok(r))) => Ok(r),
            Ok(PeerResponse::Vote(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.unexpected()),
            Err(e) => Err(self.rpc_error(e)),
        }
    }
}
