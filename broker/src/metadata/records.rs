//! The records of the metadata log. Every change to cluster metadata —
//! topics, partitions, configs, producer-id blocks — is one of these,
//! replicated through the Raft quorum and applied in order to the
//! [`MetadataImage`](super::image::MetadataImage) on every node.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::disk::DirState;

/// Placement and leadership of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// During a reassignment: replicas being added (in `replicas`, catching
    /// up) and replicas to remove once they have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
}

impl PartitionRecord {
    pub fn new(replicas: Vec<i32>) -> Self {
        PartitionRecord {
            leader: replicas.first().copied().unwrap_or(-1),
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    /// The replicas a reassignment in progress is moving to.
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing_replicas.contains(r))
            .collect()
    }
}

/// A change to one partition's leader, ISR or replicas — Kafka's
/// AlterPartition (from the leader, for ISR changes) and the controller's
/// own elections and reassignment steps. It applies only if the partition
/// is still at `expected_partition_epoch`, so two racing changes cannot both
/// win; a leader change bumps the leader epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChange {
    pub topic_id: Uuid,
    pub partition: i32,
    pub expected_partition_epoch: i32,
    #[serde(default)]
    pub leader: Option<i32>,
    #[serde(default)]
    pub isr: Option<Vec<i32>>,
    /// New replica set with the reassignment bookkeeping.
    #[serde(default)]
    pub replicas: Option<ReplicaSet>,
    /// The leader is not from the ISR: records may have been lost.
    #[serde(default)]
    pub unclean: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSet {
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

/// What a config change applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic(String),
    /// One broker's dynamic config.
    Broker(i32),
    /// The cluster-wide dynamic broker default (Kafka's empty broker name).
    BrokerDefault,
}

/// How clients reach a broker, as it registered itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: i32,
    /// Changes every time the broker process starts.
    pub incarnation_id: Uuid,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// A broker announces itself (at every start) with its endpoint.
    RegisterBroker(BrokerRegistration),
    CreateTopic {
        name: String,
        topic_id: Uuid,
        partitions: Vec<PartitionRecord>,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        topic_id: Uuid,
    },
    /// Appends partitions to an existing topic.
    CreatePartitions {
        topic_id: Uuid,
        partitions: Vec<PartitionRecord>,
    },
    /// Sets (`Some`) or removes (`None`) config keys of a resource.
    AlterConfigs {
        resource: ConfigResource,
        changes: Vec<(String, Option<String>)>,
    },
    /// Grants a block of producer ids to a broker.
    AllocateProducerIds {
        broker_id: i32,
        count: i64,
    },
    /// The active controller stopped hearing from a broker for
    /// `broker.session.timeout.ms`: it is fenced, and every partition it
    /// led gets another in-sync replica as leader, or none (offline).
    FenceBroker {
        broker_id: i32,
    },
    /// A fenced broker heartbeats again: partitions left without a leader
    /// whose ISR holds it get it back.
    UnfenceBroker {
        broker_id: i32,
    },
    /// A leader, ISR or replica change of one partition.
    ChangePartition(PartitionChange),
    /// A broker is shutting down (controlled shutdown): it leads nothing
    /// and leaves every ISR it shares with others, as when fenced, and stays
    /// fenced until it registers again.
    ShutdownBroker {
        broker_id: i32,
    },
    /// A broker left the cluster for good (UnregisterBroker, after a
    /// scale-down): Metadata and DescribeCluster no longer list it, it
    /// leads nothing and leaves every ISR it shares with others, as when
    /// fenced. Replica lists keep naming it until a reassignment moves
    /// its replicas; a process that starts again with its id registers
    /// afresh and gets them back.
    UnregisterBroker {
        broker_id: i32,
    },
    /// A broker's log directory stopped or started taking writes (full, or
    /// offline after a write failure). While it cannot, the broker leads
    /// only partitions no other live in-sync replica can take, leaves every
    /// ISR it shares with others and cannot join one; it stays registered
    /// and serves what it still can.
    SetLogDirState {
        broker_id: i32,
        state: DirState,
    },
}

/// A group of records applied atomically (one Raft entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordBatch(pub Vec<MetadataRecord>);

impl std::fmt::Display for RecordBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} metadata record(s)", self.0.len())
    }
}

/// What applying a batch produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyOutcome {
    /// A rejected batch changes nothing; the message says why.
    pub error: Option<String>,
    /// First id of a producer-id block granted by `AllocateProducerIds`.
    pub producer_id_start: Option<i64>,
}
