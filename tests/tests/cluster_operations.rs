//! Running a replicated cluster: a rolling restart under load (controlled
//! shutdown moves leadership first, so producers see nothing worse than
//! retriable errors), consumer-group offsets surviving the loss of their
//! coordinator, automatic preferred-leader rebalancing, ISR shrink and
//! expansion by follower lag, and fail-over times.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tideline_tests::clients::reliable_producer_config;
use tideline_tests::cluster::{Cluster, Endpoint};
use tideline_tests::jepsen::{check, Workload};
use tideline_tests::wire::RawConn;
use tideline_tests::{
    admin_client, block_on, consumer_config, producer_config, TestProducer, TestRecord,
};

const FAST: &[(&str, &str)] = &[
    ("broker.heartbeat.interval.ms", "300"),
    ("broker.session.timeout.ms", "3000"),
    ("replica.lag.time.max.ms", "4000"),
];

fn create(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    replication: TopicReplication<'_>,
    min_isr: &str,
) {
    let admin = admin_client(&cluster.bootstrap());
    let new = NewTopic::new(topic, partitions, replication).set("min.insync.replicas", min_isr);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in block_on(admin.create_topics(&[new], &opts)).expect("CreateTopics") {
        r.expect("topic created");
    }
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn all_in_sync(cluster: &Cluster, via: &[i32], topic: &str, replicas: usize) -> bool {
    cluster
        .partition_states(via, topic)
        .is_some_and(|s| s.iter().all(|(l, isr)| *l > 0 && isr.len() == replicas))
}

#[test]
fn a_rolling_restart_under_load_loses_nothing_and_fails_no_produce() {
    let mut cluster = Cluster::start(3, FAST);
    let topic = "rolling";
    create(&cluster, topic, 6, TopicReplication::Fixed(3), "2");
    wait_until("in sync", Duration::from_secs(30), || {
        all_in_sync(&cluster, &[1, 2, 3], topic, 3)
    });

    let workload = Workload::start(&cluster.bootstrap(), topic, 6, 2);
    std::thread::sleep(Duration::from_secs(1));
    for id in 1..=3 {
        let others: Vec<i32> = (1..=3).filter(|o| *o != id).collect();
        let started = Instant::now();
        cluster.node(id).stop();
        let log = std::fs::read_to_string(cluster.nodes[id as usize - 1].log_path()).unwrap();
        assert!(
            log.contains("controlled shutdown: leadership moved off this broker"),
            "broker {id} handed its leaderships over before stopping"
        );
        println!(
            "broker {id}: controlled shutdown took {:?}",
            started.elapsed()
        );
        // Nothing it led is left without a leader.
        let states = cluster.partition_states(&others, topic).expect("metadata");
        assert!(states.iter().all(|(l, _)| *l > 0 && *l != id), "{states:?}");
        cluster.node(id).restart();
        wait_until("back in sync", Duration::from_secs(60), || {
            all_in_sync(&cluster, &[1, 2, 3], topic, 3)
        });
    }
    std::thread::sleep(Duration::from_secs(1));
    let history = workload.stop();
    assert_eq!(
        history.indeterminate, 0,
        "no produce failed during the rolling restart"
    );
    let report = check(&cluster.bootstrap(), topic, 6, &history);
    println!("rolling restart: {report}");
    assert!(
        report.lost.is_empty() && report.duplicated.is_empty() && report.reordered.is_empty(),
        "{report}"
    );
    assert_eq!(report.read, report.acknowledged, "every record once");
}

/// The coordinator of `group`, as a FindCoordinator to node `via` answers.
fn coordinator_of(cluster: &Cluster, via: i32, group: &str) -> Option<i32> {
    let mut conn = RawConn::try_connect(
        cluster.nodes[via as usize - 1].kafka_addr(),
        Duration::from_secs(10),
    )
    .ok()?;
    let mut find = FindCoordinatorRequest::default();
    find.key = StrBytes::from_string(group.into());
    let found = conn.request(&find, 3).ok()?;
    (found.error_code == 0).then_some(found.node_id.0)
}

#[test]
fn committed_offsets_survive_a_kill_of_the_coordinators_broker() {
    let mut cluster = Cluster::start(3, FAST);
    let topic = "commits";
    create(&cluster, topic, 3, TopicReplication::Fixed(3), "2");
    let group = "survivors";
    let mut config = consumer_config(&cluster.bootstrap());
    config.set("group.id", group);
    let consumer: rdkafka::consumer::BaseConsumer = config.create().expect("consumer");
    let mut offsets = TopicPartitionList::new();
    for p in 0..3 {
        offsets
            .add_partition_offset(topic, p, Offset::Offset(100 + p as i64))
            .unwrap();
    }
    // The first commit creates __consumer_offsets (RF 3 on three brokers).
    wait_until("commit accepted", Duration::from_secs(60), || {
        consumer.commit(&offsets, CommitMode::Sync).is_ok()
    });
    drop(consumer);
    wait_until("offsets topic in sync", Duration::from_secs(60), || {
        all_in_sync(&cluster, &[1, 2, 3], "__consumer_offsets", 3)
    });
    let coordinator = coordinator_of(&cluster, 1, group).expect("a coordinator");
    cluster.node(coordinator).kill();
    let survivors: Vec<i32> = (1..=3).filter(|i| *i != coordinator).collect();
    wait_until("a new coordinator", Duration::from_secs(60), || {
        coordinator_of(&cluster, survivors[0], group).is_some_and(|c| c != coordinator)
    });
    let bootstrap: Vec<String> = survivors
        .iter()
        .map(|i| cluster.nodes[*i as usize - 1].bootstrap())
        .collect();
    let mut config = consumer_config(&bootstrap.join(","));
    config.set("group.id", group);
    let consumer: rdkafka::consumer::BaseConsumer = config.create().expect("consumer");
    let mut wanted = TopicPartitionList::new();
    for p in 0..3 {
        wanted.add_partition(topic, p);
    }
    let mut committed = None;
    wait_until(
        "offsets fetched from the new coordinator",
        Duration::from_secs(60),
        || {
            committed = consumer
                .committed_offsets(wanted.clone(), Duration::from_secs(10))
                .ok();
            committed.is_some()
        },
    );
    let committed: Vec<(i32, Offset)> = committed
        .unwrap()
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect();
    assert_eq!(
        committed,
        vec![
            (0, Offset::Offset(100)),
            (1, Offset::Offset(101)),
            (2, Offset::Offset(102))
        ],
        "every committed offset survived the coordinator's loss"
    );
}

#[test]
fn leadership_returns_to_preferred_replicas_automatically() {
    let mut settings = FAST.to_vec();
    settings.push(("leader.imbalance.check.interval.seconds", "1"));
    let mut cluster = Cluster::start(3, &settings);
    let topic = "preferred";
    create(&cluster, topic, 6, TopicReplication::Fixed(3), "1");
    wait_until("in sync", Duration::from_secs(30), || {
        all_in_sync(&cluster, &[1, 2, 3], topic, 3)
    });
    let led_by = |cluster: &Cluster, via: &[i32]| -> BTreeSet<i32> {
        cluster
            .partition_states(via, topic)
            .unwrap()
            .iter()
            .map(|(l, _)| *l)
            .collect()
    };
    assert_eq!(led_by(&cluster, &[1]), BTreeSet::from([1, 2, 3]));
    // Broker 3 goes away: the others take its leaderships.
    cluster.node(3).kill();
    wait_until("fail-over", Duration::from_secs(30), || {
        !led_by(&cluster, &[1, 2]).contains(&3)
    });
    // It comes back, catches up, and the controller gives its preferred
    // partitions back without anyone asking.
    cluster.node(3).restart();
    wait_until("leadership rebalanced", Duration::from_secs(60), || {
        led_by(&cluster, &[1, 2, 3]) == BTreeSet::from([1, 2, 3])
    });
}

#[test]
fn a_follower_cut_off_from_its_leader_leaves_the_isr_and_rejoins_after_catching_up() {
    let cluster = Cluster::start_with_faults(3, 3, FAST);
    let controller = cluster.controller_via(&[1, 2, 3]).expect("controller");
    // Leader and follower are not the controller, so the cut follower
    // still heartbeats: it leaves the ISR by lag, not by being fenced.
    let others: Vec<i32> = (1..=3).filter(|i| *i != controller).collect();
    let (leader, follower) = (others[0], others[1]);
    let topic = "lagging";
    let replicas = [leader, follower, controller];
    let assignment: [&[i32]; 1] = [&replicas];
    create(
        &cluster,
        topic,
        1,
        TopicReplication::Variable(&assignment),
        "1",
    );
    wait_until("in sync", Duration::from_secs(30), || {
        all_in_sync(&cluster, &[1, 2, 3], topic, 3)
    });
    let mut config = producer_config(&cluster.bootstrap());
    config.set("acks", "all");
    let producer = TestProducer::new(&config);
    for i in 0..100 {
        producer.send(topic, Some(0), &TestRecord::value(format!("a{i}")));
    }
    assert!(producer.flush(Duration::from_secs(30)));

    cluster.block(Endpoint::Broker(follower), leader);
    wait_until("ISR shrunk by lag", Duration::from_secs(30), || {
        cluster
            .partition_states(&[controller], topic)
            .is_some_and(|s| !s[0].1.contains(&follower))
    });
    // The leader counts the shrink once the controller has answered it,
    // which can be a moment after the new ISR is visible.
    wait_until(
        "the leader counted the shrink",
        Duration::from_secs(10),
        || cluster.nodes[leader as usize - 1].metric("tideline_isr_shrinks_total") >= 1.0,
    );
    assert_eq!(
        cluster.nodes[leader as usize - 1].metric("tideline_under_replicated_partitions"),
        1.0
    );
    // acks=all still works with two in-sync replicas of three.
    for i in 100..200 {
        producer.send(topic, Some(0), &TestRecord::value(format!("a{i}")));
    }
    assert!(producer.flush(Duration::from_secs(30)));
    assert_eq!(producer.failed(), 0);

    cluster.heal();
    wait_until("ISR regrown", Duration::from_secs(60), || {
        all_in_sync(&cluster, &[controller], topic, 3)
    });
    assert!(cluster.nodes[leader as usize - 1].metric("tideline_isr_expands_total") >= 1.0);
    assert_eq!(
        cluster.nodes[leader as usize - 1].metric("tideline_under_replicated_partitions"),
        0.0
    );
    wait_until("follower caught up", Duration::from_secs(30), || {
        cluster.nodes[follower as usize - 1]
            .metric("tideline_log_end_offset{partition=\"0\",topic=\"lagging\"}")
            == 200.0
    });
}

#[test]
fn leader_failover_times() {
    let mut cluster = Cluster::start(3, FAST);
    let topic = "failover";
    create(&cluster, topic, 1, TopicReplication::Fixed(3), "2");
    wait_until("in sync", Duration::from_secs(30), || {
        all_in_sync(&cluster, &[1, 2, 3], topic, 3)
    });
    let mut config = reliable_producer_config(&cluster.bootstrap());
    config
        .set("linger.ms", "0")
        .set("retry.backoff.ms", "20")
        .set("retry.backoff.max.ms", "100")
        .set("topic.metadata.refresh.interval.ms", "200");
    let producer = TestProducer::new(&config);
    producer.send(topic, Some(0), &TestRecord::value("warm-up"));
    assert!(producer.flush(Duration::from_secs(30)));
    let mut times = Vec::new();
    for round in 0..5 {
        let leader = cluster.partition_states(&[1, 2, 3], topic).unwrap()[0].0;
        let killed = Instant::now();
        cluster.node(leader).kill();
        let id = producer.send(
            topic,
            Some(0),
            &TestRecord::value(format!("after-kill-{round}")),
        );
        while producer.outcomes()[id].is_none() {
            assert!(killed.elapsed() < Duration::from_secs(60));
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            matches!(producer.outcomes()[id], Some(Ok(_))),
            "delivered on the new leader"
        );
        times.push(killed.elapsed());
        cluster.node(leader).restart();
        wait_until("in sync", Duration::from_secs(60), || {
            all_in_sync(&cluster, &[1, 2, 3], topic, 3)
        });
    }
    times.sort();
    println!(
        "leader fail-over (kill -> first acks=all produce acknowledged), broker.session.timeout.ms=3000: p50 {:?}, max {:?}, all {:?}",
        times[times.len() / 2],
        times[times.len() - 1],
        times
    );
}
