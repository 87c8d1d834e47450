//! The objects rendered for several KafkaCluster variants validate against
//! the Kubernetes JSON schemas (the PyPI `kubernetes-validate`, strict: no
//! unknown fields) and match reviewed snapshots in `tests/snapshots/`.
//! After an intended change, regenerate them with
//! `TIDELINE_UPDATE_SNAPSHOTS=1 cargo test -p tideline-operator` and review
//! the diff.

use std::path::PathBuf;
use std::process::Command;

use tideline_operator::crd::{KafkaCluster, KafkaClusterSpec};
use tideline_operator::render::labels::selector_string;
use tideline_operator::render::objects::render;
use tideline_operator::render::ClusterNames;

/// The Kubernetes version the schemas are checked against.
const KUBERNETES_VERSION: &str = "1.33.0";

fn cluster(name: &str, spec: serde_json::Value) -> KafkaCluster {
    let spec: KafkaClusterSpec = serde_json::from_value(spec).expect("a valid spec");
    let mut c = KafkaCluster::new(name, spec);
    c.metadata.namespace = Some("streaming".into());
    c.metadata.uid = Some("3f2b8c4e-1d2a-4b5c-9e8f-0a1b2c3d4e5f".into());
    c
}

fn variants() -> Vec<(&'static str, KafkaCluster)> {
    vec![
        (
            "minimal",
            cluster("minimal", serde_json::json!({ "replicas": 3 })),
        ),
        (
            "single",
            cluster(
                "single",
                serde_json::json!({ "replicas": 1, "storage": { "size": "1Gi" } }),
            ),
        ),
        (
            "full",
            cluster(
                "full",
                serde_json::json!({
                    "replicas": 5,
                    "controllers": 3,
                    "image": "registry.example.com/tideline:1.2.3",
                    "resources": {
                        "requests": { "cpu": "2", "memory": "4Gi" },
                        "limits": { "memory": "4Gi" },
                    },
                    "storage": { "size": "500Gi", "storageClassName": "fast-ssd", "reclaimPolicy": "Delete" },
                    "config": { "min.insync.replicas": "2", "default.replication.factor": "3", "log.retention.hours": "72" },
                    "rack": { "topologyKey": "topology.kubernetes.io/zone" },
                    "pod": {
                        "labels": { "team": "data" },
                        "annotations": { "example.com/owner": "data-platform" },
                        "nodeSelector": { "node-pool": "kafka" },
                        "tolerations": [{ "key": "dedicated", "operator": "Equal", "value": "kafka", "effect": "NoSchedule" }],
                        "priorityClassName": "high-priority",
                    },
                    "monitoring": { "serviceMonitor": true, "prometheusRule": true },
                }),
            ),
        ),
    ]
}

fn to_yaml(cluster: &KafkaCluster) -> String {
    let objects = render(cluster).expect("renders");
    objects
        .to_values()
        .iter()
        .map(|v| serde_yaml::to_string(v).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

fn snapshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots")
}

#[test]
fn rendered_objects_validate_against_the_kubernetes_schemas() {
    let dir = tempfile_dir();
    let mut files = Vec::new();
    for (name, cluster) in variants() {
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, to_yaml(&cluster)).unwrap();
        files.push(path);
    }
    let output = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(&files)
        .output()
        .expect("kubernetes-validate (PyPI; ./scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "kubernetes-validate failed:\n{text}"
    );
}

#[test]
fn rendered_objects_match_the_reviewed_snapshots() {
    let update = std::env::var_os("TIDELINE_UPDATE_SNAPSHOTS").is_some();
    for (name, cluster) in variants() {
        let path = snapshot_dir().join(format!("{name}.yaml"));
        let rendered = to_yaml(&cluster);
        if update {
            std::fs::write(&path, &rendered).unwrap();
            continue;
        }
        let snapshot = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; set TIDELINE_UPDATE_SNAPSHOTS=1 to create it",
                path.display()
            )
        });
        assert!(
            snapshot == rendered,
            "{name}: rendered objects differ from {}; review and regenerate with TIDELINE_UPDATE_SNAPSHOTS=1",
            path.display()
        );
    }
}

#[test]
fn the_scale_selector_selects_the_broker_pods() {
    let (_, c) = &variants()[0];
    let objects = render(c).unwrap();
    let labels = objects
        .stateful_set
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    for pair in selector_string(&ClusterNames::new("minimal", "streaming")).split(',') {
        let (k, v) = pair.split_once('=').unwrap();
        assert_eq!(labels.get(k).map(String::as_str), Some(v));
    }
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tideline-rendered-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The controller watches only objects with its managed-by label.
#[test]
fn every_rendered_object_carries_the_watched_label() {
    let (key, value) = tideline_operator::controller::MANAGED_BY_SELECTOR
        .split_once('=')
        .unwrap();
    for (name, cluster) in variants() {
        let objects = render(&cluster).unwrap();
        for object in objects.to_values().iter().chain(&objects.monitoring) {
            assert_eq!(
                object["metadata"]["labels"][key], value,
                "{name}: {} {}",
                object["kind"], object["metadata"]["name"]
            );
        }
    }
}
