//! The configuration the operator renders for a KafkaCluster — the shared
//! `server.properties` of its ConfigMap plus each pod's environment — runs
//! real broker processes that form a working cluster, so the operator's
//! idea of the broker's configuration and the broker's own cannot drift
//! apart unnoticed. The pods' DNS names are mapped to loopback ports.

use std::time::Duration;

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use tideline_operator::crd::{KafkaCluster, KafkaClusterSpec};
use tideline_operator::render::names::{CONTROLLER_PORT, KAFKA_PORT};
use tideline_operator::render::{broker_environment, server_properties, BrokerEnv, ClusterNames};
use tideline_tests::cluster::Cluster;
use tideline_tests::{
    admin_client, block_on, consume_all, free_port, producer_config, Broker, BrokerOpts,
    TestProducer, TestRecord,
};

#[test]
fn the_rendered_configuration_forms_a_working_three_broker_cluster() {
    let spec: KafkaClusterSpec = serde_json::from_value(serde_json::json!({
        "replicas": 3,
        "config": {
            "default.replication.factor": "3",
            "min.insync.replicas": "2",
            "num.partitions": "3",
        },
    }))
    .unwrap();
    let mut cluster = KafkaCluster::new("demo", spec);
    cluster.metadata.namespace = Some("ns".into());
    let properties = server_properties(&cluster).expect("a valid spec renders");
    let environment = broker_environment(&cluster);
    let names = ClusterNames::new("demo", "ns");

    // Loopback stand-ins for each pod's stable DNS name and ports.
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let to_loopback = |text: &str| -> String {
        let mut text = text.to_string();
        for (i, (kafka, controller)) in ports.iter().enumerate() {
            let host = names.pod_host(&names.pod(i as i32));
            text = text
                .replace(
                    &format!("{host}:{KAFKA_PORT}"),
                    &format!("127.0.0.1:{kafka}"),
                )
                .replace(
                    &format!("{host}:{CONTROLLER_PORT}"),
                    &format!("127.0.0.1:{controller}"),
                );
        }
        text
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.properties");
    std::fs::write(&file, to_loopback(&properties)).unwrap();

    let mut brokers: Vec<Broker> = ports
        .iter()
        .enumerate()
        .map(|(i, (kafka, controller))| {
            let pod = names.pod(i as i32);
            // What the StatefulSet's env gives pod i, as Kubernetes expands it.
            let env: Vec<(String, String)> = environment
                .iter()
                .map(|(name, source)| {
                    let value = match source {
                        BrokerEnv::PodField(field) if field == "metadata.name" => pod.clone(),
                        BrokerEnv::PodField(field) if field.contains("pod-index") => i.to_string(),
                        BrokerEnv::PodField(field) => panic!("no stand-in for pod field {field}"),
                        BrokerEnv::Value(v) => to_loopback(&v.replace("$(POD_NAME)", &pod)),
                    };
                    (name.clone(), value)
                })
                .collect();
            let mut opts = BrokerOpts::new().kafka_port(*kafka).set(
                "listeners",
                format!("PLAINTEXT://127.0.0.1:{kafka},CONTROLLER://127.0.0.1:{controller}"),
            );
            opts.config_file = Some(file.clone());
            opts.env = env;
            opts.ready_timeout = Duration::from_secs(60);
            Broker::launch(opts)
        })
        .collect();
    for b in &mut brokers {
        b.wait_ready();
    }
    let cluster = Cluster::from_nodes(brokers);
    assert!(
        cluster.controller_via(&[1, 2, 3]).is_some(),
        "a controller is elected"
    );

    // Defaults from spec.config apply: three replicas, min.insync.replicas 2.
    let admin = admin_client(&cluster.bootstrap());
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let new = NewTopic::new("from-the-operator", -1, TopicReplication::Fixed(-1));
    for r in block_on(admin.create_topics(&[new], &opts)).expect("CreateTopics") {
        r.expect("created with the rendered defaults");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let states = cluster.partition_states(&[1, 2, 3], "from-the-operator");
        if states
            .as_ref()
            .is_some_and(|s| s.len() == 3 && s.iter().all(|(l, isr)| *l >= 0 && isr.len() == 3))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "3 partitions with 3 in-sync replicas: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut config = producer_config(&cluster.bootstrap());
    config.set("acks", "all");
    let producer = TestProducer::new(&config);
    for i in 0..30 {
        producer.send(
            "from-the-operator",
            Some(i % 3),
            &TestRecord::value(format!("v{i}")),
        );
    }
    assert!(producer.flush(Duration::from_secs(30)));
    assert_eq!(producer.failed(), 0);
    let consumed = consume_all(
        &cluster.bootstrap(),
        "from-the-operator",
        &[(0, 10), (1, 10), (2, 10)],
    );
    assert_eq!(consumed.values().map(Vec::len).sum::<usize>(), 30);
}
