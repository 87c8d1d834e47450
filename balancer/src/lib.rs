//! The balancer: from a cluster's current assignment, its brokers (with
//! racks, and which are cordoned), every partition's size and produce rate,
//! and a set of leaving brokers, it plans the reassignments and
//! preferred-leader changes that drain the leaving brokers and balance the
//! rest (see `plan.rs` for the goals, in priority order).
//!
//! It is a pure function with no I/O, so the operator's executor and the
//! `tideline rebalance` command plan the same way, and it is tested over
//! random clusters without a broker.

mod model;
mod plan;

pub use model::{Broker, Cluster, Partition, Plan, Reassignment, Settings};
pub use plan::plan;
