//! `tideline group`: list, describe (with lag), seek, delete,
//! delete-offsets.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::consume::{parse_start, Start};
use crate::admin::offsets::{leaders, TopicPartition, EARLIEST, LATEST};
use crate::admin::Admin;
use crate::args::{GroupCommand, SeekArgs};
use crate::error::{CliError, Result, EXIT_OK};
use crate::output::{emit, Table};
use crate::Context;

pub async fn run(context: &mut Context, command: GroupCommand) -> Result<i32> {
    match command {
        GroupCommand::List { state } => list(context, state).await,
        GroupCommand::Describe { group } => describe(context, &group).await,
        GroupCommand::Seek(args) => seek(context, args).await,
        GroupCommand::Delete { groups } => {
            context.confirm(&format!(
                "delete group(s) {} and their offsets",
                groups.join(", ")
            ))?;
            let admin = context.admin().await?;
            for group in &groups {
                admin.delete_group(group).await?;
                eprintln!("deleted group {group}");
            }
            Ok(EXIT_OK)
        }
        GroupCommand::DeleteOffsets {
            group,
            topic,
            partition,
        } => {
            let admin = context.admin().await?;
            let partitions = if partition.is_empty() {
                let info = admin.topics(std::slice::from_ref(&topic)).await?.remove(0);
                info.partitions.iter().map(|p| p.partition).collect()
            } else {
                partition
            };
            context.confirm(&format!(
                "delete the offsets of group {group} on topic {topic}"
            ))?;
            context
                .admin()
                .await?
                .delete_offsets(&group, &topic, &partitions)
                .await?;
            eprintln!(
                "deleted the offsets of group {group} on {} partition(s) of {topic}",
                partitions.len()
            );
            Ok(EXIT_OK)
        }
    }
}

async fn list(context: &mut Context, state: Option<String>) -> Result<i32> {
    let admin = context.admin().await?;
    let (_, _, brokers) = admin.describe_cluster().await?;
    let live: Vec<i32> = brokers.iter().filter(|b| !b.fenced).map(|b| b.id).collect();
    let mut groups = admin.list_groups(&live).await?;
    if let Some(state) = state {
        groups.retain(|g| g.state.eq_ignore_ascii_case(&state));
    }
    emit(&context.format, &groups, || {
        let mut table = Table::new(&["GROUP", "STATE", "PROTOCOL TYPE", "COORDINATOR"]);
        for g in &groups {
            table.row(vec![
                g.group.clone(),
                g.state.clone(),
                g.protocol_type.clone(),
                g.coordinator.to_string(),
            ]);
        }
        table.render()
    })?;
    Ok(EXIT_OK)
}

/// One partition of a group, as `group describe --format json` prints it.
#[derive(Serialize)]
struct GroupPartition {
    group: String,
    topic: String,
    partition: i32,
    /// None: the group has not committed an offset here.
    committed: Option<i64>,
    /// The high watermark (what a read_uncommitted consumer can reach).
    end: i64,
    /// end − committed, as the broker's `tideline_group_lag` computes it.
    lag: Option<i64>,
    member_id: Option<String>,
    client_id: Option<String>,
    host: Option<String>,
}

/// The latest offset of each of `partitions`, asking their leaders.
async fn end_offsets(
    admin: &mut Admin,
    partitions: &BTreeSet<TopicPartition>,
) -> Result<BTreeMap<TopicPartition, i64>> {
    latest_or_earliest(admin, partitions, LATEST).await
}

async fn latest_or_earliest(
    admin: &mut Admin,
    partitions: &BTreeSet<TopicPartition>,
    spec: i64,
) -> Result<BTreeMap<TopicPartition, i64>> {
    let topics: Vec<String> = partitions
        .iter()
        .map(|(t, _)| t.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if topics.is_empty() {
        return Ok(BTreeMap::new());
    }
    // Topics deleted since the group committed are left out.
    let metadata = admin.metadata(Some(&topics)).await?;
    let known: Vec<_> = metadata
        .topics
        .into_iter()
        .filter(|t| t.error_code == 0)
        .collect();
    let wanted: Vec<(TopicPartition, i32)> = leaders(&known)
        .into_iter()
        .filter(|(tp, _)| partitions.contains(tp))
        .collect();
    admin.list_offsets(&wanted, spec).await
}

async fn describe(context: &mut Context, group: &str) -> Result<i32> {
    let admin = context.admin().await?;
    let description = admin.describe_group(group).await?;
    if description.state == "Dead" {
        return Err(CliError::failed(
            format!("group {group} does not exist"),
            "check the name with `tideline group list`",
        ));
    }
    let committed = admin.committed_offsets(group).await?;
    let mut owner: BTreeMap<TopicPartition, usize> = BTreeMap::new();
    for (i, member) in description.members.iter().enumerate() {
        for tp in &member.assignment {
            owner.insert(tp.clone(), i);
        }
    }
    let partitions: BTreeSet<TopicPartition> =
        committed.keys().chain(owner.keys()).cloned().collect();
    let ends = end_offsets(admin, &partitions).await?;
    let rows: Vec<GroupPartition> = partitions
        .iter()
        .filter_map(|tp| {
            let end = *ends.get(tp)?;
            let committed = committed.get(tp).copied();
            let member = owner.get(tp).map(|&i| &description.members[i]);
            Some(GroupPartition {
                group: group.to_string(),
                topic: tp.0.clone(),
                partition: tp.1,
                committed,
                end,
                lag: committed.map(|c| (end - c).max(0)),
                member_id: member.map(|m| m.member_id.clone()),
                client_id: member.map(|m| m.client_id.clone()),
                host: member.map(|m| m.host.clone()),
            })
        })
        .collect();
    let total_lag: i64 = rows.iter().filter_map(|r| r.lag).sum();
    emit(&context.format, &rows, || {
        let mut out = format!(
            "group:        {group}\nstate:        {}\nprotocol:     {} {}\ncoordinator:  {}\nmembers:      {}\ntotal lag:    {total_lag}\n\n",
            description.state,
            description.protocol_type,
            description.protocol,
            description.coordinator,
            description.members.len()
        );
        if !description.members.is_empty() {
            let mut table = Table::new(&["MEMBER", "CLIENT", "HOST", "PARTITIONS"]);
            for m in &description.members {
                table.row(vec![
                    m.member_id.clone(),
                    m.client_id.clone(),
                    m.host.clone(),
                    m.assignment.len().to_string(),
                ]);
            }
            out.push_str(&table.render());
            out.push('\n');
        }
        let mut table = Table::new(&["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"]);
        for r in &rows {
            table.row(vec![
                r.topic.clone(),
                r.partition.to_string(),
                r.committed.map_or("-".into(), |c| c.to_string()),
                r.end.to_string(),
                r.lag.map_or("-".into(), |l| l.to_string()),
                r.member_id.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push_str(&table.render());
        out
    })?;
    Ok(EXIT_OK)
}

#[derive(Serialize)]
struct Moved {
    topic: String,
    partition: i32,
    /// None: nothing was committed before.
    old: Option<i64>,
    new: i64,
}

async fn seek(context: &mut Context, args: SeekArgs) -> Result<i32> {
    let admin = context.admin().await?;
    let description = admin.describe_group(&args.group).await?;
    // Kafka resets offsets only of an inactive group: its members would
    // overwrite them with their next commit.
    if !description.members.is_empty() {
        return Err(CliError::failed(
            format!(
                "group {} has {} member(s) (state {}); offsets can only be moved while it has none",
                args.group,
                description.members.len(),
                description.state
            ),
            "stop the group's consumers, then seek again",
        ));
    }
    let committed = admin.committed_offsets(&args.group).await?;
    let partitions: BTreeSet<TopicPartition> = match &args.topic {
        Some(topic) => {
            let info = admin.topics(std::slice::from_ref(topic)).await?.remove(0);
            info.partitions
                .iter()
                .map(|p| p.partition)
                .filter(|p| args.partition.is_empty() || args.partition.contains(p))
                .map(|p| (topic.clone(), p))
                .collect()
        }
        None => committed.keys().cloned().collect(),
    };
    if partitions.is_empty() {
        return Err(CliError::usage(
            format!("group {} has no committed offsets to move", args.group),
            "name the partitions with --topic (and --partition)",
        ));
    }
    let earliest = latest_or_earliest(admin, &partitions, EARLIEST).await?;
    let latest = latest_or_earliest(admin, &partitions, LATEST).await?;
    let clamp = |tp: &TopicPartition, offset: i64| {
        offset.clamp(
            earliest.get(tp).copied().unwrap_or(0),
            latest.get(tp).copied().unwrap_or(offset),
        )
    };
    let mut new: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    match (&args.to, args.shift_by) {
        (_, Some(shift)) => {
            for tp in &partitions {
                let Some(&old) = committed.get(tp) else {
                    eprintln!("skipping {}-{}: nothing committed to shift", tp.0, tp.1);
                    continue;
                };
                new.insert(tp.clone(), clamp(tp, old + shift));
            }
        }
        (Some(to), None) => match parse_start(to)? {
            Start::Earliest => new.extend(partitions.iter().map(|tp| (tp.clone(), earliest[tp]))),
            Start::Latest => new.extend(partitions.iter().map(|tp| (tp.clone(), latest[tp]))),
            Start::At(offset) => {
                new.extend(partitions.iter().map(|tp| (tp.clone(), clamp(tp, offset))))
            }
            Start::Tail(n) => new.extend(
                partitions
                    .iter()
                    .map(|tp| (tp.clone(), clamp(tp, latest[tp] - n))),
            ),
            Start::Timestamp(ts) => {
                let found = latest_or_earliest(admin, &partitions, ts).await?;
                for tp in &partitions {
                    // After the last record: the end.
                    let offset = found
                        .get(tp)
                        .copied()
                        .filter(|o| *o >= 0)
                        .unwrap_or(latest[tp]);
                    new.insert(tp.clone(), offset);
                }
            }
        },
        (None, None) => unreachable!("clap requires --to or --shift-by"),
    }
    let moved: Vec<Moved> = new
        .iter()
        .map(|(tp, &offset)| Moved {
            topic: tp.0.clone(),
            partition: tp.1,
            old: committed.get(tp).copied(),
            new: offset,
        })
        .collect();
    if !args.dry_run {
        context.confirm(&format!(
            "move the offsets of group {} on {} partition(s)",
            args.group,
            new.len()
        ))?;
        context
            .admin()
            .await?
            .commit_offsets(&args.group, &new)
            .await?;
    }
    emit(&context.format, &moved, || {
        let mut table = Table::new(&["TOPIC", "PARTITION", "OLD", "NEW"]);
        for m in &moved {
            table.row(vec![
                m.topic.clone(),
                m.partition.to_string(),
                m.old.map_or("-".into(), |o| o.to_string()),
                m.new.to_string(),
            ]);
        }
        let mut out = table.render();
        if args.dry_run {
            out.push_str("(dry run: nothing was committed)\n");
        }
        out
    })?;
    Ok(EXIT_OK)
}
