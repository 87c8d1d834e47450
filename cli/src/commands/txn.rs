//! `tideline txn`: list and describe transactions, show a partition's
//! producers, and abort a hanging transaction (as `kafka-transactions.sh`
//! does: find the producer whose open transaction starts at the given
//! offset, then write an ABORT marker for it on the partition's leader).

use crate::admin::transactions::ActiveProducer;
use crate::admin::Admin;
use crate::args::TxnCommand;
use crate::error::{CliError, Result, EXIT_OK};
use crate::output::{emit, Table};
use crate::Context;

pub async fn run(context: &mut Context, command: TxnCommand) -> Result<i32> {
    match command {
        TxnCommand::List {
            state,
            producer_id,
            duration_ms,
        } => list(context, &state, &producer_id, duration_ms).await,
        TxnCommand::Describe { transactional_id } => describe(context, &transactional_id).await,
        TxnCommand::Producers { topic, partition } => producers(context, &topic, partition).await,
        TxnCommand::Abort {
            topic,
            partition,
            start_offset,
        } => abort(context, &topic, partition, start_offset).await,
    }
}

async fn list(
    context: &mut Context,
    states: &[String],
    producer_ids: &[i64],
    duration_ms: Option<i64>,
) -> Result<i32> {
    let admin = context.admin().await?;
    let (_, _, brokers) = admin.describe_cluster().await?;
    let live: Vec<i32> = brokers.iter().filter(|b| !b.fenced).map(|b| b.id).collect();
    let listed = admin
        .list_transactions(&live, states, producer_ids, duration_ms)
        .await?;
    emit(&context.format, &listed, || {
        let mut table = Table::new(&["TRANSACTIONAL ID", "PRODUCER ID", "STATE", "COORDINATOR"]);
        for t in &listed {
            table.row(vec![
                t.transactional_id.clone(),
                t.producer_id.to_string(),
                t.state.clone(),
                t.coordinator.to_string(),
            ]);
        }
        table.render()
    })?;
    Ok(EXIT_OK)
}

async fn describe(context: &mut Context, txn_id: &str) -> Result<i32> {
    let described = context.admin().await?.describe_transaction(txn_id).await?;
    emit(&context.format, &described, || {
        let d = &described;
        let partitions: Vec<String> = d
            .partitions
            .iter()
            .map(|(t, p)| format!("{t}-{p}"))
            .collect();
        let mut out = String::new();
        for (label, value) in [
            ("transactional id", d.transactional_id.clone()),
            ("coordinator", d.coordinator.to_string()),
            ("state", d.state.clone()),
            ("producer id", d.producer_id.to_string()),
            ("producer epoch", d.producer_epoch.to_string()),
            ("timeout ms", d.timeout_ms.to_string()),
            ("started ms", d.start_time_ms.to_string()),
            ("partitions", partitions.join(", ")),
        ] {
            out.push_str(&format!("{:<18}{value}\n", format!("{label}:")));
        }
        out
    })?;
    Ok(EXIT_OK)
}

/// The leader of `topic`-`partition` and its producers.
async fn leader_and_producers(
    admin: &mut Admin,
    topic: &str,
    partition: i32,
) -> Result<(i32, Vec<ActiveProducer>)> {
    let info = admin.topics(&[topic.to_string()]).await?.remove(0);
    let Some(p) = info.partitions.iter().find(|p| p.partition == partition) else {
        return Err(CliError::usage(
            format!("topic {topic} has no partition {partition}"),
            "list its partitions with `tideline topic describe`",
        ));
    };
    if p.leader < 0 {
        return Err(CliError::failed(
            format!("{topic}-{partition} has no leader"),
            "wait for an election, or check `tideline cluster health`",
        ));
    }
    let producers = admin.describe_producers(p.leader, topic, partition).await?;
    Ok((p.leader, producers))
}

async fn producers(context: &mut Context, topic: &str, partition: i32) -> Result<i32> {
    let (_, producers) = leader_and_producers(context.admin().await?, topic, partition).await?;
    emit(&context.format, &producers, || {
        let mut table = Table::new(&[
            "PRODUCER ID",
            "EPOCH",
            "LAST SEQUENCE",
            "LAST TIMESTAMP",
            "COORDINATOR EPOCH",
            "TXN START OFFSET",
        ]);
        for p in &producers {
            table.row(vec![
                p.producer_id.to_string(),
                p.producer_epoch.to_string(),
                p.last_sequence.to_string(),
                p.last_timestamp.to_string(),
                p.coordinator_epoch.to_string(),
                match p.current_txn_start_offset {
                    -1 => "-".to_string(),
                    o => o.to_string(),
                },
            ]);
        }
        table.render()
    })?;
    Ok(EXIT_OK)
}

async fn abort(
    context: &mut Context,
    topic: &str,
    partition: i32,
    start_offset: i64,
) -> Result<i32> {
    let (leader, producers) =
        leader_and_producers(context.admin().await?, topic, partition).await?;
    let Some(producer) = producers
        .into_iter()
        .find(|p| p.current_txn_start_offset == start_offset)
    else {
        return Err(CliError::failed(
            format!("no open transaction in {topic}-{partition} starts at offset {start_offset}"),
            format!("see where open transactions start with `tideline txn producers -t {topic} -p {partition}`"),
        ));
    };
    context.confirm(&format!(
        "abort producer {}'s transaction in {topic}-{partition} (from offset {start_offset})",
        producer.producer_id
    ))?;
    context
        .admin()
        .await?
        .abort_transaction(leader, topic, partition, &producer)
        .await?;
    eprintln!(
        "aborted producer {}'s transaction in {topic}-{partition} from offset {start_offset}",
        producer.producer_id
    );
    Ok(EXIT_OK)
}
