//! Cluster metadata: the records of the metadata log, the image they build,
//! the Raft quorum that replicates them, and the controller that turns
//! admin requests into records.

pub mod controller;
pub mod image;
pub mod raft;
pub mod records;

pub use image::{MetadataImage, TopicImage};
pub use raft::{MetadataQuorum, QuorumError};
