//! `--mode eos`: an exactly-once pipeline, as Kafka Streams runs one.
//!
//! 1. `--topic` (the input) and `<topic>-eos-out` are recreated, and the
//!    input is filled with `--messages` records of `--message-size` bytes
//!    (not timed).
//! 2. One read_committed consumer and one transactional producer copy the
//!    input to the output, `--records-per-txn` records per transaction, the
//!    consumer's offsets sent to each transaction. Reported: records/s,
//!    transactions/s, and the latency of `commit_transaction` (which also
//!    waits for the transaction's records to be acknowledged) at p50, p99
//!    and p99.9.
//! 3. The output, which now holds a marker per transaction and partition,
//!    is read from the start with read_uncommitted and then read_committed,
//!    timed up to the end of every partition: the cost of the last stable
//!    offset and the aborted-transaction lists.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::args::Args;
use crate::cluster;
use crate::measure::new_histogram;

const TIMEOUT: Duration = Duration::from_secs(60);

pub struct EosReport {
    pub records: u64,
    pub transactions: u64,
    pub elapsed: Duration,
    pub commit_latency_us: hdrhistogram::Histogram<u64>,
    /// (isolation level, MB/s, seconds) of reading the output back.
    pub reads: Vec<(&'static str, f64, f64)>,
}

impl EosReport {
    pub fn print(&self, args: &Args) {
        let secs = self.elapsed.as_secs_f64();
        let ms = |q: f64| self.commit_latency_us.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "eos pipeline: {} records in {} transactions ({} per transaction, {} B each) in {secs:.2} s",
            self.records, self.transactions, args.records_per_txn, args.message_size
        );
        println!(
            "  {:.0} records/s, {:.1} transactions/s",
            self.records as f64 / secs,
            self.transactions as f64 / secs
        );
        println!(
            "  commit latency ms: p50 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}",
            ms(0.5),
            ms(0.99),
            ms(0.999),
            self.commit_latency_us.max() as f64 / 1000.0
        );
        for (isolation, mb_s, secs) in &self.reads {
            println!("  read back with {isolation}: {mb_s:.1} MB/s ({secs:.2} s)");
        }
    }
}

pub fn run(args: &Args, admin: &cluster::Admin) -> Result<EosReport> {
    let output = format!("{}-eos-out", args.topic);
    let mut topic_args = args.clone();
    topic_args.recreate = true;
    let partitions = cluster::ensure_topic(admin, &topic_args)?;
    topic_args.topic = output.clone();
    cluster::ensure_topic(admin, &topic_args)?;
    fill(args)?;
    eprintln!("input filled; copying in transactions");

    let run_id = std::process::id();
    let consumer: BaseConsumer = client_config(args)
        .set("group.id", format!("tideline-bench-eos-{run_id}"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the consumer")?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(&args.topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut producer_config = client_config(args);
    producer_config
        .set("transactional.id", format!("tideline-bench-eos-{run_id}"))
        .set("linger.ms", args.linger_ms.to_string());
    for (k, v) in &args.producer_config {
        producer_config.set(k, v);
    }
    // A BaseProducer, polled here (see `wait_for_deliveries`).
    let producer: BaseProducer<DefaultProducerContext> = producer_config
        .create()
        .context("creating the transactional producer")?;
    producer.init_transactions(TIMEOUT)?;

    let mut commit_latency_us = new_histogram();
    let (mut records, mut transactions) = (0u64, 0u64);
    let start = Instant::now();
    while records < args.messages {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let mut batch = 0;
        producer.begin_transaction()?;
        let deadline = Instant::now() + TIMEOUT;
        while batch < args.records_per_txn && records + batch < args.messages {
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                if Instant::now() > deadline {
                    bail!("no input for {TIMEOUT:?} after {records} records");
                }
                continue;
            };
            let message = message?;
            let mut record = BaseRecord::<[u8], [u8]>::to(&output)
                .partition(message.partition())
                .payload(message.payload().unwrap_or_default());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            send(&producer, record)?;
            next.insert(message.partition(), message.offset() + 1);
            batch += 1;
        }
        let mut offsets = TopicPartitionList::new();
        for (p, o) in &next {
            offsets.add_partition_offset(&args.topic, *p, Offset::Offset(*o))?;
        }
        let metadata = consumer
            .group_metadata()
            .context("the consumer has no group metadata")?;
        producer.send_offsets_to_transaction(&offsets, &metadata, TIMEOUT)?;
        let committing = Instant::now();
        wait_for_deliveries(&producer)?;
        producer.commit_transaction(TIMEOUT)?;
        commit_latency_us.record(committing.elapsed().as_micros() as u64)?;
        records += batch;
        transactions += 1;
    }
    let elapsed = start.elapsed();
    let reads = ["read_uncommitted", "read_committed"]
        .into_iter()
        .map(|isolation| read_back(args, &output, partitions, isolation))
        .collect::<Result<Vec<_>>>()?;
    Ok(EosReport {
        records,
        transactions,
        elapsed,
        commit_latency_us,
        reads,
    })
}

fn client_config(args: &Args) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &args.bootstrap);
    config
}

/// Queues `record`, waiting while librdkafka's queue is full.
fn send(
    producer: &BaseProducer<DefaultProducerContext>,
    mut record: BaseRecord<'_, [u8], [u8]>,
) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => {
                producer.poll(Duration::ZERO);
                return Ok(());
            }
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                r,
            )) => {
                record = r;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// Waits until every record sent has its delivery report. rust-rdkafka's
/// `flush`, which its `commit_transaction` calls first, polls in slices of
/// up to 100 ms that always run to their end, so it would add up to 100 ms
/// to every commit; polling 1 ms at a time keeps the wait to what the
/// broker takes, and `commit_transaction` then finds nothing to flush.
fn wait_for_deliveries(producer: &BaseProducer<DefaultProducerContext>) -> Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    while producer.in_flight_count() > 0 {
        if Instant::now() > deadline {
            bail!("records still undelivered after {TIMEOUT:?}");
        }
        producer.poll(Duration::from_millis(1));
    }
    Ok(())
}

/// Writes the input: `--messages` keyed records of `--message-size` bytes.
fn fill(args: &Args) -> Result<()> {
    let producer: BaseProducer<DefaultProducerContext> = client_config(args)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()?;
    let value = vec![b'x'; args.message_size];
    for i in 0..args.messages {
        let key = format!("k{i}");
        send(
            &producer,
            BaseRecord::to(&args.topic)
                .key(key.as_bytes())
                .payload(&value[..]),
        )?;
    }
    producer.flush(TIMEOUT)?;
    Ok(())
}

/// Reads `topic` from the start to the end of every partition with
/// `isolation`; returns (isolation, payload MB/s, seconds).
fn read_back(
    args: &Args,
    topic: &str,
    partitions: i32,
    isolation: &'static str,
) -> Result<(&'static str, f64, f64)> {
    let consumer: BaseConsumer = client_config(args)
        .set(
            "group.id",
            format!("tideline-bench-eos-read-{}", std::process::id()),
        )
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let start = Instant::now();
    let mut at_end = std::collections::HashSet::new();
    let mut bytes = 0u64;
    while at_end.len() < partitions as usize {
        if start.elapsed() > TIMEOUT * 5 {
            bail!("{isolation}: the end of {topic} was not reached");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                bytes += m.payload_len() as u64;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((isolation, bytes as f64 / 1e6 / secs, secs))
}
