//! Several brokers forming one cluster: a metadata quorum over their
//! controller listeners (`controller.quorum.voters`). Any node takes
//! controller-bound requests (forwarding them to the active controller),
//! every node serves the same metadata, and the quorum survives the loss of
//! its controller.
//!
//! Topics here have one replica, spread over the brokers; replication
//! itself is tested in `replication.rs`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use tideline_tests::clients::produce_all;
use tideline_tests::cluster::Cluster;
use tideline_tests::wire::RawConn;
use tideline_tests::{admin_client, block_on, consume_all, producer_config, TestRecord};

/// Topic → partition leaders, as node `id` answers Metadata; `None` until
/// the topic exists and every node is listed as a live broker.
fn leaders_seen_by(cluster: &Cluster, id: i32, topic: &str) -> Option<Vec<i32>> {
    let (brokers, leaders) = metadata_seen_by(cluster, id, topic);
    (brokers.len() == cluster.nodes.len())
        .then_some(leaders)
        .flatten()
}

/// (live brokers, partition leaders of `topic`) as node `id` answers Metadata.
fn metadata_seen_by(cluster: &Cluster, id: i32, topic: &str) -> (Vec<i32>, Option<Vec<i32>>) {
    let node = &cluster.nodes[id as usize - 1];
    let mut conn = RawConn::connect(node.kafka_addr());
    let mut t = MetadataRequestTopic::default();
    t.name = Some(TopicName(StrBytes::from_string(topic.into())));
    let mut request = MetadataRequest::default();
    request.topics = Some(vec![t]);
    let response = conn.request(&request, 12).expect("Metadata");
    let brokers = response.brokers.iter().map(|b| b.node_id.0).collect();
    let t = &response.topics[0];
    let leaders = (t.error_code == 0).then(|| t.partitions.iter().map(|p| p.leader_id.0).collect());
    (brokers, leaders)
}

/// Creates `topic` through node `via` only (a node that may not be the
/// controller, so the change is forwarded).
fn create_via(cluster: &Cluster, via: i32, topic: &str, partitions: i32) {
    let admin = admin_client(&cluster.nodes[via as usize - 1].bootstrap());
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for r in block_on(admin.create_topics(&[new], &opts)).expect("CreateTopics") {
        r.expect("topic created");
    }
}

fn wait_until_every_node_sees(cluster: &Cluster, nodes: &[i32], topic: &str) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen: Vec<Option<Vec<i32>>> = nodes
            .iter()
            .map(|id| leaders_seen_by(cluster, *id, topic))
            .collect();
        if let Some(Some(first)) = seen.first() {
            if seen.iter().all(|s| s.as_ref() == Some(first)) {
                return first.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "nodes disagree on {topic}: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_voters_share_one_metadata_log_and_serve_clients_from_any_node() {
    let cluster = Cluster::start(3, &[]);
    let controller = cluster.wait_for_controller(&[1, 2, 3], Duration::from_secs(30));
    let follower = (1..=3).find(|id| *id != controller).unwrap();
    create_via(&cluster, follower, "spread", 6);
    let leaders = wait_until_every_node_sees(&cluster, &[1, 2, 3], "spread");
    let used: BTreeSet<i32> = leaders.iter().copied().collect();
    assert_eq!(
        used,
        BTreeSet::from([1, 2, 3]),
        "leaders spread over all brokers: {leaders:?}"
    );

    // Clients bootstrapped anywhere reach each partition's leader.
    let records: Vec<TestRecord> = (0..600u64)
        .map(|i| TestRecord {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("v{i}").into_bytes()),
            ..TestRecord::default()
        })
        .collect();
    let delivered = produce_all(&producer_config(&cluster.bootstrap()), "spread", &records);
    let mut ends = [0i64; 6];
    for d in &delivered {
        ends[d.partition as usize] = ends[d.partition as usize].max(d.offset + 1);
    }
    let until: Vec<(i32, i64)> = (0..6).map(|p| (p, ends[p as usize])).collect();
    let consumed = consume_all(&cluster.bootstrap(), "spread", &until);
    assert_eq!(consumed.values().map(Vec::len).sum::<usize>(), 600);

    // More replicas than live brokers are refused.
    let admin = admin_client(&cluster.bootstrap());
    let new = NewTopic::new("too-many-replicas", 1, TopicReplication::Fixed(4));
    let result = block_on(admin.create_topics(&[new], &AdminOptions::new())).unwrap();
    assert!(result[0].is_err(), "RF=4 on 3 brokers must be refused");
}

#[test]
fn the_quorum_elects_a_new_controller_when_the_active_one_dies() {
    let mut cluster = Cluster::start(3, &[]);
    let old = cluster.wait_for_controller(&[1, 2, 3], Duration::from_secs(30));
    let survivors: Vec<i32> = (1..=3).filter(|id| *id != old).collect();
    cluster.node(old).kill();
    let killed_at = Instant::now();
    let new = cluster.wait_for_controller_other_than(&survivors, old, Duration::from_secs(30));
    eprintln!("new controller {new} after {:?}", killed_at.elapsed());

    // Metadata changes go on with two of three voters.
    create_via(&cluster, survivors[0], "after-failover", 2);
    wait_until_every_node_sees(&cluster, &survivors, "after-failover");

    // The old controller comes back and catches up.
    cluster.node(old).restart();
    wait_until_every_node_sees(&cluster, &[1, 2, 3], "after-failover");
    assert_eq!(
        cluster.wait_for_controller(&[1, 2, 3], Duration::from_secs(30)),
        new
    );
}

#[test]
fn a_broker_that_stops_heartbeating_is_fenced_and_its_partitions_return_with_it() {
    let mut cluster = Cluster::start(
        3,
        &[
            ("broker.session.timeout.ms", "2000"),
            ("broker.heartbeat.interval.ms", "300"),
        ],
    );
    let controller = cluster.wait_for_controller(&[1, 2, 3], Duration::from_secs(30));
    let paused = (1..=3).find(|id| *id != controller).unwrap();
    let observer = (1..=3)
        .find(|id| *id != controller && *id != paused)
        .unwrap();
    create_via(&cluster, controller, "fencing", 3);
    let leaders = wait_until_every_node_sees(&cluster, &[1, 2, 3], "fencing");
    let owned: Vec<usize> = (0..3).filter(|p| leaders[*p] == paused).collect();
    assert!(
        !owned.is_empty(),
        "the paused broker leads a partition: {leaders:?}"
    );

    // SIGSTOP: the process hangs with its sockets open, like a long pause.
    cluster.node(paused).pause();
    let paused_at = Instant::now();
    let deadline = paused_at + Duration::from_secs(30);
    loop {
        let (brokers, leaders) = metadata_seen_by(&cluster, observer, "fencing");
        if !brokers.contains(&paused) {
            // Its partitions have no other in-sync replica: offline, not
            // handed to a replica without the data.
            let leaders = leaders.expect("the topic is still there");
            for p in &owned {
                assert_eq!(leaders[*p], -1, "partition {p} has no leader: {leaders:?}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broker {paused} was never fenced"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let fenced_after = paused_at.elapsed();
    eprintln!("broker {paused} fenced {fenced_after:?} after it stopped");
    assert!(
        fenced_after >= Duration::from_millis(1500),
        "fenced before its session ran out"
    );
    let offline = cluster.nodes[controller as usize - 1]
        .metrics()
        .lines()
        .find_map(|l| l.strip_prefix("tideline_offline_partitions "))
        .map(|v| v.parse::<f64>().unwrap() as usize);
    assert_eq!(
        offline,
        Some(owned.len()),
        "the controller reports the offline partitions"
    );

    cluster.node(paused).resume();
    let leaders = wait_until_every_node_sees(&cluster, &[1, 2, 3], "fencing");
    for p in owned {
        assert_eq!(
            leaders[p], paused,
            "partition {p} is led by its only replica again"
        );
    }
}

/// The README's one command for a local cluster: `tideline-broker
/// --local-cluster 3` starts three brokers that form one cluster, and
/// Ctrl-C stops them all.
#[test]
fn the_local_cluster_command_starts_and_stops_three_brokers() {
    use kafka_protocol::messages::DescribeClusterRequest;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    // Three consecutive ports for each of Kafka, controller and HTTP that
    // are free now (a block derived from the pid alone can hold a port
    // another test's broker took from the ephemeral range).
    let free = |base: u16| {
        (0..3u16).all(|i| {
            [0, 100, 200]
                .iter()
                .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o + i)).is_ok())
        })
    };
    let start = 20_000 + (std::process::id() % 10_000) as u16;
    let base = (start..start + 10_000)
        .step_by(7)
        .find(|&b| free(b))
        .expect("a free block of ports");
    let mut child = Command::new(tideline_tests::broker::broker_bin())
        .args(["--local-cluster", "3", "--base-port", &base.to_string()])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the local cluster");
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..3u16 {
        let http = std::net::SocketAddr::from(([127, 0, 0, 1], base + 200 + i));
        loop {
            if matches!(tideline_tests::http::get(http, "/readyz"), Ok(r) if r.status == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} never became ready",
                i + 1
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "the local cluster exited"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let kafka = std::net::SocketAddr::from(([127, 0, 0, 1], base));
    let response = RawConn::connect(kafka)
        .request(&DescribeClusterRequest::default(), 0)
        .expect("DescribeCluster");
    assert_eq!(response.brokers.len(), 3, "one cluster of three brokers");
    assert!(dir
        .path()
        .join("data/cluster/node-3/meta.properties")
        .exists());

    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the local cluster did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "stopped with {status}");
    assert!(
        std::net::TcpStream::connect(kafka).is_err(),
        "node 1 still listens after the cluster stopped"
    );
}

/// Three voters and two broker-only nodes (observers of the metadata): all
/// five serve clients, take admin requests and host partitions.
#[test]
fn broker_only_nodes_follow_the_voters_and_host_partitions() {
    let cluster = Cluster::start_mixed(3, 5, &[]);
    let controller = cluster.wait_for_controller(&[1, 2, 3, 4, 5], Duration::from_secs(30));
    assert!(controller <= 3, "a voter leads: {controller}");
    create_via(&cluster, 5, "five-ways", 10);
    let leaders = wait_until_every_node_sees(&cluster, &[1, 2, 3, 4, 5], "five-ways");
    let used: BTreeSet<i32> = leaders.iter().copied().collect();
    assert_eq!(
        used,
        BTreeSet::from([1, 2, 3, 4, 5]),
        "leaders on every broker: {leaders:?}"
    );
    let records: Vec<TestRecord> = (0..500u64)
        .map(|i| TestRecord {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(b"v".to_vec()),
            ..TestRecord::default()
        })
        .collect();
    let delivered = produce_all(
        &producer_config(&cluster.nodes[4].bootstrap()),
        "five-ways",
        &records,
    );
    let mut ends = [0i64; 10];
    for d in &delivered {
        ends[d.partition as usize] = ends[d.partition as usize].max(d.offset + 1);
    }
    let until: Vec<(i32, i64)> = (0..10).map(|p| (p, ends[p as usize])).collect();
    let consumed = consume_all(&cluster.nodes[3].bootstrap(), "five-ways", &until);
    assert_eq!(consumed.values().map(Vec::len).sum::<usize>(), 500);
}
