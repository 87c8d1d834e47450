//! Crash safety and recovery.
//!
//! (a) With `log.flush.interval.messages=1` (fsync before acknowledging)
//!     and `acks=all`, every acknowledged record must survive a SIGKILL in
//!     the middle of producing, at the offset it was acknowledged at.
//! (b) A torn last batch (the file cut short, as by a crash in the middle
//!     of a write) and (c) a last batch whose bytes were overwritten (CRC
//!     mismatch) must be cut off on restart after an unclean shutdown, as
//!     Kafka's log recovery does: the broker starts, serves every record
//!     before the damaged batch, and appends new records right after them.
//!     (d) Likewise for damage in an earlier batch: recovery truncates at
//!     the first invalid batch, dropping everything after it.
//!
//! Damage is done with the broker SIGKILLed: Kafka only validates segments
//! during recovery after an unclean shutdown.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::topic_partition_list::Offset;
use tideline_tests::clients::{consume_range, produce_all, watermarks};
use tideline_tests::disk::{self, BatchInfo};
use tideline_tests::{
    consume_all, consumer_config, create_topic, producer_config, unique_topic, Broker,
    TestProducer, TestRecord,
};

#[test]
fn acknowledged_records_survive_sigkill() {
    let mut broker = Broker::start_with(&[("log.flush.interval.messages", "1")]);
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("crash-acks");
    create_topic(&bootstrap, &topic, 3, &[]);

    let mut cfg = producer_config(&bootstrap);
    cfg.set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "90000");
    let producer = TestProducer::new(&cfg);
    let stop = AtomicBool::new(false);
    let mut sent: Vec<TestRecord> = Vec::new();
    let mut acked_before_kill = 0;
    let mut failed_before_kill = 0;
    std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let mut sent = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                if producer.outstanding() > 2_000 {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                let r = TestRecord::indexed(i, 200, 50);
                producer.send(&topic, None, &r);
                sent.push(r);
                i += 1;
            }
            sent
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        while producer.delivered() < 5_000 && producer.failed() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        broker.kill();
        acked_before_kill = producer.delivered();
        failed_before_kill = producer.failed();
        stop.store(true, Ordering::SeqCst);
        sent = sender.join().unwrap();
    });
    assert_eq!(failed_before_kill, 0, "produce failed before the crash");
    assert!(
        acked_before_kill > 0,
        "nothing was acknowledged before the crash"
    );

    broker.restart();
    // Records still queued or in flight either land now or time out; both
    // are fine. Only acknowledgements are promises.
    producer.flush(Duration::from_secs(100));
    let outcomes = producer.outcomes();
    let mut acked: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
    for (i, o) in outcomes.iter().enumerate() {
        if let Some(Ok(d)) = o {
            acked.entry(d.partition).or_default().push((d.offset, i));
        }
    }
    eprintln!(
        "sent {}, acknowledged before kill {acked_before_kill}, acknowledged in total {}",
        sent.len(),
        acked.values().map(Vec::len).sum::<usize>()
    );

    let mut until = Vec::new();
    for (p, list) in &acked {
        let max = list.iter().map(|(o, _)| *o).max().unwrap();
        let (_, high) = watermarks(&bootstrap, &topic, *p);
        assert!(
            high > max,
            "partition {p}: offset {max} was acknowledged but the high watermark after the \
             crash is {high}: acknowledged records were lost"
        );
        until.push((*p, max + 1));
    }
    assert_reads_back(&bootstrap, &topic, &until, &acked, &sent);
}

/// Reads `topic` up to `until` and checks that every acknowledged
/// `(offset, index into sent)` per partition holds exactly that record.
fn assert_reads_back(
    bootstrap: &str,
    topic: &str,
    until: &[(i32, i64)],
    acked: &BTreeMap<i32, Vec<(i64, usize)>>,
    sent: &[TestRecord],
) {
    let consumed = consume_all(bootstrap, topic, until);
    for (p, list) in acked {
        let by_offset: BTreeMap<i64, _> = consumed[p].iter().map(|r| (r.offset, r)).collect();
        for (offset, i) in list {
            let got = by_offset.get(offset).unwrap_or_else(|| {
                panic!("partition {p}: acknowledged offset {offset} (record {i}) is missing")
            });
            assert_eq!(
                got.to_test_record(),
                sent[*i],
                "partition {p} offset {offset}: not the acknowledged record {i}"
            );
        }
    }
}

/// Produces records to a 1-partition topic so that the newest segment ends
/// with several small batches, SIGKILLs the broker, applies `damage` to a
/// batch chosen by `pick` (index into the newest segment's batches),
/// restarts, and checks recovery truncated the log at that batch.
fn damaged_batch_is_cut_off_on_restart(
    name: &str,
    pick: impl FnOnce(&[BatchInfo]) -> usize,
    damage: impl FnOnce(&mut std::fs::File, &BatchInfo),
) {
    let mut broker = Broker::start_with(&[]);
    let bootstrap = broker.bootstrap();
    let topic = unique_topic(name);
    create_topic(&bootstrap, &topic, 1, &[]);

    let mut records: Vec<TestRecord> = (0..500).map(|i| TestRecord::indexed(i, 300, 9)).collect();
    let mut cfg = producer_config(&bootstrap);
    cfg.set("linger.ms", "20");
    let mut delivered = produce_all(&cfg, &topic, &records);
    // A few more batches, one flush each, so the tail holds several
    // batches; the last one with several records.
    for k in 0..4u64 {
        let n = if k == 3 { 20 } else { 1 };
        let more: Vec<TestRecord> = (0..n)
            .map(|j| TestRecord::indexed(500 + k * 100 + j, 300, 9))
            .collect();
        delivered.extend(produce_all(&cfg, &topic, &more));
        records.extend(more);
    }
    assert!(delivered
        .iter()
        .enumerate()
        .all(|(i, d)| d.partition == 0 && d.offset == i as i64));

    broker.kill();
    let dir = disk::partition_dir(broker.data_dir(), &topic, 0);
    let segment = disk::newest_segment(&dir);
    let scan = disk::read_batches(&segment.path);
    assert_eq!(scan.trailing_bytes, 0, "{}", segment.path.display());
    let victim = scan.batches[pick(&scan.batches)].clone();
    let cut_at = victim.base_offset;
    assert!(cut_at > 0 && cut_at < delivered.len() as i64);
    {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&segment.path)
            .unwrap();
        damage(&mut f, &victim);
        f.sync_all().unwrap();
    }

    broker.restart();
    assert_eq!(
        watermarks(&bootstrap, &topic, 0),
        (0, cut_at),
        "after recovery the log should end right before the damaged batch at {cut_at}"
    );
    let consumed = consume_all(&bootstrap, &topic, &[(0, cut_at)]);
    for r in &consumed[&0] {
        assert_eq!(r.to_test_record(), records[r.offset as usize]);
    }

    // New records go right after the surviving ones and read back fine.
    let fresh: Vec<TestRecord> = (0..10)
        .map(|i| TestRecord::indexed(10_000 + i, 300, 9))
        .collect();
    let fresh_delivered = produce_all(&producer_config(&bootstrap), &topic, &fresh);
    for (k, d) in fresh_delivered.iter().enumerate() {
        assert_eq!(d.offset, cut_at + k as i64, "offset of new record {k}");
    }
    let end = cut_at + fresh.len() as i64;
    let tail = consume_range(
        &consumer_config(&bootstrap),
        &topic,
        &[(0, Offset::Offset(cut_at.saturating_sub(5)))],
        &[(0, end)],
        Duration::from_secs(60),
    );
    for r in &tail[&0] {
        let expected = if r.offset < cut_at {
            &records[r.offset as usize]
        } else {
            &fresh[(r.offset - cut_at) as usize]
        };
        assert_eq!(&r.to_test_record(), expected, "offset {}", r.offset);
    }

    // And the repaired segment is clean on disk.
    broker.stop();
    let mut next = 0;
    for seg in disk::segments(&dir) {
        let scan = disk::read_batches(&seg.path);
        assert_eq!(
            scan.trailing_bytes,
            0,
            "{}: garbage left",
            seg.path.display()
        );
        for b in scan.batches {
            assert!(b.crc_ok, "{}: bad batch left: {b:?}", seg.path.display());
            assert_eq!(b.base_offset, next, "{}", seg.path.display());
            next = b.last_offset() + 1;
        }
    }
    assert_eq!(next, end);
}

fn xor_bytes(f: &mut std::fs::File, at: u64, n: usize) {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut buf).unwrap();
    for b in &mut buf {
        *b ^= 0xA5;
    }
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&buf).unwrap();
}

#[test]
fn torn_last_batch_is_truncated_on_restart() {
    damaged_batch_is_cut_off_on_restart(
        "crash-torn",
        |batches| batches.len() - 1,
        |f, b| {
            let len = b.position + b.len as u64 - 7;
            f.set_len(len).unwrap();
        },
    );
}

#[test]
fn corrupt_last_batch_is_truncated_on_restart() {
    damaged_batch_is_cut_off_on_restart(
        "crash-crc",
        |batches| batches.len() - 1,
        |f, b| {
            let middle = b.position + (disk::BATCH_HEADER_LEN as u64 + b.len as u64) / 2;
            xor_bytes(f, middle, 4);
        },
    );
}

#[test]
fn corrupt_earlier_batch_truncates_from_there_on_restart() {
    damaged_batch_is_cut_off_on_restart(
        "crash-crc-mid",
        |batches| batches.len() - 3,
        |f, b| {
            let middle = b.position + (disk::BATCH_HEADER_LEN as u64 + b.len as u64) / 2;
            xor_bytes(f, middle, 2);
        },
    );
}

/// Early writeback (`log.segment.writeback.bytes`): the broker asks the
/// kernel to start writing each stretch of that many appended bytes, on
/// its background flusher. It must run behind the appends across rolls,
/// stay off when set to 0, and change nothing about what a SIGKILL keeps.
#[test]
fn early_writeback_follows_the_appends_and_a_sigkill_keeps_every_acknowledged_record() {
    const STRETCH: u64 = 65_536;
    let mut broker = Broker::start_with(&[
        ("log.segment.writeback.bytes", &STRETCH.to_string()),
        ("log.segment.bytes", "1048576"),
    ]);
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("crash-writeback");
    create_topic(&bootstrap, &topic, 2, &[]);
    let sent: Vec<TestRecord> = (0..4_000)
        .map(|i| TestRecord::indexed(i, 1024, 50))
        .collect();
    let mut cfg = tideline_tests::clients::reliable_producer_config(&bootstrap);
    cfg.set("linger.ms", "5");
    let delivered = produce_all(&cfg, &topic, &sent);

    // Every segment leaves less than one stretch not yet handed over.
    let segments: Vec<_> = (0..2)
        .flat_map(|p| disk::segments(&disk::partition_dir(broker.data_dir(), &topic, p)))
        .collect();
    assert!(
        segments.len() > 2,
        "the partitions rolled ({} segments)",
        segments.len()
    );
    let written: u64 = segments.iter().map(|s| s.size).sum();
    let at_least = written - segments.len() as u64 * STRETCH;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut started = 0.0;
    while Instant::now() < deadline {
        started = broker.metric("tideline_log_writeback_started_bytes_total");
        if started >= at_least as f64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        started >= at_least as f64 && started <= written as f64,
        "writeback was started for {started} bytes of {written} written \
         ({} segments): expected at least {at_least}",
        segments.len()
    );

    broker.kill();
    broker.restart();
    let mut acked: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
    for (i, d) in delivered.iter().enumerate() {
        acked.entry(d.partition).or_default().push((d.offset, i));
    }
    let until: Vec<(i32, i64)> = acked
        .iter()
        .map(|(p, list)| (*p, list.iter().map(|(o, _)| *o).max().unwrap() + 1))
        .collect();
    assert_reads_back(&bootstrap, &topic, &until, &acked, &sent);

    // Off: the kernel alone decides when to write back.
    let off = Broker::start_with(&[("log.segment.writeback.bytes", "0")]);
    let topic = unique_topic("crash-writeback-off");
    create_topic(&off.bootstrap(), &topic, 1, &[]);
    produce_all(
        &tideline_tests::clients::reliable_producer_config(&off.bootstrap()),
        &topic,
        &sent,
    );
    assert_eq!(
        off.metric("tideline_log_writeback_started_bytes_total"),
        0.0
    );
}
