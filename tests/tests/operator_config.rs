//! The configuration the operator renders for a KafkaCluster — the shared
//! `server.properties` of its ConfigMap plus each pod's environment — runs
//! real broker processes that form a working cluster, so the operator's
//! idea of the broker's configuration and the broker's own cannot drift
//! apart unnoticed. The pods' DNS names are mapped to loopback ports.

use std::time::Duration;

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use tideline_operator::crd::{KafkaCluster, KafkaClusterSpec};
use tideline_tests::cluster::Cluster;
use tideline_tests::rendered_cluster::{rack_of, RenderedCluster};
use tideline_tests::wire::RawConn;
use tideline_tests::{
    admin_client, block_on, consume_all, producer_config, TestProducer, TestRecord,
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
        "rack": { "topologyKey": "topology.kubernetes.io/zone" },
    }))
    .unwrap();
    let mut cluster = KafkaCluster::new("demo", spec);
    cluster.metadata.namespace = Some("ns".into());
    let brokers = RenderedCluster::start(&cluster).brokers;
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
    // Each broker's rack came through the pod environment: brokers report
    // it, and replicas of a partition are placed in different racks
    // (zone-0 holds brokers 0 and 2, zone-1 broker 1).
    let mut conn = RawConn::connect(
        cluster
            .bootstrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap(),
    );
    let metadata = conn
        .request(&kafka_protocol::messages::MetadataRequest::default(), 12)
        .unwrap();
    let racks: Vec<(i32, Option<String>)> = metadata
        .brokers
        .iter()
        .map(|b| (b.node_id.0, b.rack.as_ref().map(|r| r.to_string())))
        .collect();
    assert_eq!(racks.len(), 3);
    for (id, rack) in &racks {
        assert_eq!(rack.as_deref(), Some(rack_of(*id).as_str()), "{racks:?}");
    }
    let pairs = NewTopic::new("rack-spread", 6, TopicReplication::Fixed(2));
    for r in block_on(admin.create_topics(&[pairs], &opts)).expect("CreateTopics") {
        r.expect("created");
    }
    let placed = admin
        .inner()
        .fetch_metadata(Some("rack-spread"), Duration::from_secs(10))
        .unwrap();
    for p in placed.topics()[0].partitions() {
        let zones: std::collections::BTreeSet<String> =
            p.replicas().iter().map(|b| rack_of(*b)).collect();
        assert_eq!(
            zones.len(),
            2,
            "partition {} spans both racks: {:?}",
            p.id(),
            p.replicas()
        );
    }

    let consumed = consume_all(
        &cluster.bootstrap(),
        "from-the-operator",
        &[(0, 10), (1, 10), (2, 10)],
    );
    assert_eq!(consumed.values().map(Vec::len).sum::<usize>(), 30);
}
