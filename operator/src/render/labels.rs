//! The labels that identify a cluster's broker pods. Every object that
//! selects the pods (the Services, the PodDisruptionBudget, the
//! ServiceMonitor) and the controller listing them must agree on them, so
//! they are defined once, here.

use std::collections::BTreeMap;

use super::names::ClusterNames;

/// The labels selecting a cluster's broker pods.
pub fn selector_labels(names: &ClusterNames) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "tideline".to_string()),
        (
            "app.kubernetes.io/instance".to_string(),
            names.cluster.clone(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            "broker".to_string(),
        ),
    ])
}

/// The label selector of the broker pods as a string (the scale
/// subresource's `status.selector`).
pub fn selector_string(names: &ClusterNames) -> String {
    selector_labels(names)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
