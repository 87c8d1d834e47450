//! Fetch responses send large record sets straight from the segment file
//! (`sendfile`): what a consumer or a follower receives is the segment's
//! bytes, exactly, at every fetch version, and the path is really taken.

use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use tideline_tests::clients::{
    create_replicated_topic, producer_config, reliable_producer_config, TestProducer,
};
use tideline_tests::cluster::Cluster;
use tideline_tests::disk::{newest_segment, partition_dir};
use tideline_tests::wire::RawConn;
use tideline_tests::{consume_all, create_topic, wait_for, Broker, TestRecord};

/// The broker sends record sets from this size on from the file.
const SENT_FROM_FILE_AT_LEAST: usize = 64 * 1024;
const RECORDS: u64 = 400;
const SENT_BYTES: &str = "tideline_fetch_sendfile_bytes_total";

/// Record `i`: 8 KiB that differ from every other record's.
fn value(i: u64) -> Vec<u8> {
    let mut v = format!("record-{i:06}-").into_bytes();
    v.extend((0..8 * 1024u64).map(|j| ((i * 31 + j * 7) % 251) as u8));
    v
}

/// Produces the records in large batches (each well over the threshold).
fn produce(mut config: rdkafka::ClientConfig, topic: &str) {
    config.set("linger.ms", "100").set("batch.size", "1000000");
    let producer = TestProducer::new(&config);
    for i in 0..RECORDS {
        producer.send(topic, Some(0), &TestRecord::value(value(i)));
    }
    producer.expect_all_delivered(Duration::from_secs(60));
}

fn assert_consumed_exactly(bootstrap: &str, topic: &str) {
    let consumed = consume_all(bootstrap, topic, &[(0, RECORDS as i64)]);
    let values: Vec<Vec<u8>> = consumed[&0]
        .iter()
        .map(|r| r.value.clone().unwrap())
        .collect();
    assert_eq!(values.len(), RECORDS as usize);
    for (i, v) in values.iter().enumerate() {
        assert!(*v == value(i as u64), "record {i} differs");
    }
}

fn fetch_from_start(topic: &str) -> FetchRequest {
    let mut request = FetchRequest::default();
    request.replica_id = kafka_protocol::messages::BrokerId(-1);
    request.max_wait_ms = 100;
    request.min_bytes = 1;
    request.max_bytes = 8 << 20;
    let mut partition = FetchPartition::default();
    partition.partition = 0;
    partition.fetch_offset = 0;
    partition.partition_max_bytes = 2 << 20;
    partition.current_leader_epoch = -1;
    partition.log_start_offset = -1;
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = TopicName(StrBytes::from_string(topic.to_string()));
    fetch_topic.partitions.push(partition);
    request.topics.push(fetch_topic);
    request
}

#[test]
fn a_fetch_sends_large_record_sets_from_the_segment_file_byte_for_byte() {
    let broker = Broker::start_with(&[]);
    let topic = "sent-from-file";
    create_topic(&broker.bootstrap(), topic, 1, &[]);
    produce(producer_config(&broker.bootstrap()), topic);

    let segment =
        std::fs::read(newest_segment(&partition_dir(broker.data_dir(), topic, 0)).path).unwrap();
    let mut conn = RawConn::connect(broker.kafka_addr());
    let mut sent = 0;
    // Named by topic: v4 (no sessions), v7 (sessions, full fetch), v12
    // (flexible encoding, varint lengths).
    for version in [4, 7, 12] {
        let response = conn.request(&fetch_from_start(topic), version).unwrap();
        let data = &response.responses[0].partitions[0];
        assert_eq!(data.error_code, 0, "v{version}");
        let records = data.records.clone().unwrap();
        assert!(
            records.len() >= SENT_FROM_FILE_AT_LEAST,
            "v{version}: {} bytes is too little to be sent from the file",
            records.len()
        );
        assert!(
            records[..] == segment[..records.len()],
            "v{version}: the records are the segment's first {} bytes",
            records.len()
        );
        sent += records.len();
    }
    assert!(
        broker.metric(SENT_BYTES) >= sent as f64,
        "{SENT_BYTES} counts what went out with sendfile"
    );
    // The connection still frames what follows correctly.
    assert!(!conn.api_versions().api_keys.is_empty());
    assert_consumed_exactly(&broker.bootstrap(), topic);
}

#[test]
fn followers_replicate_large_batches_the_leader_sends_from_its_file() {
    let mut cluster = Cluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    let topic = "replicated-from-file";
    create_replicated_topic(&bootstrap, topic, 1, 3, &[("min.insync.replicas", "3")]);
    produce(reliable_producer_config(&bootstrap), topic);

    // acks=all with min.insync.replicas=3: every follower has every batch.
    let segment_of = |cluster: &mut Cluster, id: i32| {
        let node = cluster.node(id);
        std::fs::read(newest_segment(&partition_dir(node.data_dir(), topic, 0)).path).unwrap()
    };
    let longest = (1..=3)
        .map(|id| segment_of(&mut cluster, id).len())
        .max()
        .unwrap();
    assert!(longest > RECORDS as usize * 8 * 1024);
    wait_for(
        "every replica's segment to match",
        Duration::from_secs(30),
        || {
            let copies: Vec<Vec<u8>> = (1..=3).map(|id| segment_of(&mut cluster, id)).collect();
            copies.windows(2).all(|w| w[0] == w[1]).then_some(())
        },
    );
    let sent: f64 = cluster.nodes.iter().map(|n| n.metric(SENT_BYTES)).sum();
    assert!(
        sent >= longest as f64,
        "the leader sent at least half of the two followers' copies from its file \
         ({sent} of {} bytes)",
        2 * longest
    );
    assert_consumed_exactly(&bootstrap, topic);
}
