//! Tideline broker: a Kafka-compatible streaming server.
//!
//! Layout: `config` (Kafka property names and topic configs), `disk` (writes that
//! survive failing half-way, and whether the log directory takes appends),
//! `log` (the segmented log on disk), `partition` (a hosted partition: its log
//! and replication state behind one append path, and the log directory of
//! them), `metadata` (the Raft-replicated metadata log and
//! the controller), `server` (connections and framing), `handlers` (one
//! module per Kafka API family), `coordinator` (consumer groups and their
//! offsets), `ops` (metrics and HTTP), `broker` (the shared state tying them
//! together), `startup` (bringing it all up and down in order) and
//! `local_cluster` (several brokers on one machine, for trying things out).

pub mod alloc;
pub mod broker;
pub mod config;
pub mod coordinator;
pub mod disk;
pub mod error;
pub mod handlers;
pub mod local_cluster;
pub mod log;
pub mod metadata;
pub mod ops;
pub mod partition;
pub mod replication;
pub mod server;
pub mod startup;
pub mod transactions;
pub mod util;
