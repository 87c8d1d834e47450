//! Executing a rolling restart, one step per reconcile: delete the pod of
//! the broker `roll::next_step` picks, wait for it to rejoin, and stop with
//! a Warning when it does not within `Context::roll_timeout`.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams};

use super::conditions::{self, RECONCILING, WARNING};
use super::pods::PodsObserved;
use super::{Context, Error};
use crate::crd::{BrokerRestart, KafkaCluster, KafkaClusterStatus};
use crate::render::names::ClusterNames;
use crate::roll::{self, ClusterHealth, RollStep};

/// One step of a rolling restart; returns whether a roll is under way.
pub async fn roll_forward(
    ctx: &Context,
    cluster: &KafkaCluster,
    names: &ClusterNames,
    pods: &PodsObserved,
    health: Option<&ClusterHealth>,
    status: &mut KafkaClusterStatus,
) -> Result<bool, Error> {
    let generation = cluster.metadata.generation;
    if let Some(restart) = status.restarting_broker.clone() {
        let back = pods.ready_current.contains(&restart.broker)
            && health.is_some_and(|h| h.live_brokers.contains(&restart.broker));
        if back {
            tracing::info!(cluster = %names.cluster, broker = restart.broker, "restarted broker rejoined");
            ctx.event(
                cluster,
                false,
                "BrokerRestarted",
                format!("broker {} restarted and rejoined", restart.broker),
            )
            .await;
            status.restarting_broker = None;
            conditions::clear(&mut status.conditions, WARNING, generation);
        } else {
            let waited = restart
                .started_at
                .parse::<Timestamp>()
                .map(|t| Timestamp::now().duration_since(t).unsigned_abs())
                .unwrap_or_default();
            if waited > ctx.roll_timeout {
                let message = format!(
                    "broker {} was restarted at {} and has not rejoined after {} s; the rolling restart is stopped until it does (check `kubectl describe pod {}` and its logs)",
                    restart.broker,
                    restart.started_at,
                    waited.as_secs(),
                    names.pod(restart.broker)
                );
                let already = conditions::get(&status.conditions, WARNING)
                    .is_some_and(|c| c.status == "True" && c.reason == "BrokerNotReturning");
                conditions::set(
                    &mut status.conditions,
                    WARNING,
                    true,
                    "BrokerNotReturning",
                    &message,
                    generation,
                );
                conditions::set(
                    &mut status.conditions,
                    RECONCILING,
                    true,
                    "RollStopped",
                    &message,
                    generation,
                );
                if !already {
                    tracing::error!(cluster = %names.cluster, broker = restart.broker, "{message}");
                    ctx.event(cluster, true, "BrokerNotReturning", message)
                        .await;
                }
            } else {
                conditions::set(
                    &mut status.conditions,
                    RECONCILING,
                    true,
                    "RollingRestart",
                    format!(
                        "waiting for broker {} to rejoin ({} s so far)",
                        restart.broker,
                        waited.as_secs()
                    ),
                    generation,
                );
            }
            return Ok(true);
        }
    }
    if pods.outdated.is_empty() {
        return Ok(false);
    }
    let Some(health) = health else {
        conditions::set(
            &mut status.conditions,
            RECONCILING,
            true,
            "RollWaiting",
            format!(
                "{} broker(s) to restart; waiting to reach the brokers",
                pods.outdated.len()
            ),
            generation,
        );
        return Ok(true);
    };
    let expected: Vec<i32> = (0..cluster.spec.replicas).collect();
    match roll::next_step(health, &expected, &pods.outdated) {
        RollStep::Done => Ok(false),
        RollStep::Wait(why) => {
            conditions::set(
                &mut status.conditions,
                RECONCILING,
                true,
                "RollWaiting",
                format!("{} broker(s) to restart; {why}", pods.outdated.len()),
                generation,
            );
            Ok(true)
        }
        RollStep::Restart(broker) => {
            let pod = names.pod(broker);
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
            api.delete(&pod, &DeleteParams::default()).await?;
            let message = format!(
                "restarting broker {broker} (pod {pod}) to apply the new pod template; {} left after it",
                pods.outdated.len() - 1
            );
            tracing::info!(cluster = %names.cluster, broker, "{message}");
            ctx.event(cluster, false, "RestartingBroker", message.clone())
                .await;
            status.restarting_broker = Some(BrokerRestart {
                broker,
                started_at: Timestamp::now().to_string(),
            });
            conditions::set(
                &mut status.conditions,
                RECONCILING,
                true,
                "RollingRestart",
                message,
                generation,
            );
            Ok(true)
        }
    }
}
