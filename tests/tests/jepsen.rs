//! Jepsen-style tests: producers with `acks=all` and idempotence write
//! unique values to an RF=3, `min.insync.replicas=2` topic while the
//! harness injects fault after fault — leader kill, controller kill, pause,
//! a leader cut off from its followers, a minority partition — and a
//! checker then reads everything back. Expected: nothing acknowledged is
//! lost, nothing is duplicated or reordered. A second test shows the
//! checker does catch a loss, by allowing an unclean election.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use tideline_tests::cluster::Cluster;
use tideline_tests::jepsen::{check, Workload};
use tideline_tests::{admin_client, block_on};

const SETTINGS: &[(&str, &str)] = &[
    ("broker.heartbeat.interval.ms", "300"),
    ("broker.session.timeout.ms", "3000"),
    ("replica.lag.time.max.ms", "4000"),
    ("controlled.shutdown.timeout.ms", "5000"),
];

const TOPIC: &str = "jepsen";
const PARTITIONS: i32 = 3;

fn create(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    assignment: Option<&[&[i32]]>,
    configs: &[(&str, &str)],
) {
    let admin = admin_client(&cluster.bootstrap());
    let replication = match assignment {
        Some(a) => TopicReplication::Variable(a),
        None => TopicReplication::Fixed(3),
    };
    let mut new = NewTopic::new(topic, partitions, replication);
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in block_on(admin.create_topics(&[new], &opts)).expect("CreateTopics") {
        r.expect("topic created");
    }
}

/// Waits until every partition has a leader and a full ISR.
fn wait_healthy(cluster: &Cluster, nodes: &[i32], topic: &str, replicas: usize) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let states = cluster.partition_states(nodes, topic);
        if let Some(states) = &states {
            if states
                .iter()
                .all(|(leader, isr)| *leader > 0 && isr.len() == replicas)
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{topic} did not recover: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillLeader,
    KillController,
    PauseLeader,
    IsolateLeader,
    MinorityPartition,
}

const ROUNDS: usize = 20;

#[test]
fn acknowledged_writes_survive_twenty_rounds_of_faults() {
    let mut cluster = Cluster::start_with_faults(5, 5, SETTINGS);
    let all: Vec<i32> = (1..=5).collect();
    create(
        &cluster,
        TOPIC,
        PARTITIONS,
        None,
        &[("min.insync.replicas", "2")],
    );
    wait_healthy(&cluster, &all, TOPIC, 3);
    let workload = Workload::start(&cluster.bootstrap(), TOPIC, PARTITIONS, 3);
    std::thread::sleep(Duration::from_secs(2));

    let faults = [
        Fault::KillLeader,
        Fault::KillController,
        Fault::PauseLeader,
        Fault::IsolateLeader,
        Fault::MinorityPartition,
    ];
    let started = Instant::now();
    for round in 0..ROUNDS {
        let fault = faults[round % faults.len()];
        let states = cluster.partition_states(&all, TOPIC).expect("metadata");
        let leader = states[round % PARTITIONS as usize].0;
        match fault {
            Fault::KillLeader => {
                // Down longer than the session: the controller fails it over.
                cluster.node(leader).kill();
                std::thread::sleep(Duration::from_secs(4));
                cluster.node(leader).restart();
            }
            Fault::KillController => {
                let controller = cluster.controller_via(&all).expect("a controller");
                cluster.node(controller).kill();
                std::thread::sleep(Duration::from_secs(4));
                cluster.node(controller).restart();
            }
            Fault::PauseLeader => {
                // Longer than the session: the leader is fenced while frozen.
                cluster.node(leader).pause();
                std::thread::sleep(Duration::from_secs(4));
                cluster.node(leader).resume();
            }
            Fault::IsolateLeader => {
                // Clients still reach it; no broker does.
                cluster.partition(&[leader]);
                std::thread::sleep(Duration::from_secs(5));
                cluster.heal();
            }
            Fault::MinorityPartition => {
                let a = (round % 5) as i32 + 1;
                let b = a % 5 + 1;
                cluster.partition(&[a, b]);
                std::thread::sleep(Duration::from_secs(4));
                cluster.heal();
            }
        }
        wait_healthy(&cluster, &all, TOPIC, 3);
        println!(
            "round {:2}: {fault:?} (leader {leader}) done at {:?}",
            round + 1,
            started.elapsed()
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    let history = workload.stop();
    let report = check(&cluster.bootstrap(), TOPIC, PARTITIONS, &history);
    println!("checker after {ROUNDS} fault rounds: {report}");
    assert!(
        report.acknowledged > 1000,
        "the workload made progress: {report}"
    );
    assert!(
        report.lost.is_empty(),
        "lost: {:?}",
        &report.lost[..report.lost.len().min(20)]
    );
    assert!(
        report.duplicated.is_empty(),
        "duplicated: {:?}",
        &report.duplicated[..report.duplicated.len().min(20)]
    );
    assert!(
        report.reordered.is_empty(),
        "reordered: {:?}",
        &report.reordered[..report.reordered.len().min(20)]
    );
}

#[test]
fn the_checker_reports_the_loss_an_unclean_election_causes() {
    // Voters 1-3 keep the quorum; the partition lives on brokers 4 and 5.
    let mut cluster = Cluster::start_mixed(3, 5, SETTINGS);
    let all: Vec<i32> = (1..=5).collect();
    let voters = &all[..3];
    let topic = "unclean";
    let assignment: [&[i32]; 1] = [&[4, 5]];
    create(
        &cluster,
        topic,
        1,
        Some(&assignment),
        &[("min.insync.replicas", "1")],
    );
    wait_healthy(&cluster, &all, topic, 2);
    let workload = Workload::start(&cluster.bootstrap(), topic, 1, 1);
    std::thread::sleep(Duration::from_secs(1));
    // Broker 5 dies; 4 alone takes (and acknowledges) more writes.
    cluster.node(5).kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster
        .partition_states(voters, topic)
        .is_none_or(|s| s[0].1 != vec![4])
    {
        assert!(Instant::now() < deadline, "ISR did not shrink to [4]");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    // Then 4 dies and the stale 5 comes back. Unclean election is off: the
    // partition stays offline rather than lose what 4 acknowledged alone.
    cluster.node(4).kill();
    cluster.node(5).restart();
    std::thread::sleep(Duration::from_secs(5));
    let state = cluster.partition_states(voters, topic).expect("metadata");
    assert_eq!(state[0], (-1, vec![4]), "offline, not unclean");
    let controller = cluster.controller_via(voters).expect("controller");
    let offline: f64 = cluster.nodes[controller as usize - 1]
        .metrics()
        .lines()
        .find(|l| l.starts_with("tideline_offline_partitions "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("offline metric");
    assert_eq!(offline, 1.0);
    // Allowing it elects 5, without those writes.
    let admin = admin_client(&cluster.bootstrap());
    let config = AlterConfig::new(ResourceSpecifier::Topic(topic))
        .set("unclean.leader.election.enable", "true")
        .set("min.insync.replicas", "1");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in block_on(admin.alter_configs(&[config], &opts)).expect("AlterConfigs") {
        r.expect("altered");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster
        .partition_states(voters, topic)
        .is_none_or(|s| s[0].0 != 5)
    {
        assert!(Instant::now() < deadline, "no unclean election");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let history = workload.stop();
    let report = check(&cluster.bootstrap(), topic, 1, &history);
    println!("checker with an unclean election: {report}");
    assert!(
        !report.lost.is_empty(),
        "the checker must report the lost writes: {report}"
    );
    let controller_logs: String = (0..3)
        .map(|i| std::fs::read_to_string(cluster.nodes[i].log_path()).unwrap_or_default())
        .collect();
    assert!(
        controller_logs.contains("unclean leader election"),
        "the loss is logged by the controller"
    );
}
