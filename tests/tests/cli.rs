//! The `tideline` command-line tool against real brokers: each subcommand's
//! table and JSON output checked against what librdkafka's admin client,
//! a consumer, a raw request or `/metrics` report; exit codes; binary-safe
//! produce → consume; `cluster health` while a broker is down; a
//! reassignment waited on under load with the checker clean.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::{DescribeLogDirsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminOptions, ResourceSpecifier};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use tideline_tests::cli::{tideline, tideline_with_input};
use tideline_tests::clients::{
    consume_range, consumer, create_replicated_topic, produce_n, watermarks,
};
use tideline_tests::cluster::Cluster;
use tideline_tests::data::Rng;
use tideline_tests::jepsen::{check, Workload};
use tideline_tests::wire::RawConn;
use tideline_tests::{admin_client, block_on, consumer_config, create_topic, Broker, TestRecord};

const FAST: &[(&str, &str)] = &[
    ("broker.heartbeat.interval.ms", "300"),
    ("broker.session.timeout.ms", "3000"),
    ("replica.lag.time.max.ms", "3000"),
];

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A topic config's value and whether it is the default, per librdkafka.
fn rdkafka_config(
    bootstrap: &str,
    resource: ResourceSpecifier<'_>,
    key: &str,
) -> (Option<String>, bool) {
    let admin = admin_client(bootstrap);
    let results = block_on(admin.describe_configs([&resource], &AdminOptions::new()))
        .expect("DescribeConfigs");
    let config = results.into_iter().next().unwrap().expect("described");
    let entry = config.get(key).unwrap_or_else(|| panic!("{key} described"));
    (entry.value.clone(), entry.is_default)
}

fn partition_count(bootstrap: &str, topic: &str) -> Option<usize> {
    let md = consumer(&consumer_config(bootstrap))
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .expect("metadata");
    let t = md.topics().iter().find(|t| t.name() == topic)?;
    t.error().is_none().then(|| t.partitions().len())
}

fn first_line_has(stderr: &str, needle: &str) {
    let first = stderr.lines().next().unwrap_or("");
    assert!(
        first.starts_with("error: ") && first.contains(needle),
        "{stderr}"
    );
    assert!(
        stderr.lines().nth(1).unwrap_or("").starts_with("hint: "),
        "{stderr}"
    );
}

#[test]
fn cluster_info_and_topic_commands_report_what_the_broker_holds() {
    let broker = Broker::start_with(&[]);
    let b = broker.bootstrap();

    // cluster info: the id and broker list a raw Metadata answer gives.
    let info = tideline(&b, &["cluster", "info", "--format", "json"])
        .ok()
        .json();
    let mut conn = RawConn::connect(broker.kafka_addr());
    let metadata = conn
        .request(&MetadataRequest::default(), 12)
        .expect("Metadata");
    assert_eq!(info["cluster_id"], metadata.cluster_id.unwrap().to_string());
    assert_eq!(info["controller"], metadata.controller_id.0);
    assert_eq!(info["brokers"][0]["id"], 1);
    assert_eq!(info["brokers"][0]["port"], broker.kafka_port() as i64);
    assert_eq!(info["brokers"][0]["fenced"], false);
    let table = tideline(&b, &["cluster", "info"]).ok().text();
    assert!(
        table.contains(&format!("127.0.0.1:{}", broker.kafka_port())),
        "{table}"
    );

    // create with Kafka's flag names, then librdkafka sees it.
    tideline(
        &b,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "-c",
            "retention.ms=3600000",
        ],
    )
    .ok();
    assert_eq!(partition_count(&b, "orders"), Some(3));
    assert_eq!(
        rdkafka_config(&b, ResourceSpecifier::Topic("orders"), "retention.ms"),
        (Some("3600000".into()), false)
    );
    let again = tideline(&b, &["topic", "create", "orders", "-p", "3"]);
    assert_eq!(again.code, 1);
    first_line_has(&again.stderr, "TOPIC_ALREADY_EXISTS");
    tideline(
        &b,
        &["topic", "create", "orders", "-p", "3", "--if-not-exists"],
    )
    .ok();
    let bad_key = tideline(&b, &["topic", "create", "x", "-c", "retention.msec=1"]);
    assert_eq!(bad_key.code, 2, "{}", bad_key.stderr);

    // list
    let listed = tideline(&b, &["topic", "list", "--format", "json"])
        .ok()
        .json();
    let orders = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders")
        .expect("listed");
    assert_eq!(orders["partitions"], 3);
    assert_eq!(orders["replication_factor"], 1);
    assert!(tideline(&b, &["topic", "list"])
        .ok()
        .text()
        .lines()
        .any(|l| l.starts_with("orders ")));

    // describe: offsets from a consumer's watermarks, sizes from a raw
    // DescribeLogDirs, configs with their sources.
    produce_n(&b, "orders", 90, |i| TestRecord::indexed(i, 100, 9));
    let described = tideline(&b, &["topic", "describe", "orders", "--format", "json"])
        .ok()
        .json();
    let mut request = DescribeLogDirsRequest::default();
    let mut wanted = DescribableLogDirTopic::default();
    wanted.topic = TopicName(StrBytes::from_static_str("orders"));
    wanted.partitions = vec![0, 1, 2];
    request.topics = Some(vec![wanted]);
    let dirs = conn.request(&request, 4).expect("DescribeLogDirs");
    let raw_sizes: BTreeMap<i32, i64> = dirs.results[0].topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.partition_size))
        .collect();
    for p in described["partitions"].as_array().unwrap() {
        let id = p["partition"].as_i64().unwrap() as i32;
        let (low, high) = watermarks(&b, "orders", id);
        assert_eq!(p["start_offset"], low);
        assert_eq!(p["end_offset"], high);
        assert_eq!(p["leader"], 1);
        assert_eq!(p["isr"], serde_json::json!([1]));
        assert_eq!(p["size_bytes"], raw_sizes[&id], "partition {id}");
        assert!(raw_sizes[&id] > 0);
    }
    let retention = described["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "retention.ms")
        .unwrap();
    assert_eq!(retention["value"], "3600000");
    assert_eq!(retention["source"], "DYNAMIC_TOPIC_CONFIG");
    let segment = described["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "segment.bytes")
        .unwrap();
    assert_eq!(segment["source"], "DEFAULT_CONFIG");
    let yaml = tideline(&b, &["topic", "describe", "orders", "--format", "yaml"])
        .ok()
        .text();
    assert!(yaml.contains("name: orders"), "{yaml}");

    // trim: DeleteRecords to an offset, then to a timestamp.
    let trimmed = tideline(
        &b,
        &[
            "topic", "trim", "orders", "--offset", "10", "--format", "json",
        ],
    )
    .ok()
    .json();
    assert_eq!(trimmed.as_array().unwrap().len(), 3);
    for p in 0..3 {
        assert_eq!(trimmed[p]["low_watermark"], 10);
        assert_eq!(watermarks(&b, "orders", p as i32).0, 10);
    }
    let first_kept = tideline(
        &b,
        &[
            "topic",
            "consume",
            "orders",
            "--partition",
            "0",
            "--num",
            "1",
            "--format",
            "%o",
        ],
    )
    .ok()
    .text();
    assert_eq!(first_kept, "10");
    let too_far = tideline(&b, &["topic", "trim", "orders", "--offset", "1000000"]);
    assert_eq!(too_far.code, 1);
    first_line_has(&too_far.stderr, "OFFSET_OUT_OF_RANGE");
    let future = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 60_000)
        .to_string();
    tideline(
        &b,
        &[
            "topic",
            "trim",
            "orders",
            "--partition",
            "1",
            "--timestamp",
            &future,
        ],
    )
    .ok();
    let (low, high) = watermarks(&b, "orders", 1);
    assert_eq!(
        low, high,
        "everything older than a future timestamp is gone"
    );
    assert_eq!(watermarks(&b, "orders", 2).0, 10);

    // add-partitions, alter-config
    tideline(&b, &["topic", "add-partitions", "orders", "--num", "2"]).ok();
    assert_eq!(partition_count(&b, "orders"), Some(5));
    tideline(&b, &["topic", "add-partitions", "orders", "--total", "6"]).ok();
    assert_eq!(partition_count(&b, "orders"), Some(6));
    tideline(
        &b,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "cleanup.policy=compact",
            "--delete",
            "retention.ms",
        ],
    )
    .ok();
    assert_eq!(
        rdkafka_config(&b, ResourceSpecifier::Topic("orders"), "cleanup.policy")
            .0
            .as_deref(),
        Some("compact")
    );
    assert!(
        rdkafka_config(&b, ResourceSpecifier::Topic("orders"), "retention.ms").1,
        "back to the default"
    );

    // delete
    tideline(&b, &["topic", "delete", "orders"]).ok();
    wait_until("orders deleted", Duration::from_secs(20), || {
        partition_count(&b, "orders").is_none()
    });
    let gone = tideline(&b, &["topic", "describe", "orders"]);
    assert_eq!(gone.code, 1);
    first_line_has(&gone.stderr, "UNKNOWN_TOPIC_OR_PARTITION");
}

#[test]
fn produce_then_consume_round_trips_binary_keys_values_and_headers() {
    let broker = Broker::start_with(&[]);
    let b = broker.bootstrap();
    create_topic(&b, "bin", 2, &[]);
    create_topic(&b, "copy", 2, &[]);

    // Records with every byte value, newlines and NULs, as JSON lines.
    let mut rng = Rng::new(14);
    let mut input = Vec::new();
    let mut sent = Vec::new();
    for i in 0..200 {
        let key = rng.bytes(1 + (i % 7));
        let value = rng.bytes(i * 3);
        let header = rng.bytes(5);
        let b64 = |bytes: &[u8]| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(bytes)
        };
        let line = serde_json::json!({
            "key": b64(&key), "value": b64(&value), "partition": (i % 2) as i32,
            "headers": [{"key": "h", "value": b64(&header)}, {"key": "null", "value": null}],
        });
        input.extend_from_slice(line.to_string().as_bytes());
        input.push(b'\n');
        sent.push((i % 2, key, value, header));
    }
    tideline_with_input(
        &b,
        &[
            "topic",
            "produce",
            "bin",
            "--input",
            "json",
            "--encoding",
            "base64",
            "--compression",
            "zstd",
        ],
        &input,
    )
    .ok();

    // A librdkafka consumer reads exactly those bytes.
    let read = consume_range(
        &consumer_config(&b),
        "bin",
        &[(0, Offset::Beginning), (1, Offset::Beginning)],
        &[(0, 100), (1, 100)],
        Duration::from_secs(30),
    );
    for (p, records) in &read {
        let expected: Vec<_> = sent.iter().filter(|s| s.0 as i32 == *p).collect();
        assert_eq!(records.len(), expected.len());
        for (r, e) in records.iter().zip(expected) {
            assert_eq!(r.key.as_deref(), Some(e.1.as_slice()));
            assert_eq!(r.value.as_deref(), Some(e.2.as_slice()));
            assert_eq!(
                r.headers,
                vec![
                    ("h".to_string(), Some(e.3.clone())),
                    ("null".to_string(), None)
                ]
            );
        }
    }

    // consume --format json --encoding base64 | produce --input json copies them.
    let dump = tideline(
        &b,
        &[
            "topic",
            "consume",
            "bin",
            "--format",
            "json",
            "--encoding",
            "base64",
        ],
    )
    .ok();
    assert_eq!(dump.text().lines().count(), 200);
    tideline_with_input(
        &b,
        &[
            "topic",
            "produce",
            "copy",
            "--input",
            "json",
            "--encoding",
            "base64",
        ],
        &dump.stdout,
    )
    .ok();
    let template = ["--format", "%p %o %k|%s|%h\\n", "--encoding", "base64"];
    let original = tideline(&b, &[&["topic", "consume", "bin"][..], &template].concat()).ok();
    let copied = tideline(&b, &[&["topic", "consume", "copy"][..], &template].concat()).ok();
    let sorted = |o: &tideline_tests::cli::CliOutput| {
        let mut lines: Vec<String> = o.text().lines().map(String::from).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&original), sorted(&copied));

    // Text lines: key delimiter, static headers, acks, kcat's placeholders.
    create_topic(&b, "text", 1, &[]);
    tideline_with_input(
        &b,
        &[
            "topic", "produce", "text", "-K", ":", "-H", "src=cli", "--acks", "1",
        ],
        b"k1:v1\nk2:v:2\nplain\n",
    )
    .ok();
    let printed = tideline(
        &b,
        &[
            "topic",
            "consume",
            "text",
            "--format",
            "%t %p %o %k=%s %h %K %S\\n",
        ],
    )
    .ok()
    .text();
    assert_eq!(
        printed,
        "text 0 0 k1=v1 src=cli 2 2\ntext 0 1 k2=v:2 src=cli 2 3\ntext 0 2 =plain src=cli -1 5\n"
    );
    let timestamps: Vec<i64> = tideline(&b, &["topic", "consume", "text", "--format", "%T\\n"])
        .ok()
        .text()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(timestamps[0] > 1_600_000_000_000);

    // --offset N, -N, latest, @timestamp, --num, --partition.
    let values = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["topic", "consume", "text", "--format", "%s\\n"];
        all.extend_from_slice(args);
        tideline(&b, &all)
            .ok()
            .text()
            .lines()
            .map(String::from)
            .collect()
    };
    assert_eq!(values(&["--offset", "1"]), ["v:2", "plain"]);
    assert_eq!(values(&["--offset", "-1"]), ["plain"]);
    assert_eq!(values(&["--offset", "latest"]), Vec::<String>::new());
    assert_eq!(values(&["--num", "2"]), ["v1", "v:2"]);
    assert_eq!(
        values(&[
            "--partition",
            "0",
            "--offset",
            &format!("@{}", timestamps[0])
        ])
        .len(),
        3
    );
    assert_eq!(
        values(&["--offset", &format!("@{}", timestamps[2] + 60_000)]),
        Vec::<String>::new()
    );
    let nul =
        tideline_with_input(&b, &["topic", "produce", "text", "-D", "\\0"], b"a\nb\0c\0").ok();
    assert!(nul.stderr.contains("produced 2 of 2"), "{}", nul.stderr);
    assert_eq!(values(&["--offset", "3"]), ["a", "b", "c"]);

    // --follow keeps printing what arrives after it started.
    let mut follower = std::process::Command::new(tideline_tests::cli::cli_bin())
        .args([
            "-b", &b, "topic", "consume", "text", "--offset", "latest", "--follow",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // The consumer's assignment takes a moment; keep producing until it
    // prints, then check it keeps up with new records.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        tideline_with_input(&b, &["topic", "produce", "text"], b"early\n").ok();
        if let Ok(line) = lines_rx.recv_timeout(Duration::from_secs(1)) {
            break line;
        }
        assert!(Instant::now() < deadline, "--follow printed nothing");
    };
    assert_eq!(first, "early");
    tideline_with_input(&b, &["topic", "produce", "text"], b"late1\nlate2\n").ok();
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < 2 {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("--follow prints new records");
        if line != "early" {
            seen.push(line);
        }
    }
    assert_eq!(seen, ["late1", "late2"]);
    assert!(
        follower.try_wait().unwrap().is_none(),
        "--follow keeps running"
    );
    follower.kill().unwrap();
    let _ = follower.wait();
}

#[test]
fn group_commands_show_lag_as_the_broker_computes_it_and_seek_only_an_empty_group() {
    let broker = Broker::start_with(&[]);
    let b = broker.bootstrap();
    create_topic(&b, "events", 3, &[]);
    produce_n(&b, "events", 300, |i| TestRecord::indexed(i, 50, 30));
    let ends: Vec<i64> = (0..3).map(|p| watermarks(&b, "events", p).1).collect();

    // A group member commits offsets 10, 20, 30 and stays in the group.
    let mut config = consumer_config(&b);
    config
        .set("group.id", "billing")
        .set("enable.auto.commit", "false");
    let member = consumer(&config);
    member.subscribe(&["events"]).unwrap();
    wait_until("an assignment", Duration::from_secs(30), || {
        member.poll(Duration::from_millis(100));
        member.assignment().map(|a| a.count() == 3).unwrap_or(false)
    });
    let mut commit = TopicPartitionList::new();
    for p in 0..3 {
        commit
            .add_partition_offset("events", p, Offset::Offset(10 * (p as i64 + 1)))
            .unwrap();
    }
    member.commit(&commit, CommitMode::Sync).unwrap();

    let listed = tideline(&b, &["group", "list", "--format", "json"])
        .ok()
        .json();
    let billing = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "billing")
        .expect("listed");
    assert_eq!(billing["state"], "Stable");

    let rows = tideline(&b, &["group", "describe", "billing", "--format", "json"])
        .ok()
        .json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    wait_until("lag in /metrics", Duration::from_secs(30), || {
        broker.metric("tideline_group_lag{group=\"billing\",partition=\"0\",topic=\"events\"}")
            > 0.0
    });
    let mut total = 0;
    for row in rows {
        let p = row["partition"].as_i64().unwrap();
        assert_eq!(row["topic"], "events");
        assert_eq!(row["committed"], 10 * (p + 1));
        assert_eq!(row["end"], ends[p as usize]);
        assert_eq!(row["lag"], ends[p as usize] - 10 * (p + 1));
        let metric = broker.metric(&format!(
            "tideline_group_lag{{group=\"billing\",partition=\"{p}\",topic=\"events\"}}"
        ));
        assert_eq!(row["lag"].as_i64().unwrap() as f64, metric, "partition {p}");
        assert!(row["member_id"].as_str().is_some_and(|m| !m.is_empty()));
        total += row["lag"].as_i64().unwrap();
    }
    let table = tideline(&b, &["group", "describe", "billing"]).ok().text();
    assert!(table.contains(&format!("total lag:    {total}")), "{table}");
    assert!(table.contains("state:        Stable"), "{table}");

    // Kafka refuses to move the offsets of a group with members.
    let refused = tideline(&b, &["group", "seek", "billing", "--to", "earliest"]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("member"), "{}", refused.stderr);
    drop(member);
    wait_until("the group empties", Duration::from_secs(60), || {
        tideline(&b, &["group", "describe", "billing"])
            .ok()
            .text()
            .contains("state:        Empty")
    });

    let committed = || {
        let mut config = consumer_config(&b);
        config.set("group.id", "billing");
        let c = consumer(&config);
        let mut tpl = TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition("events", p);
        }
        let offsets = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        (0..3)
            .map(
                |p| match offsets.find_partition("events", p).unwrap().offset() {
                    Offset::Offset(o) => o,
                    _ => -1,
                },
            )
            .collect::<Vec<_>>()
    };
    let dry = tideline(
        &b,
        &["group", "seek", "billing", "--to", "earliest", "--dry-run"],
    )
    .ok();
    assert!(dry.text().contains("dry run"));
    assert_eq!(committed(), vec![10, 20, 30]);
    tideline(&b, &["group", "seek", "billing", "--shift-by", "-5"]).ok();
    assert_eq!(committed(), vec![5, 15, 25]);
    tideline(
        &b,
        &[
            "group",
            "seek",
            "billing",
            "--to",
            "latest",
            "--topic",
            "events",
            "--partition",
            "1",
        ],
    )
    .ok();
    assert_eq!(committed(), vec![5, ends[1], 25]);
    tideline(&b, &["group", "seek", "billing", "--to", "7"]).ok();
    assert_eq!(committed(), vec![7, 7, 7]);
    let future = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 3_600_000;
    tideline(
        &b,
        &["group", "seek", "billing", "--to", &format!("@{future}")],
    )
    .ok();
    assert_eq!(committed(), ends, "after every record: the end");
    tideline(&b, &["group", "seek", "billing", "--to", "@0"]).ok();
    assert_eq!(committed(), vec![0, 0, 0], "before every record: the start");
    tideline(&b, &["group", "seek", "billing", "--to", "latest"]).ok();
    tideline(&b, &["group", "seek", "billing", "--to", "earliest"]).ok();
    assert_eq!(committed(), vec![0, 0, 0]);

    tideline(
        &b,
        &[
            "group",
            "delete-offsets",
            "billing",
            "--topic",
            "events",
            "--partition",
            "2",
        ],
    )
    .ok();
    assert_eq!(committed(), vec![0, 0, -1]);
    tideline(&b, &["group", "delete", "billing"]).ok();
    assert_eq!(committed(), vec![-1, -1, -1]);

    // A group consumer of the CLI commits what it printed.
    let printed = tideline(
        &b,
        &[
            "topic", "consume", "events", "--group", "cli", "--num", "50",
        ],
    )
    .ok();
    assert_eq!(printed.text().lines().count(), 50);
    let rows = tideline(&b, &["group", "describe", "cli", "--format", "json"])
        .ok()
        .json();
    let committed_sum: i64 = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["committed"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(committed_sum, 50);
}

#[test]
fn cluster_config_get_set_delete_change_broker_settings() {
    let broker = Broker::start_with(&[]);
    let b = broker.bootstrap();
    tideline(
        &b,
        &["cluster", "config", "set", "log.retention.ms=7200000"],
    )
    .ok();
    let got = tideline(
        &b,
        &[
            "cluster",
            "config",
            "get",
            "log.retention.ms",
            "--format",
            "json",
        ],
    )
    .ok()
    .json();
    assert_eq!(got[0]["value"], "7200000");
    assert_eq!(got[0]["source"], "DYNAMIC_DEFAULT_BROKER_CONFIG");
    tideline(
        &b,
        &[
            "cluster",
            "config",
            "set",
            "--broker",
            "1",
            "log.retention.ms=3600000",
        ],
    )
    .ok();
    assert_eq!(
        rdkafka_config(&b, ResourceSpecifier::Broker(1), "log.retention.ms")
            .0
            .as_deref(),
        Some("3600000")
    );
    let per_broker = tideline(
        &b,
        &[
            "cluster",
            "config",
            "get",
            "--broker",
            "1",
            "log.retention.ms",
            "--format",
            "json",
        ],
    )
    .ok()
    .json();
    assert_eq!(per_broker[0]["source"], "DYNAMIC_BROKER_CONFIG");
    tideline(
        &b,
        &[
            "cluster",
            "config",
            "delete",
            "--broker",
            "1",
            "log.retention.ms",
        ],
    )
    .ok();
    assert_eq!(
        rdkafka_config(&b, ResourceSpecifier::Broker(1), "log.retention.ms")
            .0
            .as_deref(),
        Some("7200000")
    );
    tideline(&b, &["cluster", "config", "delete", "log.retention.ms"]).ok();
    let table = tideline(
        &b,
        &[
            "cluster",
            "config",
            "get",
            "--broker",
            "1",
            "log.retention.ms",
        ],
    )
    .ok()
    .text();
    assert!(!table.contains("DYNAMIC"), "{table}");
    let invalid = tideline(&b, &["cluster", "config", "set", "log.retention.ms=soon"]);
    assert_eq!(invalid.code, 1);
    first_line_has(&invalid.stderr, "INVALID");
}

#[test]
fn bad_input_gets_one_line_of_advice_and_a_nonzero_exit() {
    let broker = Broker::start_with(&[]);
    let b = broker.bootstrap();
    create_topic(&b, "t", 1, &[]);
    let unknown = tideline(&b, &["topic", "consume", "missing"]);
    assert_eq!(unknown.code, 1);
    first_line_has(&unknown.stderr, "UNKNOWN_TOPIC_OR_PARTITION");
    let produce_unknown = tideline_with_input(&b, &["topic", "produce", "missing"], b"x\n");
    assert_eq!(produce_unknown.code, 1);

    let unreachable = tideline("127.0.0.1:1", &["cluster", "info"]);
    assert_eq!(unreachable.code, 1);
    first_line_has(&unreachable.stderr, "cannot reach any broker");

    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, "{\"partitions\": [").unwrap();
    let bad_plan = tideline(
        &b,
        &["partition", "reassign", "--plan", plan.to_str().unwrap()],
    );
    assert_eq!(bad_plan.code, 2);
    first_line_has(&bad_plan.stderr, "invalid plan JSON");
    std::fs::write(
        &plan,
        r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[7]}]}"#,
    )
    .unwrap();
    let dead_broker = tideline(
        &b,
        &["partition", "reassign", "--plan", plan.to_str().unwrap()],
    );
    assert_eq!(dead_broker.code, 1, "{}", dead_broker.stderr);
    first_line_has(&dead_broker.stderr, "t-0");

    for (args, why) in [
        (vec!["-X", "no.such.property=1", "cluster", "info"], "-X"),
        (
            vec!["topic", "consume", "t", "--offset", "soon"],
            "--offset",
        ),
        (vec!["topic", "list", "--format", "%s"], "--format"),
        (
            vec!["topic", "consume", "t", "--format", "%q"],
            "placeholder",
        ),
        (vec!["topic", "produce", "t", "--acks", "2"], "--acks"),
        (vec!["partition", "throttle", "set", "fast"], "rate"),
        (
            vec!["cluster", "config", "get", "no.such.setting"],
            "not a broker setting",
        ),
    ] {
        let out = tideline(&b, &args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        first_line_has(&out.stderr, why);
    }
    // clap's own usage errors exit 2 too.
    assert_eq!(tideline(&b, &["topic", "bogus"]).code, 2);
    assert_eq!(tideline(&b, &["topic", "create"]).code, 2);
    let help = tideline(&b, &["group", "seek", "--help"]).ok().text();
    assert!(help.contains("--shift-by"), "{help}");
    let completion = tideline(&b, &["completion", "bash"]).ok().text();
    assert!(
        completion.contains("tideline") && completion.contains("complete"),
        "bash completion"
    );
    let env = std::process::Command::new(tideline_tests::cli::cli_bin())
        .args(["cluster", "info", "--format", "json"])
        .env("TIDELINE_BROKERS", &b)
        .output()
        .unwrap();
    assert!(
        env.status.success(),
        "TIDELINE_BROKERS is the default of -b"
    );
}

#[test]
fn cluster_health_exits_1_while_a_broker_is_down_and_0_after_it_rejoins() {
    let mut cluster = Cluster::start(3, FAST);
    let b = cluster.bootstrap();
    create_replicated_topic(&b, "replicated", 3, 3, &[("min.insync.replicas", "2")]);
    let first = "127.0.0.1:".to_string() + &cluster.nodes[0].kafka_port().to_string();
    tideline(&b, &["cluster", "health", "--wait", "--timeout", "60"]).ok();
    let healthy = tideline(&b, &["cluster", "health", "--format", "json"])
        .ok()
        .json();
    assert_eq!(healthy["healthy"], true);
    assert_eq!(healthy["brokers"], serde_json::json!([1, 2, 3]));

    cluster.node(3).kill();
    let mut last = None;
    wait_until(
        "health to see broker 3 gone",
        Duration::from_secs(30),
        || {
            let out = tideline(&first, &["cluster", "health", "--format", "json"]);
            let unhealthy = out.code == 1;
            last = Some(out);
            unhealthy
        },
    );
    let report = last.unwrap().json();
    assert_eq!(report["healthy"], false);
    wait_until(
        "broker 3 fenced and partitions under-replicated",
        Duration::from_secs(30),
        || {
            let r = tideline(&first, &["cluster", "health", "--format", "json"]).json();
            let under = r["under_replicated_partitions"].as_array().unwrap();
            r["fenced_brokers"] == serde_json::json!([3])
                && (0..3).all(|p| under.contains(&Value::from(format!("replicated-{p}"))))
        },
    );
    let info = tideline(&first, &["cluster", "info", "--format", "json"])
        .ok()
        .json();
    let three = info["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == 3)
        .expect("a fenced broker is listed");
    assert_eq!(three["fenced"], true);
    let table = tideline(&first, &["cluster", "health"]);
    assert_eq!(table.code, 1);
    assert!(
        table.text().contains("healthy:                      no"),
        "{}",
        table.text()
    );

    cluster.node(3).restart();
    tideline(&first, &["cluster", "health", "--wait", "--timeout", "90"]).ok();
    assert_eq!(tideline(&first, &["cluster", "health"]).code, 0);
}

#[test]
fn partition_commands_move_replicas_under_load_and_the_checker_stays_clean() {
    let cluster = Cluster::start(3, FAST);
    let b = cluster.bootstrap();
    tideline(
        &b,
        &[
            "topic",
            "create",
            "moving",
            "-p",
            "2",
            "-r",
            "2",
            "-c",
            "min.insync.replicas=1",
        ],
    )
    .ok();
    let replicas = |p: usize| -> Vec<i64> {
        let d = tideline(&b, &["topic", "describe", "moving", "--format", "json"])
            .ok()
            .json();
        let mut r: Vec<i64> = d["partitions"][p]["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        r.sort();
        r
    };
    let before: Vec<Vec<i64>> = (0..2).map(replicas).collect();
    let spare = |r: &[i64]| (1..=3).find(|b| !r.contains(b)).unwrap();

    let workload = Workload::start(&b, "moving", 2, 2);
    std::thread::sleep(Duration::from_secs(2));
    // A plan in kafka-reassign-partitions' format, throttled and waited on.
    let targets: Vec<Vec<i64>> = before.iter().map(|r| vec![r[1], spare(r)]).collect();
    let plan = serde_json::json!({"version": 1, "partitions": [
        {"topic": "moving", "partition": 0, "replicas": targets[0], "log_dirs": ["any", "any"]},
        {"topic": "moving", "partition": 1, "replicas": targets[1]},
    ]});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    std::fs::write(&path, plan.to_string()).unwrap();
    let moved = tideline(
        &b,
        &[
            "partition",
            "reassign",
            "--plan",
            path.to_str().unwrap(),
            "--wait",
            "--timeout",
            "120",
            "--throttle",
            "50M",
        ],
    )
    .ok();
    assert!(
        moved.stderr.contains("all 2 move(s) done"),
        "{}",
        moved.stderr
    );
    for (p, target) in targets.iter().enumerate() {
        let mut want = target.clone();
        want.sort();
        assert_eq!(replicas(p), want, "partition {p}");
    }
    let throttle = rdkafka_config(
        &b,
        ResourceSpecifier::Broker(1),
        "leader.replication.throttled.rate",
    );
    assert!(
        throttle.1,
        "--throttle is cleared after the wait: {throttle:?}"
    );
    assert_eq!(
        tideline(&b, &["partition", "reassignments", "--format", "json"])
            .ok()
            .json(),
        serde_json::json!([])
    );

    // --replicas for one partition, then a preferred election.
    let one: Vec<i64> = vec![spare(&targets[0]), targets[0][0]];
    let list = format!("{},{}", one[0], one[1]);
    tideline(
        &b,
        &[
            "partition",
            "reassign",
            "--topic",
            "moving",
            "--partition",
            "0",
            "--replicas",
            &list,
            "--wait",
        ],
    )
    .ok();
    tideline(
        &b,
        &[
            "partition",
            "elect",
            "--type",
            "preferred",
            "--topic",
            "moving",
        ],
    )
    .ok();
    wait_until(
        "the preferred replica leads",
        Duration::from_secs(30),
        || {
            let d = tideline(&b, &["topic", "describe", "moving", "--format", "json"])
                .ok()
                .json();
            d["partitions"][0]["leader"] == one[0]
        },
    );
    let history = workload.stop();
    let report = check(&b, "moving", 2, &history);
    assert!(
        report.lost.is_empty() && report.duplicated.is_empty() && report.reordered.is_empty(),
        "{report}"
    );
    assert!(report.acknowledged > 0);

    // throttle set/clear, then a slow move seen in progress and cancelled.
    tideline(&b, &["partition", "throttle", "set", "10K"]).ok();
    for broker in 1..=3 {
        assert_eq!(
            rdkafka_config(
                &b,
                ResourceSpecifier::Broker(broker),
                "leader.replication.throttled.rate"
            )
            .0
            .as_deref(),
            Some("10240")
        );
    }
    let d = tideline(&b, &["topic", "describe", "moving", "--format", "json"])
        .ok()
        .json();
    let current: Vec<i64> = d["partitions"][1]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let slow = format!("{},{},{}", current[0], current[1], spare(&current));
    tideline(
        &b,
        &[
            "partition",
            "reassign",
            "--topic",
            "moving",
            "--partition",
            "1",
            "--replicas",
            &slow,
        ],
    )
    .ok();
    let ongoing = tideline(&b, &["partition", "reassignments", "--format", "json"])
        .ok()
        .json();
    assert_eq!(ongoing[0]["partition"], 1, "{ongoing}");
    assert_eq!(ongoing[0]["adding"], serde_json::json!([spare(&current)]));
    assert!(ongoing[0]["bytes_total"].as_i64().unwrap() > 0, "{ongoing}");
    assert!(tideline(&b, &["partition", "reassignments"])
        .ok()
        .text()
        .contains("moving"));
    tideline(&b, &["partition", "cancel", "--topic", "moving"]).ok();
    wait_until("the move is cancelled", Duration::from_secs(30), || {
        tideline(&b, &["partition", "reassignments", "--format", "json"])
            .ok()
            .json()
            == serde_json::json!([])
    });
    tideline(&b, &["partition", "throttle", "clear"]).ok();
    assert!(
        rdkafka_config(
            &b,
            ResourceSpecifier::Broker(2),
            "leader.replication.throttled.rate"
        )
        .1
    );
    let value: Value = tideline(&b, &["partition", "elect", "--format", "json"])
        .ok()
        .json();
    assert!(value.is_array());
    // Every partition has an in-sync leader: an unclean election is not needed.
    let unclean = tideline(
        &b,
        &[
            "partition",
            "elect",
            "--type",
            "unclean",
            "--topic",
            "moving",
            "--format",
            "json",
        ],
    )
    .ok()
    .json();
    assert_eq!(unclean, serde_json::json!([]));
}

/// Runs `tideline` with its stdin on a terminal (through `script`), typing
/// `answer`.
fn at_a_terminal(bootstrap: &str, args: &str, answer: &str) -> i32 {
    let command = format!(
        "{} -b {bootstrap} {args}",
        tideline_tests::cli::cli_bin().display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    output.status.code().unwrap_or(-1)
}

#[test]
fn destructive_commands_ask_at_a_terminal_unless_given_yes() {
    let broker = Broker::start_with(&[]);
    let b = broker.bootstrap();
    create_topic(&b, "precious", 1, &[]);
    assert_eq!(at_a_terminal(&b, "topic delete precious", "n\n"), 2);
    assert_eq!(
        partition_count(&b, "precious"),
        Some(1),
        "kept when refused"
    );
    assert_eq!(at_a_terminal(&b, "topic delete precious", "y\n"), 0);
    wait_until("precious deleted", Duration::from_secs(20), || {
        partition_count(&b, "precious").is_none()
    });
    create_topic(&b, "again", 1, &[]);
    assert_eq!(at_a_terminal(&b, "topic delete again --yes", ""), 0);
    wait_until("again deleted", Duration::from_secs(20), || {
        partition_count(&b, "again").is_none()
    });
}
