//! `tideline broker cordon|uncordon`: KIP-1066's `cordoned.log.dirs`, a
//! dynamic per-broker setting. A cordoned broker keeps what it holds but
//! CreateTopics, CreatePartitions and `tideline rebalance` place nothing
//! new on it, as before a drain.

use crate::admin::configs::{Change, Resource};
use crate::args::BrokerCommand;
use crate::error::{CliError, Result, EXIT_OK};
use crate::output::ids;
use crate::Context;

pub const CORDON_KEY: &str = "cordoned.log.dirs";

pub async fn run(context: &mut Context, command: BrokerCommand) -> Result<i32> {
    let (broker_ids, cordon) = match command {
        BrokerCommand::Cordon { broker_ids } => (broker_ids, true),
        BrokerCommand::Uncordon { broker_ids } => (broker_ids, false),
    };
    let admin = context.admin().await?;
    let (_, _, brokers) = admin.describe_cluster().await?;
    let known: Vec<i32> = brokers.iter().map(|b| b.id).collect();
    if let Some(unknown) = broker_ids.iter().find(|b| !known.contains(b)) {
        return Err(CliError::usage(
            format!("the cluster has no broker {unknown}"),
            format!("the brokers are {}", ids(&known)),
        ));
    }
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
