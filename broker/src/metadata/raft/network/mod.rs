//! The transport between metadata-quorum voters, over each voter's
//! controller listener (`controller.listener.names`).
//!
//! One request per frame, answered in order on the same connection
//! (`frame`). The messages are openraft's own serde types plus a few of
//! ours (`messages`), not Kafka schemas: Kafka's KRaft RPCs (Vote,
//! BeginQuorumEpoch, Fetch of the metadata log) describe a different
//! consensus protocol than openraft's, so this transport keeps its own
//! framing rather than the Kafka framing of `tideline-protocol`.
//!
//! Besides openraft's three RPCs (AppendEntries, Vote, InstallSnapshot),
//! a voter that is not the leader forwards metadata changes with `Propose`,
//! so any node may take a controller-bound request. A single node with no
//! voters configured never sends an RPC: it is a quorum of one.

mod client;
mod frame;
mod messages;
mod server;

pub use client::{call_once, Network};
pub use messages::{PeerRequest, PeerResponse, ProposeFailure, FETCH_IMAGE_LONG_POLL};
pub use server::{serve, Published};
