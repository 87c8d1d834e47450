//! The exactly-once checker (`tideline_tests::eos`) against a real
//! consume-transform-produce process: it copies an input topic to an
//! output topic in transactions, some aborted on purpose, while the test
//! SIGKILLs it inside open transactions and, on a three-broker cluster,
//! kills the transaction coordinator's broker, kills a partition leader
//! and pauses another. Every input record must come out exactly once to
//! read_committed readers, no aborted record may be visible, and the
//! group's committed offsets must end at the input's end. The same checker
//! run over a non-transactional copy that crashed between producing and
//! committing reports the duplicates, so it can fail.

use std::time::{Duration, Instant};

use tideline_tests::clients::{
    coordinator_of, create_replicated_topic, leader_of, produce_all, reliable_producer_config,
};
use tideline_tests::cluster::Cluster;
use tideline_tests::eos::{self, count_lines, CopierOpts};
use tideline_tests::member::Member;
use tideline_tests::{unique_topic, Broker, BrokerOpts, TestRecord};

const PARTITIONS: i32 = 3;

fn input_records(n: u64) -> Vec<TestRecord> {
    (0..n)
        .map(|i| TestRecord {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("in-{i}").into_bytes()),
            headers: Vec::new(),
            timestamp: None,
        })
        .collect()
}

fn opts(bootstrap: &str, input: &str, output: &str) -> CopierOpts {
    CopierOpts {
        bootstrap: bootstrap.to_string(),
        input: input.to_string(),
        output: output.to_string(),
        group: format!("{output}-group"),
        txn_id: format!("{output}-copier"),
        per_txn: 40,
        abort_percent: 15,
        seed: 7,
        plain: false,
        crash_after: None,
    }
}

/// Waits until `copier` committed `batches` more batches, finished, or
/// exited; returns whether it finished.
fn progress(copier: &mut Member, batches: usize) -> bool {
    let start = count_lines(copier, "COMMITTED");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if count_lines(copier, "DONE") > 0 {
            return true;
        }
        if copier.exited() || count_lines(copier, "COMMITTED") >= start + batches {
            return false;
        }
        assert!(
            Instant::now() < deadline,
            "the copier made no progress: {:?}",
            copier.lines().iter().rev().take(5).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs copiers (a new one whenever the last exited) until one finishes.
fn run_to_completion(opts: &CopierOpts, copiers: &mut Vec<Member>) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let last = copiers.last_mut().expect("a copier");
        if count_lines(last, "DONE") > 0 {
            return;
        }
        if last.exited() {
            let name = format!("copier-{}", copiers.len() + 1);
            copiers.push(opts.spawn(&name));
        }
        assert!(
            Instant::now() < deadline,
            "the copy did not finish; the last copier printed {:?}",
            copiers
                .last()
                .expect("a copier")
                .lines()
                .iter()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_exactly_once(bootstrap: &str, o: &CopierOpts, copiers: &[Member], n: usize) {
    let refs: Vec<&Member> = copiers.iter().collect();
    let aborted = eos::aborted_tags(&refs);
    let verdict = eos::check(bootstrap, &o.input, &o.output, PARTITIONS, &aborted);
    println!(
        "checker: {} input records, {} committed output records, {} copier instances, {} batches aborted on purpose, missing {}, duplicated {}, aborted visible {}",
        verdict.input_records,
        verdict.output_records,
        copiers.len(),
        aborted.len(),
        verdict.missing.len(),
        verdict.duplicated.len(),
        verdict.aborted_visible.len()
    );
    assert_eq!(verdict.input_records, n);
    assert!(verdict.exactly_once(), "{verdict:?}");
    assert!(
        !aborted.is_empty(),
        "some transactions were aborted on purpose"
    );
    let ends: Vec<i64> = (0..PARTITIONS)
        .map(|p| tideline_tests::clients::watermarks(bootstrap, &o.input, p).1)
        .collect();
    assert_eq!(
        eos::committed_offsets(bootstrap, &o.group, &o.input, PARTITIONS),
        ends,
        "the group's committed offsets are the input's end"
    );
}

#[test]
fn a_transactional_copy_is_exactly_once_through_copier_crashes_and_broker_faults() {
    let mut cluster = Cluster::start(
        3,
        &[(
            "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            "1000",
        )],
    );
    let bootstrap = cluster.bootstrap();
    let (input, output) = (unique_topic("eos-in"), unique_topic("eos-out"));
    create_replicated_topic(&bootstrap, &input, PARTITIONS, 3, &[]);
    create_replicated_topic(&bootstrap, &output, PARTITIONS, 3, &[]);
    const N: u64 = 3_000;
    produce_all(
        &reliable_producer_config(&bootstrap),
        &input,
        &input_records(N),
    );
    let o = opts(&bootstrap, &input, &output);
    let mut copiers = vec![o.spawn("copier-1")];

    let faults = [
        "kill copier",
        "kill coordinator",
        "kill copier",
        "pause a leader",
        "kill copier",
        "kill a leader",
        "kill copier",
    ];
    for (round, fault) in faults.iter().enumerate() {
        let copier = copiers.last_mut().unwrap();
        if progress(copier, 3) {
            break;
        }
        // Soon after a commit the copier is inside its next transaction.
        std::thread::sleep(Duration::from_millis(20 + 37 * round as u64 % 120));
        println!("fault round {round}: {fault}");
        match *fault {
            "kill copier" => copier.kill(),
            "kill coordinator" => {
                let id = coordinator_of(&bootstrap, &o.txn_id);
                cluster.node(id).kill();
                std::thread::sleep(Duration::from_secs(2));
                cluster.node(id).restart();
            }
            "pause a leader" => {
                let id = leader_of(&bootstrap, &output, round as i32 % PARTITIONS);
                cluster.node(id).pause();
                std::thread::sleep(Duration::from_secs(3));
                cluster.node(id).resume();
            }
            "kill a leader" => {
                let id = leader_of(&bootstrap, &output, round as i32 % PARTITIONS);
                cluster.node(id).kill();
                std::thread::sleep(Duration::from_secs(2));
                cluster.node(id).restart();
            }
            _ => unreachable!(),
        }
        let copier = copiers.last_mut().unwrap();
        if copier.exited() && count_lines(copier, "DONE") == 0 {
            let name = format!("copier-{}", copiers.len() + 1);
            copiers.push(o.spawn(&name));
        }
    }
    run_to_completion(&o, &mut copiers);
    assert!(copiers.len() >= 4, "the copier was restarted after crashes");
    assert_exactly_once(&bootstrap, &o, &copiers, N as usize);
}

#[test]
fn the_checker_finds_the_duplicates_of_a_copy_without_transactions() {
    let broker = Broker::start(BrokerOpts::new());
    let bootstrap = broker.bootstrap();
    let (input, output) = (unique_topic("plain-in"), unique_topic("plain-out"));
    create_replicated_topic(&bootstrap, &input, PARTITIONS, 1, &[]);
    create_replicated_topic(&bootstrap, &output, PARTITIONS, 1, &[]);
    produce_all(
        &reliable_producer_config(&bootstrap),
        &input,
        &input_records(600),
    );
    let mut o = opts(&bootstrap, &input, &output);
    o.plain = true;
    o.crash_after = Some(3);
    let mut crashed = o.spawn("plain-1");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !crashed.exited() {
        assert!(Instant::now() < deadline, "the copier did not crash");
        std::thread::sleep(Duration::from_millis(20));
    }
    o.crash_after = None;
    let mut copiers = vec![crashed, o.spawn("plain-2")];
    run_to_completion(&o, &mut copiers);
    let refs: Vec<&Member> = copiers.iter().collect();
    let verdict = eos::check(
        &bootstrap,
        &input,
        &output,
        PARTITIONS,
        &eos::aborted_tags(&refs),
    );
    assert!(verdict.missing.is_empty(), "{verdict:?}");
    assert!(
        !verdict.duplicated.is_empty() && !verdict.exactly_once(),
        "the batch copied before the crash and again after it is reported: {verdict:?}"
    );
}

#[test]
fn a_transactional_copy_on_one_broker_is_exactly_once_through_crashes_mid_transaction() {
    let broker = Broker::start(BrokerOpts::new());
    let bootstrap = broker.bootstrap();
    let (input, output) = (unique_topic("eos1-in"), unique_topic("eos1-out"));
    create_replicated_topic(&bootstrap, &input, PARTITIONS, 1, &[]);
    create_replicated_topic(&bootstrap, &output, PARTITIONS, 1, &[]);
    produce_all(
        &reliable_producer_config(&bootstrap),
        &input,
        &input_records(1_200),
    );
    let mut o = opts(&bootstrap, &input, &output);
    // The first instance dies between producing its 4th batch and
    // committing it: an open transaction the next instance must abort.
    o.crash_after = Some(4);
    let mut copiers = vec![o.spawn("copier-1")];
    o.crash_after = None;
    for _ in 0..3 {
        let copier = copiers.last_mut().unwrap();
        if !copier.exited() && !progress(copier, 4) {
            copier.kill();
        }
        if copiers.last_mut().unwrap().exited() {
            let name = format!("copier-{}", copiers.len() + 1);
            copiers.push(o.spawn(&name));
        }
    }
    run_to_completion(&o, &mut copiers);
    assert_exactly_once(&bootstrap, &o, &copiers, 1_200);
}
