//! The producing side: one librdkafka `ThreadedProducer` per `--producers`,
//! each fed by its own OS thread.
//!
//! `send` only enqueues into librdkafka (it copies the payload), so each
//! producer has as many messages in flight as librdkafka's queue allows and
//! throughput is never limited by waiting for acks. Ack latency is measured
//! in the delivery-report callback, which runs on the producer's polling
//! thread as soon as librdkafka has the broker's answer: the time between
//! handing the message to `send` (first attempt, so time spent blocked on a
//! full local queue counts too) and that callback, on a monotonic clock.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::args::Args;
use crate::cluster::ClientErrors;
use crate::measure::{new_histogram, FirstErrors};
use crate::payload::{self, FillerPool, HEADER_LEN};

/// How long to wait for outstanding deliveries once sending has stopped
/// (longer than `message.timeout.ms`, after which librdkafka fails them).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(90);
/// librdkafka gives up on (and reports as failed) messages older than this.
const MESSAGE_TIMEOUT_MS: &str = "60000";
/// Local send queue per producer (librdkafka's default is 1 GiB). Far more
/// than loopback needs to keep the pipe full, while keeping the backlog (and
/// the drain after `--duration` ends) bounded when the broker is saturated.
const MAX_QUEUED_KBYTES: &str = "65536";
/// Pause before retrying a send rejected because the local queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_micros(200);

/// Live counters shared by all producers; read by the progress display.
#[derive(Default)]
pub struct ProduceStats {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub acked_bytes: AtomicU64,
    pub errors: AtomicU64,
    pub first_errors: FirstErrors,
}

/// What one producer hands back when it is done.
pub struct ProducerOutcome {
    pub ack_latency_us: Histogram<u64>,
    /// Messages still without a delivery report at `DRAIN_TIMEOUT`.
    pub unacked: u64,
    /// When the last message was handed to librdkafka.
    pub sending_ended_at: Instant,
    /// When the last delivery report arrived.
    pub finished_at: Instant,
}

struct BenchProducerContext {
    stats: Arc<ProduceStats>,
    /// Reference point for the monotonic send times carried as delivery
    /// opaques (nanoseconds since `epoch`).
    epoch: Instant,
    ack_latency_us: Mutex<Histogram<u64>>,
    /// When the latest delivery report arrived (nanoseconds since `epoch`;
    /// 0 = none yet).
    last_report_nanos: AtomicU64,
    client_errors: ClientErrors,
}

impl ClientContext for BenchProducerContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.client_errors.report(format_args!("{error}: {reason}"));
    }
}

impl ProducerContext for BenchProducerContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at_nanos: usize) {
        let now = self.epoch.elapsed().as_nanos() as u64;
        self.last_report_nanos.fetch_max(now, Ordering::Relaxed);
        match result {
            Ok(message) => {
                let latency_us = now.saturating_sub(sent_at_nanos as u64) / 1_000;
                self.ack_latency_us
                    .lock()
                    .unwrap()
                    .saturating_record(latency_us);
                self.stats.acked.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .acked_bytes
                    .fetch_add(message.payload_len() as u64, Ordering::Relaxed);
            }
            Err((error, message)) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.stats.first_errors.note(format_args!(
                    "delivery to partition {} failed: {error}",
                    message.partition()
                ));
            }
        }
    }
}

type BenchProducer = ThreadedProducer<BenchProducerContext>;

/// Producers created and connected, ready to start sending.
pub struct Producers {
    clients: Vec<BenchProducer>,
}

impl Producers {
    /// Creates the producer clients and waits until each has fetched the
    /// topic's metadata, so connection setup is not part of the measurement.
    pub fn connect(args: &Args, stats: &Arc<ProduceStats>, epoch: Instant) -> Result<Self> {
        let mut clients = Vec::with_capacity(args.producers);
        for i in 0..args.producers {
            let mut config = ClientConfig::new();
            config
                .set("bootstrap.servers", &args.bootstrap)
                .set("client.id", format!("tideline-bench-producer-{i}"))
                .set("acks", args.acks.as_str())
                .set("compression.type", args.compression.as_str())
                .set("linger.ms", args.linger_ms.to_string())
                .set("batch.size", args.batch_size.to_string())
                .set("message.timeout.ms", MESSAGE_TIMEOUT_MS)
                .set("queue.buffering.max.kbytes", MAX_QUEUED_KBYTES);
            for (key, value) in &args.producer_config {
                config.set(key, value);
            }
            let context = BenchProducerContext {
                stats: Arc::clone(stats),
                epoch,
                ack_latency_us: Mutex::new(new_histogram()),
                last_report_nanos: AtomicU64::new(0),
                client_errors: ClientErrors::new(format!("producer-{i}")),
            };
            let producer = BenchProducer::from_config_and_context(&config, context)
                .with_context(|| format!("creating producer {i}"))?;
            producer
                .client()
                .fetch_metadata(Some(&args.topic), Duration::from_secs(10))
                .with_context(|| format!("producer {i}: fetching topic metadata"))?;
            clients.push(producer);
        }
        Ok(Producers { clients })
    }

    /// Starts one sending thread per producer. `start` is the common origin
    /// for `--duration` and `--rate` pacing.
    pub fn spawn(
        self,
        args: &Args,
        stats: &Arc<ProduceStats>,
        start: Instant,
    ) -> Vec<JoinHandle<ProducerOutcome>> {
        let count = self.clients.len();
        let filler = Arc::new(FillerPool::new(args.message_size));
        self.clients
            .into_iter()
            .enumerate()
            .map(|(i, producer)| {
                let plan = SendPlan {
                    first_index: i as u64,
                    index_stride: count as u64,
                    limit: match args.duration() {
                        Some(d) => Limit::Until(start + d),
                        None => Limit::Count(share(args.messages, count, i)),
                    },
                    rate_per_sec: (args.rate > 0.0).then(|| args.rate / count as f64),
                    topic: args.topic.clone(),
                    message_size: args.message_size,
                    keys: !args.no_keys,
                    start,
                };
                let stats = Arc::clone(stats);
                let filler = Arc::clone(&filler);
                thread::Builder::new()
                    .name(format!("producer-{i}"))
                    .spawn(move || run(producer, plan, &stats, &filler))
                    .expect("spawning producer thread")
            })
            .collect()
    }
}

/// Producer `i`'s share of `total` messages split across `n` producers.
fn share(total: u64, n: usize, i: usize) -> u64 {
    let n = n as u64;
    total / n + u64::from((i as u64) < total % n)
}

enum Limit {
    Count(u64),
    Until(Instant),
}

struct SendPlan {
    /// Message indices are `first_index + k * index_stride`, unique across
    /// producers.
    first_index: u64,
    index_stride: u64,
    limit: Limit,
    rate_per_sec: Option<f64>,
    topic: String,
    message_size: usize,
    keys: bool,
    start: Instant,
}

fn run(
    producer: BenchProducer,
    plan: SendPlan,
    stats: &ProduceStats,
    filler: &FillerPool,
) -> ProducerOutcome {
    let epoch = producer.context().epoch;
    let mut pacer = plan.rate_per_sec.map(|r| Pacer::new(plan.start, r));
    let mut payload = vec![0u8; plan.message_size];
    let mut key = String::new();
    let mut sent = 0u64;

    loop {
        if matches!(plan.limit, Limit::Count(n) if sent >= n) {
            break;
        }
        if let Some(pacer) = pacer.as_mut() {
            pacer.wait_turn();
        }
        if matches!(plan.limit, Limit::Until(deadline) if Instant::now() >= deadline) {
            break;
        }

        let index = plan.first_index + sent * plan.index_stride;
        filler.fill(index, &mut payload[HEADER_LEN..]);
        payload::stamp(&mut payload, payload::now_micros());
        let sent_at_nanos = epoch.elapsed().as_nanos() as usize;
        key.clear();
        let _ = write!(key, "{index}");

        let mut record = BaseRecord::<str, [u8], usize>::with_opaque_to(&plan.topic, sent_at_nanos)
            .payload(&payload);
        if plan.keys {
            record = record.key(key.as_str());
        }
        let enqueued = loop {
            match producer.send(record) {
                Ok(()) => break true,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), rejected)) => {
                    // Backpressure: the local queue is full. A timed run
                    // still ends on time; the message is then not sent.
                    if matches!(plan.limit, Limit::Until(deadline) if Instant::now() >= deadline) {
                        break false;
                    }
                    record = rejected;
                    thread::sleep(QUEUE_FULL_BACKOFF);
                }
                Err((error, _)) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    stats
                        .first_errors
                        .note(format_args!("send rejected locally: {error}"));
                    break true;
                }
            }
        };
        if !enqueued {
            break;
        }
        sent += 1;
        stats.sent.fetch_add(1, Ordering::Relaxed);
    }

    let sending_ended_at = Instant::now();
    let unacked = wait_for_delivery_reports(&producer);
    if unacked > 0 {
        stats.first_errors.note(format_args!(
            "{unacked} messages still unacknowledged {DRAIN_TIMEOUT:?} after sending ended"
        ));
    }
    let context = producer.context();
    let finished_at = match context.last_report_nanos.load(Ordering::Relaxed) {
        0 => sending_ended_at,
        nanos => (epoch + Duration::from_nanos(nanos)).max(sending_ended_at),
    };
    let ack_latency_us = std::mem::replace(
        &mut *context.ack_latency_us.lock().unwrap(),
        new_histogram(),
    );
    ProducerOutcome {
        ack_latency_us,
        unacked,
        sending_ended_at,
        finished_at,
    }
}

/// Waits until librdkafka has delivered (or failed) every message and the
/// polling thread has run every delivery callback; returns how many are still
/// outstanding if that takes longer than `DRAIN_TIMEOUT`.
///
/// `Producer::flush` is not used: with a `ThreadedProducer` it competes with
/// the polling thread for delivery reports and can oversleep by up to 100 ms,
/// which would distort the measured end of the produce phase.
fn wait_for_delivery_reports(producer: &BenchProducer) -> u64 {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let outstanding = producer.in_flight_count().max(0) as u64;
        if outstanding == 0 || Instant::now() >= deadline {
            return outstanding;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Spreads sends evenly at a fixed rate: message `k` is due at
/// `origin + k / rate`. A producer that falls more than `MAX_LAG` behind
/// (it cannot sustain the rate) skips ahead rather than bursting to catch up.
struct Pacer {
    interval: Duration,
    next_due: Instant,
}

impl Pacer {
    const MAX_LAG: Duration = Duration::from_millis(50);

    fn new(origin: Instant, rate_per_sec: f64) -> Self {
        Pacer {
            interval: Duration::from_secs_f64(1.0 / rate_per_sec),
            next_due: origin,
        }
    }

    fn wait_turn(&mut self) {
        let now = Instant::now();
        if self.next_due > now {
            // Coarse sleep; if it overshoots, the following messages are
            // already due and go out back to back, keeping the average rate.
            thread::sleep(self.next_due - now);
        } else if now - self.next_due > Self::MAX_LAG {
            self.next_due = now;
        }
        self.next_due += self.interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for total in [0u64, 1, 7, 1_000_000] {
            for n in 1..6 {
                let sum: u64 = (0..n).map(|i| share(total, n, i)).sum();
                assert_eq!(sum, total);
            }
        }
    }
}
