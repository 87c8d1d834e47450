//! Cluster metadata: the records of the metadata log, the image they build,
//! the Raft quorum that replicates them, the controller that turns admin
//! requests into records, and broker liveness (heartbeats and fencing).

pub mod controller;
pub mod elections;
pub mod image;
pub mod liveness;
pub mod placement;
pub mod raft;
pub mod reassignment;
pub mod records;

pub use image::{MetadataImage, TopicImage};
pub use raft::{MetadataQuorum, QuorumError};
