//! The alerting rules (`monitoring/tideline.rules.yml` for brokers,
//! `monitoring/tideline-operator.rules.yml` for the operator): valid for
//! Prometheus (`promtool check rules`), each alert firing on its test
//! series (`promtool test rules`), and documented in the runbook; every
//! metric they and the Grafana dashboard (`monitoring/grafana-dashboard.json`)
//! read is served by a running broker or by the operator's `/metrics`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tideline_tests::{
    consume_all, consumer_config, create_topic, free_port, producer_config, Broker, BrokerOpts,
    TestProducer, TestRecord,
};

/// (rules file, its promtool tests, how many rules it holds)
const RULE_FILES: [(&str, &str, usize); 2] = [
    ("tideline.rules.yml", "tests/tideline.rules.test.yml", 12),
    (
        "tideline-operator.rules.yml",
        "tests/tideline-operator.rules.test.yml",
        3,
    ),
];

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

/// Every `tideline_*` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.match_indices("tideline_")
        .map(|(start, _)| {
            text[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// Every metric name the rules' expressions and the dashboard's queries use.
fn metrics_used() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (file, _, _) in RULE_FILES {
        let rules = std::fs::read_to_string(monitoring_dir().join(file)).unwrap();
        for line in rules
            .lines()
            .filter(|l| l.trim_start().starts_with("expr:"))
        {
            names.extend(metric_names(line));
        }
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring_dir().join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 6, "the dashboard has queries: {exprs:?}");
    for expr in exprs {
        names.extend(metric_names(&expr));
    }
    names
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The metric names of a Prometheus text exposition.
fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_rules_are_valid_and_every_alert_fires_on_its_test_series() {
    let runbook = std::fs::read_to_string(monitoring_dir().join("RUNBOOK.md")).unwrap();
    for (file, tests, count) in RULE_FILES {
        let checked = promtool(&["check", "rules", file]);
        assert!(
            checked.contains(&format!("SUCCESS: {count} rules found")),
            "{checked}"
        );
        let tested = promtool(&["test", "rules", tests]);
        assert!(tested.contains("SUCCESS"), "{tested}");
        // Every alert has a test case and a runbook section.
        let rules = std::fs::read_to_string(monitoring_dir().join(file)).unwrap();
        let cases = std::fs::read_to_string(monitoring_dir().join(tests)).unwrap();
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
}

#[test]
fn every_metric_the_rules_and_the_dashboard_read_is_served() {
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
    let broker_metrics = exposed(&broker.metrics());

    // The operator's /metrics, served by its HTTP endpoint after one
    // reconcile and one failure have been recorded.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let metrics = tideline_operator::metrics::OperatorMetrics::new();
    metrics.reconciled("kafkacluster", Duration::from_millis(3));
    metrics.reconcile_failed("kafkatopic", "KafkaAdmin");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let state = tideline_operator::http::HttpState {
        metrics,
        ready: Default::default(),
    };
    runtime.spawn(tideline_operator::http::serve(addr, state));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let operator_metrics = loop {
        if let Ok(response) = tideline_tests::http::get(addr, "/metrics") {
            break exposed(&response.text());
        }
        assert!(std::time::Instant::now() < deadline, "operator /metrics");
        std::thread::sleep(Duration::from_millis(50));
    };

    let used = metrics_used();
    assert!(used.len() >= 15, "{used:?}");
    let missing: Vec<&String> = used
        .iter()
        .filter(|m| !broker_metrics.contains(*m) && !operator_metrics.contains(*m))
        .collect();
    assert!(
        missing.is_empty(),
        "rules or dashboard read metrics neither the broker nor the operator serves: {missing:?}"
    );
}
