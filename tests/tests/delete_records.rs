//! DeleteRecords (KIP-107) through librdkafka's AdminClient, against
//! Kafka's documented behaviour: the records below the requested offset are
//! gone for consumers and ListOffsets, a crash right after the answer does
//! not bring them back, and with three replicas the answer's low watermark
//! is reached only once every replica deleted them, so a new leader starts
//! there too. Kafka's refusals (a compacted topic, an offset past the high
//! watermark) and every advertised version of the API are checked as well.

use std::time::Duration;

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::AdminOptions;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tideline_tests::clients::{
    consume_range, create_replicated_topic, produce_all, reliable_producer_config, watermarks,
};
use tideline_tests::cluster::Cluster;
use tideline_tests::wire::RawConn;
use tideline_tests::{
    admin_client, block_on, consumer_config, create_topic, producer_config, unique_topic, wait_for,
    Broker, TestRecord,
};

/// The periodic checkpoint never runs during a test: what survives a crash
/// is what DeleteRecords itself wrote.
const NO_PERIODIC_CHECKPOINT: (&str, &str) = ("log.flush.offset.checkpoint.interval.ms", "3600000");

/// Fast failure detection, so a killed leader is replaced within seconds.
const FAST: &[(&str, &str)] = &[
    ("broker.heartbeat.interval.ms", "300"),
    ("broker.session.timeout.ms", "3000"),
    ("replica.lag.time.max.ms", "4000"),
    NO_PERIODIC_CHECKPOINT,
];

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
}

/// DeleteRecords below `offset` in partition 0 of `topic`: the low
/// watermark it answers with, or the partition's error.
fn delete_records(bootstrap: &str, topic: &str, offset: Offset) -> Result<i64, RDKafkaErrorCode> {
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(topic, 0, offset).unwrap();
    let admin = admin_client(bootstrap);
    let result = block_on(admin.delete_records(&offsets, &opts())).expect("DeleteRecords request");
    let partition = result
        .find_partition(topic, 0)
        .expect("partition 0 in the DeleteRecords result");
    match (partition.error(), partition.offset()) {
        (Ok(()), Offset::Offset(low_watermark)) => Ok(low_watermark),
        (Err(KafkaError::OffsetFetch(code)), _) => Err(code),
        other => panic!("DeleteRecords {topic}-0: unexpected result {other:?}"),
    }
}

fn values(count: u64) -> Vec<TestRecord> {
    (0..count)
        .map(|i| TestRecord::value(format!("record-{i:03}")))
        .collect()
}

/// The offsets a consumer starting at the earliest offset reads, up to `end`.
fn offsets_from_earliest(bootstrap: &str, topic: &str, end: i64) -> Vec<i64> {
    let consumed = consume_range(
        &consumer_config(bootstrap),
        topic,
        &[(0, Offset::Beginning)],
        &[(0, end)],
        Duration::from_secs(60),
    );
    consumed[&0].iter().map(|r| r.offset).collect()
}

#[test]
fn deleted_records_are_gone_for_consumers_and_stay_gone_after_a_crash() {
    let mut broker = Broker::start_with(&[NO_PERIODIC_CHECKPOINT]);
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("delete-records");
    create_topic(&bootstrap, &topic, 1, &[]);
    let delivered = produce_all(&producer_config(&bootstrap), &topic, &values(100));
    assert_eq!(delivered.last().map(|d| d.offset), Some(99));

    assert_eq!(
        delete_records(&bootstrap, &topic, Offset::Offset(40)),
        Ok(40)
    );
    assert_eq!(watermarks(&bootstrap, &topic, 0), (40, 100));
    assert_eq!(
        offsets_from_earliest(&bootstrap, &topic, 100),
        (40..100).collect::<Vec<_>>(),
        "a consumer from the earliest offset starts at the new log start"
    );
    // Lower than the log start: nothing changes, and it succeeds.
    assert_eq!(
        delete_records(&bootstrap, &topic, Offset::Offset(10)),
        Ok(40)
    );

    // A crash right after the answer: the log start was checkpointed
    // before it, so the deleted records do not come back.
    broker.kill();
    broker.restart();
    assert_eq!(watermarks(&bootstrap, &topic, 0), (40, 100));
    assert_eq!(
        offsets_from_earliest(&bootstrap, &topic, 100).first(),
        Some(&40)
    );

    // Offset::End (-1) deletes up to the high watermark.
    assert_eq!(delete_records(&bootstrap, &topic, Offset::End), Ok(100));
    assert_eq!(watermarks(&bootstrap, &topic, 0), (100, 100));
}

#[test]
fn compacted_topics_and_offsets_past_the_high_watermark_are_refused() {
    let broker = Broker::start_with(&[]);
    let bootstrap = broker.bootstrap();
    let plain = unique_topic("delete-records-range");
    create_topic(&bootstrap, &plain, 1, &[]);
    produce_all(&producer_config(&bootstrap), &plain, &values(10));
    assert_eq!(
        delete_records(&bootstrap, &plain, Offset::Offset(11)),
        Err(RDKafkaErrorCode::OffsetOutOfRange)
    );
    assert_eq!(
        watermarks(&bootstrap, &plain, 0),
        (0, 10),
        "nothing deleted"
    );

    let compacted = unique_topic("delete-records-compacted");
    create_topic(&bootstrap, &compacted, 1, &[("cleanup.policy", "compact")]);
    let keyed: Vec<TestRecord> = (0..10).map(|i| TestRecord::indexed(i, 20, 3)).collect();
    produce_all(&producer_config(&bootstrap), &compacted, &keyed);
    assert_eq!(
        delete_records(&bootstrap, &compacted, Offset::Offset(5)),
        Err(RDKafkaErrorCode::PolicyViolation)
    );
    assert_eq!(watermarks(&bootstrap, &compacted, 0), (0, 10));

    let mixed = unique_topic("delete-records-compact-delete");
    create_topic(
        &bootstrap,
        &mixed,
        1,
        &[("cleanup.policy", "compact,delete")],
    );
    produce_all(&producer_config(&bootstrap), &mixed, &keyed);
    assert_eq!(
        delete_records(&bootstrap, &mixed, Offset::Offset(5)),
        Ok(5),
        "a policy that includes delete allows it"
    );
}

/// Every advertised version answers, in request order, with Kafka's error
/// codes for an unknown partition and for an offset below -1.
#[test]
fn every_advertised_version_answers() {
    let broker = Broker::start_with(&[]);
    let topic = unique_topic("delete-records-versions");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    produce_all(&producer_config(&broker.bootstrap()), &topic, &values(10));
    let mut conn = RawConn::connect(broker.kafka_addr());
    let advertised = conn
        .api_versions()
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::DeleteRecords as i16)
        .map(|k| (k.min_version, k.max_version));
    assert_eq!(advertised, Some((0, 2)));
    // (partition, error code, low watermark) for each partition asked, in order.
    let mut delete = |v: i16, asked: &[(i32, i64)]| -> Vec<(i32, i16, i64)> {
        let mut t = DeleteRecordsTopic::default();
        t.name = TopicName(StrBytes::from_string(topic.clone()));
        for &(index, offset) in asked {
            let mut p = DeleteRecordsPartition::default();
            p.partition_index = index;
            p.offset = offset;
            t.partitions.push(p);
        }
        let mut request = DeleteRecordsRequest::default();
        request.topics = vec![t];
        request.timeout_ms = 10_000;
        let response = conn
            .request(&request, v)
            .unwrap_or_else(|e| panic!("DeleteRecords v{v}: {e}"));
        assert_eq!(response.throttle_time_ms, 0, "DeleteRecords v{v}");
        assert_eq!(response.topics.len(), 1, "DeleteRecords v{v}");
        response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code, p.low_watermark))
            .collect()
    };
    for v in 0..=2i16 {
        let offset = 1 + v as i64;
        assert_eq!(
            delete(v, &[(7, 1), (0, offset)]),
            // UNKNOWN_TOPIC_OR_PARTITION (3) for the partition that does not exist.
            vec![(7, 3, -1), (0, 0, offset)],
            "DeleteRecords v{v}"
        );
        assert_eq!(
            delete(v, &[(0, -2)]),
            vec![(0, 1, -1)],
            "DeleteRecords v{v}: OFFSET_OUT_OF_RANGE"
        );
    }
}

#[test]
fn with_three_replicas_the_answer_waits_until_every_replica_deleted_the_records() {
    let mut cluster = Cluster::start(3, FAST);
    let bootstrap = cluster.bootstrap();
    let topic = "delete-records-replicated";
    create_replicated_topic(&bootstrap, topic, 1, 3, &[("min.insync.replicas", "2")]);
    let delivered = produce_all(&reliable_producer_config(&bootstrap), topic, &values(100));
    assert_eq!(delivered.last().map(|d| d.offset), Some(99));

    // The low watermark in the answer is the smallest log start of the
    // three replicas: 50 means every one of them deleted the records.
    assert_eq!(
        delete_records(&bootstrap, topic, Offset::Offset(50)),
        Ok(50)
    );
    assert_eq!(watermarks(&bootstrap, topic, 0), (50, 100));

    // The leader dies: the new one starts at 50 as well.
    let leader = leader_of(&bootstrap, topic).expect("a leader");
    cluster.node(leader).kill();
    let survivors: Vec<String> = (1..=3)
        .filter(|&id| id != leader)
        .map(|id| cluster.nodes[id as usize - 1].bootstrap())
        .collect();
    let survivors = survivors.join(",");
    wait_for("a new leader", Duration::from_secs(60), || {
        leader_of(&survivors, topic)
            .filter(|&l| l > 0 && l != leader)
            .map(|_| ())
    });
    assert_eq!(watermarks(&survivors, topic, 0), (50, 100));
    assert_eq!(
        offsets_from_earliest(&survivors, topic, 100),
        (50..100).collect::<Vec<_>>()
    );
}

/// The leader of partition 0 of `topic` as the metadata says (-1: none).
fn leader_of(bootstrap: &str, topic: &str) -> Option<i32> {
    let admin = admin_client(bootstrap);
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .ok()?;
    let partition = metadata.topics().first()?.partitions().first()?.leader();
    Some(partition)
}
