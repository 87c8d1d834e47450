//! `--mode commit`: offset-commit throughput. `--consumers` committers,
//! each a librdkafka consumer of the benchmark group that never subscribes
//! (a "simple" consumer, as tools that manage offsets themselves are),
//! send `--messages` OffsetCommit requests in all, each committing a new
//! offset for every partition of the topic. Each committer commits
//! synchronously, so as many commits are in flight as there are committers.
//!
//! Besides the rate, this is how to put a known commit workload on
//! `__consumer_offsets`, for example to watch the log cleaner shrink it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::args::Args;
use crate::measure::{new_histogram, FirstErrors};

pub struct CommitReport {
    pub commits: u64,
    pub records: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency_us: hdrhistogram::Histogram<u64>,
    pub first_errors: Vec<String>,
}

pub fn run(args: &Args, partitions: i32) -> Result<CommitReport> {
    let group = args
        .group_id()
        .unwrap_or_else(|| format!("tideline-bench-commit-{}", std::process::id()));
    let committed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_errors = Arc::new(FirstErrors::default());
    let committers = args.consumers.max(1) as u64;
    let start = Instant::now();
    let mut handles = Vec::new();
    for c in 0..committers {
        let share = args.messages / committers + u64::from(c < args.messages % committers);
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &args.bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .context("create committer")?;
        let topic = args.topic.clone();
        let (committed, errors, first_errors) =
            (committed.clone(), errors.clone(), first_errors.clone());
        handles.push(thread::spawn(move || {
            let mut latency_us = new_histogram();
            for i in 0..share {
                let mut tpl = TopicPartitionList::new();
                for p in 0..partitions {
                    let _ = tpl.add_partition_offset(&topic, p, Offset::Offset(i as i64 + 1));
                }
                let sent = Instant::now();
                match consumer.commit(&tpl, CommitMode::Sync) {
                    Ok(()) => {
                        let _ = latency_us.record(sent.elapsed().as_micros().max(1) as u64);
                        committed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_errors.note(e);
                    }
                }
            }
            latency_us
        }));
    }
    let mut latency_us = new_histogram();
    for h in handles {
        latency_us.add(h.join().expect("committer thread panicked"))?;
    }
    let commits = committed.load(Ordering::Relaxed);
    Ok(CommitReport {
        commits,
        records: commits * partitions as u64,
        errors: errors.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        latency_us,
        first_errors: first_errors.take(),
    })
}
