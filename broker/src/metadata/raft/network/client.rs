//! The caller's side: long-lived connections for openraft's RPCs, and a
//! one-off call for the rarer requests.

use std::io;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tokio::net::TcpStream;

use super::super::{Node, NodeId, TypeConfig};
use super::frame::{read_frame, write_frame};
use super::messages::{PeerRequest, PeerResponse};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

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
