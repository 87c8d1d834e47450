//! Replication: Kafka's ISR model.
//!
//! Every partition has a leader and followers (from the metadata image).
//! Followers fetch from the leader with the Fetch API (`fetcher`), naming
//! themselves by replica id, and append what they get unchanged. The leader
//! learns each follower's log end from its fetch offset and advances the
//! high watermark to the smallest log end in the ISR; consumers read below
//! it and `acks=all` produces wait for it (`manager`). A follower that has
//! not caught up for `replica.lag.time.max.ms` leaves the ISR, and one that
//! catches up rejoins, each change applied through the controller
//! (AlterPartition semantics: a `ChangePartition` metadata record that only
//! applies at the partition epoch it was computed from). After a leader
//! change a follower asks the new leader where its last epoch ended
//! (OffsetsForLeaderEpoch) and truncates what it wrote past that point.

pub mod fetcher;
pub mod manager;
pub mod throttle;

pub use crate::partition::{FollowerProgress, ReplicaState};
pub use manager::ReplicaManager;
