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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use serde_json::{json, Value};

use super::conditions::{self, READY, RECONCILING, WARNING};
use super::{write_status, Context, Error, FIELD_MANAGER, RESYNC};
use crate::crd::{BrokerRestart, KafkaCluster, KafkaClusterStatus};
use crate::kafka_admin::KafkaAdmin;
use crate::metrics::CLUSTER_CONTROLLER;
use crate::render::monitoring::MONITORING_API_VERSION;
use crate::render::names::ClusterNames;
use crate::render::objects::{render, selector_string};
use crate::render::server_properties::{live_config, SpecError, RACK_ANNOTATION};
use crate::roll::{self, ClusterHealth, RollStep};

/// How soon to look again while something is changing (a roll, start-up).
const PROGRESS_CHECK: Duration = Duration::from_secs(5);
/// The StatefulSet's label naming the revision a pod was created from.
const REVISION_LABEL: &str = "controller-revision-hash";
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

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

/// What the operator saw of the broker pods.
struct PodsObserved {
    /// Pods that exist, and those of them that are ready.
    replicas: i32,
    ready: i32,
    /// Brokers whose pod runs an older pod template than the StatefulSet's.
    outdated: Vec<i32>,
    /// Brokers whose pod runs the current template and is ready.
    ready_current: Vec<i32>,
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

/// Server-side apply of one rendered object (its kind from its apiVersion
/// and kind fields).
async fn apply(
    ctx: &Context,
    namespace: &str,
    object: &Value,
    params: &PatchParams,
) -> Result<(), Error> {
    let api = dynamic_api(ctx, namespace, object);
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    api.patch(name, params, &Patch::Apply(object)).await?;
    Ok(())
}

fn dynamic_api(ctx: &Context, namespace: &str, object: &Value) -> Api<DynamicObject> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, &plural(kind));
    Api::namespaced_with(ctx.client.clone(), namespace, &resource)
}

/// Kubernetes plural of the kinds the operator renders.
fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    match lower.strip_suffix('y') {
        Some(stem) if !lower.ends_with("ey") => format!("{stem}ies"),
        _ if lower.ends_with('s') => format!("{lower}es"),
        _ => format!("{lower}s"),
    }
}

/// Applies the enabled ServiceMonitor/PrometheusRule and deletes one that
/// was switched off.
async fn sync_monitoring(
    ctx: &Context,
    cluster: &KafkaCluster,
    names: &ClusterNames,
    enabled: &[Value],
    params: &PatchParams,
) -> Result<(), Error> {
    for object in enabled {
        apply(ctx, &names.namespace, object, params).await?;
    }
    let wanted = [
        ("ServiceMonitor", cluster.spec.monitoring.service_monitor),
        ("PrometheusRule", cluster.spec.monitoring.prometheus_rule),
    ];
    for (kind, on) in wanted {
        if on {
            continue;
        }
        let stub = json!({ "apiVersion": MONITORING_API_VERSION, "kind": kind });
        let api = dynamic_api(ctx, &names.namespace, &stub);
        match api.delete(&names.cluster, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(cluster = %names.cluster, kind, "monitoring object removed"),
            // Absent, or the Prometheus Operator's CRDs are not installed.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Copies each scheduled broker pod's rack — its node's `topology_key`
/// label — into the pod's annotation, which its init container waits for
/// and its `broker.rack` comes from. Returns a problem to report when a
/// node lacks the label (that broker waits until it gets one).
async fn copy_racks(
    ctx: &Context,
    names: &ClusterNames,
    topology_key: &str,
) -> Result<Option<String>, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let listed = pods
        .list(&ListParams::default().labels(&selector_string(names)))
        .await?;
    let mut unlabelled = Vec::new();
    for pod in listed.items {
        if pod.annotations().contains_key(RACK_ANNOTATION) {
            continue;
        }
        let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue; // not scheduled yet
        };
        let rack = nodes
            .get_opt(&node_name)
            .await?
            .and_then(|node| node.labels().get(topology_key).cloned())
            .filter(|rack| !rack.is_empty());
        let Some(rack) = rack else {
            unlabelled.push(format!("{} (node {node_name})", pod.name_any()));
            continue;
        };
        let patch = json!({ "metadata": { "annotations": { RACK_ANNOTATION: rack } } });
        pods.patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        tracing::info!(pod = %pod.name_any(), node = %node_name, %rack, "broker rack set from its node");
    }
    Ok((!unlabelled.is_empty()).then(|| {
        format!(
            "spec.rack.topologyKey: the nodes of {} have no {topology_key:?} label; those brokers wait for one",
            unlabelled.join(", ")
        )
    }))
}

async fn observe_pods(ctx: &Context, names: &ClusterNames) -> Result<PodsObserved, Error> {
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let update_revision = sets
        .get_opt(&names.statefulset())
        .await?
        .and_then(|s| s.status)
        .and_then(|s| s.update_revision);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let listed = pods
        .list(&ListParams::default().labels(&selector_string(names)))
        .await?;
    let mut observed = PodsObserved {
        replicas: 0,
        ready: 0,
        outdated: Vec::new(),
        ready_current: Vec::new(),
    };
    for pod in listed.items {
        let Some(broker) = broker_of(&pod) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        observed.replicas += 1;
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let current = match (&update_revision, pod.labels().get(REVISION_LABEL)) {
            (Some(wanted), Some(has)) => wanted == has,
            // No revision known yet: nothing to roll.
            _ => true,
        };
        if ready {
            observed.ready += 1;
        }
        if !current {
            observed.outdated.push(broker);
        } else if ready {
            observed.ready_current.push(broker);
        }
    }
    observed.outdated.sort();
    Ok(observed)
}

/// The broker (node id) a pod runs: its StatefulSet ordinal.
fn broker_of(pod: &Pod) -> Option<i32> {
    pod.labels()
        .get(POD_INDEX_LABEL)
        .and_then(|i| i.parse().ok())
        .or_else(|| pod.name_any().rsplit_once('-')?.1.parse().ok())
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

/// One step of a rolling restart; returns whether a roll is under way.
async fn roll_forward(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_of_the_rendered_kinds() {
        assert_eq!(plural("Service"), "services");
        assert_eq!(plural("ConfigMap"), "configmaps");
        assert_eq!(plural("StatefulSet"), "statefulsets");
        assert_eq!(plural("PodDisruptionBudget"), "poddisruptionbudgets");
        assert_eq!(plural("ServiceAccount"), "serviceaccounts");
        assert_eq!(plural("ServiceMonitor"), "servicemonitors");
        assert_eq!(plural("PrometheusRule"), "prometheusrules");
    }
}
