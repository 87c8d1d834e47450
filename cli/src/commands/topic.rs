//! `tideline topic`: list, describe, create, delete, add-partitions,
//! alter-config, trim (produce and consume are their own modules).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tideline_protocol::configs;

use super::{consume, produce};
use crate::admin::configs::{Change, ConfigEntry, Resource};
use crate::admin::metadata::TopicInfo;
use crate::admin::offsets::{leaders, TopicPartition};
use crate::admin::topics::{NewTopic, TOPIC_ALREADY_EXISTS};
use crate::args::{TopicCommand, TrimArgs};
use crate::error::{CliError, Result, EXIT_OK};
use crate::output::{emit, human_bytes, ids, Table};
use crate::properties::split_pair;
use crate::Context;

pub async fn run(context: &mut Context, command: TopicCommand) -> Result<i32> {
    match command {
        TopicCommand::List { internal } => list(context, internal).await,
        TopicCommand::Describe { topics } => describe(context, &topics).await,
        TopicCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => {
            let new = NewTopic {
                name: topic,
                partitions: partitions.unwrap_or(-1),
                replication_factor: replication_factor.unwrap_or(-1),
                configs: topic_configs(&configs, "-c")?,
            };
            create(context, new, if_not_exists).await
        }
        TopicCommand::Delete { topics } => delete(context, &topics).await,
        TopicCommand::AddPartitions { topic, num, total } => {
            add_partitions(context, &topic, num, total).await
        }
        TopicCommand::AlterConfig { topic, set, delete } => {
            alter_config(context, &topic, &set, &delete).await
        }
        TopicCommand::Trim(args) => trim(context, args).await,
        TopicCommand::Produce(args) => produce::run(context, args).await,
        TopicCommand::Consume(args) => consume::run(context, args).await,
    }
}

/// `key=value` pairs checked against Kafka's topic config keys before
/// anything is sent.
fn topic_configs(pairs: &[String], flag: &str) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|pair| {
            let (key, value) = split_pair(pair, flag)?;
            check_topic_key(&key)?;
            Ok((key, value))
        })
        .collect()
}

fn check_topic_key(key: &str) -> Result<()> {
    if configs::topic_def(key).is_none() {
        return Err(CliError::usage(
            format!("{key} is not a topic config"),
            "see the topic configs in Kafka's configuration reference (retention.ms, cleanup.policy, ...)",
        ));
    }
    Ok(())
}

#[derive(Serialize)]
struct ListedTopic {
    name: String,
    partitions: usize,
    replication_factor: usize,
    internal: bool,
}

async fn list(context: &mut Context, internal: bool) -> Result<i32> {
    let metadata = context.admin().await?.metadata(None).await?;
    let topics: Vec<ListedTopic> = metadata
        .topics
        .iter()
        .filter(|t| internal || !t.internal)
        .map(|t| ListedTopic {
            name: t.name.clone(),
            partitions: t.partitions.len(),
            replication_factor: t.replication_factor(),
            internal: t.internal,
        })
        .collect();
    emit(&context.format, &topics, || {
        let mut table = Table::new(&["NAME", "PARTITIONS", "REPLICAS"]);
        for t in &topics {
            table.row(vec![
                t.name.clone(),
                t.partitions.to_string(),
                t.replication_factor.to_string(),
            ]);
        }
        table.render()
    })?;
    Ok(EXIT_OK)
}

#[derive(Serialize)]
struct PartitionDescription {
    partition: i32,
    leader: i32,
    leader_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    offline_replicas: Vec<i32>,
    /// -1 when the partition has no leader to ask.
    start_offset: i64,
    end_offset: i64,
    /// The leader's copy, from DescribeLogDirs (-1: unknown).
    size_bytes: i64,
    /// Every replica's size, by broker.
    replica_size_bytes: BTreeMap<i32, i64>,
}

#[derive(Serialize)]
struct TopicDescription {
    name: String,
    internal: bool,
    partitions: Vec<PartitionDescription>,
    configs: Vec<ConfigEntry>,
}

async fn describe(context: &mut Context, names: &[String]) -> Result<i32> {
    let admin = context.admin().await?;
    let topics = admin.topics(names).await?;
    let with_leader: Vec<TopicInfo> = topics
        .iter()
        .map(|t| TopicInfo {
            partitions: t
                .partitions
                .iter()
                .filter(|p| p.leader >= 0)
                .cloned()
                .collect(),
            ..t.clone()
        })
        .collect();
    let offsets = admin.offset_range(&with_leader).await?;
    let hosts: BTreeSet<i32> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().flat_map(|p| p.replicas.iter().copied()))
        .collect();
    let hosts: Vec<i32> = hosts.into_iter().collect();
    let sizes = admin.replica_sizes(&topics, &hosts).await?;
    let mut described = Vec::new();
    for topic in &topics {
        let configs = admin
            .describe_configs(&Resource::Topic(topic.name.clone()), &[])
            .await?;
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let (start, end) = offsets
                    .get(&(topic.name.clone(), p.partition))
                    .copied()
                    .unwrap_or((-1, -1));
                let replica_size_bytes: BTreeMap<i32, i64> = p
                    .replicas
                    .iter()
                    .filter_map(|&b| {
                        sizes
                            .get(&(topic.name.clone(), p.partition, b))
                            .map(|&s| (b, s))
                    })
                    .collect();
                PartitionDescription {
                    partition: p.partition,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    offline_replicas: p.offline_replicas.clone(),
                    start_offset: start,
                    end_offset: end,
                    size_bytes: replica_size_bytes.get(&p.leader).copied().unwrap_or(-1),
                    replica_size_bytes,
                }
            })
            .collect();
        described.push(TopicDescription {
            name: topic.name.clone(),
            internal: topic.internal,
            partitions,
            configs,
        });
    }
    let render = |described: &[TopicDescription]| {
        let mut out = String::new();
        for t in described {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!(
                "name:                {}\npartitions:          {}\nreplication factor:  {}\n\n",
                t.name,
                t.partitions.len(),
                t.partitions
                    .iter()
                    .map(|p| p.replicas.len())
                    .max()
                    .unwrap_or(0)
            ));
            let mut table = Table::new(&[
                "PARTITION",
                "LEADER",
                "EPOCH",
                "REPLICAS",
                "ISR",
                "START",
                "END",
                "SIZE",
            ]);
            for p in &t.partitions {
                table.row(vec![
                    p.partition.to_string(),
                    if p.leader < 0 {
                        "none".into()
                    } else {
                        p.leader.to_string()
                    },
                    p.leader_epoch.to_string(),
                    ids(&p.replicas),
                    ids(&p.isr),
                    p.start_offset.to_string(),
                    p.end_offset.to_string(),
                    if p.size_bytes < 0 {
                        "-".into()
                    } else {
                        human_bytes(p.size_bytes)
                    },
                ]);
            }
            out.push_str(&table.render());
            out.push('\n');
            let mut table = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
            for c in &t.configs {
                table.row(vec![
                    c.name.clone(),
                    c.value.clone().unwrap_or_else(|| "-".into()),
                    c.source.to_string(),
                ]);
            }
            out.push_str(&table.render());
        }
        out
    };
    // One topic is one object; several are a list.
    if described.len() == 1 {
        emit(&context.format, &described[0], || render(&described))?;
    } else {
        emit(&context.format, &described, || render(&described))?;
    }
    Ok(EXIT_OK)
}

async fn create(context: &mut Context, topic: NewTopic, if_not_exists: bool) -> Result<i32> {
    match context.admin().await?.create_topic(&topic).await {
        Ok(()) => eprintln!("created topic {}", topic.name),
        Err(e) if if_not_exists && e.kafka_code() == Some(TOPIC_ALREADY_EXISTS) => {
            eprintln!("topic {} already exists", topic.name)
        }
        Err(e) => return Err(e),
    }
    Ok(EXIT_OK)
}

async fn delete(context: &mut Context, topics: &[String]) -> Result<i32> {
    context.confirm(&format!(
        "delete topic(s) {} and all their data",
        topics.join(", ")
    ))?;
    let admin = context.admin().await?;
    for topic in topics {
        admin.delete_topic(topic).await?;
        eprintln!("deleted topic {topic}");
    }
    Ok(EXIT_OK)
}

async fn add_partitions(
    context: &mut Context,
    topic: &str,
    num: Option<i32>,
    total: Option<i32>,
) -> Result<i32> {
    let admin = context.admin().await?;
    let current = admin.topics(&[topic.to_string()]).await?[0]
        .partitions
        .len() as i32;
    let total = match (num, total) {
        (Some(n), _) if n < 1 => {
            return Err(CliError::usage(
                format!("--num {n}: add at least one partition"),
                "partitions can be added, never removed",
            ))
        }
        (Some(n), _) => current + n,
        (None, Some(t)) => t,
        (None, None) => unreachable!("clap requires one"),
    };
    admin.create_partitions(topic, total).await?;
    eprintln!("topic {topic}: {current} → {total} partitions");
    Ok(EXIT_OK)
}

async fn alter_config(
    context: &mut Context,
    topic: &str,
    set: &[String],
    delete: &[String],
) -> Result<i32> {
    if set.is_empty() && delete.is_empty() {
        return Err(CliError::usage(
            "nothing to change",
            "pass --set KEY=VALUE and/or --delete KEY",
        ));
    }
    let mut changes: Vec<Change> = topic_configs(set, "--set")?
        .into_iter()
        .map(|(k, v)| Change::Set(k, v))
        .collect();
    for key in delete {
        check_topic_key(key)?;
        changes.push(Change::Delete(key.clone()));
    }
    context
        .admin()
        .await?
        .alter_configs(&Resource::Topic(topic.to_string()), &changes)
        .await?;
    eprintln!("changed {} config(s) of topic {topic}", changes.len());
    Ok(EXIT_OK)
}

#[derive(Serialize)]
struct Trimmed {
    topic: String,
    partition: i32,
    /// The partition's new earliest offset on every replica.
    low_watermark: i64,
}

async fn trim(context: &mut Context, args: TrimArgs) -> Result<i32> {
    let admin = context.admin().await?;
    let topic = admin
        .topics(std::slice::from_ref(&args.topic))
        .await?
        .remove(0);
    let mut partitions = leaders(std::slice::from_ref(&topic));
    if let Some(p) = args.partition {
        partitions.retain(|((_, id), _)| *id == p);
        if partitions.is_empty() {
            return Err(CliError::usage(
                format!("topic {} has no partition {p}", args.topic),
                format!("its partitions are 0..{}", topic.partitions.len()),
            ));
        }
    }
    // DeleteRecords takes -1 for "up to the high watermark".
    let offsets: BTreeMap<TopicPartition, i64> = match (&args.offset, args.timestamp) {
        (Some(o), _) if o == "end" => partitions.iter().map(|(tp, _)| (tp.clone(), -1)).collect(),
        (Some(o), _) => {
            let offset: i64 = o.parse().ok().filter(|o| *o >= 0).ok_or_else(|| {
                CliError::usage(
                    format!("--offset {o}: expected an offset or `end`"),
                    "write it as --offset 1000",
                )
            })?;
            partitions
                .iter()
                .map(|(tp, _)| (tp.clone(), offset))
                .collect()
        }
        (None, Some(ts)) => admin
            .list_offsets(&partitions, ts)
            .await?
            .into_iter()
            .map(|(tp, offset)| (tp, if offset < 0 { -1 } else { offset }))
            .collect(),
        (None, None) => unreachable!("clap requires one"),
    };
    context.confirm(&format!(
        "delete records of topic {} before {}",
        args.topic,
        match (&args.offset, args.timestamp) {
            (Some(o), _) => format!("offset {o}"),
            (None, Some(ts)) => format!("timestamp {ts}"),
            _ => unreachable!(),
        }
    ))?;
    let targets: Vec<(TopicPartition, i32, i64)> = partitions
        .iter()
        .map(|(tp, leader)| (tp.clone(), *leader, offsets[tp]))
        .collect();
    let low = context.admin().await?.delete_records(&targets).await?;
    let trimmed: Vec<Trimmed> = low
        .into_iter()
        .map(|((topic, partition), low_watermark)| Trimmed {
            topic,
            partition,
            low_watermark,
        })
        .collect();
    emit(&context.format, &trimmed, || {
        let mut table = Table::new(&["TOPIC", "PARTITION", "LOW WATERMARK"]);
        for t in &trimmed {
            table.row(vec![
                t.topic.clone(),
                t.partition.to_string(),
                t.low_watermark.to_string(),
            ]);
        }
        table.render()
    })?;
    Ok(EXIT_OK)
}
