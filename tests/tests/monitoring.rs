//! The alerting rules (`monitoring/tideline.rules.yml`): valid for
//! Prometheus (`promtool check rules`), each alert firing on its test
//! series (`promtool test rules`), and documented in the runbook; every
//! metric they and the Grafana dashboard (`monitoring/grafana-dashboard.json`)
//! read is served by a running broker.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tideline_tests::{
    consume_all, consumer_config, create_topic, producer_config, Broker, BrokerOpts, TestProducer,
    TestRecord,
};

fn monitoring_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../monitoring")
}

fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(monitoring_dir())
        .output()
        .expect("promtool (Debian package prometheus; ./scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// Every `tideline_*` metric name the rules' expressions use.
fn metrics_used() -> BTreeSet<String> {
    let rules = std::fs::read_to_string(monitoring_dir().join("tideline.rules.yml")).unwrap();
    let mut names = BTreeSet::new();
    for line in rules
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
    {
        for (start, _) in line.match_indices("tideline_") {
            let name: String = line[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

#[test]
fn the_rules_are_valid_and_every_alert_fires_on_its_test_series() {
    let checked = promtool(&["check", "rules", "tideline.rules.yml"]);
    assert!(checked.contains("SUCCESS: 9 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "tests/tideline.rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert has a test case and a runbook section.
    let rules = std::fs::read_to_string(monitoring_dir().join("tideline.rules.yml")).unwrap();
    let cases =
        std::fs::read_to_string(monitoring_dir().join("tests/tideline.rules.test.yml")).unwrap();
    let runbook = std::fs::read_to_string(monitoring_dir().join("RUNBOOK.md")).unwrap();
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            cases.contains(&format!("alertname: {alert}")),
            "{alert} has no promtool test"
        );
        assert!(
            runbook.contains(&format!("## {alert}")),
            "{alert} has no runbook section"
        );
    }
}

#[test]
fn every_metric_the_rules_and_the_dashboard_read_is_served_by_a_broker() {
    let broker = Broker::start(BrokerOpts::new());
    // A group with a committed offset, so the per-group series exist.
    create_topic(&broker.bootstrap(), "watched", 1, &[]);
    let producer = TestProducer::new(&producer_config(&broker.bootstrap()));
    producer.send("watched", Some(0), &TestRecord::value("x"));
    assert!(producer.flush(Duration::from_secs(30)));
    let mut config = consumer_config(&broker.bootstrap());
    config.set("group.id", "watchers");
    let consumer: BaseConsumer = config.create().unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("watched", 0, Offset::Offset(0))
        .unwrap();
    consumer.commit(&offsets, CommitMode::Sync).expect("commit");
    consume_all(&broker.bootstrap(), "watched", &[(0, 1)]);

    let served: BTreeSet<String> = broker
        .metrics()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    let used = metrics_used();
    assert!(used.len() >= 9, "{used:?}");
    let missing: Vec<&String> = used.iter().filter(|m| !served.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "rules read metrics the broker does not serve: {missing:?}"
    );
}
