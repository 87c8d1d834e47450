//! `tideline-bench`: drives a running Kafka-compatible broker with librdkafka
//! producers and consumers and reports throughput, ack latency, end-to-end
//! latency and (optionally) broker memory.
//!
//! This file parses the command line and orchestrates a run:
//!
//! 1. make sure the topic exists and read its partition count;
//! 2. (produce mode) record every partition's end offset and start the
//!    consumers there, waiting for a consumer group to settle if one is used;
//! 3. connect the producers, then send, printing progress once a second;
//! 4. once every producer has flushed, read the new end offsets and let the
//!    consumers drain up to them (bounded by `--drain-timeout`);
//! 5. print the report.
//!
//! The data path lives in `producer.rs` and `consumer.rs`, cluster
//! administration in `cluster.rs`, payload layout in `payload.rs`, broker
//! memory sampling in `rss.rs`, and output in `report.rs`. `--mode reassign`
//! times a partition reassignment instead (`reassign.rs`), and `--mode
//! matrix` runs the fixed performance matrix on brokers it starts itself
//! (`matrix.rs`, `processes.rs`), and `--mode eos` an exactly-once
//! consume-transform-produce pipeline (`eos.rs`), and `--mode
//! txn-failover` times a transaction coordinator's failover on three
//! brokers it starts (`failover.rs`).

mod args;
mod cluster;
mod committer;
mod consumer;
mod eos;
mod failover;
mod matrix;
mod measure;
mod payload;
mod processes;
mod producer;
mod reassign;
mod report;
mod rss;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;

use crate::args::{Args, Mode};
use crate::consumer::{ConsumeStats, ConsumerOutcome, Consumers};
use crate::measure::new_histogram;
use crate::producer::{ProduceStats, Producers};
use crate::report::{ConsumeReport, ProduceReport, Progress, Report};
use crate::rss::RssSampler;

/// How often the orchestrator checks for completion.
const TICK: Duration = Duration::from_millis(50);
/// Upper bound for a consumer group to hand out all partitions.
const GROUP_SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> Result<()> {
    let args = Args::parse();
    args.validate()?;
    if args.mode == Mode::Matrix {
        print!("{}", matrix::run(&args)?);
        return Ok(());
    }
    if args.mode == Mode::TxnFailover {
        let (bin, work_dir) = (matrix::broker_bin(&args)?, matrix::work_dir(&args)?);
        print!("{}", failover::run(&args, &bin, &work_dir)?);
        return Ok(());
    }

    // Idle sample first, before this tool has touched the broker.
    let rss = args.broker_pid.map(RssSampler::start).transpose()?;
    let admin = cluster::admin_client(&args)?;

    let mut report = match args.mode {
        Mode::Produce => run_produce(&args, &admin)?,
        Mode::Consume => run_consume(&args, &admin)?,
        Mode::Commit => {
            let partitions = cluster::ensure_topic(&admin, &args)?;
            Report {
                partitions,
                commit: Some(committer::run(&args, partitions)?),
                ..Report::default()
            }
        }
        Mode::Matrix | Mode::TxnFailover => {
            unreachable!("these modes run their own brokers, above")
        }
        Mode::Eos => {
            eos::run(&args, &admin)?.print(&args);
            return Ok(());
        }
        Mode::Reassign => {
            let partitions = cluster::ensure_topic(&admin, &args)?;
            Report {
                partitions,
                reassign: Some(reassign::run(&args, &admin, partitions)?),
                ..Report::default()
            }
        }
    };
    report.rss = rss.map(RssSampler::finish).transpose()?;

    report.print_text(&args);
    if args.json {
        println!("{}", report.to_json(&args));
    }
    Ok(())
}

fn run_produce(args: &Args, admin: &cluster::Admin) -> Result<Report> {
    let partitions = cluster::ensure_topic(admin, args)?;

    // Consumers start exactly at the current end of every partition, so they
    // see every message of this run and nothing older.
    let consume_stats;
    let consumers = if args.consumers > 0 {
        let start_offsets = cluster::end_offsets(admin, &args.topic, partitions)?;
        let stats = Arc::new(ConsumeStats::new(&start_offsets));
        let consumers = Consumers::start(args, start_offsets, &stats, true)?;
        consumers.wait_until_assigned(partitions as usize, GROUP_SETTLE_TIMEOUT)?;
        consume_stats = Some(stats);
        Some(consumers)
    } else {
        consume_stats = None;
        None
    };

    // The ack-latency clock origin must predate every send.
    let epoch = Instant::now();
    let produce_stats = Arc::new(ProduceStats::default());
    let producers = Producers::connect(args, &produce_stats, epoch)?;

    let start = Instant::now();
    let handles = producers.spawn(args, &produce_stats, start);
    let mut progress = Progress::new(start);
    while !handles.iter().all(|h| h.is_finished()) {
        thread::sleep(TICK);
        progress.tick(Some(&produce_stats), consume_stats.as_deref());
    }
    let outcomes: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("producer thread panicked"))
        .collect();
    let sending_end = outcomes
        .iter()
        .map(|o| o.sending_ended_at)
        .max()
        .unwrap_or(start);
    let produce_end = outcomes
        .iter()
        .map(|o| o.finished_at)
        .max()
        .unwrap_or(start);

    let mut ack_latency_us = new_histogram();
    for o in &outcomes {
        ack_latency_us.add(&o.ack_latency_us)?;
    }
    let acked = produce_stats.acked.load(Ordering::Relaxed);
    let produce = ProduceReport {
        sent: produce_stats.sent.load(Ordering::Relaxed),
        acked,
        acked_bytes: produce_stats.acked_bytes.load(Ordering::Relaxed),
        errors: produce_stats.errors.load(Ordering::Relaxed),
        unacked: outcomes.iter().map(|o| o.unacked).sum(),
        sending: sending_end - start,
        elapsed: produce_end - start,
        ack_latency_us,
        first_errors: produce_stats.first_errors.take(),
    };

    let consume = match (consumers, consume_stats) {
        (Some(consumers), Some(stats)) => {
            // Everything the producers got written is now below the end
            // offsets; drain up to them.
            let targets = cluster::end_offsets(admin, &args.topic, partitions)?;
            let deadline = Instant::now() + args.drain_timeout();
            let caught_up = loop {
                if stats.reached(&targets) {
                    break true;
                }
                if Instant::now() >= deadline || consumers.all_finished() {
                    break false;
                }
                thread::sleep(TICK);
                progress.tick(Some(&produce_stats), Some(&stats));
            };
            stats.stop();
            let outcomes = consumers.join();
            Some(consume_report(
                &stats, outcomes, start, acked, caught_up, true,
            )?)
        }
        _ => None,
    };
    progress.finish();

    Ok(Report {
        partitions,
        produce: Some(produce),
        consume,
        ..Report::default()
    })
}

fn run_consume(args: &Args, admin: &cluster::Admin) -> Result<Report> {
    let partitions = cluster::existing_topic(admin, &args.topic)?;
    let marks = cluster::watermarks(admin, &args.topic, partitions)?;
    let start_offsets: Vec<i64> = marks.iter().map(|&(low, _)| low).collect();
    let targets: Vec<i64> = marks.iter().map(|&(_, high)| high).collect();
    let expected: u64 = marks
        .iter()
        .map(|&(low, high)| (high - low).max(0) as u64)
        .sum();

    let stats = Arc::new(ConsumeStats::new(&start_offsets));
    let start = Instant::now();
    let consumers = Consumers::start(args, start_offsets, &stats, false)?;
    let mut progress = Progress::new(start);

    // Give up only when nothing has arrived for a whole drain timeout.
    let mut last_count = 0;
    let mut last_progress = Instant::now();
    let caught_up = loop {
        if stats.reached(&targets) {
            break true;
        }
        let count = stats.consumed.load(Ordering::Relaxed);
        if count != last_count {
            last_count = count;
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= args.drain_timeout() || consumers.all_finished() {
            break false;
        }
        thread::sleep(TICK);
        progress.tick(None, Some(&stats));
    };
    stats.stop();
    let outcomes = consumers.join();
    progress.finish();

    Ok(Report {
        partitions,
        produce: None,
        consume: Some(consume_report(
            &stats, outcomes, start, expected, caught_up, false,
        )?),
        ..Report::default()
    })
}

/// `phase_start` is when producing (produce mode) or consuming (consume
/// mode) began; consume throughput is measured from there to the last
/// message received.
fn consume_report(
    stats: &ConsumeStats,
    outcomes: Vec<ConsumerOutcome>,
    phase_start: Instant,
    expected: u64,
    caught_up: bool,
    with_e2e: bool,
) -> Result<ConsumeReport> {
    let mut e2e = new_histogram();
    for o in &outcomes {
        e2e.add(&o.e2e_latency_us)?;
    }
    let last = outcomes.iter().filter_map(|o| o.last_receive).max();
    Ok(ConsumeReport {
        consumed: stats.consumed.load(Ordering::Relaxed),
        bytes: stats.consumed_bytes.load(Ordering::Relaxed),
        expected,
        caught_up,
        window: last.map(|l| l - phase_start),
        e2e_latency_us: with_e2e.then_some(e2e),
        errors: stats.errors.load(Ordering::Relaxed),
        first_errors: stats.first_errors.take(),
    })
}

/// End-to-end runs of the orchestration against librdkafka's in-process mock
/// cluster, which (unlike a broker under construction) supports consumer
/// groups.
#[cfg(test)]
mod tests {
    use rdkafka::mocking::MockCluster;

    use super::*;

    fn parse(bootstrap: &str, extra: &[&str]) -> Args {
        let mut argv = vec!["tideline-bench", "--bootstrap", bootstrap];
        argv.extend_from_slice(extra);
        let args = Args::try_parse_from(argv).unwrap();
        args.validate().unwrap();
        args
    }

    fn produce_then_consume(extra: &[&str]) {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("t", 3, 1).unwrap();
        let bootstrap = cluster.bootstrap_servers();

        let mut produce_args = vec![
            "--topic",
            "t",
            "--partitions",
            "3",
            "--messages",
            "3000",
            "--producers",
            "2",
        ];
        produce_args.extend_from_slice(extra);
        let args = parse(&bootstrap, &produce_args);
        let admin = cluster::admin_client(&args).unwrap();
        let report = run_produce(&args, &admin).unwrap();
        assert_eq!(report.partitions, 3);
        let produce = report.produce.unwrap();
        assert_eq!(
            (produce.sent, produce.acked, produce.errors),
            (3000, 3000, 0)
        );
        assert_eq!(produce.ack_latency_us.len(), 3000);
        let consume = report.consume.unwrap();
        assert!(consume.caught_up);
        assert_eq!(consume.consumed, 3000);
        assert_eq!(consume.e2e_latency_us.unwrap().len(), 3000);

        let args = parse(
            &bootstrap,
            &["--topic", "t", "--mode", "consume", "--consumers", "2"],
        );
        let report = run_consume(&args, &admin).unwrap();
        let consume = report.consume.unwrap();
        assert!(consume.caught_up);
        assert_eq!((consume.expected, consume.consumed), (3000, 3000));
    }

    #[test]
    fn manual_assignment_run() {
        produce_then_consume(&["--consumers", "2"]);
    }

    #[test]
    fn consumer_group_run() {
        produce_then_consume(&["--consumers", "2", "--group", "--rate", "20000"]);
    }
}
