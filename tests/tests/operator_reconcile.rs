//! The operator's reconcile loops against an in-memory Kubernetes API
//! (`tideline_tests::fake_kube`, behind a real `kube::Client`) and real
//! broker processes: objects applied with owner references and status
//! written; a spec change updates them, a dynamic setting is applied live
//! and a restart-requiring one rolled broker by broker (waiting while a
//! partition is under-replicated, controller last, stopping with a Warning
//! when a broker does not return); an invalid spec gets a condition naming
//! the field; failures are requeued with backoff and counted; KafkaTopics
//! are created, altered, repaired and deleted through a finalizer — each
//! checked with rdkafka's admin client.

use std::sync::Arc;
use std::time::Duration;

use ::http::Method;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use rdkafka::admin::{
    AdminOptions, AlterConfig, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication,
};
use serde_json::{json, Value};
use tideline_operator::controller::{cluster, error_policy, topic, Context};
use tideline_operator::crd::{KafkaCluster, KafkaTopic};
use tideline_operator::metrics::{OperatorMetrics, CLUSTER_CONTROLLER};
use tideline_operator::render::objects::CONFIG_HASH_ANNOTATION;
use tideline_tests::fake_kube::FakeApiServer;
use tideline_tests::rendered_cluster::RenderedCluster;
use tideline_tests::{
    admin_client, block_on, free_port, topic_as_seen_by_rdkafka, Broker, BrokerOpts,
};

const CLUSTERS: &str = "apis/kafka.tideline.dev/v1alpha1/kafkaclusters";
const TOPICS: &str = "apis/kafka.tideline.dev/v1alpha1/kafkatopics";
const STATEFULSETS: &str = "apis/apps/v1/statefulsets";
const PODS: &str = "api/v1/pods";
const EVENTS: &str = "apis/events.k8s.io/v1/events";
const NS: &str = "streaming";

struct Harness {
    runtime: tokio::runtime::Runtime,
    fake: FakeApiServer,
    ctx: Arc<Context>,
}

impl Harness {
    fn new(bootstrap: String, roll_timeout: Duration) -> Harness {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let fake = FakeApiServer::new();
        let ctx = {
            let _entered = runtime.enter();
            let reporter = Reporter {
                controller: "tideline-operator".into(),
                instance: Some("test".into()),
            };
            Context::new(fake.client(), OperatorMetrics::new(), reporter)
                .with_bootstrap(Arc::new(move |_| bootstrap.clone()))
                .with_roll_timeout(roll_timeout)
        };
        Harness {
            runtime,
            fake,
            ctx: Arc::new(ctx),
        }
    }

    fn cluster(&self, name: &str) -> KafkaCluster {
        serde_json::from_value(self.fake.get(CLUSTERS, NS, name).expect("cluster exists")).unwrap()
    }

    fn reconcile_cluster(
        &self,
        name: &str,
    ) -> Result<Action, tideline_operator::controller::Error> {
        let object = Arc::new(self.cluster(name));
        self.runtime
            .block_on(cluster::reconcile(object, self.ctx.clone()))
    }

    fn status(&self, name: &str) -> Value {
        self.fake.get(CLUSTERS, NS, name).unwrap()["status"].clone()
    }

    fn reconcile_topic(&self, name: &str) -> Result<Action, tideline_operator::controller::Error> {
        let object: KafkaTopic =
            serde_json::from_value(self.fake.get(TOPICS, NS, name).expect("topic exists")).unwrap();
        self.runtime
            .block_on(topic::reconcile(Arc::new(object), self.ctx.clone()))
    }

    /// Occurrences of Events with `reason` (the recorder folds repeats of
    /// one reason into a series with a count).
    fn event_count(&self, reason: &str) -> i64 {
        self.events(reason)
            .iter()
            .map(|e| e["series"]["count"].as_i64().unwrap_or(1))
            .sum()
    }

    fn events(&self, reason: &str) -> Vec<Value> {
        self.fake
            .list(EVENTS, NS)
            .into_iter()
            .filter(|e| e["reason"] == reason)
            .collect()
    }
}

fn condition(status: &Value, type_: &str) -> Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or(Value::Null)
}

fn cluster_resource(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "kafka.tideline.dev/v1alpha1",
        "kind": "KafkaCluster",
        "metadata": { "name": name, "namespace": NS, "uid": "6a1d3c2e-0b4f-4e8a-9c7d-5e6f7a8b9c0d", "generation": 1 },
        "spec": spec,
    })
}

/// What the StatefulSet controller would do: a ready pod for broker `i`
/// created from `revision`.
fn put_pod(fake: &FakeApiServer, cluster: &str, i: i32, revision: &str) {
    fake.remove(PODS, NS, &format!("{cluster}-{i}"));
    fake.create(
        PODS,
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": format!("{cluster}-{i}"),
                "namespace": NS,
                "labels": {
                    "app.kubernetes.io/name": "tideline",
                    "app.kubernetes.io/instance": cluster,
                    "app.kubernetes.io/component": "broker",
                    "controller-revision-hash": revision,
                    "apps.kubernetes.io/pod-index": i.to_string(),
                },
            },
            "spec": { "containers": [{ "name": "broker" }] },
            "status": { "conditions": [{ "type": "Ready", "status": "True" }] },
        }),
    );
}

fn set_update_revision(fake: &FakeApiServer, cluster: &str, revision: &str) {
    fake.update(STATEFULSETS, NS, cluster, |s| {
        s["status"] = json!({ "replicas": 3, "updateRevision": revision });
    });
}

fn pod_exists(fake: &FakeApiServer, cluster: &str, i: i32) -> bool {
    fake.get(PODS, NS, &format!("{cluster}-{i}")).is_some()
}

/// Every partition of the cluster has its full replica set in sync, as
/// rdkafka's metadata shows it.
fn fully_replicated(bootstrap: &str) -> bool {
    let admin = admin_client(bootstrap);
    let Ok(metadata) = admin.inner().fetch_metadata(None, Duration::from_secs(10)) else {
        return false;
    };
    metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .all(|p| p.isr().len() == p.replicas().len() && p.leader() >= 0)
}

/// (value, source) of a broker setting as rdkafka reads it from broker 0.
fn broker_setting(bootstrap: &str, key: &str) -> (Option<String>, ConfigSource) {
    let admin = admin_client(bootstrap);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let described =
        block_on(admin.describe_configs([&ResourceSpecifier::Broker(0)], &opts)).unwrap();
    let resource = described.into_iter().next().unwrap().unwrap();
    let entry = resource
        .entries
        .into_iter()
        .find(|e| e.name == key)
        .expect("key described");
    (entry.value, entry.source)
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_cluster_controller_applies_reports_updates_live_and_rolls_brokers_safely() {
    let spec = json!({
        "replicas": 3,
        "config": {
            "default.replication.factor": "3",
            "min.insync.replicas": "2",
            "replica.lag.time.max.ms": "2000",
        },
    });
    let resource = cluster_resource("demo", spec);
    let mut brokers =
        RenderedCluster::start(&serde_json::from_value::<KafkaCluster>(resource.clone()).unwrap());
    let bootstrap = brokers.bootstrap();
    let h = Harness::new(bootstrap.clone(), Duration::from_secs(3));
    h.fake.create(CLUSTERS, resource);

    // Create: every object applied, owned by the cluster; status written.
    let action = h.reconcile_cluster("demo").expect("reconciles");
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(5)),
        "pods are not there yet"
    );
    let uid = "6a1d3c2e-0b4f-4e8a-9c7d-5e6f7a8b9c0d";
    for (collection, name) in [
        ("api/v1/serviceaccounts", "demo"),
        ("api/v1/configmaps", "demo-config"),
        ("api/v1/services", "demo-headless"),
        ("api/v1/services", "demo-bootstrap"),
        (STATEFULSETS, "demo"),
        ("apis/policy/v1/poddisruptionbudgets", "demo"),
    ] {
        let object = h
            .fake
            .get(collection, NS, name)
            .unwrap_or_else(|| panic!("{collection}/{name} applied"));
        let owner = &object["metadata"]["ownerReferences"][0];
        assert_eq!(
            (
                owner["kind"].as_str(),
                owner["uid"].as_str(),
                owner["controller"].as_bool()
            ),
            (Some("KafkaCluster"), Some(uid), Some(true)),
            "{collection}/{name}"
        );
    }
    assert!(
        h.fake
            .requests()
            .iter()
            .any(|r| r.starts_with("PATCH /apis/apps/v1/namespaces/streaming/statefulsets/demo")),
        "server-side apply"
    );
    let status = h.status("demo");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["phase"], "Pending");
    assert_eq!(status["selector"], "app.kubernetes.io/component=broker,app.kubernetes.io/instance=demo,app.kubernetes.io/name=tideline");
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert!(
        status["controllerId"].as_i64().is_some(),
        "read from the brokers: {status}"
    );

    // The StatefulSet controller's part: three ready pods.
    set_update_revision(&h.fake, "demo", "rev-1");
    for i in 0..3 {
        put_pod(&h.fake, "demo", i, "rev-1");
    }
    h.reconcile_cluster("demo").unwrap();
    let status = h.status("demo");
    assert_eq!(status["phase"], "Running", "{status}");
    assert_eq!(
        (
            status["replicas"].as_i64(),
            status["readyReplicas"].as_i64()
        ),
        (Some(3), Some(3))
    );
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert_eq!(condition(&status, "Ready")["reason"], "AllBrokersReady");
    assert_eq!(status["underReplicatedPartitions"], 0);
    assert_eq!(status["offlinePartitions"], 0);
    assert!(
        !h.events("Running").is_empty(),
        "an Event on the transition"
    );

    // A dynamic setting is applied live: no pod template change, no restart.
    let hash = |h: &Harness| {
        h.fake.get(STATEFULSETS, NS, "demo").unwrap()["spec"]["template"]["metadata"]["annotations"]
            [CONFIG_HASH_ANNOTATION]
            .clone()
    };
    let hash_before = hash(&h);
    h.fake.update(CLUSTERS, NS, "demo", |c| {
        c["spec"]["config"]["log.retention.hours"] = json!("72")
    });
    h.reconcile_cluster("demo").unwrap();
    assert_eq!(
        hash(&h),
        hash_before,
        "a live setting does not roll brokers"
    );
    let config = h.fake.get("api/v1/configmaps", NS, "demo-config").unwrap();
    assert!(config["data"]["server.properties"]
        .as_str()
        .unwrap()
        .contains("log.retention.hours=72\n"));
    assert_eq!(
        broker_setting(&bootstrap, "log.retention.hours"),
        (Some("72".into()), ConfigSource::DynamicDefaultBroker)
    );
    assert_eq!(h.status("demo")["observedGeneration"], 2);
    assert_eq!(h.status("demo")["liveConfig"]["log.retention.hours"], "72");
    assert!(
        (0..3).all(|i| pod_exists(&h.fake, "demo", i)),
        "nobody restarted"
    );
    h.fake.update(CLUSTERS, NS, "demo", |c| {
        c["spec"]["config"]
            .as_object_mut()
            .unwrap()
            .remove("log.retention.hours");
    });
    h.reconcile_cluster("demo").unwrap();
    assert_ne!(
        broker_setting(&bootstrap, "log.retention.hours").1,
        ConfigSource::DynamicDefaultBroker,
        "removed live too"
    );

    // A new image changes the template: the roll waits while a partition
    // is under-replicated...
    let admin = admin_client(&bootstrap);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in block_on(admin.create_topics(
        &[NewTopic::new("rolled", 3, TopicReplication::Fixed(3))],
        &opts,
    ))
    .unwrap()
    {
        r.unwrap();
    }
    wait_until(
        "the new topic is fully replicated",
        Duration::from_secs(30),
        || fully_replicated(&bootstrap),
    );
    h.fake.update(CLUSTERS, NS, "demo", |c| {
        c["spec"]["image"] = json!("registry.example.com/tideline:2")
    });
    h.reconcile_cluster("demo").unwrap();
    let template = h.fake.get(STATEFULSETS, NS, "demo").unwrap()["spec"]["template"].clone();
    assert_eq!(
        template["spec"]["containers"][0]["image"],
        "registry.example.com/tideline:2"
    );
    set_update_revision(&h.fake, "demo", "rev-2");
    brokers.brokers[1].pause();
    wait_until("broker 1 leaves an ISR", Duration::from_secs(30), || {
        !fully_replicated(&bootstrap)
    });
    h.reconcile_cluster("demo").unwrap();
    let status = h.status("demo");
    assert_eq!(
        condition(&status, "Reconciling")["reason"],
        "RollWaiting",
        "{status}"
    );
    assert!(
        condition(&status, "Reconciling")["message"]
            .as_str()
            .unwrap()
            .contains("under-replicated"),
        "{status}"
    );
    assert!(
        (0..3).all(|i| pod_exists(&h.fake, "demo", i)),
        "no restart while under-replicated"
    );
    brokers.brokers[1].resume();
    wait_until("the ISRs are full again", Duration::from_secs(60), || {
        fully_replicated(&bootstrap)
    });

    // ...then restarts one broker at a time, the controller last. The
    // controller is judged at each restart, from the status of the reconcile
    // that chose it: a resumed broker may call an election (the quorum has no
    // pre-vote), so the controller before the roll need not be the one after.
    let mut order = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while order.len() < 3 || (0..3).any(|i| !pod_exists(&h.fake, "demo", i)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the roll did not finish: restarted {order:?}, status {}",
            h.status("demo")
        );
        h.reconcile_cluster("demo").unwrap();
        let Some(deleted) = (0..3).find(|i| !pod_exists(&h.fake, "demo", *i)) else {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        // Judged on what the reconcile that chose the restart saw: the
        // cluster may change after it (a follower that just rejoined can
        // drop out of an ISR again for a moment).
        let status = h.status("demo");
        assert_eq!(
            (
                status["underReplicatedPartitions"].as_i64(),
                status["offlinePartitions"].as_i64()
            ),
            (Some(0), Some(0)),
            "broker {deleted} restarted while a partition was under-replicated; status {status}"
        );
        assert_eq!(status["restartingBroker"]["broker"], deleted);
        if order.len() < 2 {
            assert_ne!(
                status["controllerId"], deleted,
                "the active controller is restarted last; order so far {order:?}"
            );
        }
        order.push(deleted);
        brokers.brokers[deleted as usize].restart();
        put_pod(&h.fake, "demo", deleted, "rev-2");
        // Not yet back in every ISR: the next restart has to wait.
    }
    assert_eq!(order.len(), 3, "every broker restarted once: {order:?}");
    assert_eq!(h.event_count("RestartingBroker"), 3);
    wait_until("the roll finishes", Duration::from_secs(60), || {
        h.reconcile_cluster("demo").unwrap();
        h.status("demo")["phase"] == "Running"
    });
    assert!(h.status("demo")["restartingBroker"].is_null());

    // A broker that does not come back stops the roll with a Warning.
    h.fake.update(CLUSTERS, NS, "demo", |c| {
        c["spec"]["image"] = json!("registry.example.com/tideline:3")
    });
    h.reconcile_cluster("demo").unwrap();
    set_update_revision(&h.fake, "demo", "rev-3");
    wait_until("a broker is restarted", Duration::from_secs(60), || {
        h.reconcile_cluster("demo").unwrap();
        (0..3).any(|i| !pod_exists(&h.fake, "demo", i))
    });
    let lost = (0..3).find(|i| !pod_exists(&h.fake, "demo", *i)).unwrap();
    brokers.brokers[lost as usize].kill();
    std::thread::sleep(Duration::from_secs(4));
    h.reconcile_cluster("demo").unwrap();
    let status = h.status("demo");
    let warning = condition(&status, "Warning");
    assert_eq!(
        (warning["status"].as_str(), warning["reason"].as_str()),
        (Some("True"), Some("BrokerNotReturning")),
        "{status}"
    );
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains(&format!("broker {lost}")),
        "{warning}"
    );
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(status["phase"], "Degraded");
    assert_eq!(h.event_count("BrokerNotReturning"), 1);
    h.reconcile_cluster("demo").unwrap();
    assert_eq!(
        (0..3).filter(|i| !pod_exists(&h.fake, "demo", *i)).count(),
        1,
        "the roll stopped"
    );
    // Once it is back, the roll resumes and the Warning clears.
    brokers.brokers[lost as usize].restart();
    put_pod(&h.fake, "demo", lost, "rev-3");
    wait_until("the roll resumes", Duration::from_secs(60), || {
        h.reconcile_cluster("demo").unwrap();
        condition(&h.status("demo"), "Warning")["status"] == "False"
    });
}

#[test]
fn invalid_specs_failures_and_monitoring_objects() {
    // No broker: the cluster is "starting" throughout.
    let h = Harness::new(
        format!("127.0.0.1:{}", free_port()),
        Duration::from_secs(600),
    );
    let resource = cluster_resource(
        "bad",
        json!({ "replicas": 3, "config": { "min.insync.replicas": "zero" } }),
    );
    h.fake.create(CLUSTERS, resource);

    // Invalid: a condition naming the field, an Event, nothing applied.
    let action = h.reconcile_cluster("bad").unwrap();
    assert_eq!(action, Action::await_change());
    let status = h.status("bad");
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("InvalidSpec"))
    );
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.config[\"min.insync.replicas\"]:"),
        "{ready}"
    );
    assert_eq!(condition(&status, "Warning")["status"], "True");
    assert_eq!(status["phase"], "Failed");
    assert!(h.fake.get(STATEFULSETS, NS, "bad").is_none());
    let events = h.events("InvalidSpec");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "Warning");

    // Fixed, with monitoring on: applied, the Warning cleared.
    h.fake.update(CLUSTERS, NS, "bad", |c| {
        c["spec"]["config"] = json!({ "min.insync.replicas": "2" });
        c["spec"]["monitoring"] = json!({ "serviceMonitor": true, "prometheusRule": true });
    });
    h.reconcile_cluster("bad").unwrap();
    assert!(h.fake.get(STATEFULSETS, NS, "bad").is_some());
    let status = h.status("bad");
    assert_eq!(condition(&status, "Warning")["status"], "False");
    assert_eq!(condition(&status, "Ready")["reason"], "BrokersUnreachable");
    assert_eq!(status["observedGeneration"], 2);
    let monitor = h
        .fake
        .get("apis/monitoring.coreos.com/v1/servicemonitors", NS, "bad")
        .expect("ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    let rule = h
        .fake
        .get("apis/monitoring.coreos.com/v1/prometheusrules", NS, "bad")
        .expect("PrometheusRule");
    assert!(rule["spec"]["groups"]
        .to_string()
        .contains("TidelineOfflinePartitions"));
    h.fake.update(CLUSTERS, NS, "bad", |c| {
        c["spec"]["monitoring"] = json!({ "serviceMonitor": false, "prometheusRule": false })
    });
    h.reconcile_cluster("bad").unwrap();
    assert!(h
        .fake
        .get("apis/monitoring.coreos.com/v1/servicemonitors", NS, "bad")
        .is_none());
    assert!(h
        .fake
        .get("apis/monitoring.coreos.com/v1/prometheusrules", NS, "bad")
        .is_none());

    // API failures: requeued with growing backoff, counted by reason.
    h.fake.fail_next(Method::PATCH, "statefulsets", 3);
    let object = h.cluster("bad");
    let mut delays = Vec::new();
    for _ in 0..3 {
        let error = h.reconcile_cluster("bad").expect_err("the apply fails");
        assert_eq!(error.reason(), "KubernetesApi");
        delays.push(error_policy(CLUSTER_CONTROLLER, &object, &error, &h.ctx));
    }
    assert_eq!(
        delays,
        [5, 10, 20].map(|s| Action::requeue(Duration::from_secs(s)))
    );
    assert_eq!(
        h.ctx
            .metrics
            .error_count(CLUSTER_CONTROLLER, "KubernetesApi"),
        3
    );
    h.reconcile_cluster("bad").expect("recovers");
    h.fake.fail_next(Method::PATCH, "statefulsets", 1);
    let error = h.reconcile_cluster("bad").unwrap_err();
    assert_eq!(
        error_policy(CLUSTER_CONTROLLER, &object, &error, &h.ctx),
        Action::requeue(Duration::from_secs(5)),
        "backoff reset by the success"
    );

    // The operator's /metrics, /healthz and /readyz over HTTP.
    let port = free_port();
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let state = tideline_operator::http::HttpState {
        metrics: h.ctx.metrics.clone(),
        ready: ready.clone(),
    };
    h.runtime.spawn(tideline_operator::http::serve(
        ([127, 0, 0, 1], port).into(),
        state,
    ));
    let get = |path: &str| {
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until(
            "the operator's HTTP server listens",
            Duration::from_secs(10),
            || std::net::TcpStream::connect(addr).is_ok(),
        );
        tideline_tests::http::get(addr, path).expect("the operator answers")
    };
    let metrics = get("/metrics");
    let body = String::from_utf8_lossy(&metrics.body).to_string();
    assert_eq!(metrics.status, 200);
    assert!(body.contains("tideline_operator_reconcile_errors_total{controller=\"kafkacluster\",reason=\"KubernetesApi\"} 4"), "{body}");
    assert!(body.contains(
        "tideline_operator_reconcile_duration_seconds_count{controller=\"kafkacluster\"}"
    ));
    assert!(body.contains(
        "tideline_operator_last_reconcile_timestamp_seconds{controller=\"kafkacluster\"}"
    ));
    assert_eq!(get("/healthz").status, 200);
    assert_eq!(get("/readyz").status, 503);
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(get("/readyz").status, 200);
}

fn topic_resource(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "kafka.tideline.dev/v1alpha1",
        "kind": "KafkaTopic",
        "metadata": { "name": name, "namespace": NS },
        "spec": spec,
    })
}

#[test]
fn the_topic_controller_creates_alters_repairs_and_deletes_through_a_finalizer() {
    let broker = Broker::start(BrokerOpts::new().set("auto.create.topics.enable", "false"));
    let bootstrap = broker.bootstrap();
    let h = Harness::new(bootstrap.clone(), Duration::from_secs(600));
    h.fake.create(
        CLUSTERS,
        cluster_resource("local", json!({ "replicas": 1 })),
    );
    h.fake.create(
        TOPICS,
        topic_resource("orders", json!({ "clusterRef": "local", "partitions": 3, "replicationFactor": 1, "config": { "retention.ms": "3600000" } })),
    );

    // First the finalizer, then the topic.
    assert_eq!(h.reconcile_topic("orders").unwrap(), Action::await_change());
    assert_eq!(
        h.fake.get(TOPICS, NS, "orders").unwrap()["metadata"]["finalizers"],
        json!([topic::FINALIZER])
    );
    assert_eq!(
        h.reconcile_topic("orders").unwrap(),
        Action::requeue(Duration::from_secs(60))
    );
    assert_eq!(
        topic_as_seen_by_rdkafka(&bootstrap, "orders"),
        Some((3, vec![("retention.ms".into(), "3600000".into())]))
    );
    let status = h.fake.get(TOPICS, NS, "orders").unwrap()["status"].clone();
    assert_eq!(condition(&status, "Ready")["status"], "True", "{status}");
    assert_eq!(
        (
            status["partitions"].as_i64(),
            status["replicationFactor"].as_i64()
        ),
        (Some(3), Some(1))
    );
    assert!(
        status["topicId"].as_str().is_some_and(|id| id.len() == 22),
        "Kafka's base64 topic id: {status}"
    );
    assert_eq!(h.event_count("TopicCreated"), 1);

    // More partitions and a config change, applied incrementally.
    h.fake.update(TOPICS, NS, "orders", |t| {
        t["spec"]["partitions"] = json!(5);
        t["spec"]["config"] =
            json!({ "retention.ms": "7200000", "cleanup.policy": "compact,delete" });
    });
    h.reconcile_topic("orders").unwrap();
    assert_eq!(
        topic_as_seen_by_rdkafka(&bootstrap, "orders"),
        Some((
            5,
            vec![
                ("cleanup.policy".into(), "compact,delete".into()),
                ("retention.ms".into(), "7200000".into())
            ]
        ))
    );
    assert_eq!(
        h.fake.get(TOPICS, NS, "orders").unwrap()["status"]["observedGeneration"],
        2
    );

    // Drift: an out-of-band change is reverted on the next resync.
    let admin = admin_client(&bootstrap);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let drift = AlterConfig::new(ResourceSpecifier::Topic("orders")).set("retention.ms", "1000");
    for r in block_on(admin.alter_configs(&[drift], &opts)).unwrap() {
        r.unwrap();
    }
    assert!(topic_as_seen_by_rdkafka(&bootstrap, "orders")
        .unwrap()
        .1
        .contains(&("retention.ms".into(), "1000".into())));
    h.reconcile_topic("orders").unwrap();
    assert!(topic_as_seen_by_rdkafka(&bootstrap, "orders")
        .unwrap()
        .1
        .contains(&("retention.ms".into(), "7200000".into())));

    // A decrease is refused with a Warning that says why.
    h.fake
        .update(TOPICS, NS, "orders", |t| t["spec"]["partitions"] = json!(2));
    h.reconcile_topic("orders").unwrap();
    let status = h.fake.get(TOPICS, NS, "orders").unwrap()["status"].clone();
    let warning = condition(&status, "Warning");
    assert_eq!(
        (warning["status"].as_str(), warning["reason"].as_str()),
        (Some("True"), Some("PartitionDecreaseRefused"))
    );
    assert!(
        warning["message"].as_str().unwrap().contains('5'),
        "{warning}"
    );
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(topic_as_seen_by_rdkafka(&bootstrap, "orders").unwrap().0, 5);
    assert_eq!(h.event_count("PartitionDecreaseRefused"), 1);

    // Deletion through the finalizer deletes the topic, then the resource.
    let topics: Api<KafkaTopic> = {
        let _entered = h.runtime.enter();
        Api::namespaced(h.ctx.client.clone(), NS)
    };
    h.runtime
        .block_on(topics.delete("orders", &DeleteParams::default()))
        .unwrap();
    assert!(
        h.fake.get(TOPICS, NS, "orders").unwrap()["metadata"]["deletionTimestamp"].is_string(),
        "held by the finalizer"
    );
    h.reconcile_topic("orders").unwrap();
    assert!(
        h.fake.get(TOPICS, NS, "orders").is_none(),
        "finalizer removed"
    );
    wait_until(
        "the topic is gone from Kafka",
        Duration::from_secs(10),
        || topic_as_seen_by_rdkafka(&bootstrap, "orders").is_none(),
    );

    // keepOnDelete, and an existing topic adopted.
    for r in block_on(admin.create_topics(
        &[NewTopic::new(
            "legacy_events",
            2,
            TopicReplication::Fixed(1),
        )],
        &opts,
    ))
    .unwrap()
    {
        r.unwrap();
    }
    h.fake.create(
        TOPICS,
        topic_resource("legacy-events", json!({ "clusterRef": "local", "topicName": "legacy_events", "partitions": 2, "replicationFactor": 1, "keepOnDelete": true })),
    );
    h.reconcile_topic("legacy-events").unwrap();
    h.reconcile_topic("legacy-events").unwrap();
    let status = h.fake.get(TOPICS, NS, "legacy-events").unwrap()["status"].clone();
    assert_eq!(
        condition(&status, "Ready")["status"],
        "True",
        "adopted: {status}"
    );
    assert_eq!(h.event_count("TopicCreated"), 1, "not created again");
    h.runtime
        .block_on(topics.delete("legacy-events", &DeleteParams::default()))
        .unwrap();
    h.reconcile_topic("legacy-events").unwrap();
    assert!(h.fake.get(TOPICS, NS, "legacy-events").is_none());
    assert_eq!(
        topic_as_seen_by_rdkafka(&bootstrap, "legacy_events").map(|t| t.0),
        Some(2),
        "kept in Kafka"
    );

    // A topic of a cluster that does not exist waits with a condition.
    h.fake.create(
        TOPICS,
        topic_resource("stray", json!({ "clusterRef": "nowhere", "partitions": 1 })),
    );
    h.reconcile_topic("stray").unwrap();
    assert_eq!(
        h.reconcile_topic("stray").unwrap(),
        Action::requeue(Duration::from_secs(15))
    );
    let status = h.fake.get(TOPICS, NS, "stray").unwrap()["status"].clone();
    assert_eq!(condition(&status, "Ready")["reason"], "ClusterNotFound");
    assert!(condition(&status, "Ready")["message"]
        .as_str()
        .unwrap()
        .contains("spec.clusterRef"));
}

#[test]
fn rack_awareness_copies_each_brokers_node_label_into_its_pod() {
    let h = Harness::new(
        format!("127.0.0.1:{}", free_port()),
        Duration::from_secs(600),
    );
    let zone = "topology.kubernetes.io/zone";
    h.fake.create(
        CLUSTERS,
        cluster_resource(
            "zoned",
            json!({ "replicas": 3, "rack": { "topologyKey": zone } }),
        ),
    );
    for (node, label) in [("n1", Some("eu-1a")), ("n2", Some("eu-1b")), ("n3", None)] {
        let labels = label.map_or(json!({}), |l| json!({ zone: l }));
        h.fake.create("api/v1/nodes", json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": node, "labels": labels } }));
    }
    for (i, node) in ["n1", "n2", "n3"].iter().enumerate() {
        put_pod(&h.fake, "zoned", i as i32, "rev-1");
        h.fake.update(PODS, NS, &format!("zoned-{i}"), |p| {
            p["spec"]["nodeName"] = json!(node)
        });
    }
    h.reconcile_cluster("zoned").unwrap();

    let rack = |i: i32| {
        h.fake.get(PODS, NS, &format!("zoned-{i}")).unwrap()["metadata"]["annotations"]
            ["kafka.tideline.dev/rack"]
            .clone()
    };
    assert_eq!(
        (rack(0), rack(1), rack(2)),
        (json!("eu-1a"), json!("eu-1b"), Value::Null)
    );
    let warning = condition(&h.status("zoned"), "Warning");
    assert_eq!(warning["reason"], "NodeWithoutRackLabel", "{warning}");
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("zoned-2 (node n3)"),
        "{warning}"
    );

    // The pods wait for the annotation and read it into broker.rack.
    let pod = h.fake.get(STATEFULSETS, NS, "zoned").unwrap()["spec"]["template"]["spec"].clone();
    assert_eq!(pod["initContainers"][0]["name"], "wait-for-rack");
    assert!(pod["containers"][0]["env"]
        .to_string()
        .contains("TIDELINE_BROKER_RACK"));
    assert_eq!(pod["topologySpreadConstraints"][0]["topologyKey"], zone);

    h.fake.update("api/v1/nodes", "", "n3", |n| {
        n["metadata"]["labels"] = json!({ zone: "eu-1c" })
    });
    h.reconcile_cluster("zoned").unwrap();
    assert_eq!(rack(2), json!("eu-1c"));
    assert_eq!(condition(&h.status("zoned"), "Warning")["status"], "False");
}

#[test]
fn the_metadata_quorum_keeps_its_voters_when_the_cluster_scales() {
    let h = Harness::new(
        format!("127.0.0.1:{}", free_port()),
        Duration::from_secs(600),
    );
    h.fake.create(
        CLUSTERS,
        cluster_resource("small", json!({ "replicas": 1 })),
    );
    h.reconcile_cluster("small").unwrap();
    assert_eq!(h.status("small")["quorumVoters"], 1);
    let voters = |h: &Harness| {
        let config = h.fake.get("api/v1/configmaps", NS, "small-config").unwrap();
        config["data"]["server.properties"]
            .as_str()
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("controller.quorum.voters=")
                    .map(str::to_string)
            })
            .unwrap()
    };
    assert_eq!(voters(&h), "0@small-0.small-headless.streaming.svc:9093");

    // Scaling out keeps the single voter (the default would now be 3).
    h.fake
        .update(CLUSTERS, NS, "small", |c| c["spec"]["replicas"] = json!(3));
    h.reconcile_cluster("small").unwrap();
    assert_eq!(voters(&h), "0@small-0.small-headless.streaming.svc:9093");
    let sts = h.fake.get(STATEFULSETS, NS, "small").unwrap();
    assert_eq!(sts["spec"]["replicas"], 3);

    // Asking for another quorum is refused, naming the field.
    h.fake.update(CLUSTERS, NS, "small", |c| {
        c["spec"]["controllers"] = json!(3)
    });
    h.reconcile_cluster("small").unwrap();
    let ready = condition(&h.status("small"), "Ready");
    assert_eq!(ready["reason"], "InvalidSpec");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.controllers:"),
        "{ready}"
    );
    assert_eq!(
        voters(&h),
        "0@small-0.small-headless.streaming.svc:9093",
        "nothing changed"
    );
}
