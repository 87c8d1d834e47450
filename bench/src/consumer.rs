//! The consuming side: `--consumers` librdkafka `BaseConsumer`s, each polled
//! by its own OS thread.
//!
//! Every consumer starts at an explicit offset per partition chosen by the
//! orchestrator (the log end captured before producing starts, or the log
//! start in consume mode), never at `latest`/`earliest` resolved lazily by
//! librdkafka: that way no message produced during the run can be skipped
//! however long partition assignment takes, and no old message is counted.
//!
//! * Manual mode (default): partitions are dealt round-robin to consumers
//!   with `assign`; nothing is committed and no group is joined.
//! * Group mode (`--group`): consumers `subscribe`; the rebalance callback
//!   assigns the granted partitions at the same explicit start offsets.
//!
//! Progress is tracked per partition (next offset to read) so the
//! orchestrator can tell when every partition reached its target end offset.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

use crate::args::Args;
use crate::cluster::ClientErrors;
use crate::measure::{new_histogram, FirstErrors};
use crate::payload;

const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Live state shared by all consumers and the orchestrator.
pub struct ConsumeStats {
    pub consumed: AtomicU64,
    pub consumed_bytes: AtomicU64,
    pub errors: AtomicU64,
    pub first_errors: FirstErrors,
    /// Next offset to be read, per partition (max over all consumers).
    positions: Vec<AtomicI64>,
    stop: AtomicBool,
}

impl ConsumeStats {
    pub fn new(start_offsets: &[i64]) -> Self {
        ConsumeStats {
            consumed: AtomicU64::new(0),
            consumed_bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_errors: FirstErrors::default(),
            positions: start_offsets.iter().map(|&o| AtomicI64::new(o)).collect(),
            stop: AtomicBool::new(false),
        }
    }

    /// True once every partition has been read up to `targets` (exclusive
    /// end offsets, indexed by partition).
    pub fn reached(&self, targets: &[i64]) -> bool {
        self.positions
            .iter()
            .zip(targets)
            .all(|(pos, &target)| pos.load(Ordering::Relaxed) >= target)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn record(&self, partition: i32, offset: i64, bytes: usize) {
        self.consumed.fetch_add(1, Ordering::Relaxed);
        self.consumed_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        if let Some(pos) = usize::try_from(partition)
            .ok()
            .and_then(|p| self.positions.get(p))
        {
            pos.fetch_max(offset + 1, Ordering::Relaxed);
        }
    }
}

/// What one consumer hands back when it is done.
pub struct ConsumerOutcome {
    /// Receive time minus embedded send time, in microseconds (only filled
    /// when end-to-end latency is measured).
    pub e2e_latency_us: Histogram<u64>,
    pub last_receive: Option<Instant>,
}

struct BenchConsumerContext {
    topic: String,
    start_offsets: Arc<Vec<i64>>,
    /// Partitions currently assigned (group mode bookkeeping).
    assigned: AtomicUsize,
    /// Number of assignment callbacks seen (group mode bookkeeping).
    assignments_seen: AtomicU64,
    client_errors: ClientErrors,
}

impl ClientContext for BenchConsumerContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.client_errors.report(format_args!("{error}: {reason}"));
    }
}

impl ConsumerContext for BenchConsumerContext {
    /// Replaces librdkafka's default handling so granted partitions start at
    /// our explicit offsets instead of committed/`auto.offset.reset` ones.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                for &p in &partitions {
                    if let Some(&offset) = self.start_offsets.get(p as usize) {
                        let _ = tpl.set_partition_offset(&self.topic, p, Offset::Offset(offset));
                    }
                }
                let result = if cooperative {
                    self.assigned.fetch_add(partitions.len(), Ordering::SeqCst);
                    consumer.incremental_assign(tpl)
                } else {
                    self.assigned.store(partitions.len(), Ordering::SeqCst);
                    consumer.assign(tpl)
                };
                self.assignments_seen.fetch_add(1, Ordering::SeqCst);
                result
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if cooperative {
                    self.assigned.fetch_sub(tpl.count(), Ordering::SeqCst);
                    consumer.incremental_unassign(tpl)
                } else {
                    self.assigned.store(0, Ordering::SeqCst);
                    consumer.unassign()
                }
            }
            other => {
                self.client_errors.report(format_args!(
                    "rebalance error: {}",
                    RDKafkaErrorCode::from(other)
                ));
                self.assigned.store(0, Ordering::SeqCst);
                consumer.unassign()
            }
        };
        if let Err(error) = result {
            self.client_errors
                .report(format_args!("applying rebalance: {error}"));
        }
    }
}

type BenchConsumer = BaseConsumer<BenchConsumerContext>;

/// Running consumers.
pub struct Consumers {
    contexts: Vec<Arc<BenchConsumerContext>>,
    handles: Vec<JoinHandle<ConsumerOutcome>>,
    group: bool,
}

impl Consumers {
    /// Creates `args.consumers` consumers starting at `start_offsets`
    /// (indexed by partition), and starts their polling threads.
    /// `measure_e2e` enables end-to-end latency from the payload timestamps.
    pub fn start(
        args: &Args,
        start_offsets: Vec<i64>,
        stats: &Arc<ConsumeStats>,
        measure_e2e: bool,
    ) -> Result<Self> {
        let group = args.group_id();
        let start_offsets = Arc::new(start_offsets);
        let partitions = start_offsets.len();
        if group.is_none() && args.consumers > partitions {
            eprintln!(
                "note: {} consumers but only {partitions} partitions; {} consumers will be idle",
                args.consumers,
                args.consumers - partitions
            );
        }

        let mut contexts = Vec::with_capacity(args.consumers);
        let mut handles = Vec::with_capacity(args.consumers);
        for i in 0..args.consumers {
            let mut config = ClientConfig::new();
            config
                .set("bootstrap.servers", &args.bootstrap)
                .set("client.id", format!("tideline-bench-consumer-{i}"))
                .set("enable.partition.eof", "false");
            match &group {
                Some(group_id) => {
                    config
                        .set("group.id", group_id)
                        // Eager protocol; the rebalance callback also copes
                        // with cooperative if overridden.
                        .set("partition.assignment.strategy", "roundrobin")
                        .set("auto.offset.reset", "latest");
                }
                None => {
                    // librdkafka refuses `assign` without a group.id, but
                    // with explicit start offsets and no commits it never
                    // needs the group coordinator for fetching.
                    config
                        .set(
                            "group.id",
                            format!("tideline-bench-{}-assign", std::process::id()),
                        )
                        .set("enable.auto.commit", "false")
                        .set("enable.auto.offset.store", "false");
                }
            }
            for (key, value) in &args.consumer_config {
                config.set(key, value);
            }
            let context = BenchConsumerContext {
                topic: args.topic.clone(),
                start_offsets: Arc::clone(&start_offsets),
                assigned: AtomicUsize::new(0),
                assignments_seen: AtomicU64::new(0),
                client_errors: ClientErrors::new(format!("consumer-{i}")),
            };
            let consumer = BenchConsumer::from_config_and_context(&config, context)
                .with_context(|| format!("creating consumer {i}"))?;

            if group.is_some() {
                consumer
                    .subscribe(&[&args.topic])
                    .with_context(|| format!("consumer {i}: subscribing"))?;
            } else {
                let mut tpl = TopicPartitionList::new();
                for p in (i..partitions).step_by(args.consumers) {
                    tpl.add_partition_offset(
                        &args.topic,
                        p as i32,
                        Offset::Offset(start_offsets[p]),
                    )?;
                }
                consumer
                    .assign(&tpl)
                    .with_context(|| format!("consumer {i}: assigning partitions"))?;
                // Establish the connection before the measured phase.
                consumer
                    .fetch_metadata(Some(&args.topic), Duration::from_secs(10))
                    .with_context(|| format!("consumer {i}: fetching topic metadata"))?;
            }

            contexts.push(Arc::clone(consumer.context()));
            let stats = Arc::clone(stats);
            handles.push(
                thread::Builder::new()
                    .name(format!("consumer-{i}"))
                    .spawn(move || run(consumer, &stats, measure_e2e))
                    .context("spawning consumer thread")?,
            );
        }
        Ok(Consumers {
            contexts,
            handles,
            group: group.is_some(),
        })
    }

    /// In group mode, waits until the group has settled: every consumer got
    /// an assignment callback and, together, they own every partition
    /// exactly once. Manual assignment is effective immediately.
    pub fn wait_until_assigned(&self, partitions: usize, timeout: Duration) -> Result<()> {
        if !self.group {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let all_seen = self
                .contexts
                .iter()
                .all(|c| c.assignments_seen.load(Ordering::SeqCst) > 0);
            let owned: usize = self
                .contexts
                .iter()
                .map(|c| c.assigned.load(Ordering::SeqCst))
                .sum();
            if all_seen && owned == partitions {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "consumer group did not settle within {timeout:?} \
                     ({owned} of {partitions} partitions assigned); \
                     does the broker support consumer groups? (omit --group for manual assignment)"
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn all_finished(&self) -> bool {
        self.handles.iter().all(|h| h.is_finished())
    }

    /// Waits for the polling threads (call after `ConsumeStats::stop`).
    pub fn join(self) -> Vec<ConsumerOutcome> {
        self.handles
            .into_iter()
            .map(|h| h.join().expect("consumer thread panicked"))
            .collect()
    }
}

fn run(consumer: BenchConsumer, stats: &ConsumeStats, measure_e2e: bool) -> ConsumerOutcome {
    let mut e2e_latency_us = new_histogram();
    let mut last_receive = None;
    while !stats.stop.load(Ordering::Relaxed) {
        match consumer.poll(POLL_TIMEOUT) {
            None => {}
            Some(Ok(message)) => {
                let received = Instant::now();
                let payload = message.payload().unwrap_or_default();
                if measure_e2e {
                    if let Some(sent_us) = payload::read_stamp(payload) {
                        e2e_latency_us
                            .saturating_record(payload::now_micros().saturating_sub(sent_us));
                    }
                }
                last_receive = Some(received);
                stats.record(message.partition(), message.offset(), payload.len());
            }
            Some(Err(error)) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                stats.first_errors.note(format_args!("consume: {error}"));
            }
        }
    }
    ConsumerOutcome {
        e2e_latency_us,
        last_receive,
    }
}
