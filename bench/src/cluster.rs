//! Everything that talks to the cluster outside the measured data path:
//! creating/recreating the topic, reading its partition count and the
//! per-partition offsets the consumers start from and must reach.
//!
//! It also holds [`ClientErrors`], the small helper every librdkafka client
//! in this tool uses to surface client-level errors (e.g. connection refused)
//! on stderr instead of swallowing them.

use std::fmt::Display;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

use crate::args::Args;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for topic creation/deletion to become visible.
const TOPIC_SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Prints the first few client-level errors of one librdkafka client to
/// stderr, then stays quiet.
pub struct ClientErrors {
    label: String,
    printed: AtomicU32,
}

impl ClientErrors {
    const LIMIT: u32 = 5;

    pub fn new(label: impl Into<String>) -> Self {
        ClientErrors {
            label: label.into(),
            printed: AtomicU32::new(0),
        }
    }

    pub fn report(&self, error: impl Display) {
        let n = self.printed.fetch_add(1, Ordering::Relaxed);
        if n < Self::LIMIT {
            eprintln!("\n[{}] client error: {error}", self.label);
        } else if n == Self::LIMIT {
            eprintln!("\n[{}] further client errors suppressed", self.label);
        }
    }
}

/// Client context for the admin/metadata client.
pub struct AdminContext {
    errors: ClientErrors,
}

impl ClientContext for AdminContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.report(format_args!("{error}: {reason}"));
    }
}

pub type Admin = AdminClient<AdminContext>;

pub fn admin_client(args: &Args) -> Result<Admin> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("client.id", "tideline-bench-admin")
        // librdkafka's admin client is a producer underneath, which by
        // default asks the broker to auto-create topics it looks up.
        .set("allow.auto.create.topics", "false");
    let context = AdminContext {
        errors: ClientErrors::new("admin"),
    };
    AdminClient::from_config_and_context(&config, context).context("creating admin client")
}

/// Partition count of `topic`, or `None` if the broker does not know it.
pub fn partition_count(admin: &Admin, topic: &str) -> Result<Option<i32>> {
    // All-topics metadata never triggers broker-side auto-creation.
    let metadata = admin
        .inner()
        .fetch_metadata(None, REQUEST_TIMEOUT)
        .with_context(|| format!("fetching metadata from the broker for topic `{topic}`"))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error() {
        None => {}
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => return Ok(None),
        // Reported while a new topic's partitions are still being set up.
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE) => return Ok(None),
        Some(e) => bail!(
            "metadata error for topic `{topic}`: {}",
            RDKafkaErrorCode::from(e)
        ),
    }
    if t.partitions().is_empty() {
        return Ok(None);
    }
    let all_led = t.partitions().iter().all(|p| p.leader() >= 0);
    if !all_led {
        return Ok(None);
    }
    Ok(Some(t.partitions().len() as i32))
}

/// Makes sure the benchmark topic exists (creating or recreating it as asked)
/// and returns its partition count.
pub fn ensure_topic(admin: &Admin, args: &Args) -> Result<i32> {
    let topic = args.topic.as_str();
    let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));

    if args.recreate {
        delete_topic(admin, topic)?;
    } else if let Some(n) = partition_count(admin, topic)? {
        if n != args.partitions {
            eprintln!(
                "note: topic `{topic}` already exists with {n} partitions (not {}); \
                 using it as is (pass --recreate to recreate it)",
                args.partitions
            );
        }
        return Ok(n);
    }

    let mut new_topic = NewTopic::new(
        topic,
        args.partitions,
        TopicReplication::Fixed(args.replication_factor),
    );
    for (key, value) in &args.topic_config {
        new_topic = new_topic.set(key, value);
    }
    let deadline = Instant::now() + TOPIC_SETTLE_TIMEOUT;
    loop {
        let results = block_on(admin.create_topics([&new_topic], &opts))
            .context("creating topic (is the broker running?)")?;
        match results.into_iter().next() {
            Some(Ok(_)) => break,
            // Created concurrently by someone else: fine unless we just
            // deleted it, in which case the deletion may still be in progress.
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) if !args.recreate => break,
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(200));
            }
            Some(Err((name, code))) => bail!("creating topic `{name}` failed: {code}"),
            None => bail!("broker returned no result for CreateTopics"),
        }
    }

    let mut count = None;
    wait_until(|| {
        count = partition_count(admin, topic)?;
        Ok(count.is_some())
    })
    .context("waiting for the new topic to appear in metadata with leaders")?;
    count.ok_or_else(|| anyhow!("topic `{topic}` has no partitions"))
}

/// Deletes `topic` (if it exists) and waits until metadata no longer lists it.
pub fn delete_topic(admin: &Admin, topic: &str) -> Result<()> {
    let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = block_on(admin.delete_topics(&[topic], &opts)).context("deleting topic")?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((name, code)) => bail!("deleting topic `{name}` failed: {code}"),
        }
    }
    wait_until(|| Ok(partition_count(admin, topic)?.is_none()))
        .context("waiting for the deleted topic to disappear from metadata")
}

/// Partition count of a topic that must already exist (consume mode).
pub fn existing_topic(admin: &Admin, topic: &str) -> Result<i32> {
    partition_count(admin, topic)?.ok_or_else(|| {
        anyhow!("topic `{topic}` does not exist (or has partitions without a leader)")
    })
}

/// `(low, high)` watermark offsets of every partition, indexed by partition.
pub fn watermarks(admin: &Admin, topic: &str, partitions: i32) -> Result<Vec<(i64, i64)>> {
    (0..partitions)
        .map(|p| {
            // A new topic's leader may not have taken its role yet.
            let deadline = Instant::now() + TOPIC_SETTLE_TIMEOUT;
            loop {
                match admin.inner().fetch_watermarks(topic, p, REQUEST_TIMEOUT) {
                    Err(KafkaError::MetadataFetch(
                        RDKafkaErrorCode::NotLeaderForPartition
                        | RDKafkaErrorCode::LeaderNotAvailable
                        | RDKafkaErrorCode::UnknownTopicOrPartition,
                    )) if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
                    result => {
                        return result
                            .with_context(|| format!("fetching watermarks of {topic}/{p}"))
                    }
                }
            }
        })
        .collect()
}

/// High watermark (log end offset) of every partition.
pub fn end_offsets(admin: &Admin, topic: &str, partitions: i32) -> Result<Vec<i64>> {
    Ok(watermarks(admin, topic, partitions)?
        .into_iter()
        .map(|(_, high)| high)
        .collect())
}

fn wait_until(mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + TOPIC_SETTLE_TIMEOUT;
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {TOPIC_SETTLE_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(200));
    }
}
