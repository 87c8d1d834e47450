//! Offsets: ListOffsets (earliest, latest, by timestamp), fetching from an
//! offset in the middle of a record batch, and fetching across segment
//! rolls, all through librdkafka.

use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tideline_tests::clients::{consume_range, consumer, produce_all, watermarks};
use tideline_tests::disk;
use tideline_tests::{
    consumer_config, create_topic, producer_config, unique_topic, Broker, TestProducer, TestRecord,
};

/// Offset returned by ListOffsets-by-timestamp for `ts` on partition 0 and
/// partition 1 of `topic`.
fn offsets_for_time(bootstrap: &str, topic: &str, ts: i64) -> (Offset, Offset) {
    let c = consumer(&consumer_config(bootstrap));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(ts))
        .unwrap();
    tpl.add_partition_offset(topic, 1, Offset::Offset(ts))
        .unwrap();
    let res = c
        .offsets_for_times(tpl, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("offsets_for_times({ts}): {e}"));
    let get = |p| {
        let e = res.find_partition(topic, p).expect("partition in result");
        e.error()
            .unwrap_or_else(|err| panic!("offsets_for_times({ts}) partition {p}: {err}"));
        e.offset()
    };
    (get(0), get(1))
}

#[test]
fn list_offsets_earliest_latest_and_by_timestamp() {
    let broker = Broker::start_with(&[]);
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("list-offsets");
    create_topic(&bootstrap, &topic, 2, &[]);

    // 5000 records on partition 0 with CreateTime t0 + (i / 2) * 10: every
    // timestamp is shared by two consecutive records. Partition 1 is empty.
    // An hour ago: old enough to be clearly in the past, young enough for
    // the default 7-day retention not to touch it.
    let t0 = tideline_tests::now_ms() - 3_600_000;
    let n = 5000u64;
    let producer = TestProducer::new(&producer_config(&bootstrap));
    for i in 0..n {
        let mut r = TestRecord::indexed(i, 40, 1);
        r.timestamp = Some(t0 + (i as i64 / 2) * 10);
        producer.send(&topic, Some(0), &r);
    }
    let delivered = producer.expect_all_delivered(Duration::from_secs(120));
    assert!(delivered
        .iter()
        .enumerate()
        .all(|(i, d)| d.offset == i as i64));

    assert_eq!(watermarks(&bootstrap, &topic, 0), (0, n as i64));
    assert_eq!(watermarks(&bootstrap, &topic, 1), (0, 0));

    // ListOffsets by timestamp returns the earliest offset whose timestamp
    // is >= the target, or -1 (End) when there is none.
    let cases = [
        (t0 - 1_000, Offset::Offset(0)),
        (t0, Offset::Offset(0)),
        (t0 + 1, Offset::Offset(2)),
        (t0 + 1234 * 10, Offset::Offset(2468)),
        (t0 + 1234 * 10 + 5, Offset::Offset(2470)),
        (t0 + 2499 * 10, Offset::Offset(4998)),
        (t0 + 2499 * 10 + 1, Offset::End),
    ];
    for (ts, expected) in cases {
        let (p0, p1) = offsets_for_time(&bootstrap, &topic, ts);
        assert_eq!(p0, expected, "partition 0, timestamp t0{:+}", ts - t0);
        assert_eq!(
            p1,
            Offset::End,
            "empty partition 1, timestamp t0{:+}",
            ts - t0
        );
    }
}

/// Produces in big batches, then assigns at offsets strictly inside a batch
/// (found by reading the segment on disk) and checks the first record the
/// consumer gets is exactly that offset: the broker returns whole batches
/// and the client must be able to skip to the requested record.
fn seek_into_middle_of_batch(codec: &str) {
    let broker = Broker::start_with(&[]);
    let bootstrap = broker.bootstrap();
    let topic = unique_topic(&format!("mid-batch-{codec}"));
    create_topic(&bootstrap, &topic, 1, &[]);

    let records: Vec<TestRecord> = (0..3000).map(|i| TestRecord::indexed(i, 100, 7)).collect();
    let mut cfg = producer_config(&bootstrap);
    cfg.set("compression.type", codec).set("linger.ms", "100");
    let producer = TestProducer::new(&cfg);
    for r in &records {
        producer.send(&topic, Some(0), r);
    }
    let delivered = producer.expect_all_delivered(Duration::from_secs(120));
    let end = delivered.len() as i64;

    let dir = disk::partition_dir(broker.data_dir(), &topic, 0);
    let batches: Vec<disk::BatchInfo> = disk::segments(&dir)
        .iter()
        .flat_map(|s| disk::read_batches(&s.path).batches)
        .collect();
    let big: Vec<&disk::BatchInfo> = batches.iter().filter(|b| b.record_count >= 3).collect();
    assert!(
        !big.is_empty(),
        "expected multi-record batches on disk in {}, found {batches:?}",
        dir.display()
    );
    let mut targets = Vec::new();
    for b in big.iter().take(3) {
        targets.push(b.base_offset + b.record_count as i64 / 2);
        targets.push(b.last_offset());
    }
    for target in targets {
        let until = (target + 50).min(end);
        let got = consume_range(
            &consumer_config(&bootstrap),
            &topic,
            &[(0, Offset::Offset(target))],
            &[(0, until)],
            Duration::from_secs(60),
        );
        let got = &got[&0];
        assert_eq!(
            got.first().map(|r| r.offset),
            Some(target),
            "{codec}: first record after assigning at {target}"
        );
        for (k, r) in got.iter().enumerate() {
            assert_eq!(
                r.offset,
                target + k as i64,
                "{codec}: offsets not contiguous"
            );
            let i = TestRecord::index_of(r.value.as_ref().unwrap()) as usize;
            assert_eq!(
                delivered[i].offset, r.offset,
                "{codec}: wrong record at {}",
                r.offset
            );
            assert_eq!(r.to_test_record(), records[i]);
        }
    }
}

#[test]
fn seek_into_middle_of_uncompressed_batch() {
    seek_into_middle_of_batch("none");
}

#[test]
fn seek_into_middle_of_compressed_batch() {
    seek_into_middle_of_batch("lz4");
}

#[test]
fn fetch_across_segment_rolls() {
    let mut broker = Broker::start_with(&[]);
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("segments");
    let segment_bytes = 1_048_576u64;
    create_topic(
        &bootstrap,
        &topic,
        1,
        &[("segment.bytes", &segment_bytes.to_string())],
    );

    let records: Vec<TestRecord> = (0..4000)
        .map(|i| TestRecord::indexed(i, 1000, 13))
        .collect();
    let mut cfg = producer_config(&bootstrap);
    cfg.set("linger.ms", "20");
    let delivered = produce_all(&cfg, &topic, &records);
    let end = delivered.len() as i64;
    assert!(delivered.iter().all(|d| d.partition == 0));

    // On disk: several segments in Kafka's layout, each named after its
    // first offset, batches contiguous across them, none over segment.bytes.
    let dir = disk::partition_dir(broker.data_dir(), &topic, 0);
    let segments = disk::segments(&dir);
    assert!(
        segments.len() > 1,
        "~4 MB with segment.bytes={segment_bytes} should roll segments; found {segments:?}"
    );
    let mut next_offset = 0;
    for (k, seg) in segments.iter().enumerate() {
        // Rolled segments have their indexes beside them (the active one
        // is checked after shutdown, below).
        if k + 1 < segments.len() {
            assert_indexes_exist(&dir, seg.base_offset);
        }
        assert!(
            seg.size <= segment_bytes,
            "{} is larger than segment.bytes",
            seg.path.display()
        );
        let scan = disk::read_batches(&seg.path);
        assert_eq!(scan.trailing_bytes, 0, "{}", seg.path.display());
        if let Some(first) = scan.batches.first() {
            assert_eq!(first.base_offset, seg.base_offset, "{}", seg.path.display());
        }
        for b in &scan.batches {
            assert!(b.crc_ok && b.magic == 2, "{}: {b:?}", seg.path.display());
            assert_eq!(
                b.base_offset,
                next_offset,
                "{}: gap or overlap",
                seg.path.display()
            );
            next_offset = b.last_offset() + 1;
        }
    }
    assert_eq!(
        next_offset, end,
        "batches on disk do not cover every offset"
    );

    // Fetch from around every segment boundary, and everything at once.
    let mut starts = vec![0, end - 1];
    for seg in &segments[1..] {
        starts.extend([seg.base_offset - 1, seg.base_offset, seg.base_offset + 1]);
    }
    let check = |start: i64, until: i64| {
        let got = consume_range(
            &consumer_config(&bootstrap),
            &topic,
            &[(0, Offset::Offset(start))],
            &[(0, until)],
            Duration::from_secs(120),
        );
        let got = &got[&0];
        assert_eq!(
            got.len() as i64,
            until - start,
            "records from {start} to {until}"
        );
        for (k, r) in got.iter().enumerate() {
            let offset = start + k as i64;
            assert_eq!(r.offset, offset);
            let i = TestRecord::index_of(r.value.as_ref().unwrap()) as usize;
            assert_eq!(
                delivered[i].offset, offset,
                "wrong record at offset {offset}"
            );
            assert_eq!(r.to_test_record(), records[i]);
        }
    };
    for start in starts {
        check(start, (start + 100).min(end));
    }
    check(0, end);

    broker.stop();
    for seg in disk::segments(&dir) {
        assert_indexes_exist(&dir, seg.base_offset);
    }
}

fn assert_indexes_exist(dir: &std::path::Path, base_offset: i64) {
    for ext in ["index", "timeindex"] {
        let f = dir.join(disk::segment_file_name(base_offset, ext));
        assert!(f.exists(), "missing {}", f.display());
    }
}
