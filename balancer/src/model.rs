//! What the balancer plans from: brokers (with racks, and whether they may
//! take new replicas), partitions (their replicas in preference order,
//! their size on disk and their produce rate), and the plan it returns.

use std::collections::BTreeMap;
use std::time::Duration;

/// A broker the balancer may place replicas on, or must empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Broker {
    pub id: i32,
    pub rack: Option<String>,
    /// Cordoned brokers keep what they hold but receive nothing new.
    pub cordoned: bool,
}

/// One partition: `replicas[0]` is its preferred leader.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    /// Bytes one replica holds (DescribeLogDirs).
    pub size_bytes: u64,
    /// Produce bytes per second into the partition (broker metrics).
    pub produce_bytes_per_second: f64,
}

/// A cluster as the balancer sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cluster {
    pub brokers: Vec<Broker>,
    pub partitions: Vec<Partition>,
}

/// What the plan is asked to reach, besides the fixed goals.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Disk use per broker within this percentage of the mean.
    pub disk_tolerance_percent: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            disk_tolerance_percent: 10.0,
        }
    }
}

/// One partition's change: its new replica list (a changed first entry
/// alone is a preferred-leader change, which moves no data).
#[derive(Debug, Clone, PartialEq)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    pub from: Vec<i32>,
    pub to: Vec<i32>,
    /// Bytes copied: the partition's size for every broker in `to` that
    /// was not in `from`.
    pub bytes: u64,
}

impl Reassignment {
    /// Only the order changed: a preferred-leader election, no copy.
    pub fn is_leader_change_only(&self) -> bool {
        self.bytes == 0
    }
}

/// The balancer's answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub reassignments: Vec<Reassignment>,
    /// Why a goal cannot be reached (for example a drain that leaves fewer
    /// brokers than a topic's replication factor). A plan with a blocked
    /// drain must not be executed as a drain.
    pub blocked: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.reassignments.is_empty()
    }

    /// Bytes the plan copies between brokers.
    pub fn bytes_to_move(&self) -> u64 {
        self.reassignments.iter().map(|r| r.bytes).sum()
    }

    /// How long the copies take at `throttle_bytes_per_second` (the
    /// replication throttle applies to the whole plan's traffic).
    pub fn duration_at(&self, throttle_bytes_per_second: u64) -> Duration {
        if throttle_bytes_per_second == 0 {
            return Duration::MAX;
        }
        Duration::from_secs_f64(self.bytes_to_move() as f64 / throttle_bytes_per_second as f64)
    }

    /// The cluster after every reassignment of the plan.
    pub fn applied_to(&self, cluster: &Cluster) -> Cluster {
        let mut after = cluster.clone();
        let index: BTreeMap<(&str, i32), &Reassignment> = self
            .reassignments
            .iter()
            .map(|r| ((r.topic.as_str(), r.partition), r))
            .collect();
        for p in &mut after.partitions {
            if let Some(r) = index.get(&(p.topic.as_str(), p.partition)) {
                p.replicas = r.to.clone();
            }
        }
        after
    }
}
