//! Partition reassignment through the Kafka admin APIs
//! (AlterPartitionReassignments / ListPartitionReassignments): a partition
//! moves to a new broker under continuous `acks=all` produce without losing
//! an acknowledged record, the replication throttle holds the move back,
//! and a scale-out followed by reassignment balances leadership.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ElectLeadersRequest,
    ListPartitionReassignmentsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use tideline_tests::cluster::Cluster;
use tideline_tests::jepsen::{check, Workload};
use tideline_tests::wire::RawConn;
use tideline_tests::{
    admin_client, block_on, consume_all, producer_config, TestProducer, TestRecord,
};

const FAST: &[(&str, &str)] = &[
    ("broker.heartbeat.interval.ms", "300"),
    ("broker.session.timeout.ms", "3000"),
    ("replica.lag.time.max.ms", "4000"),
];

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.into()))
}

/// (leader, replicas, isr) of every partition of `topic`, as node `via` sees it.
fn partitions(cluster: &Cluster, via: i32, topic: &str) -> Vec<(i32, Vec<i32>, Vec<i32>)> {
    let mut conn = RawConn::connect(cluster.nodes[via as usize - 1].kafka_addr());
    let mut t = MetadataRequestTopic::default();
    t.name = Some(name(topic));
    let mut request = MetadataRequest::default();
    request.topics = Some(vec![t]);
    let response = conn.request(&request, 12).expect("Metadata");
    let mut out: Vec<_> = response.topics[0]
        .partitions
        .iter()
        .map(|p| {
            let mut isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
            isr.sort_unstable();
            (
                p.partition_index,
                (
                    p.leader_id.0,
                    p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr,
                ),
            )
        })
        .collect();
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, s)| s).collect()
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// AlterPartitionReassignments; returns each partition's error code.
fn reassign(cluster: &Cluster, topic: &str, targets: &[(i32, Option<Vec<i32>>)]) -> Vec<i16> {
    let mut t = ReassignableTopic::default();
    t.name = name(topic);
    for (index, replicas) in targets {
        let mut p = ReassignablePartition::default();
        p.partition_index = *index;
        p.replicas = replicas
            .as_ref()
            .map(|r| r.iter().copied().map(BrokerId).collect());
        t.partitions.push(p);
    }
    let mut request = AlterPartitionReassignmentsRequest::default();
    request.timeout_ms = 30_000;
    request.allow_replication_factor_change = true;
    request.topics = vec![t];
    let mut conn = RawConn::connect(cluster.nodes[1].kafka_addr());
    let response = conn
        .request(&request, 0)
        .expect("AlterPartitionReassignments");
    assert_eq!(response.error_code, 0);
    response.responses[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

/// (replicas, adding, removing) of a reassignment in progress.
type Ongoing = (Vec<i32>, Vec<i32>, Vec<i32>);

/// Ongoing reassignments by partition.
fn ongoing(cluster: &Cluster, topic: &str) -> BTreeMap<i32, Ongoing> {
    let mut conn = RawConn::connect(cluster.nodes[0].kafka_addr());
    let response = conn
        .request(&ListPartitionReassignmentsRequest::default(), 0)
        .expect("ListPartitionReassignments");
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    response
        .topics
        .iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            (
                p.partition_index,
                (
                    ids(&p.replicas),
                    ids(&p.adding_replicas),
                    ids(&p.removing_replicas),
                ),
            )
        })
        .collect()
}

fn set_leader_throttle(cluster: &Cluster, broker: i32, rate: Option<&str>) {
    let admin = admin_client(&cluster.bootstrap());
    let mut config = AlterConfig::new(ResourceSpecifier::Broker(broker));
    if let Some(rate) = rate {
        config = config.set("leader.replication.throttled.rate", rate);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in block_on(admin.alter_configs(&[config], &opts)).expect("AlterConfigs") {
        r.expect("config altered");
    }
}

#[test]
fn a_partition_moves_to_a_new_broker_under_produce_without_losing_records() {
    let mut cluster = Cluster::start(3, FAST);
    let topic = "moving";
    let admin = admin_client(&cluster.bootstrap());
    let assignment: [&[i32]; 1] = [&[1, 2, 3]];
    let new = NewTopic::new(topic, 1, TopicReplication::Variable(&assignment))
        .set("min.insync.replicas", "2");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in block_on(admin.create_topics(&[new], &opts)).expect("CreateTopics") {
        r.expect("created");
    }
    wait_until("full ISR", Duration::from_secs(30), || {
        partitions(&cluster, 1, topic)[0].2.len() == 3
    });
    // 4 MB already there, so a throttled move takes a while.
    let mut config = producer_config(&cluster.bootstrap());
    config.set("acks", "all");
    let bulk = TestProducer::new(&config);
    let filler = TestRecord::value(vec![b'x'; 1000]);
    for _ in 0..4000 {
        bulk.send(topic, Some(0), &filler);
    }
    assert!(bulk.flush(Duration::from_secs(60)));
    assert_eq!(bulk.failed(), 0);

    set_leader_throttle(&cluster, 1, Some("200000"));
    // The topic keys kafka-reassign-partitions sets alongside are accepted.
    let admin = admin_client(&cluster.bootstrap());
    let config = AlterConfig::new(ResourceSpecifier::Topic(topic))
        .set("min.insync.replicas", "2")
        .set("leader.replication.throttled.replicas", "0:1,0:2,0:3")
        .set("follower.replication.throttled.replicas", "0:4");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in block_on(admin.alter_configs(&[config], &opts)).expect("AlterConfigs") {
        r.expect("throttled replicas accepted");
    }
    let added = cluster.add_broker();
    assert_eq!(added, 4);
    let workload = Workload::start(&cluster.bootstrap(), topic, 1, 1);
    std::thread::sleep(Duration::from_millis(500));

    assert_eq!(
        reassign(&cluster, topic, &[(0, Some(vec![2, 3, 4]))]),
        vec![0]
    );
    let moving = ongoing(&cluster, topic);
    assert_eq!(
        moving.get(&0).map(|m| (m.1.clone(), m.2.clone())),
        Some((vec![4], vec![1])),
        "in progress: {moving:?}"
    );
    // The throttle holds the new replica back: still moving a second later.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        ongoing(&cluster, topic).contains_key(&0),
        "the throttled move is still in progress"
    );
    // A cancel goes back; reassigning again and lifting the throttle finishes.
    assert_eq!(reassign(&cluster, topic, &[(0, None)]), vec![0]);
    assert!(ongoing(&cluster, topic).is_empty());
    let mut back = partitions(&cluster, 2, topic)[0].1.clone();
    back.sort_unstable();
    assert_eq!(back, vec![1, 2, 3], "cancelled: the original replicas");
    assert_eq!(
        reassign(&cluster, topic, &[(0, None)]),
        vec![85],
        "NO_REASSIGNMENT_IN_PROGRESS"
    );
    assert_eq!(
        reassign(&cluster, topic, &[(0, Some(vec![2, 3, 4]))]),
        vec![0]
    );
    set_leader_throttle(&cluster, 1, None);
    wait_until("reassignment complete", Duration::from_secs(60), || {
        let (leader, replicas, isr) = partitions(&cluster, 2, topic)[0].clone();
        replicas == vec![2, 3, 4] && isr == vec![2, 3, 4] && leader != 1
    });
    assert!(ongoing(&cluster, topic).is_empty());
    std::thread::sleep(Duration::from_millis(500));
    let history = workload.stop();
    assert_eq!(
        history.indeterminate, 0,
        "no produce failed during the move"
    );
    // Everything acknowledged is there exactly once, in order.
    let report = check(&cluster.nodes[3].bootstrap(), topic, 1, &history);
    println!("reassignment under produce: {report}");
    assert!(report.acknowledged > 0);
    assert!(
        report.lost.is_empty() && report.duplicated.is_empty() && report.reordered.is_empty(),
        "{report}"
    );
    assert_eq!(
        report.read,
        4000 + report.acknowledged,
        "the filler and every acknowledged record, once"
    );
    // The removed replica's log is deleted from broker 1.
    let dir = cluster.nodes[0].data_dir().join("moving-0");
    wait_until("old replica deleted", Duration::from_secs(30), || {
        !dir.exists()
    });
}

#[test]
fn scale_out_then_reassignment_balances_leaders() {
    let mut cluster = Cluster::start(3, FAST);
    let topic = "balanced";
    let admin = admin_client(&cluster.bootstrap());
    let new = NewTopic::new(topic, 5, TopicReplication::Fixed(2));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in block_on(admin.create_topics(&[new], &opts)).unwrap() {
        r.expect("created");
    }
    let mut config = producer_config(&cluster.bootstrap());
    config.set("acks", "all");
    let producer = TestProducer::new(&config);
    for i in 0..500u64 {
        producer.send(
            topic,
            Some((i % 5) as i32),
            &TestRecord::value(format!("v{i}")),
        );
    }
    assert!(producer.flush(Duration::from_secs(60)));
    cluster.add_broker();
    cluster.add_broker();
    // The new brokers lead nothing until partitions are moved onto them.
    let leaders: BTreeSet<i32> = partitions(&cluster, 1, topic).iter().map(|p| p.0).collect();
    assert!(!leaders.contains(&4) && !leaders.contains(&5));
    // One partition per broker: partition i on brokers i+1 and i+2 (mod 5).
    let plan: Vec<(i32, Option<Vec<i32>>)> = (0..5)
        .map(|i| (i, Some(vec![i % 5 + 1, (i + 1) % 5 + 1])))
        .collect();
    assert_eq!(reassign(&cluster, topic, &plan), vec![0; 5]);
    wait_until("moves complete", Duration::from_secs(60), || {
        ongoing(&cluster, topic).is_empty()
    });
    let mut request = ElectLeadersRequest::default();
    request.election_type = 0;
    request.timeout_ms = 30_000;
    let mut t = TopicPartitions::default();
    t.topic = name(topic);
    t.partitions = (0..5).collect();
    request.topic_partitions = Some(vec![t]);
    let mut conn = RawConn::connect(cluster.nodes[0].kafka_addr());
    conn.request(&request, 1).expect("ElectLeaders");
    wait_until("one leader per broker", Duration::from_secs(30), || {
        let leaders: BTreeSet<i32> = partitions(&cluster, 1, topic).iter().map(|p| p.0).collect();
        leaders == BTreeSet::from([1, 2, 3, 4, 5])
    });
    let consumed = consume_all(
        &cluster.bootstrap(),
        topic,
        &(0..5).map(|p| (p, 100)).collect::<Vec<_>>(),
    );
    assert_eq!(
        consumed.values().map(Vec::len).sum::<usize>(),
        500,
        "every record survived the moves"
    );
}
