//! rdkafka (librdkafka) helpers: configuration builders, a producer that
//! records every acknowledgement, and a consumer loop that reads exact
//! offset ranges.
//!
//! The tests' claims are about what the broker acknowledged and what it
//! later serves, so the helpers keep precise books:
//!
//! - [`TestProducer`] wraps librdkafka's threaded producer (many messages in
//!   flight, client-side batching with `linger.ms`, the same producer
//!   machinery `FutureProducer` uses) and records, for every record sent,
//!   the partition and offset of its delivery report or its error.
//! - [`consume_range`] assigns partitions at explicit offsets (no consumer
//!   group rebalancing involved) and reads until each partition reaches a
//!   target offset, failing with the progress made and the client errors
//!   seen if it does not get there in time.
//!
//! librdkafka's own log lines are only printed when `TIDELINE_CLIENT_LOG` is
//! set: they come from librdkafka's threads, which the test runner's output
//! capture does not cover.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::data::TestRecord;

/// Runs a future to completion on a shared multi-threaded tokio runtime.
/// Tests are plain synchronous `#[test]`s; the async rdkafka APIs (admin)
/// are driven through this.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
    .block_on(fut)
}

fn client_log_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("TIDELINE_CLIENT_LOG").is_some())
}

/// A client context that optionally prints librdkafka's warnings and errors
/// (see the module docs).
#[derive(Clone)]
pub struct LoggingContext {
    pub name: String,
}

impl ClientContext for LoggingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if client_log_enabled() && (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            eprintln!("[{} {level:?}] {fac}: {log_message}", self.name);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if client_log_enabled() {
            eprintln!("[{} error] {error}: {reason}", self.name);
        }
    }
}

impl ConsumerContext for LoggingContext {}

fn unique_suffix() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Producer settings for throughput: lots of messages in flight and
/// client-side batching, so batches on the wire hold many records.
pub fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set(
            "client.id",
            format!("tideline-test-producer-{}", unique_suffix()),
        )
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "120000")
        .set("request.timeout.ms", "30000");
    c
}

/// Producer settings for tests that must not lose or duplicate anything:
/// `acks=all`, idempotence, and quick retries and metadata refreshes so a
/// leader change is noticed within a second.
pub fn reliable_producer_config(bootstrap: &str) -> ClientConfig {
    let mut c = producer_config(bootstrap);
    c.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("retry.backoff.ms", "50")
        .set("retry.backoff.max.ms", "500")
        .set("topic.metadata.refresh.interval.ms", "500");
    c
}

/// Consumer settings for reading by explicit assignment: a throwaway group
/// id (librdkafka requires one to assign), no offset commits, CRC checking
/// on (so a broker serving corrupt batches is caught), and no EOF events.
pub fn consumer_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set(
            "client.id",
            format!("tideline-test-consumer-{}", unique_suffix()),
        )
        .set("group.id", format!("tideline-test-{}", unique_suffix()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("check.crcs", "true")
        .set("allow.auto.create.topics", "false");
    c
}

/// An admin client that never asks the broker to auto-create topics.
pub fn admin_client(bootstrap: &str) -> AdminClient<LoggingContext> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set(
            "client.id",
            format!("tideline-test-admin-{}", unique_suffix()),
        )
        .set("allow.auto.create.topics", "false");
    c.create_with_context(LoggingContext {
        name: "admin".into(),
    })
    .expect("create admin client")
}

/// Creates a consumer from `config`.
pub fn consumer(config: &ClientConfig) -> BaseConsumer<LoggingContext> {
    config
        .create_with_context(LoggingContext {
            name: "consumer".into(),
        })
        .expect("create consumer")
}

/// Creates `topic` (replication factor 1) with topic-level `configs`, and
/// waits until its metadata shows every partition with a leader.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    create_replicated_topic(bootstrap, topic, partitions, 1, configs)
}

/// [`create_topic`] with `replication_factor` replicas per partition.
pub fn create_replicated_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(&str, &str)],
) {
    let mut new_topic = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(replication_factor),
    );
    for (k, v) in configs {
        new_topic = new_topic.set(k, v);
    }
    create(bootstrap, &new_topic);
}

/// A one-partition topic whose replicas are exactly `replicas` (the first
/// is the preferred leader), so a test knows which brokers hold it.
pub fn create_assigned_topic(bootstrap: &str, topic: &str, replicas: &[i32]) {
    let assignment = [replicas];
    create(
        bootstrap,
        &NewTopic::new(topic, 1, TopicReplication::Variable(&assignment)),
    );
}

/// CreateTopics, then waits until every partition has a leader.
fn create(bootstrap: &str, new_topic: &NewTopic<'_>) {
    let admin = admin_client(bootstrap);
    let topic = new_topic.name;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = block_on(admin.create_topics([new_topic], &opts))
        .unwrap_or_else(|e| panic!("CreateTopics {topic}: {e}"));
    for r in results {
        if let Err((name, code)) = r {
            panic!("CreateTopics {name}: {code:?}");
        }
    }
    wait_for_topic(bootstrap, topic, new_topic.num_partitions);
}

/// The broker leading the `__transaction_state` partition of `txn_id`
/// (Kafka's `abs(javaHashCode(id)) % partitions`): its coordinator.
pub fn coordinator_of(bootstrap: &str, txn_id: &str) -> i32 {
    let hash = txn_id
        .encode_utf16()
        .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(u as i32));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    let c = consumer(&consumer_config(bootstrap));
    let md = c
        .fetch_metadata(Some("__transaction_state"), Duration::from_secs(10))
        .expect("metadata");
    let partitions = md.topics()[0].partitions();
    let p = abs % partitions.len() as i32;
    partitions[p as usize].leader()
}

/// The leader Metadata names for a partition (-1: none).
pub fn leader_of(bootstrap: &str, topic: &str, partition: i32) -> i32 {
    let c = consumer(&consumer_config(bootstrap));
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    md.topics()[0].partitions()[partition as usize].leader()
}

/// Waits until Metadata lists `topic` with `partitions` partitions, each
/// with a leader.
pub fn wait_for_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let c = consumer(&consumer_config(bootstrap));
    crate::wait_for(
        &format!("metadata for {topic} with {partitions} partitions, each with a leader"),
        Duration::from_secs(30),
        || {
            let md = c.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
            let t = md.topics().iter().find(|t| t.name() == topic)?;
            (t.error().is_none()
                && t.partitions().len() == partitions as usize
                && t.partitions().iter().all(|p| p.leader() >= 0))
            .then_some(())
        },
    );
}

/// `(low, high)` watermarks (log start offset, high watermark) of one
/// partition, via ListOffsets.
pub fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    consumer(&consumer_config(bootstrap))
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("fetch_watermarks {topic}/{partition}: {e}"))
}

/// Where a record was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

type Outcome = Option<Result<Delivered, KafkaError>>;

/// Shared books of a [`TestProducer`]: one slot per record sent.
#[derive(Default)]
struct DeliveryBook {
    outcomes: Mutex<Vec<Outcome>>,
    delivered: AtomicUsize,
    failed: AtomicUsize,
}

/// Producer context that fills in the [`DeliveryBook`].
pub struct RecordingContext {
    book: Arc<DeliveryBook>,
    log: LoggingContext,
}

impl ClientContext for RecordingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.log.log(level, fac, log_message)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason)
    }
}

impl ProducerContext for RecordingContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        let outcome = match result {
            Ok(m) => {
                self.book.delivered.fetch_add(1, Ordering::SeqCst);
                Ok(Delivered {
                    partition: m.partition(),
                    offset: m.offset(),
                })
            }
            Err((e, _)) => {
                self.book.failed.fetch_add(1, Ordering::SeqCst);
                Err(e.clone())
            }
        };
        self.book.outcomes.lock().unwrap()[id] = Some(outcome);
    }
}

/// A producer that remembers the delivery outcome of every record it sent,
/// indexed by the id [`TestProducer::send`] returned (0, 1, 2, ...).
pub struct TestProducer {
    producer: ThreadedProducer<RecordingContext>,
    book: Arc<DeliveryBook>,
}

impl TestProducer {
    pub fn new(config: &ClientConfig) -> TestProducer {
        let book = Arc::new(DeliveryBook::default());
        let producer = config
            .create_with_context(RecordingContext {
                book: book.clone(),
                log: LoggingContext {
                    name: "producer".into(),
                },
            })
            .expect("create producer");
        TestProducer { producer, book }
    }

    /// Enqueues one record (waiting while librdkafka's queue is full) and
    /// returns its id. `partition: None` lets the partitioner choose.
    pub fn send(&self, topic: &str, partition: Option<i32>, rec: &TestRecord) -> usize {
        let id = {
            let mut outcomes = self.book.outcomes.lock().unwrap();
            outcomes.push(None);
            outcomes.len() - 1
        };
        let mut record: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(topic, id);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(k) = &rec.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &rec.value {
            record = record.payload(v.as_slice());
        }
        if let Some(ts) = rec.timestamp {
            record = record.timestamp(ts);
        }
        if !rec.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(rec.headers.len());
            for (key, value) in &rec.headers {
                headers = headers.insert(Header {
                    key,
                    value: value.as_deref(),
                });
            }
            record = record.headers(headers);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return id,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => {
                    self.book.failed.fetch_add(1, Ordering::SeqCst);
                    self.book.outcomes.lock().unwrap()[id] = Some(Err(e));
                    return id;
                }
            }
        }
    }

    /// Records sent so far.
    pub fn sent(&self) -> usize {
        self.book.outcomes.lock().unwrap().len()
    }

    /// Records acknowledged so far.
    pub fn delivered(&self) -> usize {
        self.book.delivered.load(Ordering::SeqCst)
    }

    /// Records that failed so far.
    pub fn failed(&self) -> usize {
        self.book.failed.load(Ordering::SeqCst)
    }

    /// Sent but neither acknowledged nor failed yet.
    pub fn outstanding(&self) -> usize {
        self.sent() - self.delivered() - self.failed()
    }

    /// Waits up to `timeout` for every outstanding record to be delivered
    /// or to fail.
    pub fn flush(&self, timeout: Duration) -> bool {
        let _ = self.producer.flush(timeout);
        // The final delivery callbacks run on the polling thread; give them
        // a moment to land in the book.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.outstanding() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.outstanding() == 0
    }

    /// A snapshot of every record's outcome (`None` = still outstanding).
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.book.outcomes.lock().unwrap().clone()
    }

    /// Flushes and asserts every record was delivered; returns where each
    /// one went, by id.
    pub fn expect_all_delivered(&self, timeout: Duration) -> Vec<Delivered> {
        let flushed = self.flush(timeout);
        let outcomes = self.outcomes();
        let mut errors: BTreeMap<String, usize> = BTreeMap::new();
        let mut delivered = Vec::with_capacity(outcomes.len());
        for o in &outcomes {
            match o {
                Some(Ok(d)) => delivered.push(*d),
                Some(Err(e)) => *errors.entry(e.to_string()).or_default() += 1,
                None => *errors.entry("never completed".into()).or_default() += 1,
            }
        }
        assert!(
            errors.is_empty() && flushed,
            "{} of {} records were not delivered (flushed: {flushed}); errors: {errors:?}",
            outcomes.len() - delivered.len(),
            outcomes.len()
        );
        delivered
    }
}

/// Sends `records` to `topic` (partitioner's choice) and asserts that all
/// were acknowledged; returns each record's delivery, in `records` order.
pub fn produce_all(config: &ClientConfig, topic: &str, records: &[TestRecord]) -> Vec<Delivered> {
    let producer = TestProducer::new(config);
    for r in records {
        producer.send(topic, None, r);
    }
    producer.expect_all_delivered(Duration::from_secs(180))
}

/// Produces `n` records made by `make(i)`; returns them with their deliveries.
pub fn produce_n(
    bootstrap: &str,
    topic: &str,
    n: usize,
    make: impl Fn(u64) -> TestRecord,
) -> (Vec<TestRecord>, Vec<Delivered>) {
    let records: Vec<TestRecord> = (0..n as u64).map(make).collect();
    let delivered = produce_all(&producer_config(bootstrap), topic, &records);
    (records, delivered)
}

/// A record as consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl ConsumedRecord {
    fn from_message<M: Message>(m: &M) -> ConsumedRecord {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        ConsumedRecord {
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    /// Key, value and headers as a [`TestRecord`] (timestamp left out), for
    /// comparing with what was sent.
    pub fn to_test_record(&self) -> TestRecord {
        TestRecord {
            key: self.key.clone(),
            value: self.value.clone(),
            headers: self.headers.clone(),
            timestamp: None,
        }
    }
}

/// Assigns `consumer` to `topic` partitions at the given offsets.
pub fn assign(consumer: &BaseConsumer<LoggingContext>, topic: &str, starts: &[(i32, Offset)]) {
    let mut tpl = TopicPartitionList::new();
    for (p, off) in starts {
        tpl.add_partition_offset(topic, *p, *off)
            .expect("add_partition_offset");
    }
    consumer.assign(&tpl).expect("assign");
}

/// Reads every partition in `until` from the beginning up to (excluding)
/// its offset; see [`consume_range`].
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    until: &[(i32, i64)],
) -> BTreeMap<i32, Vec<ConsumedRecord>> {
    let starts: Vec<(i32, Offset)> = until.iter().map(|(p, _)| (*p, Offset::Beginning)).collect();
    consume_range(
        &consumer_config(bootstrap),
        topic,
        &starts,
        until,
        Duration::from_secs(180),
    )
}

/// Assigns the partitions at `starts` and polls until every partition in
/// `until` has delivered the record just before its offset (records at or
/// beyond it are dropped). Per partition the records come back in the
/// order received; the function checks offsets strictly increase.
///
/// Panics on timeout with the progress made and the client errors seen.
pub fn consume_range(
    config: &ClientConfig,
    topic: &str,
    starts: &[(i32, Offset)],
    until: &[(i32, i64)],
    timeout: Duration,
) -> BTreeMap<i32, Vec<ConsumedRecord>> {
    let c = consumer(config);
    assign(&c, topic, starts);
    let mut out: BTreeMap<i32, Vec<ConsumedRecord>> =
        until.iter().map(|(p, _)| (*p, Vec::new())).collect();
    let targets: BTreeMap<i32, i64> = until.iter().copied().collect();
    let mut next: BTreeMap<i32, i64> = until.iter().map(|(p, _)| (*p, -1)).collect();
    let mut errors: Vec<String> = Vec::new();
    let done = |next: &BTreeMap<i32, i64>| targets.iter().all(|(p, end)| next[p] >= *end);
    let deadline = Instant::now() + timeout;
    while !done(&next) {
        if Instant::now() > deadline {
            panic!(
                "consume {topic}: timed out after {timeout:?}; next offset per partition \
                 {next:?}, wanted {targets:?}; client errors: {errors:?}"
            );
        }
        match c.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) if errors.len() < 50 => errors.push(e.to_string()),
            Some(Err(_)) => {}
            Some(Ok(m)) => {
                let p = m.partition();
                let Some(end) = targets.get(&p) else { continue };
                let prev = next[&p];
                assert!(
                    m.offset() >= prev,
                    "{topic}/{p}: offset went backwards: got {} after next={prev}",
                    m.offset()
                );
                next.insert(p, m.offset() + 1);
                if m.offset() < *end {
                    out.get_mut(&p)
                        .unwrap()
                        .push(ConsumedRecord::from_message(&m));
                }
            }
        }
    }
    out
}

/// Polls `consumer` for up to `timeout` and returns the first message or
/// error it produces.
pub fn poll_one(
    consumer: &BaseConsumer<LoggingContext>,
    timeout: Duration,
) -> Option<Result<ConsumedRecord, KafkaError>> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Ok(m)) => return Some(Ok(ConsumedRecord::from_message(&m))),
            Some(Err(e)) => return Some(Err(e)),
        }
    }
    None
}

/// A topic's partition count and topic-level overrides (sorted) as
/// rdkafka's admin client sees them; `None` if it does not exist.
pub fn topic_as_seen_by_rdkafka(
    bootstrap: &str,
    topic: &str,
) -> Option<(usize, Vec<(String, String)>)> {
    let admin = admin_client(bootstrap);
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .ok()?;
    let t = metadata.topics().first()?;
    if t.error().is_some() {
        return None;
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let described =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &opts)).ok()?;
    let resource = described.into_iter().next()?.ok()?;
    let mut overrides: Vec<(String, String)> = resource
        .entries
        .into_iter()
        .filter(|e| e.source == ConfigSource::DynamicTopic)
        .filter_map(|e| Some((e.name, e.value?)))
        .collect();
    overrides.sort();
    Some((t.partitions().len(), overrides))
}

/// Every record a consumer with `isolation` sees in the partitions, read
/// from the start up to the end the client reports (the last stable offset
/// for read_committed), as (partition, value).
pub fn visible(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
) -> Vec<(i32, String)> {
    let mut config = consumer_config(bootstrap);
    config
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true");
    let c = consumer(&config);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut at_end = std::collections::HashSet::new();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while at_end.len() < partitions as usize {
        assert!(
            Instant::now() < deadline,
            "{topic}: no end of partition reached ({isolation}); seen {seen:?}"
        );
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                seen.push((m.partition(), value));
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("{topic}: consumer error {e}"),
            None => {}
        }
    }
    seen.sort();
    seen
}
