//! Idempotent producer through a network that keeps breaking.
//!
//! The broker advertises a fault-injecting proxy, so every client byte goes
//! through it. While an idempotent librdkafka producer (`enable.idempotence
//! =true`: acks=all, bounded in-flight, producer id + per-partition
//! sequence numbers) sends 50,000 records, the proxy severs every
//! connection several times. Requests in flight at a cut may or may not
//! have been appended; the producer resends them with the same sequence
//! numbers and the broker must recognise the duplicates. Afterwards each
//! record must be in the log exactly once, in send order per partition,
//! at the offset its delivery report gave, with no gaps.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tideline_tests::{
    consume_all, create_topic, producer_config, unique_topic, BrokerOpts, Proxy, TestProducer,
    TestRecord,
};

#[test]
fn idempotent_producer_survives_connection_cuts_without_duplicates() {
    let (broker, proxy) = Proxy::start_for_broker(BrokerOpts::new());
    let bootstrap = proxy.bootstrap();
    let topic = unique_topic("idempotent");
    create_topic(&bootstrap, &topic, 3, &[]);

    const N: u64 = 50_000;
    let records: Vec<TestRecord> = (0..N).map(|i| TestRecord::indexed(i, 100, 64)).collect();
    let mut cfg = producer_config(&bootstrap);
    cfg.set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("batch.num.messages", "200")
        .set("message.timeout.ms", "180000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200");
    let producer = TestProducer::new(&cfg);

    let sending_done = AtomicBool::new(false);
    let mut effective_cuts = 0;
    let mut cut_log = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            for r in &records {
                producer.send(&topic, None, r);
            }
            sending_done.store(true, Ordering::SeqCst);
        });
        // At each mark: stop forwarding, give the broker a moment to
        // append what already reached it, then cut. Requests that got
        // through are in the log but their acknowledgements are lost, so
        // the producer must resend them and the broker must recognise the
        // duplicates. Requests stuck in the proxy are simply lost.
        for mark in (1..=12).map(|k| k * 3_800) {
            let deadline = Instant::now() + Duration::from_secs(180);
            while producer.delivered() < mark && Instant::now() < deadline {
                if producer.failed() > 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            proxy.pause();
            std::thread::sleep(Duration::from_millis(100));
            let outstanding = producer.outstanding();
            let cut = proxy.cut_all();
            proxy.resume();
            cut_log.push((producer.delivered(), outstanding, cut));
            if cut > 0 && outstanding > 0 {
                effective_cuts += 1;
            }
        }
    });
    assert!(sending_done.load(Ordering::SeqCst));

    let delivered = producer.expect_all_delivered(Duration::from_secs(180));
    assert!(
        effective_cuts >= 6,
        "too few cuts hit in-flight traffic (delivered, outstanding, connections cut): \
         {cut_log:?}"
    );
    eprintln!("cuts (delivered, outstanding, connections cut): {cut_log:?}");

    // Delivery reports: per partition, offsets 0, 1, 2, ... in send order.
    let mut per_partition: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
    for (i, d) in delivered.iter().enumerate() {
        per_partition
            .entry(d.partition)
            .or_default()
            .push((d.offset, i));
    }
    for (p, list) in &per_partition {
        for (k, (offset, i)) in list.iter().enumerate() {
            assert_eq!(
                *offset, k as i64,
                "partition {p}: record {i} acknowledged at offset {offset}, expected {k} \
                 (duplicate, gap or reordering)"
            );
        }
    }

    // The log itself: exactly those records, nothing more.
    let ends: Vec<(i32, i64)> = per_partition
        .iter()
        .map(|(p, l)| (*p, l.len() as i64))
        .collect();
    for (p, end) in &ends {
        let (_, high) = tideline_tests::clients::watermarks(&bootstrap, &topic, *p);
        assert_eq!(
            high, *end,
            "partition {p}: high watermark {high} but {end} records acknowledged (duplicates?)"
        );
    }
    let consumed = consume_all(&bootstrap, &topic, &ends);
    for (p, list) in &per_partition {
        let got = &consumed[p];
        assert_eq!(got.len(), list.len());
        for ((offset, i), r) in list.iter().zip(got) {
            assert_eq!(r.offset, *offset);
            assert_eq!(
                r.to_test_record(),
                records[*i],
                "partition {p} offset {offset}: expected record {i}"
            );
        }
    }
    drop(broker);
}
