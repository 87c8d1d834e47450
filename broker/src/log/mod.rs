//! Storage: the partition logs and their on-disk formats.
//!
//! `batch` (the record-batch format, and rewriting batches), `compression`
//! (the batch codecs), `control` (transaction markers), `txn_index` (a
//! segment's aborted transactions), `index` (offset and time indexes), `segment` (one
//! `.log` file and its indexes), `direct_tail` (the active segment's newest
//! bytes in memory, written with `O_DIRECT`), `producer_state`
//! (idempotence), `partition_log` (one partition, including swapping in the
//! cleaner's output), `cleaner` (log compaction: when, and what survives),
//! `flusher` (fsyncs at roll and early writeback, off the append path),
//! `change_listener` (how fetch sessions learn which partitions changed),
//! `topic_partition` (a partition's name). The log directory as a whole and
//! the partitions in it are `crate::partition`'s.

pub mod batch;
pub mod change_listener;
pub mod cleaner;
pub mod compression;
pub mod control;
pub mod direct_tail;
pub mod flusher;
pub mod index;
pub mod leader_epochs;
pub mod partition_log;
pub mod producer_state;
pub mod segment;
pub mod topic_partition;
pub mod txn_index;

pub use change_listener::ChangeListener;
pub use partition_log::{
    AboveHighWatermark, AppendError, AppendInfo, PartitionLog, ReadError, ReadSlice,
};
pub use topic_partition::TopicPartition;
