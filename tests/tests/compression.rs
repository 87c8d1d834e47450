//! Broker-side compression (`compression.type` other than `producer`):
//! whatever codec a producer uses, the leader stores the topic's codec, and
//! every client reads back the bytes that were sent.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tideline_tests::clients::{consume_all, reliable_producer_config, TestProducer};
use tideline_tests::disk::{partition_dir, read_batches, segments};
use tideline_tests::{create_topic, Broker, BrokerOpts, Proxy, TestRecord};

/// librdkafka's names, in the order of the batch attributes' codec ids.
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
const PER_PRODUCER: u64 = 300;

/// The codec id of every batch stored for a partition.
fn stored_codecs(data_dir: &Path, topic: &str, partition: i32) -> Vec<i16> {
    let mut codecs = Vec::new();
    for segment in segments(&partition_dir(data_dir, topic, partition)) {
        let scan = read_batches(&segment.path);
        assert_eq!(scan.trailing_bytes, 0, "{}", segment.path.display());
        for batch in scan.batches {
            assert!(batch.crc_ok, "batch {} has a bad CRC", batch.base_offset);
            codecs.push(batch.attributes & 0x07);
        }
    }
    codecs
}

/// One topic per stored codec, one partition per producer codec: each of
/// the 25 pairs is produced by an idempotent rdkafka producer, stored in
/// the topic's codec (checked on disk) and read back byte-exact by rdkafka
/// and by kafka-python.
#[test]
fn every_codec_pair_is_stored_in_the_topic_codec_and_reads_back_byte_exact() {
    let broker = Broker::start_with(&[]);
    let bootstrap = broker.bootstrap();
    let targets = ["uncompressed", "gzip", "snappy", "lz4", "zstd"];
    for target in targets {
        create_topic(
            &bootstrap,
            &format!("stored-{target}"),
            CODECS.len() as i32,
            &[("compression.type", target)],
        );
    }

    let mut sent: BTreeMap<(String, i32), Vec<TestRecord>> = BTreeMap::new();
    for (partition, codec) in CODECS.iter().enumerate() {
        let mut config = reliable_producer_config(&bootstrap);
        config.set("compression.codec", *codec);
        let producer = TestProducer::new(&config);
        for target in targets {
            let topic = format!("stored-{target}");
            let records: Vec<TestRecord> = (0..PER_PRODUCER)
                .map(|i| TestRecord::varied(partition as u64 * 1000 + i, i))
                .collect();
            for record in &records {
                producer.send(&topic, Some(partition as i32), record);
            }
            sent.insert((topic, partition as i32), records);
        }
        producer.expect_all_delivered(Duration::from_secs(60));
    }

    for (target_id, target) in targets.iter().enumerate() {
        let topic = format!("stored-{target}");
        let until: Vec<(i32, i64)> = (0..CODECS.len() as i32)
            .map(|p| (p, PER_PRODUCER as i64))
            .collect();
        let consumed = consume_all(&bootstrap, &topic, &until);
        for (partition, codec) in CODECS.iter().enumerate() {
            let partition = partition as i32;
            let stored = stored_codecs(broker.data_dir(), &topic, partition);
            assert!(!stored.is_empty());
            assert!(
                stored.iter().all(|&c| c == target_id as i16),
                "{codec} → {target}: stored codecs {stored:?}"
            );
            let got: Vec<TestRecord> = consumed[&partition]
                .iter()
                .map(|r| r.to_test_record())
                .collect();
            let expected: Vec<TestRecord> = sent[&(topic.clone(), partition)]
                .iter()
                .map(|r| TestRecord {
                    timestamp: None,
                    ..r.clone()
                })
                .collect();
            assert_eq!(got, expected, "{codec} → {target}: records differ");
        }
    }

    // kafka-python (its own codec implementations) reads the same bytes.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/read_values_kafka_python.py");
    for target in targets {
        let topic = format!("stored-{target}");
        let out = Command::new(std::env::var("TIDELINE_PYTHON").unwrap_or("python3".into()))
            .arg(&script)
            .arg(&bootstrap)
            .arg(&topic)
            .arg(CODECS.len().to_string())
            .arg(PER_PRODUCER.to_string())
            .output()
            .expect("run kafka-python");
        assert!(
            out.status.success(),
            "kafka-python on {topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        for (partition, line) in stdout.lines().enumerate() {
            let values: Vec<String> = sent[&(topic.clone(), partition as i32)]
                .iter()
                .map(|r| format!("{}/{}", hex(r.key.as_deref()), hex(r.value.as_deref())))
                .collect();
            assert_eq!(
                line,
                format!("{partition} {}", values.join(",")),
                "kafka-python reads {topic} partition {partition} differently"
            );
        }
        assert_eq!(stdout.lines().count(), CODECS.len());
    }
}

/// As the script prints it: hex, `-` for null.
fn hex(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "-".to_string(),
        Some(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// Recompression happens after the idempotence check: batches resent
/// after a connection cut are recognised as duplicates (the broker answers
/// with the first offset and stores nothing twice), and each record ends up
/// once, in order, at the offset its acknowledgement gave.
#[test]
fn idempotent_retries_into_a_recompressing_topic_are_not_duplicated() {
    let (broker, proxy) = Proxy::start_for_broker(BrokerOpts::new());
    let bootstrap = proxy.bootstrap();
    create_topic(&bootstrap, "zstd-idem", 1, &[("compression.type", "zstd")]);
    let mut config = reliable_producer_config(&bootstrap);
    config
        .set("compression.codec", "lz4")
        .set("batch.num.messages", "100")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200");
    let producer = TestProducer::new(&config);
    const N: u64 = 20_000;
    let records: Vec<TestRecord> = (0..N).map(|i| TestRecord::indexed(i, 200, 16)).collect();
    let mut effective_cuts = 0;
    std::thread::scope(|s| {
        s.spawn(|| {
            for record in &records {
                producer.send("zstd-idem", Some(0), record);
            }
        });
        // Stop forwarding, let the broker append what reached it, cut: the
        // acknowledgements are lost and the producer resends.
        for mark in (1..=5).map(|k| k * 3_000) {
            wait_for_delivered(&producer, mark);
            proxy.pause();
            std::thread::sleep(Duration::from_millis(100));
            let outstanding = producer.outstanding();
            if proxy.cut_all() > 0 && outstanding > 0 {
                effective_cuts += 1;
            }
            proxy.resume();
        }
    });
    let delivered = producer.expect_all_delivered(Duration::from_secs(120));
    assert!(
        effective_cuts >= 3,
        "only {effective_cuts} cuts hit traffic in flight"
    );
    let consumed = consume_all(&bootstrap, "zstd-idem", &[(0, N as i64)]);
    let log: Vec<TestRecord> = consumed[&0].iter().map(|r| r.to_test_record()).collect();
    assert_eq!(log.len(), records.len(), "no record twice, none missing");
    for (i, (record, delivery)) in records.iter().zip(&delivered).enumerate() {
        assert_eq!(
            delivery.offset, i as i64,
            "record {i} acknowledged at its place"
        );
        assert_eq!(&log[i].value, &record.value, "record {i}");
    }
    assert!(stored_codecs(broker.data_dir(), "zstd-idem", 0)
        .iter()
        .all(|&c| c == 4));
}

fn wait_for_delivered(producer: &TestProducer, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while producer.delivered() < count && producer.failed() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}
