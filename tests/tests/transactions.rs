//! Transactions through librdkafka's transactional producer and
//! `isolation.level=read_committed` consumers: committed records become
//! visible, aborted ones never do (and are visible to read_uncommitted, so
//! the checks can fail), offsets sent to a transaction are committed with
//! it and only with it, a second instance with the same `transactional.id`
//! fences the first, a transaction left open past its timeout is aborted
//! by the coordinator so read_committed readers move on, and a commit its
//! coordinator had prepared when its broker died is finished by the next
//! coordinator.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use kafka_protocol::messages::{DescribeTransactionsRequest, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use tideline_tests::clients::{
    consumer, coordinator_of, create_assigned_topic, leader_of, visible,
};
use tideline_tests::cluster::Cluster;
use tideline_tests::wire::RawConn;
use tideline_tests::{consumer_config, create_topic, unique_topic, wait_for, Broker, BrokerOpts};

const TIMEOUT: Duration = Duration::from_secs(30);

type TxnProducer = ThreadedProducer<DefaultProducerContext>;

fn transactional_producer(bootstrap: &str, txn_id: &str, timeout_ms: u32) -> TxnProducer {
    let producer: TxnProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", txn_id)
        .set("transaction.timeout.ms", timeout_ms.to_string())
        .set("linger.ms", "1")
        .create()
        .expect("create a transactional producer");
    producer
        .init_transactions(TIMEOUT)
        .expect("init_transactions");
    producer
}

fn send(producer: &TxnProducer, topic: &str, partition: i32, value: &str) {
    producer
        .send(
            BaseRecord::to(topic)
                .partition(partition)
                .key(value)
                .payload(value),
        )
        .map_err(|(e, _)| e)
        .expect("queue a record");
}

fn sorted(list: &[(i32, &str)]) -> Vec<(i32, String)> {
    let mut v: Vec<(i32, String)> = list.iter().map(|(p, s)| (*p, s.to_string())).collect();
    v.sort();
    v
}

#[test]
fn committed_transactions_are_visible_and_aborted_ones_only_to_read_uncommitted() {
    let broker = Broker::start(BrokerOpts::new());
    let bootstrap = broker.bootstrap();
    let (t, u) = (unique_topic("txn-t"), unique_topic("txn-u"));
    create_topic(&bootstrap, &t, 2, &[]);
    create_topic(&bootstrap, &u, 1, &[]);
    let producer = transactional_producer(&bootstrap, "txn-visibility", 60_000);

    producer.begin_transaction().unwrap();
    send(&producer, &t, 0, "c1-t0");
    send(&producer, &t, 1, "c1-t1");
    send(&producer, &u, 0, "c1-u0");
    producer.commit_transaction(TIMEOUT).unwrap();

    producer.begin_transaction().unwrap();
    send(&producer, &t, 0, "a1-t0");
    send(&producer, &u, 0, "a1-u0");
    producer.flush(TIMEOUT).unwrap();
    producer.abort_transaction(TIMEOUT).unwrap();

    producer.begin_transaction().unwrap();
    send(&producer, &t, 1, "c2-t1");
    send(&producer, &u, 0, "c2-u0");
    producer.commit_transaction(TIMEOUT).unwrap();

    assert_eq!(
        visible(&bootstrap, &t, 2, "read_committed"),
        sorted(&[(0, "c1-t0"), (1, "c1-t1"), (1, "c2-t1")])
    );
    assert_eq!(
        visible(&bootstrap, &u, 1, "read_committed"),
        sorted(&[(0, "c1-u0"), (0, "c2-u0")])
    );
    assert_eq!(
        visible(&bootstrap, &t, 2, "read_uncommitted"),
        sorted(&[(0, "c1-t0"), (0, "a1-t0"), (1, "c1-t1"), (1, "c2-t1")]),
        "the aborted records are in the log"
    );
    assert_eq!(
        visible(&bootstrap, &u, 1, "read_uncommitted"),
        sorted(&[(0, "c1-u0"), (0, "a1-u0"), (0, "c2-u0")])
    );
}

/// The group's committed offsets, as a consumer of that group reads them.
fn committed(bootstrap: &str, group: &str, topic: &str) -> Option<i64> {
    let mut config = consumer_config(bootstrap);
    config.set("group.id", group);
    let c = consumer(&config);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let found = c.committed_offsets(tpl, TIMEOUT).expect("fetch committed");
    match found.find_partition(topic, 0).map(|e| e.offset()) {
        Some(Offset::Offset(o)) => Some(o),
        _ => None,
    }
}

fn group_metadata(bootstrap: &str, group: &str) -> ConsumerGroupMetadata {
    let mut config = consumer_config(bootstrap);
    config.set("group.id", group);
    consumer(&config)
        .group_metadata()
        .expect("consumer group metadata")
}

#[test]
fn offsets_sent_to_a_transaction_are_committed_with_it_and_only_with_it() {
    let broker = Broker::start(BrokerOpts::new());
    let bootstrap = broker.bootstrap();
    let (input, output) = (unique_topic("txn-in"), unique_topic("txn-out"));
    create_topic(&bootstrap, &input, 1, &[]);
    create_topic(&bootstrap, &output, 1, &[]);
    let group = unique_topic("txn-group");
    let producer = transactional_producer(&bootstrap, "txn-offsets", 60_000);
    let offsets = |offset| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&input, 0, Offset::Offset(offset))
            .unwrap();
        tpl
    };

    producer.begin_transaction().unwrap();
    send(&producer, &output, 0, "copied-0-4");
    producer
        .send_offsets_to_transaction(&offsets(5), &group_metadata(&bootstrap, &group), TIMEOUT)
        .unwrap();
    producer.commit_transaction(TIMEOUT).unwrap();
    assert_eq!(committed(&bootstrap, &group, &input), Some(5));

    producer.begin_transaction().unwrap();
    send(&producer, &output, 0, "copied-5-8");
    producer
        .send_offsets_to_transaction(&offsets(9), &group_metadata(&bootstrap, &group), TIMEOUT)
        .unwrap();
    producer.abort_transaction(TIMEOUT).unwrap();
    assert_eq!(
        committed(&bootstrap, &group, &input),
        Some(5),
        "an aborted transaction's offsets are dropped"
    );
    assert_eq!(
        visible(&bootstrap, &output, 1, "read_committed"),
        sorted(&[(0, "copied-0-4")])
    );

    // The offsets and the coordinator's state survive a restart.
    let mut broker = broker;
    broker.restart();
    assert_eq!(committed(&bootstrap, &group, &input), Some(5));
    let again = transactional_producer(&bootstrap, "txn-offsets", 60_000);
    again.begin_transaction().unwrap();
    send(&again, &output, 0, "copied-5-8-again");
    again
        .send_offsets_to_transaction(&offsets(9), &group_metadata(&bootstrap, &group), TIMEOUT)
        .unwrap();
    again.commit_transaction(TIMEOUT).unwrap();
    assert_eq!(committed(&bootstrap, &group, &input), Some(9));
}

#[test]
fn a_second_instance_fences_the_first_and_its_transaction_never_becomes_visible() {
    let broker = Broker::start(BrokerOpts::new());
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("txn-zombie");
    create_topic(&bootstrap, &topic, 1, &[]);
    let zombie = transactional_producer(&bootstrap, "txn-zombie", 60_000);
    zombie.begin_transaction().unwrap();
    send(&zombie, &topic, 0, "zombie");
    zombie.flush(TIMEOUT).unwrap();

    let successor = transactional_producer(&bootstrap, "txn-zombie", 60_000);
    let err = zombie
        .commit_transaction(TIMEOUT)
        .expect_err("the fenced instance cannot commit");
    match &err {
        KafkaError::Transaction(e) => assert!(e.is_fatal(), "fencing is fatal: {err}"),
        other => panic!("unexpected error {other}"),
    }
    successor.begin_transaction().unwrap();
    send(&successor, &topic, 0, "successor");
    successor.commit_transaction(TIMEOUT).unwrap();
    assert_eq!(
        visible(&bootstrap, &topic, 1, "read_committed"),
        sorted(&[(0, "successor")])
    );
    assert_eq!(
        visible(&bootstrap, &topic, 1, "read_uncommitted"),
        sorted(&[(0, "successor"), (0, "zombie")])
    );
}

/// The partition's end as read_committed and read_uncommitted see it.
fn ends(bootstrap: &str, topic: &str) -> (i64, i64) {
    let end = |isolation: &str| {
        let mut config = consumer_config(bootstrap);
        config.set("isolation.level", isolation);
        let c = consumer(&config);
        c.fetch_watermarks(topic, 0, TIMEOUT).unwrap().1
    };
    (end("read_committed"), end("read_uncommitted"))
}

#[test]
fn a_transaction_left_open_past_its_timeout_is_aborted_and_readers_move_on() {
    let broker = Broker::start(BrokerOpts::new().set(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        200,
    ));
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("txn-hanging");
    create_topic(&bootstrap, &topic, 1, &[]);
    let stalled = transactional_producer(&bootstrap, "txn-hanging", 2_000);
    stalled.begin_transaction().unwrap();
    send(&stalled, &topic, 0, "never-committed");
    stalled.flush(TIMEOUT).unwrap();
    let started = Instant::now();

    // Plain records after the open transaction are held back from
    // read_committed readers by it...
    let plain: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    plain
        .send(
            BaseRecord::to(&topic)
                .partition(0)
                .key("later")
                .payload("later"),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    plain.flush(TIMEOUT).unwrap();
    let (committed_end, end) = ends(&bootstrap, &topic);
    assert_eq!(
        (committed_end, end),
        (0, 2),
        "the LSO stops at the open transaction"
    );

    // ...until the coordinator aborts it after its timeout.
    let (committed_end, end) = wait_for(
        "the LSO to move past the aborted transaction",
        TIMEOUT,
        || {
            let ends = ends(&bootstrap, &topic);
            (ends.0 > 0).then_some(ends)
        },
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1_500),
        "aborted before its timeout"
    );
    assert_eq!(committed_end, end, "everything is stable again");
    assert_eq!(
        visible(&bootstrap, &topic, 1, "read_committed"),
        sorted(&[(0, "later")])
    );
    stalled
        .commit_transaction(TIMEOUT)
        .expect_err("the timed-out producer was fenced");
}

/// A crash (SIGKILL) with a transaction open, one committed and one aborted:
/// after the restart the producer state (the open transaction still holds
/// the LSO), the aborted-transaction index (the aborted record stays
/// invisible) and the coordinator's state (the open one can still commit)
/// are all rebuilt.
#[test]
fn a_crash_with_open_and_ended_transactions_rebuilds_the_lso_and_the_aborted_index() {
    let mut broker = Broker::start(BrokerOpts::new());
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("txn-crash");
    create_topic(&bootstrap, &topic, 1, &[]);

    let open = transactional_producer(&bootstrap, "crash-open", 120_000);
    open.begin_transaction().unwrap();
    send(&open, &topic, 0, "open-1");
    send(&open, &topic, 0, "open-2");
    open.flush(TIMEOUT).unwrap();
    let other = transactional_producer(&bootstrap, "crash-other", 60_000);
    other.begin_transaction().unwrap();
    send(&other, &topic, 0, "committed");
    other.commit_transaction(TIMEOUT).unwrap();
    other.begin_transaction().unwrap();
    send(&other, &topic, 0, "aborted");
    // Written before the abort (librdkafka drops what it has not sent yet).
    other.flush(TIMEOUT).unwrap();
    other.abort_transaction(TIMEOUT).unwrap();
    let before = ends(&bootstrap, &topic);
    assert_eq!(
        before.0, 0,
        "the open transaction holds the LSO at its start"
    );
    let uncommitted = visible(&bootstrap, &topic, 1, "read_uncommitted");
    assert_eq!(uncommitted.len(), 4);

    broker.kill();
    // The aborted-transaction index is rebuilt from the markers.
    for entry in std::fs::read_dir(broker.data_dir().join(format!("{topic}-0"))).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "txnindex") {
            std::fs::remove_file(path).unwrap();
        }
    }
    broker.restart();

    assert_eq!(
        ends(&bootstrap, &topic),
        before,
        "LSO and high watermark as before"
    );
    assert_eq!(
        visible(&bootstrap, &topic, 1, "read_uncommitted"),
        uncommitted
    );
    open.commit_transaction(TIMEOUT).unwrap();
    let (committed_end, end) = wait_for("the LSO to reach the end", TIMEOUT, || {
        let ends = ends(&bootstrap, &topic);
        (ends.0 == ends.1).then_some(ends)
    });
    assert_eq!(committed_end, end);
    assert_eq!(
        visible(&bootstrap, &topic, 1, "read_committed"),
        sorted(&[(0, "open-1"), (0, "open-2"), (0, "committed")])
    );
}

/// The state DescribeTransactions gives for `txn_id`, asked of the
/// brokers `among`; `None` while none of them coordinates it.
fn transaction_state(cluster: &mut Cluster, among: &[i32], txn_id: &str) -> Option<String> {
    let request =
        DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
            StrBytes::from_string(txn_id.to_string()),
        )]);
    for id in among {
        let addr = cluster.node(*id).kafka_addr();
        let Ok(mut conn) = RawConn::try_connect(addr, Duration::from_secs(5)) else {
            continue;
        };
        let Ok(response) = conn.request(&request, 0) else {
            continue;
        };
        let txn = &response.transaction_states[0];
        if txn.error_code == 0 {
            return Some(txn.transaction_state.to_string());
        }
    }
    None
}

/// A commit whose marker cannot be written yet (the data partition's only
/// replica is down) stays PrepareCommit on its coordinator. When the
/// coordinator's broker is killed, the broker that takes over replays the
/// prepared state and finishes the commit once the partition is back, so
/// the record becomes visible: never half a commit, never a hung one.
#[test]
fn a_new_coordinator_finishes_a_commit_its_predecessor_had_prepared() {
    // Three voters and two broker-only nodes, so that the coordinator
    // (node 4) and the data partition's broker (node 5) can both be down
    // while the metadata quorum goes on.
    let mut cluster = Cluster::start_mixed(
        3,
        5,
        &[
            ("broker.session.timeout.ms", "3000"),
            ("broker.heartbeat.interval.ms", "500"),
        ],
    );
    let bootstrap = cluster.bootstrap();
    let topic = unique_topic("held");
    create_assigned_topic(&bootstrap, &topic, &[5]);
    // The first transactional producer creates __transaction_state; then
    // pick an id that node 4 coordinates.
    drop(transactional_producer(&bootstrap, "held-probe", 60_000));
    let txn_id = (0..1000)
        .map(|i| format!("held-{i}"))
        .find(|id| coordinator_of(&bootstrap, id) == 4)
        .expect("node 4 coordinates some transactional id");
    let producer = transactional_producer(&bootstrap, &txn_id, 60_000);
    producer.begin_transaction().unwrap();
    send(&producer, &topic, 0, "prepared-then-taken-over");
    producer.flush(TIMEOUT).unwrap();

    cluster.node(5).kill();
    wait_for("node 5 is fenced", TIMEOUT, || {
        (leader_of(&bootstrap, &topic, 0) < 0).then_some(())
    });
    // The coordinator writes PrepareCommit and answers; the marker waits.
    producer.commit_transaction(TIMEOUT).expect("commit");
    assert_eq!(
        transaction_state(&mut cluster, &[4], &txn_id).as_deref(),
        Some("PrepareCommit"),
        "the marker cannot be written while the partition is down"
    );

    cluster.node(4).kill();
    let state = wait_for("another broker coordinates the id", TIMEOUT, || {
        transaction_state(&mut cluster, &[1, 2, 3], &txn_id)
    });
    assert_eq!(state, "PrepareCommit", "the new coordinator replayed it");

    cluster.node(5).restart();
    wait_for("the new coordinator completes the commit", TIMEOUT, || {
        (transaction_state(&mut cluster, &[1, 2, 3], &txn_id).as_deref() == Some("CompleteCommit"))
            .then_some(())
    });
    assert_eq!(
        visible(&bootstrap, &topic, 1, "read_committed"),
        vec![(0, "prepared-then-taken-over".to_string())]
    );
}
