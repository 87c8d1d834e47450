//! A full disk, on a real size-limited tmpfs.
//!
//! (a) The reproduction of a lost-acknowledgement bug: a single broker with
//!     no reserve whose log directory fills up (a real ENOSPC from the
//!     kernel, part-way through a segment write). Produce is refused with a
//!     retriable KAFKA_STORAGE_ERROR while reads go on; once another
//!     tenant's file is deleted, writing resumes with no restart. Every
//!     acknowledged record — before and after the disk filled — is read
//!     back at its acknowledged offset, before and after a SIGKILL.
//! (b) With `log.dir.reserved.bytes`, client appends are refused before the
//!     file system is full, while a metadata change (creating a topic) and
//!     offset commits still succeed.
//! (c) In a 3-broker RF=3 `min.insync.replicas=2` cluster under a continuous
//!     `acks=all` load, one broker's disk fills: its leaderships move, the
//!     load goes on, nothing acknowledged is lost, and once space is freed
//!     the broker catches up and rejoins every ISR.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tideline_tests::clients::{
    consumer, create_replicated_topic, reliable_producer_config, watermarks,
};
use tideline_tests::cluster::Cluster;
use tideline_tests::jepsen::{self, Workload};
use tideline_tests::tmpfs::{Tmpfs, MIB};
use tideline_tests::{
    admin_client, block_on, consume_all, consumer_config, create_topic, unique_topic, wait_for,
    Broker, BrokerOpts, TestProducer, TestRecord,
};

const RECORD_BYTES: usize = 1024;

fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    wait_for(what, timeout, || done().then_some(()));
}

fn set_topic_config(bootstrap: &str, topic: &str, key: &str, value: &str) {
    let admin = admin_client(bootstrap);
    let alter = AlterConfig::new(ResourceSpecifier::Topic(topic)).set(key, value);
    let result =
        block_on(admin.alter_configs([&alter], &AdminOptions::new())).expect("AlterConfigs");
    assert!(result[0].is_ok(), "AlterConfigs {key}={value}: {result:?}");
}

/// Record `i`: its number, padded to 1 KiB.
fn record(i: u64) -> TestRecord {
    let mut value = format!("record-{i:012}-").into_bytes();
    value.resize(RECORD_BYTES, b'.');
    TestRecord {
        key: None,
        value: Some(value),
        headers: Vec::new(),
        timestamp: None,
    }
}

fn number_of(value: &[u8]) -> u64 {
    std::str::from_utf8(&value[7..19]).unwrap().parse().unwrap()
}

/// What a producer was told, record by record.
#[derive(Default)]
struct Ledger {
    /// Acknowledged offset → record number.
    acked: BTreeMap<i64, u64>,
    /// Client-side error → how many records ended with it.
    refused: BTreeMap<String, usize>,
}

impl Ledger {
    fn refused_total(&self) -> usize {
        self.refused.values().sum()
    }
}

/// Sends records `numbers` through `producer` and books how each ended.
fn send_and_book(
    producer: &TestProducer,
    topic: &str,
    numbers: std::ops::Range<u64>,
    ledger: &mut Ledger,
) {
    let first_id = producer.sent();
    for i in numbers.clone() {
        producer.send(topic, Some(0), &record(i));
    }
    assert!(
        producer.flush(Duration::from_secs(120)),
        "deliveries never completed"
    );
    let outcomes = producer.outcomes();
    for (i, outcome) in numbers.zip(&outcomes[first_id..]) {
        match outcome {
            Some(Ok(d)) => {
                let previous = ledger.acked.insert(d.offset, i);
                assert!(previous.is_none(), "offset {} acknowledged twice", d.offset);
            }
            Some(Err(e)) => *ledger.refused.entry(e.to_string()).or_default() += 1,
            None => unreachable!("flushed"),
        }
    }
}

/// Reads the partition up to its high watermark and checks that every
/// acknowledged record is at its acknowledged offset and that the log holds
/// nothing else at an acknowledged offset.
fn check_every_acknowledged_record(
    bootstrap: &str,
    topic: &str,
    ledger: &Ledger,
    when: &str,
) -> i64 {
    let (low, high) = watermarks(bootstrap, topic, 0);
    assert_eq!(low, 0, "{when}");
    let read = consume_all(bootstrap, topic, &[(0, high)]);
    let by_offset: BTreeMap<i64, u64> = read[&0]
        .iter()
        .map(|r| (r.offset, number_of(r.value.as_deref().unwrap())))
        .collect();
    let mut missing = Vec::new();
    for (offset, number) in &ledger.acked {
        match by_offset.get(offset) {
            Some(found) if found == number => {}
            Some(found) => panic!(
                "{when}: offset {offset} was acknowledged for record {number} but holds record {found}"
            ),
            None => missing.push(*offset),
        }
    }
    assert!(
        missing.is_empty(),
        "{when}: {} acknowledged records are gone (high watermark {high}); first: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    high
}

fn producer(bootstrap: &str) -> TestProducer {
    let mut config = reliable_producer_config(bootstrap);
    // Refused records fail within seconds instead of retrying for minutes.
    config
        .set("message.timeout.ms", "6000")
        .set("linger.ms", "2");
    TestProducer::new(&config)
}

#[test]
fn a_full_disk_loses_nothing_acknowledged_and_writing_resumes_when_space_returns() {
    let Some(disk) = Tmpfs::mount(96 * MIB) else {
        return;
    };
    disk.fill(40 * MIB);
    let data = disk.path().join("data");
    let mut broker = Broker::start(
        BrokerOpts::new()
            .set("log.dirs", data.display())
            .set("log.segment.bytes", 8 * MIB)
            // No reserve: the kernel's ENOSPC ends the writing, part-way
            // through a batch.
            .set("log.dir.reserved.bytes", 0),
    );
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("full-disk");
    create_topic(&bootstrap, &topic, 1, &[]);

    let producer = producer(&bootstrap);
    let mut ledger = Ledger::default();
    let mut next = 0u64;
    let started = Instant::now();
    while ledger.refused_total() == 0 {
        assert!(next < 200_000, "the 56 MiB left never filled up");
        send_and_book(&producer, &topic, next..next + 1000, &mut ledger);
        next += 1000;
    }
    let acked_before = ledger.acked.len();
    let refused_before = ledger.refused_total();
    eprintln!(
        "disk full after {:?}: {acked_before} acknowledged, {refused_before} refused ({:?})",
        started.elapsed(),
        ledger.refused
    );
    assert!(
        ledger
            .refused
            .keys()
            .all(|e| e.contains("KafkaStorageError")
                || e.contains("storage")
                || e.contains("timed out")),
        "refusals are storage errors or their retries timing out: {:?}",
        ledger.refused
    );
    assert_eq!(broker.metric("tideline_log_dir_refusing_appends"), 1.0);
    assert!(broker.metric("tideline_log_dir_write_errors_total{kind=\"no_space\"}") >= 1.0);
    let storage_errors =
        broker.metric("tideline_produce_errors_total{error=\"KafkaStorageError\"}");
    assert!(
        storage_errors >= 1.0,
        "the producer was told KAFKA_STORAGE_ERROR"
    );
    eprintln!("the broker answered {storage_errors} produce partitions with KAFKA_STORAGE_ERROR (the client retried them until message.timeout.ms)");
    assert_eq!(broker.metric("tideline_log_dir_offline"), 0.0);
    assert!(
        broker.log_tail(400).contains("No space left on device"),
        "the broker names the cause"
    );
    // Reads go on while the disk is full.
    let high = check_every_acknowledged_record(&bootstrap, &topic, &ledger, "while full");
    assert_eq!(
        high as usize, acked_before,
        "the high watermark counts only what was acknowledged"
    );

    // Space returns: writing resumes by itself.
    disk.free_filler();
    let freed = Instant::now();
    wait_until(
        Duration::from_secs(30),
        "the log directory takes appends again",
        || broker.metric("tideline_log_dir_refusing_appends") == 0.0,
    );
    let resumed_after = freed.elapsed();
    send_and_book(&producer, &topic, next..next + 100, &mut ledger);
    let first_ack_after = freed.elapsed();
    eprintln!(
        "space freed: appends accepted again after {resumed_after:?}, 100 more records acknowledged {first_ack_after:?} after the delete"
    );
    assert_eq!(
        ledger.refused_total(),
        refused_before,
        "records sent once space returned were refused: {:?}",
        ledger.refused
    );
    assert_eq!(ledger.acked.len(), acked_before + 100);
    let high = check_every_acknowledged_record(&bootstrap, &topic, &ledger, "after space returned");
    assert_eq!(high as usize, acked_before + 100);

    // After a crash, recovery keeps every acknowledged record.
    broker.kill();
    broker.restart();
    let high =
        check_every_acknowledged_record(&bootstrap, &topic, &ledger, "after SIGKILL and restart");
    assert_eq!(
        high as usize,
        acked_before + 100,
        "nothing unacknowledged at the end either"
    );
}

#[test]
fn the_reserve_refuses_produce_before_the_disk_is_full_but_not_metadata_or_commits() {
    let Some(disk) = Tmpfs::mount(64 * MIB) else {
        return;
    };
    let data = disk.path().join("data");
    let mut broker = Broker::start(
        BrokerOpts::new()
            .set("log.dirs", data.display())
            .set("log.segment.bytes", 4 * MIB)
            .set("log.retention.check.interval.ms", 500)
            .set("log.dir.reserved.bytes", 16 * MIB),
    );
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("reserve");
    create_topic(&bootstrap, &topic, 1, &[]);
    assert_eq!(
        broker.metric("tideline_log_dir_reserved_bytes"),
        (16 * MIB) as f64
    );

    let producer = producer(&bootstrap);
    let mut ledger = Ledger::default();
    let mut next = 0u64;
    while ledger.refused_total() == 0 {
        assert!(next < 100_000, "the reserve never refused anything");
        send_and_book(&producer, &topic, next..next + 500, &mut ledger);
        next += 500;
    }
    let free = disk.free_bytes();
    eprintln!(
        "reserve reached: {} acknowledged, {free} bytes still free",
        ledger.acked.len()
    );
    assert!(
        free >= 12 * MIB,
        "refused before the file system filled: {free} bytes free"
    );
    assert_eq!(broker.metric("tideline_log_dir_refusing_appends"), 1.0);
    assert_eq!(
        broker.metric("tideline_log_dir_write_errors_total{kind=\"no_space\"}"),
        0.0,
        "no write ever failed"
    );

    // The broker's own writes still go into the reserve: a metadata change...
    let other = unique_topic("reserve-new");
    create_topic(&bootstrap, &other, 1, &[]);
    // ...and a consumer group's offset commit.
    let group = unique_topic("reserve-group");
    let mut config = consumer_config(&bootstrap);
    config.set("group.id", &group);
    let c: BaseConsumer<_> = consumer(&config);
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&topic, 0, Offset::Offset(42))
        .unwrap();
    c.commit(&offsets, CommitMode::Sync)
        .expect("offset commit into the reserve");
    let committed = c
        .committed_offsets(offsets.clone(), Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        committed.find_partition(&topic, 0).unwrap().offset(),
        Offset::Offset(42)
    );
    check_every_acknowledged_record(&bootstrap, &topic, &ledger, "at the reserve");

    // Deleting data makes room: retention frees segments and appends resume.
    broker.stop();
    broker.restart();
    assert_eq!(
        broker.metric("tideline_log_dir_refusing_appends"),
        1.0,
        "still full after a restart"
    );
    set_topic_config(&bootstrap, &topic, "retention.bytes", "4194304");
    wait_until(Duration::from_secs(60), "retention made room", || {
        broker.metric("tideline_log_dir_refusing_appends") == 0.0
    });
    let refused = ledger.refused_total();
    send_and_book(&producer, &topic, next..next + 100, &mut ledger);
    assert_eq!(ledger.refused_total(), refused, "{:?}", ledger.refused);
}

#[test]
fn a_full_broker_in_a_cluster_hands_over_and_rejoins_when_space_returns() {
    let Some(disk) = Tmpfs::mount(128 * MIB) else {
        return;
    };
    let full_node = 3;
    let data = disk.path().join("data");
    let mut cluster = Cluster::start_with_node_overrides(
        3,
        &[
            ("default.replication.factor", "3"),
            ("min.insync.replicas", "2"),
            ("log.segment.bytes", "4194304"),
            ("log.dir.reserved.bytes", "4194304"),
            ("replica.lag.time.max.ms", "5000"),
        ],
        |id| {
            if id == full_node {
                vec![("log.dirs".to_string(), data.display().to_string())]
            } else {
                Vec::new()
            }
        },
    );
    let bootstrap = cluster.bootstrap();
    let topic = unique_topic("full-member");
    let partitions = 6;
    create_replicated_topic(
        &bootstrap,
        &topic,
        partitions,
        3,
        &[("min.insync.replicas", "2")],
    );
    let isr_of_all = |cluster: &Cluster| -> Vec<(i32, Vec<i32>)> {
        cluster
            .partition_states(&[1, 2], &topic)
            .unwrap_or_default()
    };
    let every_partition = |cluster: &Cluster, check: &dyn Fn(i32, &[i32]) -> bool| {
        let states = isr_of_all(cluster);
        states.len() == partitions as usize
            && states.iter().all(|(leader, isr)| check(*leader, isr))
    };
    wait_until(Duration::from_secs(30), "every ISR complete", || {
        every_partition(&cluster, &|_, isr| isr.len() == 3)
    });

    let workload = Workload::start(&bootstrap, &topic, partitions, 3);
    std::thread::sleep(Duration::from_secs(2));
    // Another tenant takes nearly all the space: the load fills the rest.
    disk.fill_leaving(12 * MIB);
    wait_until(Duration::from_secs(120), "broker 3 refuses appends", || {
        cluster
            .node(full_node)
            .metric("tideline_log_dir_refusing_appends")
            == 1.0
    });
    wait_until(
        Duration::from_secs(30),
        "broker 3 out of every ISR, leading nothing",
        || {
            every_partition(&cluster, &|leader, isr| {
                leader != full_node && !isr.contains(&full_node)
            })
        },
    );
    // The load goes on without broker 3.
    let committed = || -> i64 {
        (0..partitions)
            .map(|p| watermarks(&bootstrap, &topic, p).1)
            .sum()
    };
    let before = committed();
    std::thread::sleep(Duration::from_secs(3));
    let during = committed() - before;
    eprintln!("{during} records committed in 3 s while broker {full_node} was full");
    assert!(during > 0, "producers stalled while broker 3 was full");
    assert_eq!(
        cluster
            .node(full_node)
            .metric("tideline_log_dir_refusing_appends"),
        1.0
    );

    // Space returns: broker 3 catches up and rejoins.
    disk.free_filler();
    let freed = Instant::now();
    wait_until(
        Duration::from_secs(90),
        "broker 3 back in every ISR",
        || every_partition(&cluster, &|_, isr| isr.contains(&full_node)),
    );
    eprintln!(
        "broker {full_node} rejoined every ISR {:?} after space was freed",
        freed.elapsed()
    );
    std::thread::sleep(Duration::from_secs(2));
    let history = workload.stop();
    let report = jepsen::check(&bootstrap, &topic, partitions, &history);
    eprintln!("full-broker workload: {report}");
    assert!(
        report.lost.is_empty(),
        "lost: {:?}",
        &report.lost[..report.lost.len().min(10)]
    );
    assert!(report.acknowledged > 1000, "the load went on: {report}");
    assert!(report.duplicated.is_empty(), "{report}");
    assert!(report.reordered.is_empty(), "{report}");
}
