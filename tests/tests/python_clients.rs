//! Other real clients: kafka-python (a pure-Python implementation of the
//! protocol, independent of librdkafka) and confluent-kafka (Python over
//! a different librdkafka build than the Rust tests use).
//!
//! The Python packages are installed by the README's test command
//! (`./scripts/test.sh`). A missing package is a broken test environment, so
//! these tests FAIL rather than skip.

use std::path::Path;
use std::process::Command;

use std::collections::BTreeSet;
use std::time::Duration;

use tideline_tests::clients::produce_n;
use tideline_tests::member::{wait_for, Member};
use tideline_tests::{create_topic, Broker, TestRecord};

fn python() -> String {
    std::env::var("TIDELINE_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn require_module(module: &str, package: &str) {
    let out = Command::new(python())
        .args(["-c", &format!("import {module}")])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; install Python 3 and run the README's test command \
                 (./scripts/test.sh)",
                python()
            )
        });
    assert!(
        out.status.success(),
        "Python module `{module}` is missing: run the README's test command \
         (./scripts/test.sh, which does `pip install kafka-python confluent-kafka`), \
         or `pip install {package}`.\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_script(script: &str, bootstrap: &str) {
    run_script_with(script, &[bootstrap]);
}

fn run_script_with(script: &str, args: &[&str]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let out = Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    eprintln!("{stdout}");
}

#[test]
fn kafka_python_smoke() {
    require_module("kafka", "kafka-python");
    let broker = Broker::start_with(&[]);
    run_script("smoke_kafka_python.py", &broker.bootstrap());
}

/// kafka-python's transactional producer and read_committed consumer.
#[test]
fn kafka_python_transactions_commit_abort_and_fence() {
    require_module("kafka", "kafka-python");
    let broker = Broker::start_with(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "py-txn", 1, &[]);
    run_script_with("transactions_kafka_python.py", &[&bootstrap, "py-txn"]);
}

#[test]
fn confluent_kafka_smoke() {
    require_module("confluent_kafka", "confluent-kafka");
    let broker = Broker::start_with(&[]);
    run_script("smoke_confluent_kafka.py", &broker.bootstrap());
}

/// kafka-python (its own implementation of the group protocol) and an
/// rdkafka member in one group: they split the partitions, and when the
/// kafka-python member leaves, the rdkafka member takes over and nothing
/// produced is missed.
#[test]
fn kafka_python_and_rdkafka_share_a_consumer_group() {
    require_module("kafka", "kafka-python");
    let broker = Broker::start_with(&[("group.initial.rebalance.delay.ms", "300")]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "mixed", 6, &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join("group_member_kafka_python.py");
    let mut command = Command::new(python());
    command
        .arg(&script)
        .args([&bootstrap, "mixed", "mixed-group"]);
    let mut py = Member::spawn_command("kafka-python", command);
    let rd = Member::spawn("rdkafka", &bootstrap, "mixed", "mixed-group", &[]);
    let split = || {
        let (a, b) = (py.assignment(), rd.assignment());
        a.len() == 3 && b.len() == 3 && a.is_disjoint(&b)
    };
    wait_for(
        "three partitions each",
        Duration::from_secs(60),
        &[&py, &rd],
        split,
    );

    let make = |i: u64| TestRecord {
        key: Some(format!("k{i}").into_bytes()),
        value: Some(b"v".to_vec()),
        ..TestRecord::default()
    };
    let (_, delivered) = produce_n(&bootstrap, "mixed", 600, make);
    let mut produced: BTreeSet<(i32, i64)> =
        delivered.iter().map(|d| (d.partition, d.offset)).collect();
    let consumed = |members: &[&Member]| -> BTreeSet<(i32, i64)> {
        members.iter().flat_map(|m| m.records()).collect()
    };
    wait_for(
        "all 600 records",
        Duration::from_secs(60),
        &[&py, &rd],
        || consumed(&[&py, &rd]).is_superset(&produced),
    );
    assert!(!py.records().is_empty() && !rd.records().is_empty());

    py.terminate();
    wait_for(
        "rdkafka to own all six",
        Duration::from_secs(60),
        &[&rd],
        || rd.assignment().len() == 6,
    );
    let (_, delivered) = produce_n(&bootstrap, "mixed", 300, make);
    produced.extend(delivered.iter().map(|d| (d.partition, d.offset)));
    wait_for(
        "the next 300 records",
        Duration::from_secs(60),
        &[&rd],
        || consumed(&[&py, &rd]).is_superset(&produced),
    );
    // kafka-python committed after each record and left cleanly, so rdkafka
    // resumed exactly where it stopped: nothing was read twice.
    let all: Vec<(i32, i64)> = py.records().into_iter().chain(rd.records()).collect();
    let unique: BTreeSet<_> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        unique.len(),
        "records consumed twice after a clean leave"
    );
}

#[test]
fn confluent_kafka_group_administration() {
    require_module("confluent_kafka", "confluent-kafka");
    let broker = Broker::start_with(&[("group.initial.rebalance.delay.ms", "0")]);
    run_script("group_admin_confluent_kafka.py", &broker.bootstrap());
}
