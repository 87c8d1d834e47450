//! The operator's custom resources, `kafka.tideline.dev/v1alpha1`:
//! `KafkaCluster` (brokers run as a StatefulSet) and `KafkaTopic` (a topic
//! in one of those clusters). The CRD YAML in `crds/` is generated from
//! these types (`tideline-operator crdgen`); every field's doc comment
//! becomes its `kubectl explain` description, and value ranges are part of
//! the schema so the API server refuses what the broker would.

// Several `printcolumn(...)` entries repeat keys such as `type_`, which
// clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "kafka.tideline.dev";
pub const VERSION: &str = "v1alpha1";
/// The image used when `spec.image` is not set.
pub const DEFAULT_IMAGE: &str = "ghcr.io/tideline/tideline:0.1.0";

/// A Tideline cluster: `replicas` brokers in a StatefulSet, the first
/// `controllers` of them also voting in the metadata quorum.
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "kafka.tideline.dev",
    version = "v1alpha1",
    kind = "KafkaCluster",
    namespaced,
    status = "KafkaClusterStatus",
    derive = "PartialEq",
    shortname = "kc",
    category = "tideline",
    doc = "A Tideline (Kafka-compatible) cluster: brokers in a StatefulSet with a metadata quorum, services, configuration and monitoring.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired brokers"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Brokers ready"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterSpec {
    /// Number of brokers. `kubectl scale` and a HorizontalPodAutoscaler change it.
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// Container image holding the `tideline-broker` binary.
    #[serde(default = "default_image")]
    pub image: String,
    /// CPU and memory requests and limits of each broker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Each broker's persistent volume.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Broker configuration: Kafka property names and values (as in
    /// `server.properties`), validated against what the broker accepts.
    /// Keys the operator owns (node.id, listeners, controller.quorum.voters,
    /// log.dirs, ...) are refused.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// How many of the brokers (the first ones) vote in the metadata
    /// quorum; odd, and at most `replicas`. Defaults to 3, or `replicas`
    /// when fewer. Fixed when the cluster is created: later scaling keeps
    /// the voters it started with, and a different value is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 9))]
    pub controllers: Option<i32>,
    /// Rack awareness: each broker's `broker.rack` is its node's value of
    /// this label, and brokers spread across its values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<RackSpec>,
    /// Additions to the broker pods.
    #[serde(default)]
    pub pod: PodOverrides,
    /// Prometheus Operator objects to create.
    #[serde(default)]
    pub monitoring: MonitoringSpec,
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_string()
}

/// A broker's persistent volume claim.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each broker's volume, as a Kubernetes quantity (e.g. `100Gi`).
    #[serde(default = "default_storage_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: String,
    /// Storage class of the volumes; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// What happens to the volumes when the KafkaCluster is deleted:
    /// `Retain` keeps them (and the data), `Delete` removes them.
    #[serde(default)]
    pub reclaim_policy: ClaimReclaimPolicy,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: default_storage_size(),
            storage_class_name: None,
            reclaim_policy: ClaimReclaimPolicy::default(),
        }
    }
}

fn default_storage_size() -> String {
    "10Gi".to_string()
}

/// Keep or delete the brokers' volumes when the cluster is deleted.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
pub enum ClaimReclaimPolicy {
    #[default]
    Retain,
    Delete,
}

/// Rack awareness.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RackSpec {
    /// Node label whose value is the broker's rack, e.g.
    /// `topology.kubernetes.io/zone`.
    #[schemars(length(min = 1))]
    pub topology_key: String,
}

/// Extra settings for the broker pods.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Labels added to every broker pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to every broker pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Node labels a broker pod's node must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the broker pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Scheduling affinity; replaces the operator's default anti-affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass of the broker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// Monitoring objects for the Prometheus Operator.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Create a ServiceMonitor that scrapes every broker's `/metrics`.
    #[serde(default)]
    pub service_monitor: bool,
    /// Create a PrometheusRule with Tideline's broker alerting rules
    /// (not needed when the Helm chart's `prometheusRule.enabled` is set:
    /// that one covers every cluster).
    #[serde(default)]
    pub prometheus_rule: bool,
}

/// What the operator observed of a KafkaCluster.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Broker pods that exist (the scale subresource's status.replicas).
    #[serde(default)]
    pub replicas: i32,
    /// Broker pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the broker pods, for the scale subresource.
    #[serde(default)]
    pub selector: String,
    /// `Pending`, `Running`, `Rolling`, `Degraded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The active controller's node id, as the brokers report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_id: Option<i32>,
    /// Partitions whose ISR is smaller than their replica set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub under_replicated_partitions: Option<i64>,
    /// Partitions without a leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_partitions: Option<i64>,
    /// Broker settings from `spec.config` that the operator applied live
    /// (cluster-wide, through IncrementalAlterConfigs) instead of restarting
    /// brokers; kept so a key removed from the spec is removed live too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub live_config: BTreeMap<String, String>,
    /// Voters of the metadata quorum, fixed when the cluster was first
    /// applied (changing them needs a quorum reconfiguration, which a
    /// rolling restart cannot do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_voters: Option<i32>,
    /// The broker restart in progress during a rolling restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarting_broker: Option<BrokerRestart>,
    /// `Ready`, `Reconciling` and `Warning`, each with a reason and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One broker restarted by a rolling restart, not yet back.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerRestart {
    /// The broker's node id (its pod ordinal).
    pub broker: i32,
    /// When the operator deleted its pod (RFC 3339).
    pub started_at: String,
}

/// A topic in a KafkaCluster of the same namespace.
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "kafka.tideline.dev",
    version = "v1alpha1",
    kind = "KafkaTopic",
    namespaced,
    status = "KafkaTopicStatus",
    derive = "PartialEq",
    shortname = "kt",
    category = "tideline",
    doc = "A topic of a Tideline cluster, created and kept in sync through the Kafka admin API.",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef",
        description = "KafkaCluster holding the topic"
    ),
    printcolumn(name = "Partitions", type_ = "integer", json_path = ".spec.partitions"),
    printcolumn(
        name = "RF",
        type_ = "integer",
        json_path = ".spec.replicationFactor",
        description = "Replication factor"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicSpec {
    /// Name of the KafkaCluster (same namespace) holding the topic.
    #[schemars(length(min = 1))]
    pub cluster_ref: String,
    /// The topic's name in Kafka; the resource's name when unset (set it
    /// for names Kubernetes does not allow, such as ones with `_`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._-]+$"))]
    pub topic_name: Option<String>,
    /// Number of partitions; can be raised, never lowered.
    #[schemars(range(min = 1, max = 100000))]
    pub partitions: i32,
    /// Copies of every partition; fixed once the topic exists.
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1, max = 32767))]
    pub replication_factor: i32,
    /// Topic configuration (Kafka topic property names), applied
    /// incrementally; changes made outside the resource are reverted.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Keep the topic in Kafka when this resource is deleted.
    #[serde(default)]
    pub keep_on_delete: bool,
}

fn default_replication_factor() -> i32 {
    3
}

/// What the operator observed of a KafkaTopic.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The topic's name in Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// The topic id Kafka assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// Partitions the topic has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Replication factor the topic has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
    /// `Ready`, `Reconciling` and `Warning`, each with a reason and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl KafkaClusterSpec {
    /// Voters of the metadata quorum (see `controllers`).
    pub fn controller_count(&self) -> i32 {
        self.controllers.unwrap_or(3).min(self.replicas).max(1)
    }
}
