//! Log compaction (cleanup.policy=compact) seen through a consumer reading
//! from the beginning: the latest value per key survives at its original
//! offset, tombstones disappear after delete.retention.ms, and a broker
//! SIGKILLed while its cleaner runs loses nothing.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};
use tideline_tests::clients::{produce_all, ConsumedRecord};
use tideline_tests::{
    admin_client, block_on, consume_all, create_topic, producer_config, Broker, TestRecord,
};

const TOPIC: &str = "profiles";

fn compacting_broker() -> Broker {
    Broker::start_with(&[("log.cleaner.backoff.ms", "100")])
}

fn topic_configs(segment_bytes: &str) -> Vec<(&'static str, String)> {
    vec![
        ("cleanup.policy", "compact".into()),
        ("segment.bytes", segment_bytes.into()),
        ("min.cleanable.dirty.ratio", "0.01".into()),
        ("delete.retention.ms", "1000".into()),
    ]
}

/// `rounds` updates of `keys` keys, in rounds; in the last round the keys
/// divisible by 5 get a tombstone instead of a value.
fn workload(keys: u64, rounds: u64, value_size: usize) -> Vec<TestRecord> {
    let mut records = Vec::new();
    for round in 0..rounds {
        for key in 0..keys {
            let tombstone = round == rounds - 1 && key % 5 == 0;
            let mut value = format!("key{key}-round{round}-").into_bytes();
            value.resize(value_size.max(value.len()), b'x');
            records.push(TestRecord {
                key: Some(format!("key{key}").into_bytes()),
                value: (!tombstone).then_some(value),
                ..TestRecord::default()
            });
        }
    }
    records
}

/// A record larger than the topic's segments: appended on its own, it
/// rolls the active segment, so the workload before it sits in closed
/// segments the cleaner may touch.
fn filler(i: u64) -> TestRecord {
    TestRecord {
        key: Some(format!("filler{i}").into_bytes()),
        value: Some(vec![b'f'; 300 * 1024]),
        ..TestRecord::default()
    }
}

/// What a fully compacted log must hold: offset → record, the latest
/// record of every key that is not deleted.
fn expected_survivors(records: &[TestRecord], offsets: &[i64]) -> BTreeMap<i64, TestRecord> {
    let mut latest: HashMap<&[u8], usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        latest.insert(r.key.as_deref().unwrap(), i);
    }
    latest
        .values()
        .filter(|&&i| records[i].value.is_some())
        .map(|&i| (offsets[i], records[i].clone()))
        .collect()
}

fn read_all(broker: &Broker, end: i64) -> Vec<ConsumedRecord> {
    consume_all(&broker.bootstrap(), TOPIC, &[(0, end)])
        .remove(&0)
        .unwrap()
}

/// Every record read must be the one produced at that offset (offsets are
/// preserved); returns how far the log is from fully compacted.
fn check_against_produced(
    read: &[ConsumedRecord],
    produced: &BTreeMap<i64, TestRecord>,
    survivors: &BTreeMap<i64, TestRecord>,
) -> usize {
    for r in read {
        let sent = produced
            .get(&r.offset)
            .unwrap_or_else(|| panic!("offset {} was never produced", r.offset));
        assert_eq!(
            (&r.key, &r.value),
            (&sent.key, &sent.value),
            "offset {} holds something else than what was produced there",
            r.offset
        );
    }
    let present: BTreeMap<i64, ()> = read.iter().map(|r| (r.offset, ())).collect();
    for offset in survivors.keys() {
        assert!(
            present.contains_key(offset),
            "the latest value of a key (offset {offset}) was removed"
        );
    }
    // Records beyond the survivors are what is left to clean.
    read.len().saturating_sub(survivors.len())
}

/// Produces the workload, then two fillers each in its own batch; returns
/// offset → record and each record's offset, fillers included.
fn produce_workload(
    broker: &Broker,
    records: &mut Vec<TestRecord>,
) -> (BTreeMap<i64, TestRecord>, Vec<i64>) {
    let config = producer_config(&broker.bootstrap());
    let mut delivered = produce_all(&config, TOPIC, records);
    for i in 0..2 {
        let one = filler(i);
        delivered.extend(produce_all(&config, TOPIC, std::slice::from_ref(&one)));
        records.push(one);
    }
    let offsets: Vec<i64> = delivered.iter().map(|d| d.offset).collect();
    let produced = offsets
        .iter()
        .copied()
        .zip(records.iter().cloned())
        .collect();
    (produced, offsets)
}

#[test]
fn compaction_keeps_the_latest_value_per_key_at_its_offset_and_drops_tombstones() {
    let broker = compacting_broker();
    let configs = topic_configs("65536");
    let configs: Vec<(&str, &str)> = configs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    create_topic(&broker.bootstrap(), TOPIC, 1, &configs);
    let mut records = workload(100, 30, 40);
    let (produced, offsets) = produce_workload(&broker, &mut records);
    let end = offsets.last().unwrap() + 1;
    let survivors = expected_survivors(&records, &offsets);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let read = read_all(&broker, end);
        let left = check_against_produced(&read, &produced, &survivors);
        if left == 0 {
            // Tombstones are gone too (after delete.retention.ms), so a key
            // deleted in the last round does not appear at all.
            assert_eq!(read.len(), survivors.len());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "log not compacted after 60 s: {} records read, {} expected",
            read.len(),
            survivors.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The size on disk went down accordingly.
    let metrics = broker.metrics();
    let size: f64 = metrics
        .lines()
        .find(|l| l.starts_with("tideline_log_size_bytes") && l.contains(TOPIC))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("log size metric");
    assert!(size < 700.0 * 1024.0, "compacted log still {size} bytes");
}

/// AlterConfigs (which replaces the topic's whole set of overrides).
fn set_topic_configs(broker: &Broker, configs: &[(&str, &str)]) {
    let admin = admin_client(&broker.bootstrap());
    let config = configs.iter().fold(
        AlterConfig::new(ResourceSpecifier::Topic(TOPIC)),
        |c, (k, v)| c.set(k, v),
    );
    let results =
        block_on(admin.alter_configs(&[config], &AdminOptions::new())).expect("AlterConfigs");
    for r in results {
        r.expect("AlterConfigs result");
    }
}

/// Lines of the broker's log file (all runs).
fn log_lines(broker: &Broker) -> Vec<String> {
    std::fs::read_to_string(broker.log_path())
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// The lines of the broker's current run (after the harness's last start banner).
fn this_run(lines: &[String]) -> Vec<String> {
    let start = lines
        .iter()
        .rposition(|l| l.starts_with("===== tideline-tests: start #"))
        .map_or(0, |i| i + 1);
    lines[start..].to_vec()
}

fn count(lines: &[String], needle: &str) -> usize {
    lines
        .iter()
        .filter(|l| l.contains(needle) && l.contains(TOPIC))
        .count()
}

#[test]
fn a_broker_killed_while_its_cleaner_runs_loses_nothing() {
    let mut broker = compacting_broker();
    // Written as a plain topic, then switched to compaction, so the first
    // cleaning pass starts when the test is ready to interrupt it.
    let configs = topic_configs("262144");
    let plain: Vec<(&str, &str)> = configs
        .iter()
        .filter(|(k, _)| *k != "cleanup.policy")
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    create_topic(&broker.bootstrap(), TOPIC, 1, &plain);
    // ~40 MB: long enough a cleaning pass for the kills to land inside it.
    let mut records = workload(2000, 40, 500);
    let (produced, offsets) = produce_workload(&broker, &mut records);
    let all: Vec<(&str, &str)> = configs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    set_topic_configs(&broker, &all);
    let end = offsets.last().unwrap() + 1;
    let survivors = expected_survivors(&records, &offsets);

    // Kill the broker part-way through its cleaning pass, a little later
    // each time, until a pass gets to finish.
    let mut interrupted = 0;
    for round in 0..5u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        while count(&this_run(&log_lines(&broker)), "log cleaner started") == 0 {
            assert!(Instant::now() < deadline, "the cleaner did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(10 + 80 * round));
        let finished = count(
            &this_run(&log_lines(&broker)),
            "log cleaner compacted a log",
        ) > 0;
        broker.kill();
        broker.restart();
        if finished {
            break;
        }
        interrupted += 1;
    }
    assert!(
        interrupted > 0,
        "no kill landed while the cleaner was running"
    );
    eprintln!("{interrupted} kill(s) interrupted the cleaner");

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let read = read_all(&broker, end);
        if check_against_produced(&read, &produced, &survivors) == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "log not compacted 120 s after the last restart: {} records, {} expected",
            read.len(),
            survivors.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
