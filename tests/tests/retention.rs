//! Retention: time-based (`retention.ms`) and size-based
//! (`retention.bytes`) deletion of whole old segments, the log start offset
//! (low watermark) moving forward, and consumers positioned below it being
//! reset (`auto.offset.reset=earliest`) or told (`=error`).
//!
//! Kafka decides time-based retention by the largest record timestamp in a
//! segment (CreateTime by default), not by file age. That lets the first
//! test be deterministic: records stamped an hour ago expire at once under
//! `retention.ms=60000`, while a tail of fresh records keeps its segments
//! alive long enough to check consumers against them.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::Offset;
use tideline_tests::clients::{assign, consume_range, consumer, poll_one, produce_all, watermarks};
use tideline_tests::disk;
use tideline_tests::{
    consumer_config, create_topic, now_ms, producer_config, unique_topic, wait_for, Broker,
    TestProducer, TestRecord,
};

const SEGMENT_BYTES: u64 = 1_048_576;

fn retention_broker() -> Broker {
    Broker::start_with(&[("log.retention.check.interval.ms", "500")])
}

/// Segments that lie entirely below `log_start` (the next segment starts at
/// or before it) must be gone.
fn assert_no_segment_below(dir: &std::path::Path, log_start: i64) {
    let segs = disk::segments(dir);
    for w in segs.windows(2) {
        assert!(
            w[1].base_offset > log_start,
            "segment {} lies entirely below the log start offset {log_start} but still exists",
            w[0].path.display()
        );
    }
}

#[test]
fn expired_segments_are_deleted_and_consumers_below_log_start_reset() {
    let broker = retention_broker();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("retention-ms");
    create_topic(
        &bootstrap,
        &topic,
        1,
        &[
            ("segment.bytes", &SEGMENT_BYTES.to_string()),
            ("retention.ms", "60000"),
        ],
    );

    // ~4 MB stamped an hour ago, then ~1.5 MB stamped now.
    let old_ts = now_ms() - 3_600_000;
    let producer = TestProducer::new(&producer_config(&bootstrap));
    let mut records = Vec::new();
    for i in 0..5500u64 {
        let mut r = TestRecord::indexed(i, 1000, 1);
        if i < 4000 {
            r.timestamp = Some(old_ts + i as i64);
        }
        producer.send(&topic, Some(0), &r);
        records.push(r);
    }
    let delivered = producer.expect_all_delivered(Duration::from_secs(120));
    assert!(delivered
        .iter()
        .enumerate()
        .all(|(i, d)| d.offset == i as i64));
    let first_fresh = delivered[4000].offset;
    let end = delivered.len() as i64;
    let dir = disk::partition_dir(broker.data_dir(), &topic, 0);
    // (Retention may already be at work: the check runs every 500 ms.)

    let log_start = wait_for(
        "the log start offset to advance past expired segments",
        Duration::from_secs(60),
        || {
            let (low, _) = watermarks(&bootstrap, &topic, 0);
            (low > 0
                && disk::segments(&dir)
                    .first()
                    .is_some_and(|s| s.base_offset > 0))
            .then_some(low)
        },
    );
    // Give the retention thread a few more rounds, then look again: fresh
    // segments must stay.
    std::thread::sleep(Duration::from_secs(2));
    let (low, high) = watermarks(&bootstrap, &topic, 0);
    assert!(low >= log_start);
    assert_eq!(high, end, "high watermark changed");
    assert!(
        low <= first_fresh,
        "log start {low} is past the first unexpired record {first_fresh}"
    );
    assert_no_segment_below(&dir, low);
    let after = disk::segments(&dir);
    assert!(
        !dir.join(disk::segment_file_name(0, "log")).exists(),
        "the first, expired segment was not deleted: {after:?}"
    );
    assert!(
        after[0].base_offset <= low,
        "records from the log start {low} on must still be on disk: {after:?}"
    );

    // Consumers positioned at 0, below the log start.
    let mut earliest = consumer_config(&bootstrap);
    earliest.set("auto.offset.reset", "earliest");
    let got = consume_range(
        &earliest,
        &topic,
        &[(0, Offset::Offset(0))],
        &[(0, end)],
        Duration::from_secs(60),
    );
    let got = &got[&0];
    assert_eq!(
        got.first().map(|r| r.offset),
        Some(low),
        "reset to earliest should start at the log start offset"
    );
    assert_eq!(got.len() as i64, end - low);
    for r in got {
        assert_eq!(r.to_test_record().value, records[r.offset as usize].value);
    }

    let mut strict = consumer_config(&bootstrap);
    strict.set("auto.offset.reset", "error");
    let c = consumer(&strict);
    assign(&c, &topic, &[(0, Offset::Offset(0))]);
    match poll_one(&c, Duration::from_secs(30)) {
        Some(Err(KafkaError::MessageConsumption(code)))
        | Some(Err(KafkaError::MessageConsumptionFatal(code)))
            if matches!(
                code,
                RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange
            ) => {}
        other => panic!(
            "with auto.offset.reset=error, fetching below the log start should report offset \
             out of range; got {other:?}"
        ),
    }
}

#[test]
fn short_retention_ms_expires_every_segment_and_offsets_continue() {
    let broker = retention_broker();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("retention-short");
    create_topic(
        &bootstrap,
        &topic,
        1,
        &[
            ("segment.bytes", &SEGMENT_BYTES.to_string()),
            ("retention.ms", "2000"),
        ],
    );
    let records: Vec<TestRecord> = (0..3000).map(|i| TestRecord::indexed(i, 1000, 1)).collect();
    let delivered = produce_all(&producer_config(&bootstrap), &topic, &records);
    let end = delivered.len() as i64;
    let dir = disk::partition_dir(broker.data_dir(), &topic, 0);

    wait_for(
        "every record to expire (low watermark == high watermark)",
        Duration::from_secs(60),
        || (watermarks(&bootstrap, &topic, 0) == (end, end)).then_some(()),
    );
    wait_for(
        "the expired segment files to be deleted",
        Duration::from_secs(30),
        || {
            disk::segments(&dir)
                .iter()
                .all(|s| s.base_offset >= end)
                .then_some(())
        },
    );

    // The log is empty but its end offset is not reset.
    let more = produce_all(
        &producer_config(&bootstrap),
        &topic,
        &[TestRecord::value("after expiry")],
    );
    assert_eq!(
        more[0].offset, end,
        "offsets must continue after full expiry"
    );
    let (_, high) = watermarks(&bootstrap, &topic, 0);
    assert_eq!(high, end + 1);
}

#[test]
fn retention_bytes_deletes_oldest_segments() {
    let broker = retention_broker();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("retention-bytes");
    let retention_bytes = 2 * SEGMENT_BYTES;
    create_topic(
        &bootstrap,
        &topic,
        1,
        &[
            ("segment.bytes", &SEGMENT_BYTES.to_string()),
            ("retention.bytes", &retention_bytes.to_string()),
        ],
    );
    let records: Vec<TestRecord> = (0..6000).map(|i| TestRecord::indexed(i, 1000, 1)).collect();
    let delivered = produce_all(&producer_config(&bootstrap), &topic, &records);
    let end = delivered.len() as i64;
    let dir = disk::partition_dir(broker.data_dir(), &topic, 0);

    let low = wait_for(
        "the partition to shrink to about retention.bytes",
        Duration::from_secs(60),
        || {
            let (low, _) = watermarks(&bootstrap, &topic, 0);
            (low > 0 && disk::log_bytes(&dir) <= retention_bytes + SEGMENT_BYTES).then_some(low)
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let (low2, high) = watermarks(&bootstrap, &topic, 0);
    assert_eq!(high, end);
    assert!(low2 >= low);
    let size = disk::log_bytes(&dir);
    // Kafka deletes a segment only while what remains stays >= retention.bytes.
    assert!(
        size >= retention_bytes,
        "deleted too much: {size} bytes left, retention.bytes={retention_bytes}"
    );
    assert_no_segment_below(&dir, low2);

    let got = consume_range(
        &consumer_config(&bootstrap),
        &topic,
        &[(0, Offset::Beginning)],
        &[(0, end)],
        Duration::from_secs(60),
    );
    let got = &got[&0];
    assert_eq!(got.first().map(|r| r.offset), Some(low2));
    assert_eq!(got.len() as i64, end - low2);
    for r in got {
        assert_eq!(r.to_test_record(), records[r.offset as usize]);
    }
}
