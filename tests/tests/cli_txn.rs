//! `tideline txn` against a real broker: `list` and `describe` report an
//! open transaction as its coordinator holds it, `producers` shows where
//! it starts in a partition (and the broker's last stable offset is held
//! there), and `abort` ends it there as `kafka-transactions.sh abort`
//! does, so read_committed consumers move on and never see its records.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::Value;

use tideline_tests::cli::tideline;
use tideline_tests::clients::visible;
use tideline_tests::{create_topic, Broker};

const TIMEOUT: Duration = Duration::from_secs(30);
const TOPIC: &str = "txn-cli";

/// The broker's `tideline_last_stable_offset` of `TOPIC`-0.
fn last_stable_offset(broker: &Broker) -> i64 {
    let series = format!("tideline_last_stable_offset{{partition=\"0\",topic=\"{TOPIC}\"}}");
    assert!(broker.metrics().contains(&series), "{series} is not served");
    broker.metric(&series) as i64
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ours(listed: &Value) -> Option<&Value> {
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["transactional_id"] == "cli-open")
}

#[test]
fn txn_commands_find_describe_and_abort_an_open_transaction() {
    let broker = Broker::start_with(&[]);
    let b = broker.bootstrap();
    create_topic(&b, TOPIC, 2, &[]);

    // A transaction left open: a long timeout keeps the coordinator from
    // aborting it while the test looks at it.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("transactional.id", "cli-open")
        .set("transaction.timeout.ms", "600000")
        .set("linger.ms", "1")
        .create()
        .unwrap();
    producer.init_transactions(TIMEOUT).unwrap();
    producer.begin_transaction().unwrap();
    for value in ["open-0", "open-1", "open-2"] {
        producer
            .send(BaseRecord::to(TOPIC).partition(0).key("k").payload(value))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(TIMEOUT).unwrap();

    // list: Ongoing, with its producer id; the filters leave it out.
    let listed = tideline(&b, &["txn", "list", "--format", "json"])
        .ok()
        .json();
    let entry = ours(&listed).unwrap_or_else(|| panic!("not listed: {listed}"));
    assert_eq!(entry["state"], "Ongoing", "{listed}");
    let producer_id = entry["producer_id"].as_i64().unwrap();
    let table = tideline(&b, &["txn", "list"]).ok().text();
    assert!(
        table.contains("cli-open") && table.contains("Ongoing"),
        "{table}"
    );
    let other_state = tideline(
        &b,
        &[
            "txn",
            "list",
            "--state",
            "CompleteCommit",
            "--format",
            "json",
        ],
    )
    .ok()
    .json();
    assert!(ours(&other_state).is_none(), "{other_state}");
    let too_young = tideline(
        &b,
        &[
            "txn",
            "list",
            "--duration-ms",
            "3600000",
            "--format",
            "json",
        ],
    )
    .ok()
    .json();
    assert!(
        ours(&too_young).is_none(),
        "open for less than an hour: {too_young}"
    );
    let by_pid = tideline(
        &b,
        &[
            "txn",
            "list",
            "--producer-id",
            &producer_id.to_string(),
            "--format",
            "json",
        ],
    )
    .ok()
    .json();
    assert!(ours(&by_pid).is_some(), "{by_pid}");

    // describe: from the coordinator.
    let described = tideline(&b, &["txn", "describe", "cli-open", "--format", "json"])
        .ok()
        .json();
    assert_eq!(described["state"], "Ongoing");
    assert_eq!(described["producer_id"], producer_id);
    assert_eq!(described["timeout_ms"], 600000);
    assert_eq!(described["partitions"], serde_json::json!([[TOPIC, 0]]));
    assert!(described["start_time_ms"].as_i64().unwrap() > 0);

    // producers: the transaction starts at offset 0, holding the LSO there.
    let producers = tideline(
        &b,
        &[
            "txn",
            "producers",
            "-t",
            TOPIC,
            "-p",
            "0",
            "--format",
            "json",
        ],
    )
    .ok()
    .json();
    let p = &producers.as_array().unwrap()[0];
    assert_eq!(p["producer_id"], producer_id, "{producers}");
    assert_eq!(p["current_txn_start_offset"], 0, "{producers}");
    assert_eq!(last_stable_offset(&broker), 0);
    assert!(visible(&b, TOPIC, 1, "read_committed").is_empty());

    // abort: a start offset no transaction has gets advice and exit 1.
    let wrong = tideline(
        &b,
        &[
            "txn",
            "abort",
            "-t",
            TOPIC,
            "-p",
            "0",
            "--start-offset",
            "1",
            "--yes",
        ],
    );
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("no open transaction"),
        "{}",
        wrong.stderr
    );
    tideline(
        &b,
        &[
            "txn",
            "abort",
            "-t",
            TOPIC,
            "-p",
            "0",
            "--start-offset",
            "0",
            "--yes",
        ],
    )
    .ok();
    wait_until("the abort marker moves the LSO to the end", || {
        last_stable_offset(&broker) == 4
    });
    let producers = tideline(
        &b,
        &[
            "txn",
            "producers",
            "-t",
            TOPIC,
            "-p",
            "0",
            "--format",
            "json",
        ],
    )
    .ok()
    .json();
    assert_eq!(producers[0]["current_txn_start_offset"], -1, "{producers}");
    assert!(
        visible(&b, TOPIC, 1, "read_committed").is_empty(),
        "aborted"
    );
    assert_eq!(visible(&b, TOPIC, 1, "read_uncommitted").len(), 3);

    // The producer's own end of that transaction changes nothing there,
    // and its next transaction is read_committed as usual.
    producer.commit_transaction(TIMEOUT).unwrap();
    producer.begin_transaction().unwrap();
    producer
        .send(BaseRecord::to(TOPIC).partition(0).key("k").payload("next"))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.commit_transaction(TIMEOUT).unwrap();
    assert_eq!(
        visible(&b, TOPIC, 1, "read_committed"),
        vec![(0, "next".to_string())]
    );

    // Bad input: an unknown topic (exit 1), a missing flag (exit 2).
    let unknown = tideline(&b, &["txn", "producers", "-t", "no-such-topic", "-p", "0"]);
    assert_eq!(unknown.code, 1, "{}", unknown.stderr);
    let usage = tideline(&b, &["txn", "abort", "-t", TOPIC, "-p", "0"]);
    assert_eq!(usage.code, 2, "{}", usage.stderr);
}

/// The producer ids `tideline txn producers` lists for `topic`-0, with
/// each one's open transaction's start (-1: none).
fn listed_producers(bootstrap: &str, topic: &str) -> Vec<(i64, i64)> {
    let args = [
        "txn",
        "producers",
        "-t",
        topic,
        "-p",
        "0",
        "--format",
        "json",
    ];
    let listed = tideline(bootstrap, &args).ok().json();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["producer_id"].as_i64().unwrap(),
                p["current_txn_start_offset"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn idle_producers_are_forgotten_after_producer_id_expiration_ms_but_not_inside_a_transaction() {
    let expiration = Duration::from_millis(1500);
    let broker = Broker::start_with(&[
        ("producer.id.expiration.ms", "1500"),
        ("producer.id.expiration.check.interval.ms", "100"),
    ]);
    let b = broker.bootstrap();
    let topic = "txn-cli-expiry";
    create_topic(&b, topic, 1, &[]);
    let config = |extra: (&str, &str)| {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &b)
            .set("linger.ms", "1")
            .set(extra.0, extra.1);
        c
    };
    let idempotent: ThreadedProducer<DefaultProducerContext> =
        config(("enable.idempotence", "true")).create().unwrap();
    let transactional: ThreadedProducer<DefaultProducerContext> =
        config(("transactional.id", "cli-expiry")).create().unwrap();
    transactional.init_transactions(TIMEOUT).unwrap();
    transactional.begin_transaction().unwrap();
    for producer in [&idempotent, &transactional] {
        producer
            .send(BaseRecord::to(topic).partition(0).key("k").payload("v"))
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(TIMEOUT).unwrap();
    }
    let both = listed_producers(&b, topic);
    assert_eq!(both.len(), 2, "{both:?}");
    let txn_start = both.iter().find(|p| p.1 >= 0).expect("the open one").1;

    wait_until("the idle idempotent producer is forgotten", || {
        listed_producers(&b, topic).len() == 1
    });
    // Well past the expiration, the producer with a transaction open is
    // still known (its transaction still holds the LSO).
    std::thread::sleep(expiration);
    let left = listed_producers(&b, topic);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1, txn_start, "{left:?}");

    // Once its transaction ends it idles too, and is forgotten; writing
    // again makes it known again.
    transactional.commit_transaction(TIMEOUT).unwrap();
    wait_until("the producer whose transaction ended is forgotten", || {
        listed_producers(&b, topic).is_empty()
    });
    idempotent
        .send(BaseRecord::to(topic).partition(0).key("k").payload("again"))
        .map_err(|(e, _)| e)
        .unwrap();
    idempotent.flush(TIMEOUT).unwrap();
    assert_eq!(listed_producers(&b, topic).len(), 1);
    assert_eq!(visible(&b, topic, 1, "read_committed").len(), 3);
}
