//! The requests voters, brokers and observers send each other.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::super::{NodeId, TypeConfig};
use crate::metadata::image::MetadataImage;
use crate::metadata::records::{ApplyOutcome, RecordBatch};

/// How long a voter holds a `FetchImage` while it has nothing newer.
pub const FETCH_IMAGE_LONG_POLL: Duration = Duration::from_secs(5);

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
