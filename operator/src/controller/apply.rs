//! Server-side apply of what `render` makes of a KafkaCluster, kinds
//! resolved from each object's apiVersion and kind, and the Prometheus
//! Operator objects switched on and off with `spec.monitoring`.

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};

use super::{Context, Error};
use crate::crd::KafkaCluster;
use crate::render::monitoring::MONITORING_API_VERSION;
use crate::render::names::ClusterNames;

/// Server-side apply of one rendered object (its kind from its apiVersion
/// and kind fields).
pub async fn apply(
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
pub fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    match lower.strip_suffix('y') {
        Some(stem) if !lower.ends_with("ey") => format!("{stem}ies"),
        _ if lower.ends_with('s') => format!("{lower}es"),
        _ => format!("{lower}s"),
    }
}

/// Applies the enabled ServiceMonitor/PrometheusRule and deletes one that
/// was switched off.
pub async fn sync_monitoring(
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
