//! KafkaClusters and KafkaTopics declared in the Helm chart's values.
//!
//! Helm cannot create custom resources in the release that installs their
//! CRDs (it maps every kind before creating anything), so the chart puts
//! them in a ConfigMap and the operator applies them when it becomes
//! leader — after the CRDs exist. Server-side apply without force: a field
//! someone changed since (`kubectl scale`, an HPA) is left to them, with a
//! warning in the log. Removing an entry from the values does not delete the
//! resource; deleting a cluster stays an explicit `kubectl delete`.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde::Deserialize;
use serde_json::Value;

use crate::crd::{GROUP, VERSION};

/// The field manager of these applies (not the controllers').
pub const FIELD_MANAGER: &str = "tideline-helm-values";

#[derive(Debug, thiserror::Error)]
pub enum ValuesError {
    #[error("document {index}: {message}")]
    Invalid { index: usize, message: String },
    #[error("applying {kind} {namespace}/{name}: {source}")]
    Apply {
        kind: String,
        namespace: String,
        name: String,
        source: Box<kube::Error>,
    },
}

/// The resources of a multi-document YAML file, checked: only
/// `kafka.tideline.dev/v1alpha1` KafkaCluster and KafkaTopic, each named
/// and namespaced.
pub fn parse(text: &str) -> Result<Vec<Value>, ValuesError> {
    let mut resources = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let invalid = |message: String| ValuesError::Invalid { index, message };
        let value = Value::deserialize(document).map_err(|e| invalid(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        let kind = value["kind"].as_str().unwrap_or_default();
        if api_version != format!("{GROUP}/{VERSION}")
            || !["KafkaCluster", "KafkaTopic"].contains(&kind)
        {
            return Err(invalid(format!(
                "{api_version} {kind}: only {GROUP}/{VERSION} KafkaCluster and KafkaTopic are applied from values"
            )));
        }
        for field in ["name", "namespace"] {
            if !value["metadata"][field].is_string() {
                return Err(invalid(format!("{kind} without metadata.{field}")));
            }
        }
        resources.push(value);
    }
    Ok(resources)
}

/// Applies every resource of `text`; returns how many.
pub async fn apply(client: &Client, text: &str) -> Result<usize, ValuesError> {
    let resources = parse(text)?;
    for resource in &resources {
        let kind = resource["kind"].as_str().unwrap_or_default().to_string();
        let name = resource["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let namespace = resource["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let gvk = GroupVersionKind::gvk(GROUP, VERSION, &kind);
        let api_resource =
            ApiResource::from_gvk_with_plural(&gvk, &crate::controller::apply::plural(&kind));
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &namespace, &api_resource);
        match api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(resource),
            )
            .await
        {
            Ok(_) => tracing::info!(%kind, %namespace, %name, "applied from the chart's values"),
            Err(kube::Error::Api(e)) if e.code == 409 => tracing::warn!(
                %kind, %namespace, %name, conflict = %e.message,
                "not applied from the chart's values: fields were changed by another manager since"
            ),
            Err(source) => {
                return Err(ValuesError::Apply {
                    kind,
                    namespace,
                    name,
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(resources.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_named_tideline_resources_are_accepted() {
        let ok = "---\napiVersion: kafka.tideline.dev/v1alpha1\nkind: KafkaCluster\nmetadata: {name: a, namespace: n}\nspec: {replicas: 3}\n---\n---\napiVersion: kafka.tideline.dev/v1alpha1\nkind: KafkaTopic\nmetadata: {name: t, namespace: n}\nspec: {clusterRef: a, partitions: 1}\n";
        assert_eq!(parse(ok).unwrap().len(), 2);
        let foreign = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: n}\n";
        assert!(parse(foreign)
            .unwrap_err()
            .to_string()
            .contains("only kafka.tideline.dev/v1alpha1"));
        let unnamed =
            "apiVersion: kafka.tideline.dev/v1alpha1\nkind: KafkaTopic\nmetadata: {namespace: n}\n";
        assert!(parse(unnamed)
            .unwrap_err()
            .to_string()
            .contains("metadata.name"));
    }
}
