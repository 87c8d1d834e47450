//! `--mode reassign`: times a partition reassignment. Every partition of
//! the topic is moved to `--reassign-to` with AlterPartitionReassignments;
//! the run ends when ListPartitionReassignments no longer lists any of
//! them. With `--throttle`, `leader.replication.throttled.rate` is set on
//! every broker for the move and removed afterwards.
//!
//! librdkafka has no client for these two APIs, so they go over the
//! broker crate's Kafka protocol client.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ListPartitionReassignmentsRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};
use tideline_protocol::KafkaClient;

use crate::args::Args;
use crate::cluster::Admin;

/// What a reassignment run measured.
#[derive(Debug, Clone)]
pub struct ReassignReport {
    pub target: Vec<i32>,
    pub partitions: i32,
    pub throttle: Option<u64>,
    pub elapsed: Duration,
}

pub fn run(args: &Args, admin: &Admin, partitions: i32) -> Result<ReassignReport> {
    let target = args.reassign_to.clone();
    if target.is_empty() {
        bail!("--mode reassign needs --reassign-to BROKER[,BROKER...]");
    }
    let brokers = broker_ids(admin)?;
    if let Some(rate) = args.throttle {
        set_throttle(admin, &brokers, Some(rate))?;
    }
    let address = args
        .bootstrap
        .split(',')
        .next()
        .context("--bootstrap is empty")?
        .to_string();
    let mut conn = Connection::open(&address)?;
    let mut topic = ReassignableTopic::default();
    topic.name = TopicName(StrBytes::from_string(args.topic.clone()));
    for index in 0..partitions {
        let mut p = ReassignablePartition::default();
        p.partition_index = index;
        p.replicas = Some(target.iter().copied().map(BrokerId).collect());
        topic.partitions.push(p);
    }
    let mut request = AlterPartitionReassignmentsRequest::default();
    request.timeout_ms = 60_000;
    request.topics = vec![topic];
    let started = Instant::now();
    let response = conn.send(&request, 0)?;
    if response.error_code != 0 {
        bail!(
            "AlterPartitionReassignments failed with error {}",
            response.error_code
        );
    }
    for p in response.responses.iter().flat_map(|t| t.partitions.iter()) {
        if p.error_code != 0 {
            bail!(
                "partition {}: error {} {:?}",
                p.partition_index,
                p.error_code,
                p.error_message
            );
        }
    }
    eprintln!(
        "reassigning {partitions} partition(s) of {} to {target:?}",
        args.topic
    );
    loop {
        let listed = conn.send(&ListPartitionReassignmentsRequest::default(), 0)?;
        let moving: usize = listed
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == args.topic)
            .map(|t| t.partitions.len())
            .sum();
        if moving == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = started.elapsed();
    if args.throttle.is_some() {
        set_throttle(admin, &brokers, None)?;
    }
    Ok(ReassignReport {
        target,
        partitions,
        throttle: args.throttle,
        elapsed,
    })
}

fn broker_ids(admin: &Admin) -> Result<Vec<i32>> {
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .context("Metadata")?;
    Ok(metadata.brokers().iter().map(|b| b.id()).collect())
}

/// Sets (or with `None` removes) the leader throttle on every broker.
fn set_throttle(admin: &Admin, brokers: &[i32], rate: Option<u64>) -> Result<()> {
    let rate = rate.map(|r| r.to_string());
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    // librdkafka sends a broker's config to that broker: one call each.
    for id in brokers {
        let mut config = AlterConfig::new(ResourceSpecifier::Broker(*id));
        if let Some(rate) = &rate {
            config = config.set("leader.replication.throttled.rate", rate);
        }
        for result in futures::executor::block_on(admin.alter_configs(&[config], &opts))? {
            if let Err((resource, error)) = result {
                bail!("setting the throttle on {resource:?}: {error}");
            }
        }
    }
    Ok(())
}

/// A Kafka connection for these two APIs: the broker crate's protocol
/// client, driven from this synchronous tool by a small runtime.
struct Connection {
    runtime: tokio::runtime::Runtime,
    client: KafkaClient,
}

impl Connection {
    fn open(address: &str) -> Result<Connection> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = runtime
            .block_on(KafkaClient::connect(
                address,
                "tideline-bench",
                Duration::from_secs(10),
            ))
            .with_context(|| format!("connect {address}"))?;
        Ok(Connection { runtime, client })
    }

    fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        self.runtime
            .block_on(self.client.send(request, version, Duration::from_secs(90)))
    }
}
