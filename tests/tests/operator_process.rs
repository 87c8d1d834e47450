//! Real `tideline-operator` processes against the in-memory Kubernetes API
//! served over HTTP (lists and watches included): two replicas elect one
//! leader through a Lease, only the leader reconciles (resources created
//! are noticed through watches), both serve `/metrics`, `/healthz` and
//! `/readyz`, resources declared in the Helm values are applied by the
//! leader, logs are structured JSON, when the leader is killed the
//! standby takes the Lease and carries on, and a leader whose Lease is
//! taken exits.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tideline_tests::fake_kube::FakeApiServer;
use tideline_tests::operator_process::OperatorProcess;

const CLUSTERS: &str = "apis/kafka.tideline.dev/v1alpha1/kafkaclusters";
const TOPICS: &str = "apis/kafka.tideline.dev/v1alpha1/kafkatopics";
const LEASES: &str = "apis/coordination.k8s.io/v1/leases";
const OPERATOR_NS: &str = "tideline-system";
const NS: &str = "streaming";
/// Short, so the take-over happens within seconds.
const LEASE_SECONDS: u64 = 4;

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn cluster(name: &str) -> Value {
    json!({
        "apiVersion": "kafka.tideline.dev/v1alpha1",
        "kind": "KafkaCluster",
        "metadata": { "name": name, "namespace": NS },
        "spec": { "replicas": 3 },
    })
}

/// Both replicas get the chart's resources file: a cluster and a topic
/// declared in the Helm values.
fn start(dir: &Path, kubeconfig: &Path, identity: &str) -> OperatorProcess {
    let resources = dir.join("resources.yaml");
    std::fs::write(
        &resources,
        format!(
            "---\napiVersion: kafka.tideline.dev/v1alpha1\nkind: KafkaCluster\n\
             metadata: {{ name: from-values, namespace: {NS} }}\nspec: {{ replicas: 3 }}\n\
             ---\napiVersion: kafka.tideline.dev/v1alpha1\nkind: KafkaTopic\n\
             metadata: {{ name: audit, namespace: {NS} }}\nspec: {{ clusterRef: from-values, partitions: 6 }}\n"
        ),
    )
    .unwrap();
    let env = [(
        "TIDELINE_OPERATOR_RESOURCES_FILE",
        resources.display().to_string(),
    )];
    OperatorProcess::start_with_env(dir, kubeconfig, identity, OPERATOR_NS, LEASE_SECONDS, &env)
}

/// The one replica that leads, once exactly one does.
fn leader_among<'a>(replicas: &'a [&'a OperatorProcess]) -> Option<&'a OperatorProcess> {
    let leaders: Vec<&&OperatorProcess> = replicas.iter().filter(|r| r.is_leader()).collect();
    match leaders.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

#[test]
fn two_replicas_elect_one_leader_that_reconciles_and_the_standby_takes_over() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = FakeApiServer::new();
    let addr = runtime.block_on(fake.serve_http());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, FakeApiServer::kubeconfig(addr, OPERATOR_NS)).unwrap();

    let mut a = start(dir.path(), &kubeconfig, "op-a");
    let mut b = start(dir.path(), &kubeconfig, "op-b");
    a.wait_ready(Duration::from_secs(30));
    b.wait_ready(Duration::from_secs(30));
    assert_eq!(a.get("/healthz").map(|r| r.0), Some(200));

    // Exactly one leader, and it stays the only one.
    wait_until("one replica leads", Duration::from_secs(30), || {
        leader_among(&[&a, &b]).is_some()
    });
    std::thread::sleep(Duration::from_secs(LEASE_SECONDS + 1));
    let leader = leader_among(&[&a, &b])
        .expect("still exactly one leader")
        .identity
        .clone();
    let lease = fake
        .get(LEASES, OPERATOR_NS, "tideline-operator")
        .expect("the Lease");
    assert_eq!(lease["spec"]["holderIdentity"], leader.as_str(), "{lease}");
    let (leading, standby) = if leader == "op-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert_eq!(standby.gauge("tideline_operator_leader"), Some(0.0));

    // The resources from values are applied by the leader, then reconciled.
    wait_until(
        "the cluster from values is applied",
        Duration::from_secs(30),
        || {
            fake.get("apis/apps/v1/statefulsets", NS, "from-values")
                .is_some()
        },
    );
    let topic = fake
        .get(TOPICS, NS, "audit")
        .expect("the topic from values");
    assert_eq!(topic["spec"]["partitions"], 6);

    // The leader notices a new KafkaCluster through its watch and applies it.
    fake.create(CLUSTERS, cluster("events"));
    wait_until(
        "the StatefulSet is applied",
        Duration::from_secs(30),
        || {
            fake.get("apis/apps/v1/statefulsets", NS, "events")
                .is_some()
        },
    );
    wait_until("the status is written", Duration::from_secs(30), || {
        fake.get(CLUSTERS, NS, "events").unwrap()["status"]["observedGeneration"] == 1
    });
    let status = fake.get(CLUSTERS, NS, "events").unwrap()["status"].clone();
    assert_eq!(status["phase"], "Pending", "no brokers run here: {status}");
    assert!(
        !fake.list("apis/events.k8s.io/v1/events", NS).is_empty(),
        "Events recorded"
    );
    let (_, metrics) = leading.get("/metrics").unwrap();
    assert!(
        !metrics.contains("tideline_operator_reconciles_total{controller=\"kafkacluster\"} 0"),
        "the leader reconciled: {metrics}"
    );
    let (_, metrics) = standby.get("/metrics").unwrap();
    assert!(
        metrics.contains("tideline_operator_reconciles_total{controller=\"kafkacluster\"} 0"),
        "the standby did not: {metrics}"
    );
    // A KafkaTopic gets its finalizer; its cluster's brokers are unreachable,
    // so the reconcile fails and is counted.
    fake.create(
        TOPICS,
        json!({
            "apiVersion": "kafka.tideline.dev/v1alpha1",
            "kind": "KafkaTopic",
            "metadata": { "name": "orders", "namespace": NS },
            "spec": { "clusterRef": "events", "partitions": 3 },
        }),
    );
    wait_until(
        "the topic's finalizer is added",
        Duration::from_secs(30),
        || {
            fake.get(TOPICS, NS, "orders").unwrap()["metadata"]["finalizers"][0]
                == "kafka.tideline.dev/topic-deletion"
        },
    );
    wait_until(
        "the failed topic reconcile is counted",
        Duration::from_secs(30),
        || {
            leading.get("/metrics").is_some_and(|(_, m)| {
            m.contains("tideline_operator_reconcile_errors_total{controller=\"kafkatopic\",reason=\"KafkaAdmin\"}")
        })
        },
    );

    // Structured logs: JSON lines with a level and fields.
    let log = leading.log();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message"] == "became leader; starting controllers")
        .unwrap_or_else(|| panic!("a JSON line announcing leadership:\n{log}"));
    assert_eq!(line["level"], "INFO");

    // Reported, not asserted (see the closing note of the issue).
    eprintln!(
        "operator RSS: leader {:?} KiB, standby {:?} KiB",
        leading.rss_kib(),
        standby.rss_kib()
    );

    // The leader dies; the standby takes the Lease and reconciles.
    leading.kill();
    let started = Instant::now();
    wait_until("the standby leads", Duration::from_secs(30), || {
        standby.is_leader()
    });
    let took = started.elapsed();
    assert!(standby.is_running());
    let lease = fake.get(LEASES, OPERATOR_NS, "tideline-operator").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], standby.identity.as_str());
    fake.create(CLUSTERS, cluster("metrics"));
    wait_until(
        "the new leader applies a new cluster",
        Duration::from_secs(30),
        || {
            fake.get("apis/apps/v1/statefulsets", NS, "metrics")
                .is_some()
        },
    );
    eprintln!(
        "standby took over {:.1} s after the leader was killed",
        took.as_secs_f64()
    );

    // A leader whose Lease is taken (say, after a long pause) stops acting
    // at once: it exits, and Kubernetes restarts it as a standby.
    fake.update(LEASES, OPERATOR_NS, "tideline-operator", |lease| {
        lease["spec"]["holderIdentity"] = json!("someone-else");
        lease["spec"]["renewTime"] = json!(k8s_openapi::jiff::Timestamp::now().to_string());
        lease["spec"]["leaseDurationSeconds"] = json!(60);
    });
    wait_until("the deposed leader exits", Duration::from_secs(30), || {
        !standby.is_running()
    });
    assert!(
        standby.log().contains("lost the leader Lease"),
        "{}",
        standby.log()
    );
}
