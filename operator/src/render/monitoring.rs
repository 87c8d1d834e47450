//! Prometheus Operator objects for a KafkaCluster, when its
//! `spec.monitoring` asks for them: a ServiceMonitor scraping every
//! broker's `/metrics` through the headless Service (the only one with the
//! `http` port), and a PrometheusRule carrying Tideline's broker alerts —
//! the same rules as `monitoring/tideline.rules.yml`, embedded at build
//! time so the two cannot differ.

use serde_json::{json, Value};

use super::labels::selector_labels;
use super::names::ClusterNames;
use crate::crd::KafkaCluster;

/// The broker alerting rules for any Prometheus.
pub const BROKER_RULES_YAML: &str = include_str!("../../../monitoring/tideline.rules.yml");

pub const MONITORING_API_VERSION: &str = "monitoring.coreos.com/v1";

/// The rules file's `groups`, as the PrometheusRule's spec wants them.
pub fn broker_rule_groups() -> Value {
    let rules: Value =
        serde_yaml::from_str(BROKER_RULES_YAML).expect("the shipped rules file is valid YAML");
    rules["groups"].clone()
}

/// The ServiceMonitor and PrometheusRule the spec enables, each with the
/// cluster as owner; `disabled` names the kinds to remove when present.
pub fn render(cluster: &KafkaCluster, names: &ClusterNames, metadata: &Value) -> Vec<Value> {
    let mut objects = Vec::new();
    if cluster.spec.monitoring.service_monitor {
        let mut meta = metadata.clone();
        meta["name"] = json!(names.cluster);
        objects.push(json!({
            "apiVersion": MONITORING_API_VERSION,
            "kind": "ServiceMonitor",
            "metadata": meta,
            "spec": {
                "selector": { "matchLabels": selector_labels(names) },
                "namespaceSelector": { "matchNames": [names.namespace] },
                "endpoints": [{ "port": "http", "path": "/metrics", "interval": "30s" }],
            },
        }));
    }
    if cluster.spec.monitoring.prometheus_rule {
        let mut meta = metadata.clone();
        meta["name"] = json!(names.cluster);
        objects.push(json!({
            "apiVersion": MONITORING_API_VERSION,
            "kind": "PrometheusRule",
            "metadata": meta,
            "spec": { "groups": broker_rule_groups() },
        }));
    }
    objects
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_groups_are_the_shipped_rules_file() {
        let groups = broker_rule_groups();
        let alerts: Vec<&str> = groups
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .filter_map(|r| r["alert"].as_str())
            .collect();
        assert!(alerts.contains(&"TidelineOfflinePartitions"), "{alerts:?}");
        assert!(alerts.len() >= 9, "{alerts:?}");
    }
}
