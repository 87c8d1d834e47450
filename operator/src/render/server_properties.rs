//! The broker's configuration for a KafkaCluster, in the broker's own
//! `server.properties` format: one file (a ConfigMap) shared by every pod,
//! plus three environment variables that differ per pod — `node.id` from
//! the pod's ordinal (the `apps.kubernetes.io/pod-index` label) and
//! `advertised.listeners` from its stable DNS name, and with rack awareness
//! `broker.rack` from the pod's `kafka.tideline.dev/rack` annotation (the
//! cluster controller copies it from the pod's node; an init container
//! waits for it). Roles follow from `controller.quorum.voters`:
//! the first `controllers` pods vote, the others are broker-only.
//!
//! User settings in `spec.config` are checked against the broker's own
//! table of keys (the `tideline-broker` crate), so the operator cannot
//! render a file the broker would refuse.

use tideline_protocol::configs::{broker_def, validate_value};

use super::names::{ClusterNames, CONTROLLER_PORT, DATA_DIR, HTTP_PORT, KAFKA_PORT};
use crate::crd::KafkaCluster;

/// Keys the operator sets itself; `spec.config` may not.
pub const OWNED_KEYS: &[&str] = &[
    "node.id",
    "broker.id",
    "process.roles",
    "cluster.id",
    "listeners",
    "advertised.listeners",
    "controller.listener.names",
    "controller.quorum.voters",
    "log.dirs",
    "log.dir",
    "http.listener",
    "broker.rack",
    "outbound.bind.host",
];

/// A spec the operator refuses, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

fn spec_error(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

/// Checks what the API server's schema cannot: relations between fields
/// and the broker's acceptance of each `spec.config` entry.
pub fn validate(cluster: &KafkaCluster) -> Result<(), SpecError> {
    let spec = &cluster.spec;
    if let Some(controllers) = spec.controllers {
        if controllers > spec.replicas {
            return Err(spec_error(
                "spec.controllers",
                format!(
                    "{controllers} controllers need at least as many replicas (spec.replicas is {})",
                    spec.replicas
                ),
            ));
        }
        if controllers % 2 == 0 {
            return Err(spec_error(
                "spec.controllers",
                format!("{controllers} voters: use an odd number, so a quorum survives losing a minority"),
            ));
        }
    }
    for (key, value) in &spec.config {
        let field = format!("spec.config[{key:?}]");
        if OWNED_KEYS.contains(&key.as_str()) {
            return Err(spec_error(
                field,
                "set by the operator; remove it from spec.config",
            ));
        }
        let Some(def) = broker_def(key) else {
            return Err(spec_error(
                field,
                "not a broker configuration key Tideline knows",
            ));
        };
        validate_value(key, def.kind, def.validator, value).map_err(|m| spec_error(field, m))?;
    }
    Ok(())
}

/// The shared `server.properties` of the cluster's brokers.
pub fn server_properties(cluster: &KafkaCluster) -> Result<String, SpecError> {
    validate(cluster)?;
    let names = names_of(cluster);
    let voters: Vec<String> = (0..cluster.spec.controller_count())
        .map(|i| format!("{i}@{}:{CONTROLLER_PORT}", names.pod_host(&names.pod(i))))
        .collect();
    let mut out = String::new();
    out.push_str(&format!(
        "# Rendered by tideline-operator for KafkaCluster {}/{}; do not edit.\n\
         # node.id and advertised.listeners come from the pod's environment.\n",
        names.namespace, names.cluster
    ));
    let mut line = |key: &str, value: &str| out.push_str(&format!("{key}={value}\n"));
    line("cluster.id", &cluster_id(cluster));
    line("controller.quorum.voters", &voters.join(","));
    line("controller.listener.names", "CONTROLLER");
    line(
        "listeners",
        &format!("PLAINTEXT://0.0.0.0:{KAFKA_PORT},CONTROLLER://0.0.0.0:{CONTROLLER_PORT}"),
    );
    line("http.listener", &format!("0.0.0.0:{HTTP_PORT}"));
    line("log.dirs", DATA_DIR);
    for (key, value) in &cluster.spec.config {
        line(key, value);
    }
    Ok(out)
}

/// The `spec.config` entries brokers can change while running (dynamic
/// broker settings): the operator applies these cluster-wide through
/// IncrementalAlterConfigs, so changing them restarts nobody.
pub fn live_config(cluster: &KafkaCluster) -> std::collections::BTreeMap<String, String> {
    cluster
        .spec
        .config
        .iter()
        .filter(|(key, _)| broker_def(key).is_some_and(|def| def.dynamic))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Where a per-pod environment variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerEnv {
    /// A literal value; `$(NAME)` refers to an earlier variable, as
    /// Kubernetes expands it.
    Value(String),
    /// A field of the pod (the downward API), e.g. `metadata.name`.
    PodField(String),
}

/// Pod annotation holding the broker's rack (its node's topology label).
pub const RACK_ANNOTATION: &str = "kafka.tideline.dev/rack";

/// The environment of a broker container, in order (later entries may
/// refer to earlier ones).
pub fn broker_environment(cluster: &KafkaCluster) -> Vec<(String, BrokerEnv)> {
    let names = names_of(cluster);
    let mut environment = vec![
        (
            "POD_NAME".to_string(),
            BrokerEnv::PodField("metadata.name".into()),
        ),
        (
            "TIDELINE_NODE_ID".to_string(),
            BrokerEnv::PodField("metadata.labels['apps.kubernetes.io/pod-index']".into()),
        ),
        (
            "TIDELINE_ADVERTISED_LISTENERS".to_string(),
            BrokerEnv::Value(format!(
                "PLAINTEXT://{}:{KAFKA_PORT}",
                names.pod_host("$(POD_NAME)")
            )),
        ),
    ];
    if cluster.spec.rack.is_some() {
        environment.push((
            "TIDELINE_BROKER_RACK".to_string(),
            BrokerEnv::PodField(format!("metadata.annotations['{RACK_ANNOTATION}']")),
        ));
    }
    environment
}

fn names_of(cluster: &KafkaCluster) -> ClusterNames {
    ClusterNames::new(
        cluster.metadata.name.as_deref().unwrap_or("tideline"),
        cluster.metadata.namespace.as_deref().unwrap_or("default"),
    )
}

/// A cluster id stable for the life of the resource (its uid), readable
/// where there is none yet (rendering before creation).
fn cluster_id(cluster: &KafkaCluster) -> String {
    match &cluster.metadata.uid {
        Some(uid) => uid.replace('-', ""),
        None => {
            let names = names_of(cluster);
            format!("{}-{}", names.namespace, names.cluster)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::KafkaClusterSpec;

    fn cluster(replicas: i32, config: &[(&str, &str)]) -> KafkaCluster {
        let spec: KafkaClusterSpec = serde_json::from_value(serde_json::json!({
            "replicas": replicas,
            "config": config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
        }))
        .unwrap();
        let mut c = KafkaCluster::new("demo", spec);
        c.metadata.namespace = Some("ns".into());
        c
    }

    #[test]
    fn three_voters_on_stable_names_and_user_settings() {
        let props = server_properties(&cluster(5, &[("min.insync.replicas", "2")])).unwrap();
        assert!(props.contains(
            "controller.quorum.voters=0@demo-0.demo-headless.ns.svc:9093,1@demo-1.demo-headless.ns.svc:9093,2@demo-2.demo-headless.ns.svc:9093\n"
        ));
        assert!(props.contains("min.insync.replicas=2\n"));
        assert!(props.contains("log.dirs=/var/lib/tideline/data\n"));
        assert!(
            !props.lines().any(|l| l.starts_with("node.id=")),
            "per pod, from the environment"
        );
    }

    #[test]
    fn invalid_specs_name_the_field() {
        let err = server_properties(&cluster(3, &[("min.insync.replicas", "zero")])).unwrap_err();
        assert_eq!(err.field, "spec.config[\"min.insync.replicas\"]");
        let err = server_properties(&cluster(3, &[("no.such.key", "1")])).unwrap_err();
        assert!(err.message.contains("not a broker configuration key"));
        let err = server_properties(&cluster(3, &[("node.id", "1")])).unwrap_err();
        assert!(err.message.contains("set by the operator"));
        let mut c = cluster(1, &[]);
        c.spec.controllers = Some(3);
        assert_eq!(server_properties(&c).unwrap_err().field, "spec.controllers");
    }
}
