//! ISR replication between real broker processes: followers fetch from
//! leaders, `acks=all` waits for the ISR, leadership fails over to an
//! in-sync replica, `min.insync.replicas` refuses writes it cannot honour,
//! and a follower that diverged is truncated before it rejoins.

use std::time::{Duration, Instant};

use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ElectLeadersRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use tideline_tests::clients::reliable_producer_config;
use tideline_tests::cluster::Cluster;
use tideline_tests::wire::{produce_request, record_batch, RawConn};
use tideline_tests::{admin_client, block_on, consume_all, TestProducer, TestRecord};

/// Fast failure detection so fail-over happens within seconds.
const FAST: &[(&str, &str)] = &[
    ("broker.heartbeat.interval.ms", "300"),
    ("broker.session.timeout.ms", "3000"),
    ("replica.lag.time.max.ms", "4000"),
    ("controlled.shutdown.timeout.ms", "10000"),
];

/// (leader, isr, replicas) of a partition as node `via` answers Metadata.
fn partition_state(
    cluster: &Cluster,
    via: i32,
    topic: &str,
    partition: i32,
) -> Option<(i32, Vec<i32>, Vec<i32>)> {
    let node = &cluster.nodes[via as usize - 1];
    let mut conn = RawConn::connect(node.kafka_addr());
    let mut t = MetadataRequestTopic::default();
    t.name = Some(TopicName(StrBytes::from_string(topic.into())));
    let mut request = MetadataRequest::default();
    request.topics = Some(vec![t]);
    let response = conn.request(&request, 12).ok()?;
    let t = response.topics.first()?;
    let p = t
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)?;
    let mut isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
    isr.sort_unstable();
    Some((
        p.leader_id.0,
        isr,
        p.replica_nodes.iter().map(|b| b.0).collect(),
    ))
}

/// Waits until node `via` reports `check` true for the partition's state.
fn wait_for_state(
    cluster: &Cluster,
    via: i32,
    topic: &str,
    partition: i32,
    what: &str,
    check: impl Fn(&(i32, Vec<i32>, Vec<i32>)) -> bool,
) -> (i32, Vec<i32>, Vec<i32>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = partition_state(cluster, via, topic, partition);
        if let Some(s) = &state {
            if check(s) {
                return s.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{topic}-{partition}: {what} never happened; last state {state:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn create_replicated(cluster: &Cluster, topic: &str, partitions: i32, rf: i32, min_isr: &str) {
    let admin = admin_client(&cluster.bootstrap());
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(rf))
        .set("min.insync.replicas", min_isr);
    for r in block_on(admin.create_topics(&[new], &opts)).expect("CreateTopics") {
        r.expect("topic created");
    }
}

fn create_assigned(cluster: &Cluster, topic: &str, replicas: &[i32], min_isr: &str) {
    let admin = admin_client(&cluster.bootstrap());
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let assignment = [replicas];
    let new = NewTopic::new(topic, 1, TopicReplication::Variable(&assignment))
        .set("min.insync.replicas", min_isr);
    for r in block_on(admin.create_topics(&[new], &opts)).expect("CreateTopics") {
        r.expect("topic created");
    }
}

fn reliable_producer(bootstrap: &str) -> TestProducer {
    TestProducer::new(&reliable_producer_config(bootstrap))
}

fn values(count: u64, from: u64) -> Vec<TestRecord> {
    (from..from + count)
        .map(|i| TestRecord::value(format!("record-{i:06}")))
        .collect()
}

/// Reads partition 0 of `topic` up to `end` and returns the values.
fn read_values(bootstrap: &str, topic: &str, end: i64) -> Vec<String> {
    consume_all(bootstrap, topic, &[(0, end)])[&0]
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap_or_default()).unwrap())
        .collect()
}

#[test]
fn acknowledged_records_survive_the_leader_being_killed_and_followers_catch_up() {
    let mut cluster = Cluster::start(3, FAST);
    let topic = "replicated";
    create_replicated(&cluster, topic, 1, 3, "2");
    let (leader, isr, _) = wait_for_state(&cluster, 1, topic, 0, "full ISR", |s| {
        s.0 > 0 && s.1.len() == 3
    });
    assert_eq!(isr, vec![1, 2, 3]);

    let producer = reliable_producer(&cluster.bootstrap());
    for r in values(500, 0) {
        producer.send(topic, Some(0), &r);
    }
    assert!(
        producer.flush(Duration::from_secs(60)),
        "first 500 delivered"
    );
    assert_eq!(producer.failed(), 0);

    // Kill the leader; measure until a record is acknowledged by the new one.
    let killed_at = Instant::now();
    cluster.node(leader).kill();
    let survivor = if leader == 1 { 2 } else { 1 };
    let first = producer.send(topic, Some(0), &TestRecord::value("record-000500"));
    while producer.outcomes()[first].is_none() {
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "no fail-over within 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let failover = killed_at.elapsed();
    println!("leader fail-over: kill to first acks=all produce acknowledged in {failover:?}");
    for r in values(499, 501) {
        producer.send(topic, Some(0), &r);
    }
    assert!(
        producer.flush(Duration::from_secs(60)),
        "second 500 delivered"
    );
    assert_eq!(
        producer.failed(),
        0,
        "acks=all with 2 of 3 replicas keeps accepting"
    );
    let (new_leader, isr, _) = wait_for_state(&cluster, survivor, topic, 0, "new leader", |s| {
        s.0 > 0 && s.0 != leader
    });
    assert!(
        !isr.contains(&leader),
        "the dead broker left the ISR: {isr:?}"
    );

    let expected: Vec<String> = (0..1000).map(|i| format!("record-{i:06}")).collect();
    let bootstrap = cluster.nodes[survivor as usize - 1].bootstrap();
    assert_eq!(
        read_values(&bootstrap, topic, 1000),
        expected,
        "no acknowledged record lost, none duplicated"
    );

    // The killed broker restarts as a follower, catches up and rejoins the ISR.
    cluster.node(leader).restart();
    wait_for_state(&cluster, new_leader, topic, 0, "ISR regrown", |s| {
        s.1.len() == 3
    });
    // Leadership back to the re-grown replica (a preferred election if it
    // is the first replica, else by killing the current leader): it serves
    // every record.
    elect_preferred(&cluster, new_leader, topic);
    let (now_leading, _, _) =
        wait_for_state(&cluster, new_leader, topic, 0, "preferred leader", |s| {
            s.0 == s.2[0]
        });
    if now_leading != leader {
        cluster.node(new_leader).kill();
        wait_for_state(
            &cluster,
            leader,
            topic,
            0,
            "fail-over to the re-grown replica",
            |s| s.0 == leader,
        );
    }
    let bootstrap = cluster.nodes[leader as usize - 1].bootstrap();
    assert_eq!(
        read_values(&bootstrap, topic, 1000),
        expected,
        "the re-grown replica has every record"
    );
}

/// ElectLeaders (preferred) for partition 0 of `topic`, through node `via`.
fn elect_preferred(cluster: &Cluster, via: i32, topic: &str) -> i16 {
    let mut request = ElectLeadersRequest::default();
    request.election_type = 0;
    request.timeout_ms = 30_000;
    let mut t = TopicPartitions::default();
    t.topic = TopicName(StrBytes::from_string(topic.into()));
    t.partitions = vec![0];
    request.topic_partitions = Some(vec![t]);
    let mut conn = RawConn::connect(cluster.nodes[via as usize - 1].kafka_addr());
    let response = conn.request(&request, 1).expect("ElectLeaders");
    response.replica_election_results[0].partition_result[0].error_code
}

#[test]
fn a_diverged_follower_is_truncated_to_the_new_leaders_log() {
    let mut cluster = Cluster::start(3, FAST);
    let topic = "diverge";
    create_assigned(&cluster, topic, &[1, 2, 3], "1");
    wait_for_state(&cluster, 2, topic, 0, "full ISR", |s| {
        s.0 == 1 && s.1.len() == 3
    });
    let producer = reliable_producer(&cluster.bootstrap());
    for r in (0..100).map(|i| TestRecord::value(format!("common-{i:03}"))) {
        producer.send(topic, Some(0), &r);
    }
    assert!(producer.flush(Duration::from_secs(60)));
    assert_eq!(producer.failed(), 0);
    drop(producer);

    // The followers freeze (briefly: not long enough to be fenced or leave
    // the ISR) while the leader takes acks=1 writes only it will ever have.
    cluster.node(2).pause();
    cluster.node(3).pause();
    // Fetches the followers had parked on the leader expire (an empty
    // response into a socket nobody reads); no new ones come.
    std::thread::sleep(Duration::from_millis(1000));
    let mut conn = RawConn::connect(cluster.nodes[0].kafka_addr());
    let mut unreplicated = produce_request(
        topic,
        0,
        record_batch(&[
            "lost-1".as_bytes(),
            "lost-2".as_bytes(),
            "lost-3".as_bytes(),
        ]),
    );
    unreplicated.acks = 1;
    let response = conn.request(&unreplicated, 9).expect("produce");
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    cluster.node(1).kill();
    cluster.node(2).resume();
    cluster.node(3).resume();

    // An in-sync follower takes over and writes at the same offsets.
    let (new_leader, _, _) =
        wait_for_state(&cluster, 2, topic, 0, "fail-over", |s| s.0 == 2 || s.0 == 3);
    let survivors = format!(
        "{},{}",
        cluster.nodes[1].bootstrap(),
        cluster.nodes[2].bootstrap()
    );
    let producer = reliable_producer(&survivors);
    for r in (0..50).map(|i| TestRecord::value(format!("new-{i:03}"))) {
        producer.send(topic, Some(0), &r);
    }
    assert!(producer.flush(Duration::from_secs(60)));
    assert_eq!(producer.failed(), 0);

    // The old leader comes back as a follower: it must drop its three
    // unreplicated records, then take the new leader's.
    cluster.node(1).restart();
    wait_for_state(&cluster, new_leader, topic, 0, "ISR regrown", |s| {
        s.1.len() == 3
    });
    assert_eq!(
        elect_preferred(&cluster, new_leader, topic),
        0,
        "preferred election"
    );
    wait_for_state(&cluster, 2, topic, 0, "broker 1 leads again", |s| s.0 == 1);
    let expected: Vec<String> = (0..100)
        .map(|i| format!("common-{i:03}"))
        .chain((0..50).map(|i| format!("new-{i:03}")))
        .collect();
    assert_eq!(
        read_values(&cluster.nodes[0].bootstrap(), topic, 150),
        expected
    );
    let log = std::fs::read_to_string(cluster.nodes[0].log_path()).unwrap();
    assert!(
        log.contains("truncated a diverged follower log"),
        "the truncation is logged"
    );
    assert_eq!(
        elect_preferred(&cluster, 1, topic),
        84,
        "ELECTION_NOT_NEEDED once preferred leads"
    );
}

#[test]
fn acks_all_is_refused_when_the_isr_is_below_min_insync_replicas() {
    // Voters 1-3; brokers 4 and 5 follow the metadata. The partition lives
    // on 4, 5 and 3 so two of its replicas can die while the quorum lives.
    let mut cluster = Cluster::start_mixed(3, 5, FAST);
    let topic = "min-isr";
    create_assigned(&cluster, topic, &[4, 5, 3], "2");
    wait_for_state(&cluster, 1, topic, 0, "full ISR", |s| {
        s.0 == 4 && s.1.len() == 3
    });
    let addr = cluster.nodes[3].kafka_addr();
    let mut conn = RawConn::connect(addr);
    let batch = record_batch(&["before".as_bytes()]);
    let response = conn
        .request(&produce_request(topic, 0, batch), 9)
        .expect("produce");
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);

    cluster.node(5).kill();
    cluster.node(3).kill();
    wait_for_state(&cluster, 1, topic, 0, "ISR shrunk to the leader", |s| {
        s.1 == vec![4]
    });
    let mut conn = RawConn::connect(addr);
    let batch = record_batch(&["refused".as_bytes()]);
    let response = conn
        .request(&produce_request(topic, 0, batch), 9)
        .expect("produce");
    let p = &response.responses[0].partition_responses[0];
    assert_eq!(
        p.error_code, 19,
        "NOT_ENOUGH_REPLICAS, got {:?}",
        p.error_message
    );
    let mut acks_one = produce_request(topic, 0, record_batch(&["acks=1".as_bytes()]));
    acks_one.acks = 1;
    let response = conn.request(&acks_one, 9).expect("produce");
    assert_eq!(
        response.responses[0].partition_responses[0].error_code, 0,
        "acks=1 is still accepted"
    );

    // A replica coming back catches up and rejoins; acks=all works again.
    cluster.node(5).restart();
    wait_for_state(&cluster, 1, topic, 0, "ISR regrown", |s| s.1 == vec![4, 5]);
    let batch = record_batch(&["after".as_bytes()]);
    let response = conn
        .request(&produce_request(topic, 0, batch), 9)
        .expect("produce");
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
}

/// A client may pipeline `acks=all` produce requests on one connection: the
/// broker appends them in request order and answers them in request order
/// (mixed with other requests), while their waits for the ISR overlap.
#[test]
fn pipelined_acks_all_produces_are_appended_and_answered_in_order() {
    use kafka_protocol::messages::{ProduceResponse, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, HeaderVersion};

    let cluster = Cluster::start(3, FAST);
    let topic = "pipelined";
    create_replicated(&cluster, topic, 1, 3, "2");
    let (leader, _, _) = wait_for_state(
        &cluster,
        1,
        topic,
        0,
        "a leader with a full ISR",
        |(l, isr, _)| *l > 0 && isr.len() == 3,
    );
    let mut conn = RawConn::connect(cluster.nodes[leader as usize - 1].kafka_addr());
    let requests = 30;
    let mut metadata = MetadataRequest::default();
    metadata.topics = Some(Vec::new());
    for i in 0..requests {
        let value = format!("pipelined-{i}");
        let produce = produce_request(topic, 0, record_batch(&[value.as_bytes()]));
        conn.send_frame(&RawConn::encode_request(&produce, 9, i * 2))
            .unwrap();
        conn.send_frame(&RawConn::encode_request(&metadata, 12, i * 2 + 1))
            .unwrap();
    }
    let mut offsets = Vec::new();
    for i in 0..requests * 2 {
        let mut frame = bytes::Bytes::from(conn.read_frame().unwrap());
        let is_produce = i % 2 == 0;
        let header_version = if is_produce {
            <ProduceResponse as HeaderVersion>::header_version(9)
        } else {
            <kafka_protocol::messages::MetadataResponse as HeaderVersion>::header_version(12)
        };
        let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
        assert_eq!(header.correlation_id, i, "responses in request order");
        if is_produce {
            let response = ProduceResponse::decode(&mut frame, 9).unwrap();
            let p = &response.responses[0].partition_responses[0];
            assert_eq!(p.error_code, 0, "produce {i}: {:?}", p.error_message);
            offsets.push(p.base_offset);
        }
    }
    assert_eq!(
        offsets,
        (0..requests as i64).collect::<Vec<_>>(),
        "appended in request order"
    );
    let values = read_values(&cluster.bootstrap(), topic, requests as i64);
    let expected: Vec<String> = (0..requests).map(|i| format!("pipelined-{i}")).collect();
    assert_eq!(values, expected);
}
