//! `tideline partition`: reassign (with --wait and progress),
//! reassignments, cancel, elect, throttle.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::admin::configs::{Change, Resource};
use crate::admin::offsets::TopicPartition;
use crate::admin::partitions::{ElectionType, Reassignment};
use crate::admin::{pause, Admin};
use crate::args::{ElectKind, MoveArgs, PartitionCommand, ReassignArgs, ThrottleCommand};
use crate::error::{CliError, Result, EXIT_OK};
use crate::output::{emit, human_bytes, ids, progress, progress_done, Table};
use crate::Context;

const THROTTLE_KEYS: [&str; 2] = [
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
];

pub async fn run(context: &mut Context, command: PartitionCommand) -> Result<i32> {
    match command {
        PartitionCommand::Reassign(args) => reassign(context, args).await,
        PartitionCommand::Reassignments => reassignments(context).await,
        PartitionCommand::Cancel { topic, partition } => cancel(context, topic, partition).await,
        PartitionCommand::Elect {
            kind,
            topic,
            partition,
        } => elect(context, kind, topic, partition).await,
        PartitionCommand::Throttle(ThrottleCommand::Set { rate, broker_ids }) => {
            let rate = parse_rate(&rate)?;
            let brokers = throttle(context, &broker_ids, Some(rate)).await?;
            eprintln!(
                "throttled replication to {rate} bytes/s on brokers {}",
                ids(&brokers)
            );
            Ok(EXIT_OK)
        }
        PartitionCommand::Throttle(ThrottleCommand::Clear { broker_ids }) => {
            let brokers = throttle(context, &broker_ids, None).await?;
            eprintln!(
                "cleared the replication throttle on brokers {}",
                ids(&brokers)
            );
            Ok(EXIT_OK)
        }
    }
}

/// kafka-reassign-partitions' plan format.
#[derive(Deserialize)]
struct Plan {
    #[serde(default)]
    version: Option<i32>,
    partitions: Vec<PlannedMove>,
}

#[derive(Deserialize)]
struct PlannedMove {
    topic: String,
    partition: i32,
    replicas: Vec<i32>,
    /// Kafka's plans may name log directories; Tideline has one per
    /// broker, so only "any" is accepted.
    #[serde(default)]
    log_dirs: Option<Vec<String>>,
}

fn read_plan(path: &str) -> Result<BTreeMap<TopicPartition, Vec<i32>>> {
    let text = if path == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| {
        CliError::usage(
            format!("--plan {path}: {e}"),
            "give the path of a JSON plan file, or - for stdin",
        )
    })?;
    parse_plan(&text).map_err(|message| {
        CliError::usage(
            format!("--plan {path}: {message}"),
            r#"a plan looks like {"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2,3]}]}"#,
        )
    })
}

fn parse_plan(text: &str) -> std::result::Result<BTreeMap<TopicPartition, Vec<i32>>, String> {
    let plan: Plan = serde_json::from_str(text).map_err(|e| format!("invalid plan JSON: {e}"))?;
    if let Some(v) = plan.version.filter(|v| *v != 1) {
        return Err(format!("plan version {v} is not 1"));
    }
    if plan.partitions.is_empty() {
        return Err("the plan moves no partition".into());
    }
    let mut moves = BTreeMap::new();
    for m in plan.partitions {
        let where_ = format!("{}-{}", m.topic, m.partition);
        if m.replicas.is_empty() {
            return Err(format!("{where_}: empty replica list"));
        }
        if m.replicas.iter().collect::<BTreeSet<_>>().len() != m.replicas.len() {
            return Err(format!(
                "{where_}: a broker is listed twice in {:?}",
                m.replicas
            ));
        }
        if let Some(dirs) = &m.log_dirs {
            if dirs.len() != m.replicas.len() || dirs.iter().any(|d| d != "any") {
                return Err(format!(
                    "{where_}: log_dirs must be \"any\" for every replica"
                ));
            }
        }
        if moves.insert((m.topic, m.partition), m.replicas).is_some() {
            return Err(format!("{where_} appears twice"));
        }
    }
    Ok(moves)
}

async fn reassign(context: &mut Context, args: ReassignArgs) -> Result<i32> {
    let moves = match (&args.plan, &args.replicas) {
        (Some(path), _) => read_plan(path)?,
        (None, Some(replicas)) => {
            let topic = args.topic.clone().expect("clap requires --topic");
            let partition = args.partition.expect("clap requires --partition");
            let plan = format!(
                r#"{{"partitions":[{{"topic":{},"partition":{partition},"replicas":{replicas:?}}}]}}"#,
                serde_json::to_string(&topic).expect("strings serialize")
            );
            parse_plan(&plan)
                .map_err(|m| CliError::usage(m, "list each broker once: --replicas 1,2,3"))?
        }
        (None, None) => unreachable!("clap requires --plan or --replicas"),
    };
    start_moves(context, &moves, &args.moves).await?;
    Ok(EXIT_OK)
}

/// Starts `moves` (AlterPartitionReassignments); with `--wait`, follows
/// them under the optional throttle, which is cleared after. Returns
/// whether it waited for them to finish.
pub(super) async fn start_moves(
    context: &mut Context,
    moves: &BTreeMap<TopicPartition, Vec<i32>>,
    args: &MoveArgs,
) -> Result<bool> {
    let throttle_rate = args.throttle.as_deref().map(parse_rate).transpose()?;
    if let Some(rate) = throttle_rate {
        throttle(context, &[], Some(rate)).await?;
    }
    let request: BTreeMap<TopicPartition, Option<Vec<i32>>> = moves
        .iter()
        .map(|(tp, r)| (tp.clone(), Some(r.clone())))
        .collect();
    context.admin().await?.alter_reassignments(&request).await?;
    eprintln!("started {} move(s)", moves.len());
    if !args.wait {
        return Ok(false);
    }
    let result = wait_for_moves(context, moves, Duration::from_secs(args.timeout)).await;
    if throttle_rate.is_some() {
        throttle(context, &[], None).await?;
    }
    result?;
    Ok(true)
}

async fn wait_for_moves(
    context: &mut Context,
    moves: &BTreeMap<TopicPartition, Vec<i32>>,
    timeout: Duration,
) -> Result<()> {
    let started = Instant::now();
    loop {
        let admin = context.admin().await?;
        let ongoing: Vec<Reassignment> = admin
            .list_reassignments()
            .await?
            .into_iter()
            .filter(|r| moves.contains_key(&(r.topic.clone(), r.partition)))
            .collect();
        if ongoing.is_empty() {
            progress_done();
            break;
        }
        let rows = with_progress(admin, &ongoing).await?;
        let (moved, total) = rows
            .iter()
            .fold((0, 0), |(m, t), r| (m + r.bytes_moved, t + r.bytes_total));
        progress(&format!(
            "{} of {} move(s) in progress, {} of {} copied ({:.0} s)",
            ongoing.len(),
            moves.len(),
            human_bytes(moved),
            human_bytes(total),
            started.elapsed().as_secs_f64()
        ));
        if started.elapsed() >= timeout {
            progress_done();
            return Err(CliError::failed(
                format!("{} move(s) still in progress after {} s", ongoing.len(), timeout.as_secs()),
                "follow them with `tideline partition reassignments`, or stop them with `tideline partition cancel`",
            ));
        }
        pause(Duration::from_secs(1)).await;
    }
    // A move that ended without taking its replica list was cancelled or
    // failed; say so rather than report success.
    let topics: Vec<String> = moves
        .keys()
        .map(|(t, _)| t.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let metadata = context.admin().await?.metadata(Some(&topics)).await?;
    for ((topic, partition), wanted) in moves {
        let now = metadata
            .topic(topic)
            .and_then(|t| t.partitions.iter().find(|p| p.partition == *partition))
            .map(|p| p.replicas.clone())
            .unwrap_or_default();
        let same = now.iter().collect::<BTreeSet<_>>() == wanted.iter().collect::<BTreeSet<_>>();
        if !same {
            return Err(CliError::failed(
                format!(
                    "{topic}-{partition} ended on replicas {} instead of {}",
                    ids(&now),
                    ids(wanted)
                ),
                "the move was cancelled or failed; check the brokers and retry",
            ));
        }
    }
    eprintln!(
        "all {} move(s) done in {:.1} s",
        moves.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Serialize)]
struct MoveProgress {
    topic: String,
    partition: i32,
    replicas: Vec<i32>,
    adding: Vec<i32>,
    removing: Vec<i32>,
    /// What the adding replicas must copy: the leader's size per adding replica.
    bytes_total: i64,
    /// What they hold so far (DescribeLogDirs).
    bytes_moved: i64,
}

/// Bytes copied so far per move: each adding replica's size against the
/// leader's.
async fn with_progress(admin: &mut Admin, ongoing: &[Reassignment]) -> Result<Vec<MoveProgress>> {
    let topics: Vec<String> = ongoing
        .iter()
        .map(|r| r.topic.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let infos = admin.topics(&topics).await?;
    let brokers: BTreeSet<i32> = ongoing
        .iter()
        .flat_map(|r| r.replicas.iter().copied())
        .collect();
    let sizes = admin
        .replica_sizes(&infos, &brokers.into_iter().collect::<Vec<_>>())
        .await?;
    Ok(ongoing
        .iter()
        .map(|r| {
            let leader = infos
                .iter()
                .find(|t| t.name == r.topic)
                .and_then(|t| t.partitions.iter().find(|p| p.partition == r.partition))
                .map_or(-1, |p| p.leader);
            let size = |b: i32| {
                sizes
                    .get(&(r.topic.clone(), r.partition, b))
                    .copied()
                    .unwrap_or(0)
            };
            let leader_size = size(leader);
            MoveProgress {
                topic: r.topic.clone(),
                partition: r.partition,
                replicas: r.replicas.clone(),
                adding: r.adding.clone(),
                removing: r.removing.clone(),
                bytes_total: leader_size * r.adding.len() as i64,
                bytes_moved: r.adding.iter().map(|&b| size(b).min(leader_size)).sum(),
            }
        })
        .collect())
}

async fn reassignments(context: &mut Context) -> Result<i32> {
    let admin = context.admin().await?;
    let ongoing = admin.list_reassignments().await?;
    let rows = if ongoing.is_empty() {
        Vec::new()
    } else {
        with_progress(admin, &ongoing).await?
    };
    emit(&context.format, &rows, || {
        let mut table = Table::new(&[
            "TOPIC",
            "PARTITION",
            "REPLICAS",
            "ADDING",
            "REMOVING",
            "COPIED",
        ]);
        for r in &rows {
            table.row(vec![
                r.topic.clone(),
                r.partition.to_string(),
                ids(&r.replicas),
                ids(&r.adding),
                ids(&r.removing),
                format!(
                    "{} / {}",
                    human_bytes(r.bytes_moved),
                    human_bytes(r.bytes_total)
                ),
            ]);
        }
        table.render()
    })?;
    Ok(EXIT_OK)
}

async fn cancel(
    context: &mut Context,
    topic: Option<String>,
    partition: Option<i32>,
) -> Result<i32> {
    let ongoing = context.admin().await?.list_reassignments().await?;
    let cancelled: BTreeMap<TopicPartition, Option<Vec<i32>>> = match (&topic, partition) {
        // A named partition is cancelled even if it is not listed, so the
        // broker's NO_REASSIGNMENT_IN_PROGRESS tells the user.
        (Some(t), Some(p)) => [((t.clone(), p), None)].into(),
        _ => ongoing
            .iter()
            .filter(|r| topic.as_ref().is_none_or(|t| &r.topic == t))
            .map(|r| ((r.topic.clone(), r.partition), None))
            .collect(),
    };
    if cancelled.is_empty() {
        eprintln!("no moves in progress");
        return Ok(EXIT_OK);
    }
    context.confirm(&format!("cancel {} move(s)", cancelled.len()))?;
    context
        .admin()
        .await?
        .alter_reassignments(&cancelled)
        .await?;
    eprintln!("cancelled {} move(s)", cancelled.len());
    Ok(EXIT_OK)
}

#[derive(Serialize)]
struct Elected {
    topic: String,
    partition: i32,
}

async fn elect(
    context: &mut Context,
    kind: ElectKind,
    topic: Option<String>,
    partition: Option<i32>,
) -> Result<i32> {
    let partitions: Option<Vec<TopicPartition>> = match (&topic, partition) {
        (Some(t), Some(p)) => Some(vec![(t.clone(), p)]),
        (Some(t), None) => {
            let info = context
                .admin()
                .await?
                .topics(std::slice::from_ref(t))
                .await?
                .remove(0);
            Some(
                info.partitions
                    .iter()
                    .map(|p| (t.clone(), p.partition))
                    .collect(),
            )
        }
        _ => None,
    };
    let kind = match kind {
        ElectKind::Preferred => ElectionType::Preferred,
        ElectKind::Unclean => {
            context
                .confirm("elect out-of-sync replicas as leaders (records they lack are lost)")?;
            ElectionType::Unclean
        }
    };
    let elected = context
        .admin()
        .await?
        .elect_leaders(kind, partitions.as_deref())
        .await?;
    let rows: Vec<Elected> = elected
        .into_iter()
        .map(|(topic, partition)| Elected { topic, partition })
        .collect();
    emit(&context.format, &rows, || {
        if rows.is_empty() {
            return "no leader changed (every partition already has its elected leader)\n".into();
        }
        let mut table = Table::new(&["TOPIC", "PARTITION"]);
        for r in &rows {
            table.row(vec![r.topic.clone(), r.partition.to_string()]);
        }
        table.render()
    })?;
    Ok(EXIT_OK)
}

/// Sets (`Some(rate)`) or clears the leader and follower throttle rates on
/// `brokers` (every live broker when empty). Returns the brokers changed.
pub(super) async fn throttle(
    context: &mut Context,
    brokers: &[i32],
    rate: Option<u64>,
) -> Result<Vec<i32>> {
    let admin = context.admin().await?;
    let brokers = if brokers.is_empty() {
        let (_, _, all) = admin.describe_cluster().await?;
        all.iter().filter(|b| !b.fenced).map(|b| b.id).collect()
    } else {
        brokers.to_vec()
    };
    let changes: Vec<Change> = THROTTLE_KEYS
        .iter()
        .map(|key| match rate {
            Some(rate) => Change::Set(key.to_string(), rate.to_string()),
            None => Change::Delete(key.to_string()),
        })
        .collect();
    for &broker in &brokers {
        admin
            .alter_configs(&Resource::Broker(broker), &changes)
            .await?;
    }
    Ok(brokers)
}

/// `10485760`, `10M`, `512K`, `1G` (powers of 1024), bytes per second.
pub(super) fn parse_rate(text: &str) -> Result<u64> {
    let (digits, scale) = match text.trim().to_ascii_uppercase() {
        t if t.ends_with('K') => (t[..t.len() - 1].to_string(), 1u64 << 10),
        t if t.ends_with('M') => (t[..t.len() - 1].to_string(), 1 << 20),
        t if t.ends_with('G') => (t[..t.len() - 1].to_string(), 1 << 30),
        t => (t, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| {
            CliError::usage(
                format!("throttle rate {text}: expected bytes per second"),
                "write it as 10485760, 10M or 512K",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_in_kafkas_format_parse_and_bad_ones_say_why() {
        let moves = parse_plan(
            r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[2,3],"log_dirs":["any","any"]}]}"#,
        )
        .unwrap();
        assert_eq!(moves[&("t".to_string(), 0)], vec![2, 3]);
        for (bad, why) in [
            ("{", "invalid plan JSON"),
            (r#"{"partitions":[]}"#, "no partition"),
            (
                r#"{"partitions":[{"topic":"t","partition":0,"replicas":[1,1]}]}"#,
                "twice",
            ),
            (
                r#"{"partitions":[{"topic":"t","partition":0,"replicas":[]}]}"#,
                "empty",
            ),
            (
                r#"{"version":2,"partitions":[{"topic":"t","partition":0,"replicas":[1]}]}"#,
                "version",
            ),
        ] {
            let e = parse_plan(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn rates_take_binary_suffixes() {
        assert_eq!(parse_rate("1024").unwrap(), 1024);
        assert_eq!(parse_rate("10M").unwrap(), 10 << 20);
        assert_eq!(parse_rate("512k").unwrap(), 512 << 10);
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
    }
}
