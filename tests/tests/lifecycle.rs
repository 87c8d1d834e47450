//! The broker as a process: HTTP endpoints, clean shutdown on SIGTERM,
//! restart on the same data directory, and surviving a SIGSTOP/SIGCONT
//! freeze. These also check the harness itself does what it claims.

use std::time::Duration;

use tideline_tests::clients::{produce_n, watermarks};
use tideline_tests::{consume_all, create_topic, unique_topic, Broker, TestProducer, TestRecord};

#[test]
fn http_endpoints_answer() {
    let broker = Broker::start_with(&[]);
    assert_eq!(broker.http_get("/healthz").status, 200);
    assert_eq!(broker.http_get("/readyz").status, 200);
    let metrics = broker.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("# TYPE ") || l.starts_with("# HELP ")),
        "/metrics is not Prometheus text format:\n{metrics}"
    );
}

#[test]
fn sigterm_is_a_clean_shutdown_and_restart_keeps_data() {
    let mut broker = Broker::start_with(&[]);
    let topic = unique_topic("lifecycle");
    create_topic(&broker.bootstrap(), &topic, 2, &[]);
    let (records, delivered) = produce_n(&broker.bootstrap(), &topic, 1000, |i| {
        TestRecord::indexed(i, 50, 10)
    });

    broker.stop(); // asserts exit status 0
    broker.restart();

    let ends: Vec<(i32, i64)> = (0..2)
        .map(|p| (p, watermarks(&broker.bootstrap(), &topic, p).1))
        .collect();
    for (p, end) in &ends {
        let acked = delivered.iter().filter(|d| d.partition == *p).count() as i64;
        assert_eq!(*end, acked, "partition {p} high watermark after restart");
    }
    let consumed = consume_all(&broker.bootstrap(), &topic, &ends);
    for (i, d) in delivered.iter().enumerate() {
        let got = &consumed[&d.partition][d.offset as usize];
        assert_eq!(got.offset, d.offset);
        assert_eq!(got.to_test_record(), records[i], "record {i} at {d:?}");
    }

    // Offsets continue where they were, not from zero.
    let (_, more) = produce_n(&broker.bootstrap(), &topic, 10, |i| {
        TestRecord::indexed(1000 + i, 50, 10)
    });
    for d in more {
        let before = ends.iter().find(|(p, _)| *p == d.partition).unwrap().1;
        assert!(
            d.offset >= before,
            "new record at {d:?} reuses an old offset"
        );
    }
}

#[test]
fn frozen_broker_resumes_serving() {
    let mut broker = Broker::start_with(&[]);
    let topic = unique_topic("frozen");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let producer = TestProducer::new(&tideline_tests::producer_config(&broker.bootstrap()));
    producer.send(&topic, Some(0), &TestRecord::value("before"));
    assert!(producer.flush(Duration::from_secs(30)));

    broker.pause();
    for i in 0..10 {
        producer.send(&topic, Some(0), &TestRecord::value(format!("during {i}")));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        producer.delivered(),
        1,
        "a SIGSTOPped broker acknowledged records"
    );
    broker.resume();

    let delivered = producer.expect_all_delivered(Duration::from_secs(60));
    let offsets: Vec<i64> = delivered.iter().map(|d| d.offset).collect();
    assert_eq!(offsets, (0..11).collect::<Vec<_>>());
    broker.assert_running();
}
