//! `tideline rebalance`: reads the cluster (Metadata for the assignment and
//! racks, DescribeLogDirs for replica sizes), asks the balancer for a plan,
//! prints it with the bytes it copies, and unless `--dry-run` starts it
//! with AlterPartitionReassignments; with `--wait` it follows the moves
//! and elects the preferred leaders at the end.
//!
//! A partition's produce rate is how fast its leader's replica grows over
//! `--load-window` seconds (two DescribeLogDirs), which any Kafka cluster
//! answers. Cordoned brokers (`tideline broker cordon`) and fenced ones
//! keep what they hold but receive nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;
use tideline_balancer::{Broker, Cluster, Partition, Settings};

use super::broker::CORDON_KEY;
use super::partition::{parse_rate, start_moves};
use crate::admin::configs::Resource;
use crate::admin::offsets::TopicPartition;
use crate::admin::partitions::ElectionType;
use crate::admin::pause;
use crate::args::RebalanceArgs;
use crate::error::{CliError, Result, EXIT_OK};
use crate::output::{emit, human_bytes, ids, Table};
use crate::Context;

#[derive(Serialize)]
struct PlannedMove {
    topic: String,
    partition: i32,
    from: Vec<i32>,
    to: Vec<i32>,
    bytes: u64,
}

/// One broker's share before and after the plan.
#[derive(Serialize)]
struct BrokerShare {
    id: i32,
    replicas: [usize; 2],
    preferred_leaders: [usize; 2],
    disk_bytes: [u64; 2],
    produce_bytes_per_second: [f64; 2],
}

#[derive(Serialize)]
struct PlanOutput {
    moves: Vec<PlannedMove>,
    /// Per broker, `[before, after]`.
    brokers: Vec<BrokerShare>,
    bytes_to_move: u64,
    /// At `--throttle`, when given.
    seconds_at_throttle: Option<f64>,
    blocked: Vec<String>,
}

pub async fn run(context: &mut Context, args: RebalanceArgs) -> Result<i32> {
    if !(args.disk_tolerance.is_finite() && args.disk_tolerance >= 0.0) {
        return Err(CliError::usage(
            format!(
                "--disk-tolerance {} is not a percentage",
                args.disk_tolerance
            ),
            "give a number of percent, such as --disk-tolerance 10",
        ));
    }
    let throttle_rate = args.moves.throttle.as_deref().map(parse_rate).transpose()?;
    // A plan made while moves run would see their replica lists half-way
    // (adding and removing replicas both listed), and would start a second
    // plan over the first.
    let running = context.admin().await?.list_reassignments().await?;
    if !running.is_empty() {
        return Err(CliError::failed(
            format!(
                "{} partition move(s) are already in progress",
                running.len()
            ),
            "wait for them (`tideline partition reassignments`) or cancel them, then plan again",
        ));
    }
    let window = Duration::from_secs(args.load_window);
    let cluster = read_cluster(context, window, &args.drain).await?;
    let leaving: BTreeSet<i32> = args.drain.iter().copied().collect();
    let settings = Settings {
        disk_tolerance_percent: args.disk_tolerance,
    };
    let plan = tideline_balancer::plan(&cluster, &leaving, &settings);
    let output = PlanOutput {
        moves: plan
            .reassignments
            .iter()
            .map(|r| PlannedMove {
                topic: r.topic.clone(),
                partition: r.partition,
                from: r.from.clone(),
                to: r.to.clone(),
                bytes: r.bytes,
            })
            .collect(),
        brokers: shares(&cluster, &plan.applied_to(&cluster)),
        bytes_to_move: plan.bytes_to_move(),
        seconds_at_throttle: throttle_rate.map(|rate| plan.duration_at(rate).as_secs_f64()),
        blocked: plan.blocked.clone(),
    };
    emit(&context.format, &output, || describe(&output))?;
    if !plan.blocked.is_empty() {
        return Err(CliError::failed(
            format!(
                "the drain of {} cannot complete; nothing was changed",
                ids(&args.drain)
            ),
            "add brokers, lower those topics' replication factor, or drain fewer brokers",
        ));
    }
    if args.dry_run || plan.is_empty() {
        return Ok(EXIT_OK);
    }

    let moves: BTreeMap<TopicPartition, Vec<i32>> = plan
        .reassignments
        .iter()
        .map(|r| ((r.topic.clone(), r.partition), r.to.clone()))
        .collect();
    if !start_moves(context, &moves, &args.moves).await? {
        return Ok(EXIT_OK);
    }
    let partitions: Vec<TopicPartition> = moves.keys().cloned().collect();
    let elected = context
        .admin()
        .await?
        .elect_leaders(ElectionType::Preferred, Some(&partitions))
        .await?;
    eprintln!("{} preferred leader(s) elected", elected.len());
    Ok(EXIT_OK)
}

/// The balancer's view of the cluster: every topic's assignment, the
/// brokers' racks, each partition's size (its largest replica) and its
/// produce rate (its leader's growth over `window`). Every broker in
/// `drain` must be one of the cluster's.
async fn read_cluster(context: &mut Context, window: Duration, drain: &[i32]) -> Result<Cluster> {
    let admin = context.admin().await?;
    let metadata = admin.metadata(None).await?;
    // Every registered broker, fenced (stopped) ones too: a stopped broker
    // may be drained, from the copies on the live ones.
    let (_, _, described) = admin.describe_cluster().await?;
    let registered: Vec<i32> = described.iter().map(|b| b.id).collect();
    if let Some(unknown) = drain.iter().find(|b| !registered.contains(b)) {
        return Err(CliError::usage(
            format!("--drain {unknown}: the cluster has no broker {unknown}"),
            format!("the brokers are {}", ids(&registered)),
        ));
    }
    let broker_ids: Vec<i32> = metadata.brokers.iter().map(|b| b.id).collect();
    let first = admin.replica_sizes(&metadata.topics, &broker_ids).await?;
    let mut rate_of: BTreeMap<(String, i32), f64> = BTreeMap::new();
    let sizes = if window.is_zero() {
        first
    } else {
        eprintln!("measuring produce rates for {} s", window.as_secs());
        pause(window).await;
        let second = admin.replica_sizes(&metadata.topics, &broker_ids).await?;
        for t in &metadata.topics {
            for p in &t.partitions {
                let key = (t.name.clone(), p.partition, p.leader);
                if let (Some(a), Some(b)) = (first.get(&key), second.get(&key)) {
                    let grown = (b - a).max(0) as f64 / window.as_secs_f64();
                    rate_of.insert((t.name.clone(), p.partition), grown);
                }
            }
        }
        second
    };
    let mut size_of: BTreeMap<(String, i32), u64> = BTreeMap::new();
    for ((topic, partition, _), bytes) in sizes {
        let size = size_of.entry((topic, partition)).or_default();
        *size = (*size).max(bytes.max(0) as u64);
    }
    // Fenced and cordoned brokers receive nothing.
    let mut closed: BTreeSet<i32> = described
        .iter()
        .filter(|b| b.fenced)
        .map(|b| b.id)
        .collect();
    for &id in &broker_ids {
        let entries = admin
            .describe_configs(&Resource::Broker(id), &[CORDON_KEY.to_string()])
            .await?;
        if entries
            .iter()
            .any(|e| e.name == CORDON_KEY && e.value.as_deref().is_some_and(|v| !v.is_empty()))
        {
            closed.insert(id);
        }
    }
    // A fenced broker counts only when it is drained; otherwise it is
    // left out, as down for now, not gone.
    let brokers = described
        .iter()
        .filter(|b| !b.fenced || drain.contains(&b.id))
        .map(|b| Broker {
            id: b.id,
            rack: b.rack.clone(),
            cordoned: closed.contains(&b.id),
        })
        .collect();
    let partitions = metadata
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .flat_map(|t| {
            t.partitions.iter().map(|p| Partition {
                topic: t.name.clone(),
                partition: p.partition,
                replicas: p.replicas.clone(),
                size_bytes: size_of
                    .get(&(t.name.clone(), p.partition))
                    .copied()
                    .unwrap_or(0),
                produce_bytes_per_second: rate_of
                    .get(&(t.name.clone(), p.partition))
                    .copied()
                    .unwrap_or(0.0),
            })
        })
        .collect();
    Ok(Cluster {
        brokers,
        partitions,
    })
}

/// Replicas, preferred leaderships, disk and produce load per broker, in
/// `before` and in `after`.
fn shares(before: &Cluster, after: &Cluster) -> Vec<BrokerShare> {
    let tally = |cluster: &Cluster, id: i32| {
        let mut share = (0, 0, 0, 0.0);
        for p in &cluster.partitions {
            if p.replicas.contains(&id) {
                share.0 += 1;
                share.2 += p.size_bytes;
            }
            if p.replicas.first() == Some(&id) {
                share.1 += 1;
                share.3 += p.produce_bytes_per_second;
            }
        }
        share
    };
    before
        .brokers
        .iter()
        .map(|b| {
            let (x, y) = (tally(before, b.id), tally(after, b.id));
            BrokerShare {
                id: b.id,
                replicas: [x.0, y.0],
                preferred_leaders: [x.1, y.1],
                disk_bytes: [x.2, y.2],
                produce_bytes_per_second: [x.3, y.3],
            }
        })
        .collect()
}

fn describe(plan: &PlanOutput) -> String {
    let mut text = String::new();
    for reason in &plan.blocked {
        text.push_str(&format!("blocked: {reason}\n"));
    }
    if plan.moves.is_empty() {
        text.push_str("the cluster is balanced: nothing to move\n");
        return text;
    }
    let mut table = Table::new(&["TOPIC", "PARTITION", "FROM", "TO", "COPIES"]);
    for m in &plan.moves {
        table.row(vec![
            m.topic.clone(),
            m.partition.to_string(),
            ids(&m.from),
            ids(&m.to),
            if m.bytes == 0 {
                "leader only".into()
            } else {
                human_bytes(m.bytes as i64)
            },
        ]);
    }
    text.push_str(&table.render());
    let mut brokers = Table::new(&["BROKER", "REPLICAS", "LEADERS", "DISK", "PRODUCE/S"]);
    for b in &plan.brokers {
        brokers.row(vec![
            b.id.to_string(),
            format!("{} → {}", b.replicas[0], b.replicas[1]),
            format!("{} → {}", b.preferred_leaders[0], b.preferred_leaders[1]),
            format!(
                "{} → {}",
                human_bytes(b.disk_bytes[0] as i64),
                human_bytes(b.disk_bytes[1] as i64)
            ),
            format!(
                "{} → {}",
                human_bytes(b.produce_bytes_per_second[0] as i64),
                human_bytes(b.produce_bytes_per_second[1] as i64)
            ),
        ]);
    }
    text.push('\n');
    text.push_str(&brokers.render());
    let leader_only = plan.moves.iter().filter(|m| m.bytes == 0).count();
    text.push_str(&format!(
        "{} move(s), {leader_only} of them leader changes only; {} to copy",
        plan.moves.len(),
        human_bytes(plan.bytes_to_move as i64)
    ));
    if let Some(seconds) = plan.seconds_at_throttle {
        text.push_str(&format!(", about {seconds:.0} s at the throttle"));
    }
    text.push('\n');
    text
}
