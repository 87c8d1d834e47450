//! `tideline broker cordon|uncordon|unregister`.
//!
//! Cordoning sets KIP-1066's `cordoned.log.dirs`, a dynamic per-broker
//! setting: a cordoned broker keeps what it holds but CreateTopics,
//! CreatePartitions and `tideline rebalance` place nothing new on it, as
//! before a drain. Unregistering (UnregisterBroker) ends a scale-down: the
//! drained, stopped broker is no longer listed by Metadata or
//! DescribeCluster.

use crate::admin::configs::{Change, Resource};
use crate::admin::metadata::BrokerInfo;
use crate::admin::Admin;
use crate::args::BrokerCommand;
use crate::error::{CliError, Result, EXIT_OK};
use crate::output::ids;
use crate::Context;

pub const CORDON_KEY: &str = "cordoned.log.dirs";

pub async fn run(context: &mut Context, command: BrokerCommand) -> Result<i32> {
    let (broker_ids, cordon) = match command {
        BrokerCommand::Cordon { broker_ids } => (broker_ids, true),
        BrokerCommand::Uncordon { broker_ids } => (broker_ids, false),
        BrokerCommand::Unregister { broker_ids, force } => {
            return unregister(context, &broker_ids, force).await
        }
    };
    let admin = context.admin().await?;
    known_brokers(admin, &broker_ids).await?;
    for &id in &broker_ids {
        let change = if cordon {
            // Every directory the broker has, as Kafka's tools set it.
            let dirs = admin.log_dir_names(id).await?;
            Change::Set(CORDON_KEY.to_string(), dirs.join(","))
        } else {
            Change::Delete(CORDON_KEY.to_string())
        };
        admin
            .alter_configs(&Resource::Broker(id), &[change])
            .await?;
    }
    eprintln!(
        "{} broker(s) {}",
        if cordon { "cordoned" } else { "uncordoned" },
        ids(&broker_ids)
    );
    Ok(EXIT_OK)
}

/// The cluster's registered brokers (fenced ones too), once every one of
/// `broker_ids` is among them.
async fn known_brokers(admin: &mut Admin, broker_ids: &[i32]) -> Result<Vec<BrokerInfo>> {
    let (_, _, brokers) = admin.describe_cluster().await?;
    let known: Vec<i32> = brokers.iter().map(|b| b.id).collect();
    if let Some(unknown) = broker_ids.iter().find(|b| !known.contains(b)) {
        return Err(CliError::usage(
            format!("the cluster has no broker {unknown}"),
            format!("the brokers are {}", ids(&known)),
        ));
    }
    Ok(brokers)
}

/// Unregisters brokers that were drained and stopped. Without `force`,
/// one that still runs (clients would lose it while it serves) or still
/// holds replicas (they would have no live copy there until it returns) is
/// refused with the step that is missing.
async fn unregister(context: &mut Context, broker_ids: &[i32], force: bool) -> Result<i32> {
    let admin = context.admin().await?;
    let brokers = known_brokers(admin, broker_ids).await?;
    if !force {
        if let Some(running) = brokers
            .iter()
            .find(|b| broker_ids.contains(&b.id) && !b.fenced)
        {
            return Err(CliError::usage(
                format!("broker {} is still running", running.id),
                "stop it first (scale its StatefulSet down or end its process), or pass --force",
            ));
        }
        let metadata = admin.metadata(None).await?;
        for &id in broker_ids {
            let held: Vec<String> = metadata
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .filter(|p| p.replicas.contains(&id))
                        .map(|p| format!("{}-{}", t.name, p.partition))
                })
                .collect();
            if !held.is_empty() {
                let shown: Vec<&str> = held.iter().take(5).map(String::as_str).collect();
                return Err(CliError::usage(
                    format!(
                        "broker {id} still holds {} replica(s): {}{}",
                        held.len(),
                        shown.join(", "),
                        if held.len() > shown.len() { ", ..." } else { "" }
                    ),
                    format!("drain it first with `tideline rebalance --drain {id} --wait`, or pass --force"),
                ));
            }
        }
    }
    for &id in broker_ids {
        admin.unregister_broker(id).await?;
    }
    eprintln!("unregistered broker(s) {}", ids(broker_ids));
    Ok(EXIT_OK)
}
