//! What the cluster controller sees of the broker pods (which exist, are
//! ready, run an outdated pod template) and what it does to them besides
//! rolling: copying each broker's rack from its node.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::{Context, Error};
use crate::render::labels::selector_string;
use crate::render::names::ClusterNames;
use crate::render::server_properties::RACK_ANNOTATION;

/// The StatefulSet's label naming the revision a pod was created from.
const REVISION_LABEL: &str = "controller-revision-hash";
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// What the operator saw of the broker pods.
pub struct PodsObserved {
    /// Pods that exist, and those of them that are ready.
    pub replicas: i32,
    pub ready: i32,
    /// Brokers whose pod runs an older pod template than the StatefulSet's.
    pub outdated: Vec<i32>,
    /// Brokers whose pod runs the current template and is ready.
    pub ready_current: Vec<i32>,
}

pub async fn observe_pods(ctx: &Context, names: &ClusterNames) -> Result<PodsObserved, Error> {
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

/// Copies each scheduled broker pod's rack — its node's `topology_key`
/// label — into the pod's annotation, which its init container waits for
/// and its `broker.rack` comes from. Returns a problem to report when a
/// node lacks the label (that broker waits until it gets one).
pub async fn copy_racks(
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
