//! `log.direct.io.enable=true` (and `auto`): the active segment's whole blocks are
//! written with `O_DIRECT` from the broker's own windows, and reads of the
//! newest bytes are answered from them. Records large enough that every
//! append fills blocks go through that path; what is checked is what a
//! user relies on whatever the write path: every acknowledged record
//! survives a SIGKILL (no fsync asked for) and reads back byte-exact from
//! memory, from rolled segments and after recovery; segment files hold
//! batches back to back with nothing after them; followers written the
//! same way serve every record once their leader is gone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use tideline_tests::clients::{
    consumer_config, create_replicated_topic, produce_all, reliable_producer_config,
};
use tideline_tests::cluster::Cluster;
use tideline_tests::disk;
use tideline_tests::{consume_all, create_topic, unique_topic, Broker, TestProducer, TestRecord};

const DIRECT: (&str, &str) = ("log.direct.io.enable", "true");

/// Records of 1-7 KiB: with `linger.ms` batching, each append spans blocks.
fn records(from: u64, count: u64) -> Vec<TestRecord> {
    (from..from + count)
        .map(|i| TestRecord::indexed(i, 1024 + (i as usize * 1999) % 6144, 50))
        .collect()
}

/// Checks that what was consumed per partition is exactly what was
/// acknowledged there, offset by offset.
fn assert_consumed_exactly(
    consumed: &BTreeMap<i32, Vec<tideline_tests::clients::ConsumedRecord>>,
    acked: &BTreeMap<i32, Vec<(i64, TestRecord)>>,
    when: &str,
) {
    for (p, list) in acked {
        let by_offset: BTreeMap<i64, _> = consumed[p].iter().map(|r| (r.offset, r)).collect();
        for (offset, record) in list {
            let got = by_offset
                .get(offset)
                .unwrap_or_else(|| panic!("{when}: partition {p} offset {offset} is missing"));
            assert_eq!(
                &got.to_test_record(),
                record,
                "{when}: partition {p} offset {offset} is not the acknowledged record"
            );
        }
    }
}

fn until(acked: &BTreeMap<i32, Vec<(i64, TestRecord)>>) -> Vec<(i32, i64)> {
    acked
        .iter()
        .map(|(p, list)| (*p, list.iter().map(|(o, _)| *o).max().unwrap() + 1))
        .collect()
}

#[test]
fn acknowledged_records_survive_sigkill_and_read_back_byte_exact_with_direct_writes() {
    survives_sigkill_byte_exact("true");
}

/// `auto` writes through the page cache or directly depending on the
/// kernel's dirty pages at the time (on a busy test machine, either), so
/// this checks that whichever it chose, and a mix, loses nothing.
#[test]
fn acknowledged_records_survive_sigkill_and_read_back_byte_exact_with_auto_direct_writes() {
    survives_sigkill_byte_exact("auto");
}

fn survives_sigkill_byte_exact(direct_io: &str) {
    // Small segments, so reads also come from rolled (file-only) segments.
    let mut broker = Broker::start_with(&[
        ("log.direct.io.enable", direct_io),
        ("log.segment.bytes", "2097152"),
    ]);
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("direct-kill");
    create_topic(&bootstrap, &topic, 2, &[]);

    let sent = records(0, 3_000);
    let mut cfg = reliable_producer_config(&bootstrap);
    cfg.set("linger.ms", "10");
    let delivered = produce_all(&cfg, &topic, &sent);
    let mut acked: BTreeMap<i32, Vec<(i64, TestRecord)>> = BTreeMap::new();
    for (d, r) in delivered.iter().zip(&sent) {
        acked
            .entry(d.partition)
            .or_default()
            .push((d.offset, r.clone()));
    }
    assert!(
        broker.metric("tideline_log_direct_io_buffer_bytes") > 0.0,
        "the active segments hold direct-write windows"
    );
    if direct_io == "true" {
        assert!(
            broker.metric("tideline_log_direct_io_written_bytes_total") > 0.0,
            "blocks were written with O_DIRECT"
        );
    }
    let rolled = disk::segments(&disk::partition_dir(broker.data_dir(), &topic, 0)).len();
    assert!(rolled > 1, "the partition rolled segments ({rolled})");
    assert_consumed_exactly(
        &consume_all(&bootstrap, &topic, &until(&acked)),
        &acked,
        "while running",
    );

    // No fsync was asked for: what survives a SIGKILL is what the writes
    // had handed to the kernel and the device before each acknowledgement.
    broker.kill();
    for p in 0..2 {
        for segment in disk::segments(&disk::partition_dir(broker.data_dir(), &topic, p)) {
            let scan = disk::read_batches(&segment.path);
            assert_eq!(scan.trailing_bytes, 0, "{}", segment.path.display());
            assert!(scan.batches.iter().all(|b| b.crc_ok));
        }
    }
    broker.restart();
    assert_consumed_exactly(
        &consume_all(&bootstrap, &topic, &until(&acked)),
        &acked,
        "after the SIGKILL",
    );

    // Appends continue where recovery left the log.
    let more = records(3_000, 500);
    for (d, r) in produce_all(&cfg, &topic, &more).iter().zip(&more) {
        acked
            .entry(d.partition)
            .or_default()
            .push((d.offset, r.clone()));
    }
    assert_consumed_exactly(
        &consume_all(&bootstrap, &topic, &until(&acked)),
        &acked,
        "after appending again",
    );
}

/// The leader of partition 0 of `topic` as `bootstrap` reports it.
fn leader_of(bootstrap: &str, topic: &str) -> Option<i32> {
    let consumer: BaseConsumer = consumer_config(bootstrap).create().ok()?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let leader = metadata.topics().first()?.partitions().first()?.leader();
    (leader > 0).then_some(leader)
}

#[test]
fn followers_written_directly_serve_every_record_after_the_leader_dies() {
    let fast = [
        DIRECT,
        ("broker.heartbeat.interval.ms", "300"),
        ("broker.session.timeout.ms", "3000"),
        ("replica.lag.time.max.ms", "4000"),
    ];
    let mut cluster = Cluster::start(3, &fast);
    let topic = unique_topic("direct-replicated");
    create_replicated_topic(
        &cluster.bootstrap(),
        &topic,
        1,
        3,
        &[("min.insync.replicas", "2")],
    );

    let producer = TestProducer::new(&reliable_producer_config(&cluster.bootstrap()));
    let sent = records(0, 2_000);
    let mut acked: BTreeMap<i32, Vec<(i64, TestRecord)>> = BTreeMap::new();
    let mut send = |producer: &TestProducer, batch: &[TestRecord]| {
        let first = producer.outcomes().len();
        for r in batch {
            producer.send(&topic, Some(0), r);
        }
        assert!(producer.flush(Duration::from_secs(90)), "all delivered");
        for (o, r) in producer.outcomes()[first..].iter().zip(batch) {
            let d = o.clone().expect("an outcome").expect("acknowledged");
            acked.entry(0).or_default().push((d.offset, r.clone()));
        }
    };
    send(&producer, &sent[..1_000]);

    let deadline = Instant::now() + Duration::from_secs(60);
    let leader = loop {
        if let Some(leader) = leader_of(&cluster.bootstrap(), &topic) {
            break leader;
        }
        assert!(Instant::now() < deadline, "no leader for {topic}");
        std::thread::sleep(Duration::from_millis(100));
    };
    cluster.node(leader).kill();
    // acks=all with the two followers: both wrote every record directly.
    send(&producer, &sent[1_000..]);
    let survivors: Vec<String> = (1..=3)
        .filter(|&n| n != leader)
        .map(|n| cluster.nodes[n as usize - 1].bootstrap())
        .collect();
    assert_consumed_exactly(
        &consume_all(&survivors.join(","), &topic, &until(&acked)),
        &acked,
        "from the new leader",
    );

    // The old leader comes back and catches up as a follower: its files,
    // written the same way, hold every offset in well-formed batches.
    cluster.node(leader).restart();
    let node = &cluster.nodes[leader as usize - 1];
    let series = format!("tideline_log_end_offset{{partition=\"0\",topic=\"{topic}\"}}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while node.metric(&series) < 2_000.0 {
        assert!(
            Instant::now() < deadline,
            "the restarted replica never caught up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut next = 0i64;
    for segment in disk::segments(&disk::partition_dir(node.data_dir(), &topic, 0)) {
        let scan = disk::read_batches(&segment.path);
        for batch in &scan.batches {
            assert!(batch.crc_ok, "batch {} has a bad CRC", batch.base_offset);
            assert_eq!(batch.base_offset, next, "batches follow each other");
            next = batch.base_offset + batch.last_offset_delta as i64 + 1;
        }
    }
    assert!(
        next >= 2_000,
        "the caught-up replica holds offsets 0..{next}"
    );
    drop(producer);
}
