//! The cluster controller: a KafkaCluster becomes its objects (see
//! `render`), applied by server-side apply with the cluster as owner; its
//! status is computed from the StatefulSet, the pods and the brokers
//! themselves; settings brokers change live are applied through
//! IncrementalAlterConfigs; and a pod template change is rolled out one
//! broker at a time (`roll::next_step` decides which, when).
//!
//! The StatefulSet updates pods only when they are deleted (`OnDelete`), so
//! a rolling restart is the operator deleting one outdated pod, waiting for
//! its broker to rejoin, and deciding again. A broker that does not rejoin
//! within `Context::roll_timeout` stops the roll with a Warning condition.
//!
//! The steps live beside it: `apply` (server-side apply, monitoring
//! objects), `pods` (what the pods run, their racks), `rolling` (one step of
//! a rolling restart).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, PatchParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;

use super::apply::{apply, sync_monitoring};
use super::conditions::{self, READY, RECONCILING, WARNING};
use super::pods::{copy_racks, observe_pods};
use super::rolling::roll_forward;
use super::{write_status, Context, Error, FIELD_MANAGER, RESYNC};
use crate::crd::{KafkaCluster, KafkaClusterStatus};
use crate::kafka_admin::KafkaAdmin;
use crate::metrics::CLUSTER_CONTROLLER;
use crate::render::labels::selector_string;
use crate::render::names::ClusterNames;
use crate::render::objects::render;
use crate::render::server_properties::{live_config, SpecError};

/// How soon to look again while something is changing (a roll, start-up).
const PROGRESS_CHECK: Duration = Duration::from_secs(5);

pub async fn reconcile(cluster: Arc<KafkaCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_cluster(&cluster, &ctx).await;
    ctx.metrics
        .reconciled(CLUSTER_CONTROLLER, started.elapsed());
    if result.is_ok() {
        ctx.reset_backoff(cluster.as_ref());
    }
    result
}

async fn reconcile_cluster(cluster: &KafkaCluster, ctx: &Context) -> Result<Action, Error> {
    let namespace = cluster.namespace().unwrap_or_else(|| "default".into());
    let names = ClusterNames::new(&cluster.name_any(), &namespace);
    let api: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let generation = cluster.metadata.generation;
    let mut status = cluster.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.selector = selector_string(&names);

    // An invalid spec changes nothing that runs; the condition names the field.
    let objects = match pin_quorum_voters(cluster, status.quorum_voters).and_then(|c| render(&c)) {
        Ok(objects) => objects,
        Err(invalid) => {
            let message = invalid.to_string();
            let already = conditions::get(&status.conditions, WARNING)
                .is_some_and(|c| c.status == "True" && c.message == message);
            conditions::set(
                &mut status.conditions,
                READY,
                false,
                "InvalidSpec",
                &message,
                generation,
            );
            conditions::set(
                &mut status.conditions,
                WARNING,
                true,
                "InvalidSpec",
                &message,
                generation,
            );
            conditions::set(
                &mut status.conditions,
                RECONCILING,
                false,
                "InvalidSpec",
                "waiting for a valid spec",
                generation,
            );
            status.phase = Some("Failed".into());
            if !already {
                tracing::warn!(cluster = %names.cluster, namespace = %namespace, "invalid spec: {message}");
                ctx.event(cluster, true, "InvalidSpec", message).await;
            }
            write_status(&api, cluster, &status).await?;
            // Nothing to retry until the spec changes.
            return Ok(Action::await_change());
        }
    };

    let params = PatchParams::apply(FIELD_MANAGER).force();
    for object in objects.to_values() {
        apply(ctx, &namespace, &object, &params).await?;
    }
    if status.quorum_voters.is_none() {
        status.quorum_voters = Some(cluster.spec.controller_count());
    }
    sync_monitoring(ctx, cluster, &names, &objects.monitoring, &params).await?;

    let rack_problem = match &cluster.spec.rack {
        Some(rack) => copy_racks(ctx, &names, &rack.topology_key).await?,
        None => None,
    };
    let pods = observe_pods(ctx, &names).await?;
    status.replicas = pods.replicas;
    status.ready_replicas = pods.ready;

    // The brokers' own view; unreachable while the cluster starts.
    let bootstrap = (ctx.bootstrap)(cluster);
    let mut brokers_error = None;
    let mut live_config_error = None;
    let health = match KafkaAdmin::connect(&bootstrap).await {
        Ok(mut admin) => match admin.cluster_health().await {
            Ok(health) => {
                if let Err(e) = sync_live_config(&mut admin, cluster, &mut status).await {
                    live_config_error = Some(format!(
                        "spec.config: the brokers refused the live settings: {e}"
                    ));
                }
                Some(health)
            }
            Err(e) => {
                brokers_error = Some(e.to_string());
                None
            }
        },
        Err(e) => {
            brokers_error = Some(e.to_string());
            None
        }
    };
    match &health {
        Some(h) => {
            status.controller_id = h.controller;
            status.under_replicated_partitions = Some(
                h.partitions
                    .iter()
                    .filter(|p| p.isr.len() < p.replicas.len())
                    .count() as i64,
            );
            status.offline_partitions =
                Some(h.partitions.iter().filter(|p| p.leader < 0).count() as i64);
        }
        None => {
            status.controller_id = None;
            status.under_replicated_partitions = None;
            status.offline_partitions = None;
        }
    }

    let rolling = roll_forward(ctx, cluster, &names, &pods, health.as_ref(), &mut status).await?;

    // Phase and Ready from what was observed.
    let expected = cluster.spec.replicas;
    let live = health.as_ref().map_or(0, |h| h.live_brokers.len() as i32);
    let offline = status.offline_partitions.unwrap_or(0);
    let under = status.under_replicated_partitions.unwrap_or(0);
    let stopped = status.restarting_broker.is_some()
        && conditions::get(&status.conditions, WARNING)
            .is_some_and(|c| c.reason == "BrokerNotReturning" && c.status == "True");
    let (phase, ready, reason, message) = if let Some(error) = &brokers_error {
        let phase = if pods.replicas == 0 || pods.ready < expected {
            "Pending"
        } else {
            "Degraded"
        };
        (
            phase,
            false,
            "BrokersUnreachable",
            format!("cannot query the brokers at {bootstrap}: {error}"),
        )
    } else if stopped {
        (
            "Degraded",
            false,
            "RollStopped",
            "a restarted broker did not rejoin; see the Warning condition".to_string(),
        )
    } else if live < expected || pods.ready < expected {
        (
            "Pending",
            false,
            "BrokersStarting",
            format!(
                "{live} of {expected} brokers live, {} pods ready",
                pods.ready
            ),
        )
    } else if offline > 0 {
        (
            "Degraded",
            false,
            "OfflinePartitions",
            format!("{offline} partition(s) have no leader"),
        )
    } else if rolling {
        (
            "Rolling",
            true,
            "Rolling",
            "rolling restart in progress; the cluster serves traffic".to_string(),
        )
    } else if under > 0 {
        (
            "Degraded",
            true,
            "UnderReplicated",
            format!("{under} partition(s) are under-replicated"),
        )
    } else {
        (
            "Running",
            true,
            "AllBrokersReady",
            format!("{expected} brokers live, every partition fully replicated"),
        )
    };
    let previous_phase = status.phase.clone();
    status.phase = Some(phase.to_string());
    conditions::set(
        &mut status.conditions,
        READY,
        ready,
        reason,
        &message,
        generation,
    );
    if !rolling {
        let reconciling = pods.ready < expected;
        conditions::set(
            &mut status.conditions,
            RECONCILING,
            reconciling,
            if reconciling {
                "WaitingForBrokers"
            } else {
                "UpToDate"
            },
            if reconciling {
                message.clone()
            } else {
                "every broker runs the current spec".into()
            },
            generation,
        );
    }
    if !stopped {
        let problem = rack_problem
            .map(|p| ("NodeWithoutRackLabel", p))
            .or(live_config_error.map(|e| ("LiveConfigRefused", e)));
        match problem {
            Some((reason, problem)) => conditions::set(
                &mut status.conditions,
                WARNING,
                true,
                reason,
                problem,
                generation,
            ),
            None => conditions::clear(&mut status.conditions, WARNING, generation),
        }
    }
    if previous_phase.as_deref() != Some(phase) {
        tracing::info!(cluster = %names.cluster, namespace = %namespace, phase, "{message}");
        ctx.event(cluster, !ready, phase, message).await;
    }
    write_status(&api, cluster, &status).await?;

    Ok(if rolling || phase == "Pending" {
        Action::requeue(PROGRESS_CHECK)
    } else {
        Action::requeue(RESYNC)
    })
}

/// The cluster as it must be rendered: with the metadata quorum's voters
/// it was created with. Scaling keeps them (the default `controllers`
/// follows `replicas` only at creation); an explicit different count is
/// refused, since a rolling restart cannot reconfigure a quorum.
fn pin_quorum_voters(
    cluster: &KafkaCluster,
    voters: Option<i32>,
) -> Result<KafkaCluster, SpecError> {
    let Some(voters) = voters else {
        return Ok(cluster.clone());
    };
    match cluster.spec.controllers {
        Some(wanted) if wanted != voters => Err(SpecError {
            field: "spec.controllers".into(),
            message: format!(
                "the metadata quorum was created with {voters} voter(s); changing it to {wanted} is not supported"
            ),
        }),
        _ => {
            let mut pinned = cluster.clone();
            pinned.spec.controllers = Some(voters);
            Ok(pinned)
        }
    }
}

/// Converges the cluster-wide dynamic broker settings to the spec's live
/// keys; keys the operator set before and the spec dropped are removed.
async fn sync_live_config(
    admin: &mut KafkaAdmin,
    cluster: &KafkaCluster,
    status: &mut KafkaClusterStatus,
) -> Result<(), crate::kafka_admin::AdminError> {
    let desired = live_config(cluster);
    let current = admin.cluster_dynamic_config().await?;
    let set: BTreeMap<String, String> = desired
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let delete: Vec<String> = status
        .live_config
        .keys()
        .filter(|k| !desired.contains_key(*k) && current.contains_key(*k))
        .cloned()
        .collect();
    if !set.is_empty() || !delete.is_empty() {
        admin.alter_cluster_dynamic_config(&set, &delete).await?;
        tracing::info!(
            cluster = %cluster.name_any(),
            set = ?set.keys().collect::<Vec<_>>(),
            removed = ?delete,
            "applied broker settings live, without restarts"
        );
    }
    status.live_config = desired;
    Ok(())
}
