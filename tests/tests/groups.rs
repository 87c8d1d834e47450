//! Consumer groups through real clients: members in their own processes
//! (SIGTERM to leave, SIGKILL to crash), rdkafka consumers in this process,
//! raw OffsetFetch requests to cross-check `committed()`, and broker
//! restarts that must keep every committed offset.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tideline_tests::clients::{consumer, produce_n, LoggingContext};
use tideline_tests::member::{wait_for, Member};
use tideline_tests::wire::RawConn;
use tideline_tests::{create_topic, Broker, TestRecord};

const TOPIC: &str = "orders";

fn record(i: u64) -> TestRecord {
    TestRecord {
        key: Some(format!("k{i}").into_bytes()),
        value: Some(format!("v{i}").into_bytes()),
        ..TestRecord::default()
    }
}

/// A broker whose groups rebalance without the initial 3 s wait for more
/// members, so the tests spend their time on the behaviour under test.
fn start_broker() -> Broker {
    Broker::start_with(&[("group.initial.rebalance.delay.ms", "300")])
}

/// Every (partition, offset) produced, from the delivery reports.
fn produce(broker: &Broker, from: u64, n: usize) -> BTreeSet<(i32, i64)> {
    let (_, delivered) = produce_n(&broker.bootstrap(), TOPIC, n, |i| record(from + i));
    delivered.iter().map(|d| (d.partition, d.offset)).collect()
}

fn union_of_records(members: &[&Member]) -> BTreeSet<(i32, i64)> {
    members.iter().flat_map(|m| m.records()).collect()
}

fn all_partitions(members: &[&Member]) -> bool {
    let mut seen = BTreeSet::new();
    for m in members {
        for p in m.assignment() {
            if !seen.insert(p) {
                return false; // a partition assigned twice: rebalance not done
            }
        }
    }
    seen == (0..6).collect()
}

#[test]
fn members_share_partitions_take_over_on_leave_and_crash_without_losing_records() {
    let broker = start_broker();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, 6, &[]);
    let group = "billing";

    let started = Instant::now();
    let mut a = Member::spawn("a", &bootstrap, TOPIC, group, &[]);
    let mut b = Member::spawn("b", &bootstrap, TOPIC, group, &[]);
    let c = Member::spawn("c", &bootstrap, TOPIC, group, &[]);
    wait_for(
        "three members with two partitions each",
        Duration::from_secs(60),
        &[&a, &b, &c],
        || [&a, &b, &c].iter().all(|m| m.assignment().len() == 2) && all_partitions(&[&a, &b, &c]),
    );
    eprintln!("3 members stable after {:?}", started.elapsed());
    let metrics = broker.metrics();
    assert_eq!(
        metric(&metrics, "tideline_group_members", "{group=\"billing\"}"),
        Some(3)
    );
    assert_eq!(
        metric(
            &metrics,
            "tideline_group_state",
            "{group=\"billing\",state=\"Stable\"}"
        ),
        Some(1)
    );

    let mut produced = produce(&broker, 0, 600);
    wait_for(
        "the first 600 records",
        Duration::from_secs(60),
        &[&a, &b, &c],
        || union_of_records(&[&a, &b, &c]).is_superset(&produced),
    );

    // A clean leave: the other two take over a's partitions.
    a.terminate();
    wait_for(
        "b and c to share the six partitions",
        Duration::from_secs(60),
        &[&b, &c],
        || b.assignment().len() == 3 && c.assignment().len() == 3 && all_partitions(&[&b, &c]),
    );
    produced.extend(produce(&broker, 600, 600));
    wait_for(
        "the next 600 records",
        Duration::from_secs(60),
        &[&b, &c],
        || union_of_records(&[&a, &b, &c]).is_superset(&produced),
    );

    // A crash: no LeaveGroup; the coordinator expires b after its 6 s session.
    let b_partitions = b.assignment();
    b.kill();
    let killed_at = Instant::now();
    wait_for(
        "c to own every partition after b's session expires",
        Duration::from_secs(60),
        &[&c],
        || c.assignment().len() == 6,
    );
    let takeover = killed_at.elapsed();
    assert!(
        takeover >= Duration::from_secs(5),
        "b's partitions moved after {takeover:?}, before its 6 s session timeout could expire"
    );
    produced.extend(produce(&broker, 1200, 600));
    wait_for(
        "the last 600 records",
        Duration::from_secs(60),
        &[&c],
        || union_of_records(&[&a, &b, &c]).is_superset(&produced),
    );

    // Nothing lost, and redelivery limited to what was processed but not
    // yet committed: with a commit after every record, at most one record
    // per partition of the member that crashed.
    let mut seen: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for m in [&a, &b, &c] {
        for r in m.records() {
            *seen.entry(r).or_default() += 1;
        }
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.len() <= b_partitions.len()
            && duplicates
                .iter()
                .all(|((p, _), n)| b_partitions.contains(p) && **n == 2),
        "records delivered twice beyond the crashed member's uncommitted ones: {duplicates:?}"
    );
    let extra: Vec<_> = seen.keys().filter(|r| !produced.contains(r)).collect();
    assert!(
        extra.is_empty(),
        "records consumed that were never produced: {extra:?}"
    );
}

#[test]
fn cooperative_sticky_members_keep_their_partitions_when_a_member_joins() {
    let broker = start_broker();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, 6, &[]);
    let strategy = "partition.assignment.strategy=cooperative-sticky";
    let a = Member::spawn("a", &bootstrap, TOPIC, "sticky", &[strategy]);
    let b = Member::spawn("b", &bootstrap, TOPIC, "sticky", &[strategy]);
    wait_for(
        "a and b with three partitions each",
        Duration::from_secs(60),
        &[&a, &b],
        || a.assignment().len() == 3 && b.assignment().len() == 3 && all_partitions(&[&a, &b]),
    );
    let (before_a, before_b) = (a.assignment(), b.assignment());
    let c = Member::spawn("c", &bootstrap, TOPIC, "sticky", &[strategy]);
    wait_for(
        "two partitions each",
        Duration::from_secs(60),
        &[&a, &b, &c],
        || [&a, &b, &c].iter().all(|m| m.assignment().len() == 2) && all_partitions(&[&a, &b, &c]),
    );
    // Incremental: a and b never stopped consuming (an eager rebalance
    // revokes everything first), only gave partitions up, and none moved
    // between them.
    for (m, before) in [(&a, &before_a), (&b, &before_b)] {
        let history = m.assignments();
        let since_c: Vec<_> = history.iter().skip_while(|s| *s != before).collect();
        assert!(
            since_c.iter().all(|s| !s.is_empty() && s.is_subset(before)),
            "{} lost all its partitions or gained one while c joined: {history:?}",
            m.name
        );
        assert!(m.assignment().is_subset(before));
    }
    produce(&broker, 0, 300);
    wait_for(
        "300 records",
        Duration::from_secs(60),
        &[&a, &b, &c],
        || union_of_records(&[&a, &b, &c]).len() >= 300,
    );
}

#[test]
fn a_static_member_restarting_within_its_session_gets_its_partitions_back_without_a_rebalance() {
    let broker = start_broker();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, 6, &[]);
    let static_a = ["group.instance.id=member-a", "session.timeout.ms=30000"];
    let static_b = ["group.instance.id=member-b", "session.timeout.ms=30000"];
    let mut a = Member::spawn("a", &bootstrap, TOPIC, "static", &static_a);
    let b = Member::spawn("b", &bootstrap, TOPIC, "static", &static_b);
    wait_for(
        "a and b with three partitions each",
        Duration::from_secs(60),
        &[&a, &b],
        || a.assignment().len() == 3 && b.assignment().len() == 3 && all_partitions(&[&a, &b]),
    );
    let a_partitions = a.assignment();
    let b_rebalances = b.assignments().len();

    a.kill();
    let restarted = Member::spawn("a2", &bootstrap, TOPIC, "static", &static_a);
    wait_for(
        "the restarted member's assignment",
        Duration::from_secs(60),
        &[&restarted, &b],
        || !restarted.assignment().is_empty(),
    );
    assert_eq!(
        restarted.assignment(),
        a_partitions,
        "the same partitions come back"
    );
    // b saw no rebalance at all: no new assignment callback, same partitions.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        b.assignments().len(),
        b_rebalances,
        "b went through a rebalance: {:?}",
        b.assignments()
    );
    produce(&broker, 0, 120);
    wait_for(
        "120 records",
        Duration::from_secs(60),
        &[&restarted, &b],
        || union_of_records(&[&restarted, &b]).len() >= 120,
    );
}

fn group_consumer(
    bootstrap: &str,
    group: &str,
    extra: &[(&str, &str)],
) -> BaseConsumer<LoggingContext> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    consumer(&config)
}

/// Polls until `n` records arrived; returns the next offset per partition.
fn consume_n(c: &BaseConsumer<LoggingContext>, n: usize) -> BTreeMap<i32, i64> {
    let mut next = BTreeMap::new();
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < n {
        assert!(
            Instant::now() < deadline,
            "only {got} of {n} records consumed"
        );
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            next.insert(m.partition(), m.offset() + 1);
            got += 1;
        }
    }
    next
}

fn committed(c: &BaseConsumer<LoggingContext>, partitions: i32) -> BTreeMap<i32, i64> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(TOPIC, p);
    }
    c.committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed()")
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// The group's committed offsets by a raw OffsetFetch at `version`
/// (v8+ asks in the multi-group form, alongside a group with no offsets).
fn offset_fetch(broker: &Broker, group: &str, partitions: i32, version: i16) -> BTreeMap<i32, i64> {
    let mut conn = RawConn::connect(broker.kafka_addr());
    let indexes: Vec<i32> = (0..partitions).collect();
    let mut request = OffsetFetchRequest::default();
    if version >= 8 {
        for g in [group, "nobody-here"] {
            let mut topics = OffsetFetchRequestTopics::default();
            topics.name = TopicName(StrBytes::from_string(TOPIC.into()));
            topics.partition_indexes = indexes.clone();
            let mut entry = OffsetFetchRequestGroup::default();
            entry.group_id = GroupId(StrBytes::from_string(g.into()));
            entry.topics = Some(vec![topics]);
            request.groups.push(entry);
        }
        let response = conn.request(&request, version).expect("OffsetFetch");
        assert_eq!(response.groups.len(), 2);
        assert!(response.groups[1].topics[0]
            .partitions
            .iter()
            .all(|p| p.committed_offset == -1 && p.error_code == 0));
        let g = &response.groups[0];
        assert_eq!(g.error_code, 0);
        g.topics[0]
            .partitions
            .iter()
            .filter(|p| p.committed_offset >= 0)
            .map(|p| (p.partition_index, p.committed_offset))
            .collect()
    } else {
        let mut topic = OffsetFetchRequestTopic::default();
        topic.name = TopicName(StrBytes::from_string(TOPIC.into()));
        topic.partition_indexes = indexes;
        request.group_id = GroupId(StrBytes::from_string(group.into()));
        request.topics = Some(vec![topic]);
        let response = conn.request(&request, version).expect("OffsetFetch");
        assert_eq!(response.error_code, 0);
        response.topics[0]
            .partitions
            .iter()
            .filter(|p| p.committed_offset >= 0)
            .map(|p| (p.partition_index, p.committed_offset))
            .collect()
    }
}

/// The value of `name{labels}` in Prometheus text.
fn metric(text: &str, name: &str, labels: &str) -> Option<i64> {
    let prefix = format!("{name}{labels} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse::<f64>().expect("a number") as i64)
}

#[test]
fn commits_auto_sync_and_async_agree_with_offset_fetch_and_survive_restarts() {
    let mut broker = start_broker();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, 3, &[]);
    produce(&broker, 0, 300);

    // Auto-commit: positions are committed in the background.
    let auto = group_consumer(
        &bootstrap,
        "auto",
        &[
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "200"),
        ],
    );
    auto.subscribe(&[TOPIC]).unwrap();
    let consumed = consume_n(&auto, 300);
    let deadline = Instant::now() + Duration::from_secs(20);
    while committed(&auto, 3) != consumed {
        assert!(
            Instant::now() < deadline,
            "auto-commit never caught up: {:?} vs {consumed:?}",
            committed(&auto, 3)
        );
        auto.poll(Duration::from_millis(100));
    }
    drop(auto);

    // Manual: a synchronous commit of partition 0, an asynchronous one of the rest.
    let manual = group_consumer(&bootstrap, "manual", &[]);
    manual.subscribe(&[TOPIC]).unwrap();
    let positions = consume_n(&manual, 300);
    let mut sync = TopicPartitionList::new();
    sync.add_partition_offset(TOPIC, 0, Offset::Offset(positions[&0]))
        .unwrap();
    manual.commit(&sync, CommitMode::Sync).unwrap();
    let mut rest = TopicPartitionList::new();
    for p in 1..3 {
        rest.add_partition_offset(TOPIC, p, Offset::Offset(positions[&p] - 1))
            .unwrap();
    }
    manual.commit(&rest, CommitMode::Async).unwrap();
    let mut expected_manual = positions.clone();
    for p in 1..3 {
        *expected_manual.get_mut(&p).unwrap() -= 1;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while committed(&manual, 3) != expected_manual {
        assert!(Instant::now() < deadline, "async commit not visible");
        manual.poll(Duration::from_millis(100));
    }
    drop(manual);

    let check = |broker: &Broker, when: &str| {
        for (group, expected) in [("auto", &consumed), ("manual", &expected_manual)] {
            for version in [1, 5, 7, 8, 9] {
                assert_eq!(
                    &offset_fetch(broker, group, 3, version),
                    expected,
                    "{when}: OffsetFetch v{version} of group {group}"
                );
            }
            let c = group_consumer(&broker.bootstrap(), group, &[]);
            assert_eq!(
                &committed(&c, 3),
                expected,
                "{when}: committed() of group {group}"
            );
        }
    };
    check(&broker, "before restart");

    // /metrics: committed offsets and lag per group and partition.
    let metrics = broker.metrics();
    for p in 0..3 {
        let labels =
            |group: &str| format!("{{group=\"{group}\",partition=\"{p}\",topic=\"{TOPIC}\"}}");
        assert_eq!(
            metric(
                &metrics,
                "tideline_group_committed_offset",
                &labels("manual")
            ),
            Some(expected_manual[&p]),
            "{metrics}"
        );
        assert_eq!(
            metric(&metrics, "tideline_group_lag", &labels("auto")),
            Some(0)
        );
        let lag = if p == 0 { 0 } else { 1 };
        assert_eq!(
            metric(&metrics, "tideline_group_lag", &labels("manual")),
            Some(lag)
        );
    }
    assert_eq!(
        metric(&metrics, "tideline_group_members", "{group=\"manual\"}"),
        Some(0)
    );
    assert_eq!(
        metric(
            &metrics,
            "tideline_group_state",
            "{group=\"manual\",state=\"Empty\"}"
        ),
        Some(1)
    );
    broker.stop();
    broker.restart();
    check(&broker, "after a clean restart");
    broker.kill();
    broker.restart();
    check(&broker, "after SIGKILL and restart");

    // A consumer of the group resumes where the group committed.
    produce(&broker, 300, 30);
    let resumed = group_consumer(&broker.bootstrap(), "manual", &[]);
    resumed.subscribe(&[TOPIC]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first: BTreeMap<i32, i64> = BTreeMap::new();
    while first.len() < 3 {
        assert!(Instant::now() < deadline, "resumed consumer got {first:?}");
        if let Some(Ok(m)) = resumed.poll(Duration::from_millis(100)) {
            first.entry(m.partition()).or_insert(m.offset());
        }
    }
    assert_eq!(
        first, expected_manual,
        "consumption resumes at the committed offsets"
    );
}

#[test]
fn deleting_a_topic_deletes_its_committed_offsets() {
    let broker = start_broker();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, 3, &[]);
    let c = group_consumer(&bootstrap, "forgetful", &[]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 1, Offset::Offset(5))
        .unwrap();
    c.commit(&tpl, CommitMode::Sync).unwrap();
    assert_eq!(committed(&c, 3), BTreeMap::from([(1, 5)]));

    let admin = tideline_tests::admin_client(&bootstrap);
    let opts = rdkafka::admin::AdminOptions::new();
    for r in tideline_tests::block_on(admin.delete_topics(&[TOPIC], &opts)).unwrap() {
        r.unwrap();
    }
    create_topic(&bootstrap, TOPIC, 3, &[]);
    assert_eq!(
        offset_fetch(&broker, "forgetful", 3, 9),
        BTreeMap::new(),
        "a topic created again under the same name starts without the old offsets"
    );
}

#[test]
fn a_second_member_with_the_same_instance_id_fences_the_first() {
    let broker = start_broker();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, 2, &[]);
    let instance = ["group.instance.id=only-one", "session.timeout.ms=30000"];
    let first = Member::spawn("first", &bootstrap, TOPIC, "fencing", &instance);
    wait_for(
        "the first member's assignment",
        Duration::from_secs(60),
        &[&first],
        || first.assignment().len() == 2,
    );
    let second = Member::spawn("second", &bootstrap, TOPIC, "fencing", &instance);
    wait_for(
        "the second member to take over",
        Duration::from_secs(60),
        &[&first, &second],
        || second.assignment().len() == 2,
    );
    wait_for(
        "the first member to be fenced",
        Duration::from_secs(60),
        &[&first],
        || {
            first
                .errors()
                .iter()
                .any(|e| e.to_lowercase().contains("fenced"))
        },
    );
}

#[test]
fn a_full_group_refuses_another_member() {
    let broker = Broker::start_with(&[
        ("group.initial.rebalance.delay.ms", "300"),
        ("group.max.size", "2"),
    ]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, 4, &[]);
    let a = Member::spawn("a", &bootstrap, TOPIC, "small", &[]);
    let b = Member::spawn("b", &bootstrap, TOPIC, "small", &[]);
    wait_for("two members", Duration::from_secs(60), &[&a, &b], || {
        a.assignment().len() == 2 && b.assignment().len() == 2
    });
    let c = Member::spawn("c", &bootstrap, TOPIC, "small", &[]);
    wait_for(
        "the third member to be refused",
        Duration::from_secs(60),
        &[&c],
        || {
            c.errors()
                .iter()
                .any(|e| e.to_lowercase().contains("maximum size"))
        },
    );
    // The two members keep their partitions.
    assert_eq!(a.assignment().len() + b.assignment().len(), 4);
    assert!(c.assignment().is_empty());
}

#[test]
fn a_stable_group_survives_a_coordinator_restart_without_a_rebalance() {
    let mut broker = start_broker();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, 4, &[]);
    let session = ["session.timeout.ms=20000"];
    let a = Member::spawn("a", &bootstrap, TOPIC, "durable", &session);
    let b = Member::spawn("b", &bootstrap, TOPIC, "durable", &session);
    wait_for(
        "two partitions each",
        Duration::from_secs(60),
        &[&a, &b],
        || {
            a.assignment().len() == 2
                && b.assignment().len() == 2
                && a.assignment().is_disjoint(&b.assignment())
        },
    );
    let rebalances = (a.assignments().len(), b.assignments().len());
    let mut produced = produce(&broker, 0, 100);

    // The group's members and generation were stored in __consumer_offsets
    // when it became stable; the restarted coordinator reads them back and
    // the members carry on heartbeating with their generation.
    broker.stop();
    broker.restart();
    produced.extend(produce(&broker, 100, 100));
    broker.kill();
    broker.restart();
    produced.extend(produce(&broker, 200, 100));
    wait_for(
        "all 300 records",
        Duration::from_secs(60),
        &[&a, &b],
        || union_of_records(&[&a, &b]).is_superset(&produced),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        (a.assignments().len(), b.assignments().len()),
        rebalances,
        "a rebalance happened: a {:?}, b {:?}",
        a.assignments(),
        b.assignments()
    );
    // Everything was read once: offsets committed before each restart held.
    let all: Vec<(i32, i64)> = a.records().into_iter().chain(b.records()).collect();
    let unique: BTreeSet<_> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        unique.len(),
        "records read twice across restarts"
    );
}

/// OffsetCommit v2-v4 may set a retention for the offsets it commits; the
/// broker's expiry task removes them once it passes.
#[test]
fn offsets_committed_with_their_own_retention_expire() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{FindCoordinatorRequest, OffsetCommitRequest};

    let broker = Broker::start_with(&[("offsets.retention.check.interval.ms", "200")]);
    create_topic(&broker.bootstrap(), TOPIC, 3, &[]);
    let mut conn = RawConn::connect(broker.kafka_addr());
    let commit = |conn: &mut RawConn, group: &str, retention_ms: i64| {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = 0;
        p.committed_offset = 42;
        let mut t = OffsetCommitRequestTopic::default();
        t.name = TopicName(StrBytes::from_string(TOPIC.into()));
        t.partitions = vec![p];
        let mut req = OffsetCommitRequest::default();
        req.group_id = GroupId(StrBytes::from_string(group.into()));
        req.generation_id_or_member_epoch = -1;
        req.retention_time_ms = retention_ms;
        req.topics = vec![t];
        // Retriable coordinator errors (loading, moving, not available) are
        // retried, as clients do.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let resp = conn.request(&req, 2).expect("OffsetCommit v2");
            let code = resp.topics[0].partitions[0].error_code;
            if code == 0 {
                break;
            }
            assert!(
                [14, 15, 16].contains(&code) && Instant::now() < deadline,
                "OffsetCommit v2 failed with error {code}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // As every client does: find the coordinator first (which creates the
    // offsets topic on a fresh broker).
    for group in ["short-lived", "long-lived"] {
        let mut find = FindCoordinatorRequest::default();
        find.key = StrBytes::from_string(group.into());
        let found = conn.request(&find, 3).expect("FindCoordinator");
        assert_eq!(found.error_code, 0, "FindCoordinator {group}");
    }
    commit(&mut conn, "short-lived", 300);
    commit(&mut conn, "long-lived", -1);
    assert_eq!(
        offset_fetch(&broker, "short-lived", 1, 9),
        BTreeMap::from([(0, 42)])
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !offset_fetch(&broker, "short-lived", 1, 9).is_empty() {
        assert!(Instant::now() < deadline, "the offset never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        offset_fetch(&broker, "long-lived", 1, 9),
        BTreeMap::from([(0, 42)]),
        "an offset under the broker's 7-day retention stays"
    );
}
