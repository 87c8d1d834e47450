//! The Kubernetes objects a KafkaCluster becomes: a headless Service (the
//! pods' stable DNS names), a bootstrap Service (clients), the ConfigMap
//! holding `server.properties`, a ServiceAccount, the StatefulSet (a volume
//! per broker) and a PodDisruptionBudget (one broker down at a time). Each
//! is owned by the KafkaCluster, so deleting it deletes them.
//!
//! The StatefulSet starts its pods in parallel (the metadata quorum needs a
//! majority of voters up before any broker is ready) and updates them only
//! when the operator deletes them (`OnDelete`), because the operator rolls
//! brokers itself, one at a time, when the cluster can afford it.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Resource;
use serde_json::{json, Value};
use tideline_protocol::configs::broker_def;

use super::labels::selector_labels;
use super::names::{ClusterNames, CONTROLLER_PORT, DATA_DIR, HTTP_PORT, KAFKA_PORT};
use super::server_properties::{
    broker_environment, server_properties, BrokerEnv, SpecError, RACK_ANNOTATION,
};
use crate::crd::{ClaimReclaimPolicy, KafkaCluster};

/// Pod template annotation: hash of the settings that need a restart.
pub const CONFIG_HASH_ANNOTATION: &str = "kafka.tideline.dev/config-hash";
/// Where the ConfigMap is mounted in the broker container.
pub const CONFIG_DIR: &str = "/etc/tideline";
/// Where the rack init container reads the pod's annotations.
pub const PODINFO_DIR: &str = "/etc/tideline-pod";
/// Long enough for a controlled shutdown to move every leadership.
pub const TERMINATION_GRACE_SECONDS: i64 = 120;
/// The unprivileged user of the image (see the Dockerfile).
pub const BROKER_UID: i64 = 10001;

/// Everything the cluster controller applies for one KafkaCluster.
#[derive(Debug, Clone)]
pub struct ClusterObjects {
    pub headless_service: Service,
    pub bootstrap_service: Service,
    pub config_map: ConfigMap,
    pub service_account: ServiceAccount,
    pub stateful_set: StatefulSet,
    pub disruption_budget: PodDisruptionBudget,
    /// ServiceMonitor and PrometheusRule (Prometheus Operator kinds, so
    /// kept as JSON), when `spec.monitoring` enables them.
    pub monitoring: Vec<Value>,
}

impl ClusterObjects {
    /// The objects as JSON, in apply order.
    pub fn to_values(&self) -> Vec<Value> {
        vec![
            serde_json::to_value(&self.service_account).expect("serializable"),
            serde_json::to_value(&self.config_map).expect("serializable"),
            serde_json::to_value(&self.headless_service).expect("serializable"),
            serde_json::to_value(&self.bootstrap_service).expect("serializable"),
            serde_json::to_value(&self.stateful_set).expect("serializable"),
            serde_json::to_value(&self.disruption_budget).expect("serializable"),
        ]
    }
}

pub fn render(cluster: &KafkaCluster) -> Result<ClusterObjects, SpecError> {
    let properties = server_properties(cluster)?;
    let names = ClusterNames::new(
        cluster.metadata.name.as_deref().unwrap_or("tideline"),
        cluster.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let mut labels = selector_labels(&names);
    labels.insert(
        "app.kubernetes.io/managed-by".to_string(),
        "tideline-operator".to_string(),
    );
    let owner: Vec<Value> = cluster
        .controller_owner_ref(&())
        .map(|r| serde_json::to_value(r).expect("serializable"))
        .into_iter()
        .collect();
    let metadata = |name: String| {
        json!({
            "name": name,
            "namespace": names.namespace,
            "labels": labels,
            "ownerReferences": owner,
        })
    };
    let selector = selector_labels(&names);
    let ports = json!([
        { "name": "kafka", "port": KAFKA_PORT, "targetPort": "kafka" },
        { "name": "controller", "port": CONTROLLER_PORT, "targetPort": "controller" },
        { "name": "http", "port": HTTP_PORT, "targetPort": "http" },
    ]);
    let headless_service = typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(names.headless_service()),
        "spec": {
            "clusterIP": "None",
            // Brokers find each other before they are ready.
            "publishNotReadyAddresses": true,
            "selector": selector,
            "ports": ports,
        },
    }));
    let bootstrap_service = typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(names.bootstrap_service()),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{ "name": "kafka", "port": KAFKA_PORT, "targetPort": "kafka" }],
        },
    }));
    let config_map = typed(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(names.config_map()),
        "data": { "server.properties": properties },
    }));
    let service_account = typed(json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(names.cluster.clone()),
        // Brokers do not talk to the Kubernetes API.
        "automountServiceAccountToken": false,
    }));
    let stateful_set = typed(stateful_set(
        cluster,
        &names,
        metadata(names.statefulset()),
        &properties,
    ));
    let disruption_budget = typed(json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(names.cluster.clone()),
        "spec": {
            "maxUnavailable": 1,
            "selector": { "matchLabels": selector },
        },
    }));
    let monitoring = super::monitoring::render(cluster, &names, &metadata(String::new()));
    Ok(ClusterObjects {
        monitoring,
        headless_service,
        bootstrap_service,
        config_map,
        service_account,
        stateful_set,
        disruption_budget,
    })
}

fn stateful_set(
    cluster: &KafkaCluster,
    names: &ClusterNames,
    metadata: Value,
    properties: &str,
) -> Value {
    let spec = &cluster.spec;
    let selector = selector_labels(names);
    let mut pod_labels = selector.clone();
    pod_labels.extend(spec.pod.labels.clone());
    let mut annotations = spec.pod.annotations.clone();
    // A changed configuration changes the pod template, which the operator
    // notices and rolls (the StatefulSet itself only updates on delete).
    // Settings brokers change live are left out: the operator applies them
    // with IncrementalAlterConfigs instead of restarting anyone.
    let needs_restart: String = properties
        .lines()
        .filter(|line| !is_live_setting(line))
        .flat_map(|line| [line, "\n"])
        .collect();
    annotations.insert(
        CONFIG_HASH_ANNOTATION.to_string(),
        format!("{:016x}", fnv1a(needs_restart.as_bytes())),
    );
    let env: Vec<Value> = broker_environment(cluster)
        .into_iter()
        .map(|(name, source)| match source {
            BrokerEnv::Value(value) => json!({ "name": name, "value": value }),
            BrokerEnv::PodField(path) => {
                json!({ "name": name, "valueFrom": { "fieldRef": { "fieldPath": path } } })
            }
        })
        .collect();
    let affinity = match &spec.pod.affinity {
        Some(affinity) => serde_json::to_value(affinity).expect("serializable"),
        // Prefer one broker per node.
        None => json!({
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [{
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": { "matchLabels": selector },
                    },
                }],
            },
        }),
    };
    let spread: Vec<Value> = spec
        .rack
        .iter()
        .map(|rack| {
            json!({
                "maxSkew": 1,
                "topologyKey": rack.topology_key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": { "matchLabels": selector },
            })
        })
        .collect();
    let mut claim_spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": { "requests": { "storage": spec.storage.size } },
    });
    if let Some(class) = &spec.storage.storage_class_name {
        claim_spec["storageClassName"] = json!(class);
    }
    let reclaim = match spec.storage.reclaim_policy {
        ClaimReclaimPolicy::Retain => "Retain",
        ClaimReclaimPolicy::Delete => "Delete",
    };
    let mut container = json!({
        "name": "broker",
        "image": spec.image,
        "args": ["--config", format!("{CONFIG_DIR}/server.properties")],
        "env": env,
        "ports": [
            { "name": "kafka", "containerPort": KAFKA_PORT },
            { "name": "controller", "containerPort": CONTROLLER_PORT },
            { "name": "http", "containerPort": HTTP_PORT },
        ],
        "readinessProbe": {
            "httpGet": { "path": "/readyz", "port": "http" },
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": { "path": "/healthz", "port": "http" },
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "volumeMounts": [
            { "name": "data", "mountPath": DATA_DIR },
            { "name": "config", "mountPath": CONFIG_DIR, "readOnly": true },
        ],
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": { "drop": ["ALL"] },
        },
    });
    if let Some(resources) = &spec.resources {
        container["resources"] = serde_json::to_value(resources).expect("serializable");
    }
    let mut pod_spec = json!({
        "serviceAccountName": names.cluster,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": BROKER_UID,
            "runAsGroup": BROKER_UID,
            "fsGroup": BROKER_UID,
        },
        "affinity": affinity,
        "containers": [container],
        "volumes": [{ "name": "config", "configMap": { "name": names.config_map() } }],
    });
    if !spread.is_empty() {
        pod_spec["topologySpreadConstraints"] = json!(spread);
    }
    if spec.rack.is_some() {
        // The broker's rack comes from its node, which is only known once
        // the pod is scheduled: the operator copies the node's label into
        // the pod's annotation, and this init container waits for it (the
        // broker's environment reads the annotation when it starts).
        pod_spec["initContainers"] = json!([{
            "name": "wait-for-rack",
            "image": spec.image,
            "command": ["/bin/sh", "-c", format!(
                "until [ -s {PODINFO_DIR}/rack ]; do echo 'waiting for the operator to copy the node label into {RACK_ANNOTATION}'; sleep 2; done"
            )],
            "volumeMounts": [{ "name": "podinfo", "mountPath": PODINFO_DIR, "readOnly": true }],
            "resources": { "requests": { "cpu": "10m", "memory": "16Mi" }, "limits": { "memory": "32Mi" } },
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": { "drop": ["ALL"] },
            },
        }]);
        pod_spec["volumes"].as_array_mut().expect("volumes").push(json!({
            "name": "podinfo",
            "downwardAPI": { "items": [{
                "path": "rack",
                "fieldRef": { "fieldPath": format!("metadata.annotations['{RACK_ANNOTATION}']") },
            }] },
        }));
    }
    if !spec.pod.node_selector.is_empty() {
        pod_spec["nodeSelector"] = json!(spec.pod.node_selector);
    }
    if !spec.pod.tolerations.is_empty() {
        pod_spec["tolerations"] =
            serde_json::to_value(&spec.pod.tolerations).expect("serializable");
    }
    if let Some(class) = &spec.pod.priority_class_name {
        pod_spec["priorityClassName"] = json!(class);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata,
        "spec": {
            "serviceName": names.headless_service(),
            "replicas": spec.replicas,
            "podManagementPolicy": "Parallel",
            "updateStrategy": { "type": "OnDelete" },
            "selector": { "matchLabels": selector },
            "persistentVolumeClaimRetentionPolicy": { "whenDeleted": reclaim, "whenScaled": "Retain" },
            "template": {
                "metadata": { "labels": pod_labels, "annotations": annotations },
                "spec": pod_spec,
            },
            "volumeClaimTemplates": [{
                "metadata": { "name": "data", "labels": selector },
                "spec": claim_spec,
            }],
        },
    })
}

/// Whether a `key=value` line of `server.properties` is a dynamic broker
/// setting (one IncrementalAlterConfigs changes on running brokers).
fn is_live_setting(line: &str) -> bool {
    line.split_once('=')
        .and_then(|(key, _)| broker_def(key.trim()))
        .is_some_and(|def| def.dynamic)
}

/// JSON built above into its typed object; a field of the wrong shape is a
/// bug caught by the tests that render every variant.
fn typed<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("rendered objects match their Kubernetes types")
}

/// FNV-1a: a stable hash for the config annotation (not security relevant).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
