//! The operator's rolling-restart decision against a real 3-broker
//! cluster: it waits while a partition is under-replicated, proceeds when
//! the cluster is healthy again, and restarts the active controller last.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use tideline_operator::kafka_admin::KafkaAdmin;
use tideline_operator::roll::{next_step, RollStep};
use tideline_tests::cluster::Cluster;
use tideline_tests::{admin_client, block_on};

#[test]
fn the_roller_waits_for_in_sync_replicas_and_restarts_the_controller_last() {
    let mut cluster = Cluster::start(
        3,
        &[
            ("broker.heartbeat.interval.ms", "300"),
            ("broker.session.timeout.ms", "3000"),
            ("replica.lag.time.max.ms", "4000"),
        ],
    );
    let admin = admin_client(&cluster.bootstrap());
    let new =
        NewTopic::new("rolled", 3, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in block_on(admin.create_topics(&[new], &opts)).unwrap() {
        r.unwrap();
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let step = |cluster: &Cluster, pending: &[i32]| {
        let mut admin = runtime
            .block_on(KafkaAdmin::connect(&cluster.bootstrap()))
            .expect("admin");
        let health = runtime.block_on(admin.cluster_health()).expect("health");
        next_step(&health, &[1, 2, 3], pending)
    };
    let wait_for =
        |cluster: &Cluster, pending: &[i32], what: &str, check: &dyn Fn(&RollStep) -> bool| {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let s = step(cluster, pending);
                if check(&s) {
                    return s;
                }
                assert!(Instant::now() < deadline, "{what}: last step {s:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
        };
    let controller = cluster.controller_via(&[1, 2, 3]).expect("controller");
    let mut pending = vec![1, 2, 3];
    let mut order = Vec::new();
    while !pending.is_empty() {
        let broker = match wait_for(&cluster, &pending, "a restart", &|s| {
            matches!(s, RollStep::Restart(_))
        }) {
            RollStep::Restart(b) => b,
            _ => unreachable!(),
        };
        order.push(broker);
        // While the broker is down, the roller holds back.
        cluster.node(broker).kill();
        let others: Vec<i32> = pending.iter().copied().filter(|b| *b != broker).collect();
        if !others.is_empty() {
            wait_for(&cluster, &others, "waiting while degraded", &|s| {
                matches!(s, RollStep::Wait(_))
            });
        }
        cluster.node(broker).restart();
        pending = others;
    }
    assert_eq!(
        wait_for(&cluster, &[], "done", &|s| *s == RollStep::Done),
        RollStep::Done
    );
    assert_eq!(order.len(), 3);
    assert_eq!(
        *order.last().unwrap(),
        controller,
        "the active controller goes last: {order:?}"
    );
}
