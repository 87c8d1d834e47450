//! `tideline cluster`: info, health, config.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::admin::configs::{Change, Resource};
use crate::admin::metadata::BrokerInfo;
use crate::admin::{pause, Admin};
use crate::args::{ClusterCommand, ConfigCommand, HealthArgs};
use crate::error::{CliError, Result, EXIT_CLUSTER, EXIT_OK};
use crate::output::{emit, progress, progress_done, Table};
use crate::properties::split_pair;
use crate::Context;
use tideline_protocol::configs;

pub async fn run(context: &mut Context, command: ClusterCommand) -> Result<i32> {
    match command {
        ClusterCommand::Info => info(context).await,
        ClusterCommand::Health(args) => health(context, args).await,
        ClusterCommand::Config(c) => config(context, c).await,
    }
}

#[derive(Serialize)]
struct Info {
    cluster_id: String,
    controller: i32,
    brokers: Vec<BrokerInfo>,
}

async fn info(context: &mut Context) -> Result<i32> {
    let (cluster_id, controller, brokers) = context.admin().await?.describe_cluster().await?;
    let info = Info {
        cluster_id,
        controller,
        brokers,
    };
    emit(&context.format, &info, || {
        let mut out = format!(
            "cluster id:  {}\ncontroller:  {}\n\n",
            info.cluster_id,
            if info.controller < 0 {
                "none elected".to_string()
            } else {
                info.controller.to_string()
            }
        );
        let mut table = Table::new(&["ID", "ENDPOINT", "RACK", "STATE"]);
        for b in &info.brokers {
            let mut id = b.id.to_string();
            if b.id == info.controller {
                id.push('*');
            }
            table.row(vec![
                id,
                b.endpoint(),
                b.rack.clone().unwrap_or_else(|| "-".into()),
                if b.fenced { "fenced" } else { "live" }.into(),
            ]);
        }
        out.push_str(&table.render());
        out
    })?;
    Ok(EXIT_OK)
}

#[derive(Serialize, Default)]
pub struct Health {
    pub healthy: bool,
    pub brokers: Vec<i32>,
    pub fenced_brokers: Vec<i32>,
    /// No leader at all (Kafka's offline partitions).
    pub offline_partitions: Vec<String>,
    /// A leader is named, but it is a fenced or unregistered broker.
    pub leaderless_partitions: Vec<String>,
    pub under_replicated_partitions: Vec<String>,
    pub under_min_isr_partitions: Vec<String>,
}

impl Health {
    fn problems(&self) -> usize {
        self.fenced_brokers.len()
            + self.offline_partitions.len()
            + self.leaderless_partitions.len()
            + self.under_replicated_partitions.len()
            + self.under_min_isr_partitions.len()
    }

    fn summary(&self) -> String {
        format!(
            "{} fenced brokers, {} offline, {} leaderless, {} under-replicated, {} under-min-ISR partitions",
            self.fenced_brokers.len(),
            self.offline_partitions.len(),
            self.leaderless_partitions.len(),
            self.under_replicated_partitions.len(),
            self.under_min_isr_partitions.len()
        )
    }
}

pub async fn check_health(admin: &mut Admin) -> Result<Health> {
    let (_, _, brokers) = admin.describe_cluster().await?;
    let metadata = admin.metadata(None).await?;
    let live: BTreeSet<i32> = brokers.iter().filter(|b| !b.fenced).map(|b| b.id).collect();
    let topics: Vec<String> = metadata.topics.iter().map(|t| t.name.clone()).collect();
    let min_isr = admin
        .topic_config_value(&topics, "min.insync.replicas")
        .await?;
    let mut health = Health {
        brokers: brokers.iter().map(|b| b.id).collect(),
        fenced_brokers: brokers.iter().filter(|b| b.fenced).map(|b| b.id).collect(),
        ..Health::default()
    };
    for topic in &metadata.topics {
        let min_isr: usize = min_isr
            .get(&topic.name)
            .and_then(|v| v.as_deref())
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        for p in &topic.partitions {
            let id = format!("{}-{}", topic.name, p.partition);
            if p.leader < 0 {
                health.offline_partitions.push(id.clone());
            } else if !live.contains(&p.leader) {
                health.leaderless_partitions.push(id.clone());
            }
            if p.isr.len() < p.replicas.len() {
                health.under_replicated_partitions.push(id.clone());
            }
            if p.isr.len() < min_isr {
                health.under_min_isr_partitions.push(id);
            }
        }
    }
    health.healthy = health.problems() == 0;
    Ok(health)
}

async fn health(context: &mut Context, args: HealthArgs) -> Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let health = loop {
        let health = match check_health(context.admin().await?).await {
            // While waiting, a broker that does not answer is one more
            // reason to wait, not the end.
            Err(e) if args.wait && Instant::now() < deadline => {
                progress(&format!(
                    "waiting: {}",
                    e.to_string().lines().next().unwrap_or("")
                ));
                context.reconnect();
                pause(Duration::from_secs(1)).await;
                continue;
            }
            result => result?,
        };
        if health.healthy || !args.wait || Instant::now() >= deadline {
            if args.wait {
                progress_done();
            }
            break health;
        }
        progress(&format!("waiting for health: {}", health.summary()));
        pause(Duration::from_secs(1)).await;
    };
    emit(&context.format, &health, || {
        let list = |items: &[String]| {
            if items.is_empty() {
                "-".to_string()
            } else {
                items.join(", ")
            }
        };
        let ids = |items: &[i32]| list(&items.iter().map(|i| i.to_string()).collect::<Vec<_>>());
        format!(
            "healthy:                      {}\nbrokers:                      {}\nfenced brokers:               {}\noffline partitions:           {}\nleaderless partitions:        {}\nunder-replicated partitions:  {}\nunder-min-ISR partitions:     {}\n",
            if health.healthy { "yes" } else { "no" },
            ids(&health.brokers),
            ids(&health.fenced_brokers),
            list(&health.offline_partitions),
            list(&health.leaderless_partitions),
            list(&health.under_replicated_partitions),
            list(&health.under_min_isr_partitions),
        )
    })?;
    Ok(if health.healthy {
        EXIT_OK
    } else {
        EXIT_CLUSTER
    })
}

async fn config(context: &mut Context, command: ConfigCommand) -> Result<i32> {
    let resource = |broker: Option<i32>| match broker {
        Some(id) => Resource::Broker(id),
        None => Resource::BrokerDefault,
    };
    match command {
        ConfigCommand::Get { keys, broker } => {
            if let Some(unknown) = keys.iter().find(|k| configs::broker_def(k).is_none()) {
                return Err(CliError::usage(
                    format!("{unknown} is not a broker setting"),
                    "list every setting with `tideline cluster config get --broker ID`",
                ));
            }
            let resource = resource(broker);
            let entries = context
                .admin()
                .await?
                .describe_configs(&resource, &keys)
                .await?;
            // The cluster-wide default lists only the settings given one.
            for missing in keys
                .iter()
                .filter(|k| !entries.iter().any(|e| &e.name == *k))
            {
                eprintln!(
                    "{missing}: not set on {} (a broker's value: --broker ID)",
                    resource.describe()
                );
            }
            emit(&context.format, &entries, || {
                let mut table = Table::new(&["NAME", "VALUE", "SOURCE"]);
                for e in &entries {
                    let value = if e.sensitive {
                        "(sensitive)".to_string()
                    } else {
                        e.value.clone().unwrap_or_else(|| "-".into())
                    };
                    table.row(vec![e.name.clone(), value, e.source.to_string()]);
                }
                table.render()
            })?;
        }
        ConfigCommand::Set { pairs, broker } => {
            let resource = resource(broker);
            let changes = pairs
                .iter()
                .map(|p| split_pair(p, "config set").map(|(k, v)| Change::Set(k, v)))
                .collect::<Result<Vec<_>>>()?;
            alter(context, &resource, &changes, "set", "on").await?;
        }
        ConfigCommand::Delete { keys, broker } => {
            let resource = resource(broker);
            context.confirm(&format!(
                "remove {} from {}",
                keys.join(", "),
                resource.describe()
            ))?;
            let changes: Vec<Change> = keys.into_iter().map(Change::Delete).collect();
            alter(context, &resource, &changes, "removed", "from").await?;
        }
    }
    Ok(EXIT_OK)
}

/// Sends `changes` and says what was done (`set 2 setting(s) on broker 1`).
async fn alter(
    context: &mut Context,
    resource: &Resource,
    changes: &[Change],
    done: &str,
    preposition: &str,
) -> Result<()> {
    context
        .admin()
        .await?
        .alter_configs(resource, changes)
        .await?;
    eprintln!(
        "{done} {} setting(s) {preposition} {}",
        changes.len(),
        resource.describe()
    );
    Ok(())
}
