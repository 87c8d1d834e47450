//! `--mode txn-failover`: how long a transaction coordinator's successor
//! takes to finish a commit whose coordinator broker was SIGKILLed in the
//! middle of it.
//!
//! The tool starts its own cluster of three separate broker processes
//! (so one can be killed while the others go on), creates `--topic` with
//! `--partitions` partitions at RF=3, and runs `--repetitions` rounds. In
//! each round a new transactional producer writes `--records-per-txn`
//! records, asks which broker coordinates its transactional id
//! (FindCoordinator), starts `commit_transaction` and SIGKILLs that broker
//! 0.25–1.5 ms later (the delay steps by 0.25 ms from round to round). A
//! read_committed consumer then waits for the round's records, and the
//! surviving brokers are asked (DescribeTransactions, every 10 ms) for the
//! id's state. Reported per round, from the kill: when another broker
//! first answers as the id's coordinator, when it reports CompleteCommit,
//! when the client's commit returned, when the last record was visible to
//! read_committed, and whether every record arrived exactly once. The
//! killed broker is started again and back in every ISR before the next
//! round. A round whose commit returned before the kill interrupted
//! nothing: it is listed but left out of the summary.
//!
//! The killed broker also led some of the topic's partitions, so the last
//! column includes their leader failover and the consumer finding the new
//! leaders, whatever the coordinator does.
//!
//! Whether the prepared commit survives the kill decides who finishes it:
//! if PrepareCommit reached a follower, the new coordinator replays it and
//! writes the markers itself; if not, the client's EndTxn retry reaches
//! the new coordinator and the commit starts there. Either way the wait is
//! dominated by `broker.session.timeout.ms`, after which the metadata
//! quorum fences the dead broker and moves its leaderships.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, FindCoordinatorRequest, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tideline_protocol::KafkaClient;

use crate::args::Args;
use crate::cluster;
use crate::processes::BrokerProcess;

const NODES: usize = 3;
/// Generous bound on one round's commit and its visibility.
const ROUND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the killed broker may take to rejoin every ISR.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(120);
const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// FindCoordinator key type of a transactional id.
const TRANSACTION_KEY: i8 = 1;

/// One round's outcome.
struct Round {
    coordinator: i32,
    kill_delay: Duration,
    /// Kill → `commit_transaction` returned, and what it returned.
    commit_returned: Duration,
    commit_error: Option<String>,
    /// Kill → the last of the round's records seen by read_committed;
    /// `None` if they were not all seen within the round's bound.
    visible: Option<Duration>,
    /// Kill → another broker answered DescribeTransactions for the id as
    /// its coordinator, the state it first reported (PrepareCommit: it
    /// replayed the prepared commit; Ongoing: the prepare had not been
    /// written, the client's EndTxn retry starts it), and → CompleteCommit.
    took_over: Option<Duration>,
    first_state: Option<String>,
    completed: Option<Duration>,
    /// The commit returned after the kill: the kill interrupted it.
    interrupted: bool,
    records_seen: u64,
    duplicates: u64,
}

pub fn run(args: &Args, bin: &std::path::Path, work_dir: &std::path::Path) -> Result<String> {
    let mut nodes = BrokerProcess::cluster(bin, work_dir, NODES)?;
    let bootstrap = nodes
        .iter()
        .map(|n| n.bootstrap.clone())
        .collect::<Vec<_>>()
        .join(",");
    let mut topic_args = args.clone();
    topic_args.bootstrap = bootstrap.clone();
    topic_args.replication_factor = NODES as i32;
    topic_args.recreate = true;
    let admin = cluster::admin_client(&topic_args)?;
    let partitions = cluster::ensure_topic(&admin, &topic_args)?;

    let mut rounds = Vec::new();
    for round in 0..args.repetitions {
        let kill_delay = Duration::from_micros(250 + (round % 6) * 250);
        let start_offsets = cluster::end_offsets(&admin, &args.topic, partitions)?;
        let outcome = run_round(
            args,
            &bootstrap,
            round,
            kill_delay,
            &start_offsets,
            &mut nodes,
        )?;
        eprintln!("round {round}: {}", row(&outcome));
        let killed = &mut nodes[outcome.coordinator as usize - 1];
        killed.start_again()?;
        wait_for_full_isrs(&bootstrap, &[&args.topic, TRANSACTION_STATE_TOPIC])?;
        rounds.push(outcome);
    }
    // The data directories go with the brokers; their logs are kept, to
    // look into a slow round.
    let mut logs = Vec::new();
    for (i, node) in nodes.into_iter().enumerate() {
        let kept = work_dir.join(format!(
            "txn-failover-{}-node-{}.log",
            std::process::id(),
            i + 1
        ));
        std::fs::copy(node.log_path(), &kept)?;
        logs.push(kept.display().to_string());
        node.stop()?;
    }
    let mut table = report(args, partitions, &rounds);
    let _ = writeln!(table, "\nBroker logs: {}", logs.join(", "));
    Ok(table)
}

fn run_round(
    args: &Args,
    bootstrap: &str,
    round: u64,
    kill_delay: Duration,
    start_offsets: &[i64],
    nodes: &mut [BrokerProcess],
) -> Result<Round> {
    let txn_id = format!("tideline-bench-failover-{}-{round}", std::process::id());
    let producer: BaseProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", &txn_id)
        .set("linger.ms", "0")
        .create()
        .context("creating the transactional producer")?;
    producer.init_transactions(ROUND_TIMEOUT)?;
    producer.begin_transaction()?;
    let value = vec![b'x'; args.message_size];
    let prefix = format!("round-{round}-");
    for i in 0..args.records_per_txn {
        let key = format!("{prefix}{i}");
        producer
            .send(BaseRecord::to(&args.topic).key(&key).payload(&value))
            .map_err(|(e, _)| e)?;
    }
    let deadline = Instant::now() + ROUND_TIMEOUT;
    while producer.in_flight_count() > 0 {
        if Instant::now() > deadline {
            bail!("round {round}: records undelivered after {ROUND_TIMEOUT:?}");
        }
        producer.poll(Duration::from_millis(1));
    }
    let coordinator = find_coordinator(bootstrap, &txn_id)?;
    if coordinator < 1 || coordinator as usize > nodes.len() {
        bail!("round {round}: FindCoordinator named broker {coordinator}");
    }

    let consumer = committed_reader(bootstrap, &args.topic, start_offsets)?;
    std::thread::scope(|scope| {
        let committing = scope.spawn(|| {
            let result = producer.commit_transaction(ROUND_TIMEOUT);
            (result, Instant::now())
        });
        std::thread::sleep(kill_delay);
        nodes[coordinator as usize - 1].kill()?;
        let killed_at = Instant::now();
        let survivors: Vec<(i32, String)> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (i as i32 + 1, n.bootstrap.clone()))
            .filter(|(id, _)| *id != coordinator)
            .collect();
        let txn_id = &txn_id;
        let watching = scope.spawn(move || watch_coordinator(&survivors, txn_id, killed_at));

        let mut seen: HashMap<String, u64> = HashMap::new();
        let mut visible = None;
        while killed_at.elapsed() < ROUND_TIMEOUT {
            let Some(message) = consumer.poll(Duration::from_millis(10)) else {
                continue;
            };
            let Ok(message) = message else { continue };
            let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
            if key.starts_with(&prefix) {
                *seen.entry(key).or_default() += 1;
            }
            if visible.is_none() && seen.len() as u64 == args.records_per_txn {
                visible = Some(killed_at.elapsed());
                // A short look for duplicates that would follow.
                let settle = Instant::now();
                while settle.elapsed() < Duration::from_secs(1) {
                    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(10)) {
                        let key = String::from_utf8_lossy(m.key().unwrap_or_default());
                        if let Some(n) = seen.get_mut(key.as_ref()) {
                            *n += 1;
                        }
                    }
                }
                break;
            }
        }
        let (result, returned_at) = committing
            .join()
            .map_err(|_| anyhow::anyhow!("the committing thread panicked"))?;
        let (took_over, first_state, completed) = watching
            .join()
            .map_err(|_| anyhow::anyhow!("the watching thread panicked"))?;
        let records_seen: u64 = seen.values().sum();
        Ok(Round {
            coordinator,
            kill_delay,
            commit_returned: returned_at.saturating_duration_since(killed_at),
            interrupted: returned_at > killed_at,
            commit_error: result.err().map(|e| e.to_string()),
            visible,
            took_over,
            first_state,
            completed,
            records_seen,
            duplicates: records_seen - seen.len() as u64,
        })
    })
}

/// A read_committed consumer of every partition of `topic`, from
/// `start_offsets`.
fn committed_reader(bootstrap: &str, topic: &str, start_offsets: &[i64]) -> Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!("tideline-bench-failover-{}", std::process::id()),
        )
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for (p, offset) in start_offsets.iter().enumerate() {
        assignment.add_partition_offset(topic, p as i32, Offset::Offset(*offset))?;
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// The broker coordinating `txn_id`, asked of each bootstrap server in
/// turn (librdkafka does not expose FindCoordinator).
fn find_coordinator(bootstrap: &str, txn_id: &str) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let request = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(txn_id.to_string()))
        .with_key_type(TRANSACTION_KEY);
    let mut last_error = None;
    for address in bootstrap.split(',') {
        let answer = runtime.block_on(async {
            let mut client =
                KafkaClient::connect(address, "tideline-bench", Duration::from_secs(5)).await?;
            client.send(&request, 3, Duration::from_secs(10)).await
        });
        match answer {
            Ok(response) if response.error_code == 0 => return Ok(response.node_id.0),
            Ok(response) => last_error = Some(format!("error code {}", response.error_code)),
            Err(e) => last_error = Some(e.to_string()),
        }
    }
    bail!(
        "no broker named the coordinator of {txn_id}: {}",
        last_error.unwrap_or_default()
    )
}

/// What the surviving brokers said of the transactional id.
type Watched = (Option<Duration>, Option<String>, Option<Duration>);

/// Follows the transactional id on the surviving brokers after the kill,
/// every 10 ms: when one of them first answers DescribeTransactions for it
/// as its coordinator (it took over and replayed the state), the state it
/// gave then, and when it says CompleteCommit (the markers are written).
fn watch_coordinator(survivors: &[(i32, String)], txn_id: &str, killed_at: Instant) -> Watched {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return (None, None, None);
    };
    let describe =
        DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
            StrBytes::from_string(txn_id.to_string()),
        )]);
    let (mut took_over, mut first_state) = (None, None);
    while killed_at.elapsed() < ROUND_TIMEOUT {
        for (_, address) in survivors {
            let state = runtime.block_on(async {
                let mut client =
                    KafkaClient::connect(address, "tideline-bench", Duration::from_secs(1)).await?;
                client.send(&describe, 0, Duration::from_secs(1)).await
            });
            let Ok(response) = state else { continue };
            let Some(txn) = response.transaction_states.first() else {
                continue;
            };
            if txn.error_code != 0 {
                continue;
            }
            let now = killed_at.elapsed();
            took_over.get_or_insert(now);
            first_state.get_or_insert_with(|| txn.transaction_state.to_string());
            if txn.transaction_state.as_str() == "CompleteCommit" {
                return (took_over, first_state, Some(now));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (took_over, first_state, None)
}

/// Waits until every partition of `topics` has all its replicas in sync.
fn wait_for_full_isrs(bootstrap: &str, topics: &[&str]) -> Result<()> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let deadline = Instant::now() + REJOIN_TIMEOUT;
    loop {
        let mut behind = 0;
        for topic in topics {
            let metadata = client.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            for t in metadata.topics() {
                behind += t
                    .partitions()
                    .iter()
                    .filter(|p| p.isr().len() < p.replicas().len() || p.leader() < 0)
                    .count();
            }
        }
        if behind == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{behind} partitions still under-replicated {REJOIN_TIMEOUT:?} after a restart");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn report(args: &Args, partitions: i32, rounds: &[Round]) -> String {
    let mut out = format!(
        "### Transaction coordinator failover: 3 brokers, {partitions} partitions at RF=3, {} records of {} B per transaction\n\n\
         The coordinator's broker is SIGKILLed during `commit_transaction`; times are from the kill.\n\n\
         | round | coordinator | killed after (ms) | new coordinator answers (s) | state it found | it says CompleteCommit (s) | commit returned to the client (s) | all visible to read_committed (s) | records seen | duplicates |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        args.records_per_txn, args.message_size
    );
    for (i, r) in rounds.iter().enumerate() {
        let _ = writeln!(out, "| {i} | {} |", row(r));
    }
    let interrupted: Vec<&Round> = rounds.iter().filter(|r| r.interrupted).collect();
    let replayed = interrupted
        .iter()
        .filter(|r| r.first_state.as_deref() == Some("PrepareCommit"))
        .count();
    let _ = writeln!(
        out,
        "\nThe kill interrupted the commit in {} of {} rounds (in the others the commit had returned first). Of those, the new coordinator found the commit prepared and finished it itself in {replayed}; in the others the client's EndTxn retry reached it.\n",
        interrupted.len(),
        rounds.len()
    );
    let columns: [(&str, Column); 3] = [
        ("a new coordinator answers", |r| r.took_over),
        ("it has completed the commit", |r| r.completed),
        ("every record is visible to read_committed", |r| r.visible),
    ];
    for (what, column) in columns {
        let mut times: Vec<f64> = interrupted
            .iter()
            .filter_map(|r| column(r).map(|v| v.as_secs_f64()))
            .collect();
        times.sort_by(f64::total_cmp);
        match (times.first(), times.last()) {
            (Some(min), Some(max)) => {
                let _ = writeln!(
                    out,
                    "- kill → {what}: in {} of {}, median {:.2} s, min {min:.2} s, max {max:.2} s",
                    times.len(),
                    interrupted.len(),
                    times[times.len() / 2]
                );
            }
            _ => {
                let _ = writeln!(out, "- kill → {what}: in none of {}", interrupted.len());
            }
        }
    }
    out
}

/// A round's cells, between the round number and the end of the row.
fn row(r: &Round) -> String {
    let returned = if r.interrupted {
        format!("{:.2}", r.commit_returned.as_secs_f64())
    } else {
        "before the kill".to_string()
    };
    format!(
        "{} | {:.2} | {} | {} | {} | {returned}{} | {} | {} | {}",
        r.coordinator,
        r.kill_delay.as_secs_f64() * 1e3,
        seconds(r.took_over),
        r.first_state.as_deref().unwrap_or("-"),
        seconds(r.completed),
        r.commit_error
            .as_ref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default(),
        seconds(r.visible),
        r.records_seen,
        r.duplicates
    )
}

/// One of a round's times, for the summary lines.
type Column = fn(&Round) -> Option<Duration>;

fn seconds(time: Option<Duration>) -> String {
    time.map(|t| format!("{:.2}", t.as_secs_f64()))
        .unwrap_or_else(|| format!("not within {} s", ROUND_TIMEOUT.as_secs()))
}
