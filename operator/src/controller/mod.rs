//! The two reconcile loops (`cluster`, `topic`) and what they share: the
//! context handed to every reconcile, the error type whose `reason` labels
//! the error metric, per-object exponential backoff, and status conditions.
//!
//! Reconcile functions are plain async functions of (object, context), so
//! tests call them directly against an in-memory Kubernetes API; `run`
//! wires them into kube-runtime `Controller`s for the real process.

pub mod apply;
pub mod cluster;
pub mod conditions;
pub mod pods;
pub mod rolling;
pub mod topic;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};

use crate::crd::KafkaCluster;
use crate::metrics::OperatorMetrics;
use crate::render::names::ClusterNames;

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "tideline-operator";
/// The label every object the cluster controller renders carries.
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=tideline-operator";
/// How often a healthy resource is looked at again (drift repair, status).
pub const RESYNC: Duration = Duration::from_secs(60);
/// First and longest wait after a failed reconcile.
pub const BACKOFF_START: Duration = Duration::from_secs(5);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Where the operator reaches a cluster's brokers. In a pod, the bootstrap
/// Service's DNS name; tests point it at real local broker processes.
pub type BootstrapResolver = Arc<dyn Fn(&KafkaCluster) -> String + Send + Sync>;

#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub metrics: OperatorMetrics,
    pub recorder: Recorder,
    pub bootstrap: BootstrapResolver,
    /// How long a restarted broker may take to rejoin before the roll stops
    /// with a Warning.
    pub roll_timeout: Duration,
    failures: Arc<Mutex<HashMap<String, u32>>>,
}

impl Context {
    pub fn new(client: Client, metrics: OperatorMetrics, reporter: Reporter) -> Self {
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            bootstrap: Arc::new(|cluster: &KafkaCluster| {
                ClusterNames::new(
                    &cluster.name_any(),
                    cluster.namespace().as_deref().unwrap_or("default"),
                )
                .bootstrap_address()
            }),
            roll_timeout: Duration::from_secs(600),
            failures: Arc::default(),
        }
    }

    pub fn with_bootstrap(mut self, bootstrap: BootstrapResolver) -> Self {
        self.bootstrap = bootstrap;
        self
    }

    pub fn with_roll_timeout(mut self, timeout: Duration) -> Self {
        self.roll_timeout = timeout;
        self
    }

    /// Publishes a Kubernetes Event about `object`; a failure to do so is
    /// logged, never fatal (events are best effort).
    pub async fn event<K>(&self, object: &K, warning: bool, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }

    /// The delay before retrying `object` after its `n`th failure in a row:
    /// 5 s doubling up to 5 minutes.
    pub fn backoff_after_failure<K: Resource<DynamicType = ()>>(&self, object: &K) -> Duration {
        let key = ObjectRef::from_obj(object).to_string();
        let mut failures = self.failures.lock().expect("not poisoned");
        let n = failures.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        backoff(*n)
    }

    pub fn reset_backoff<K: Resource<DynamicType = ()>>(&self, object: &K) {
        let key = ObjectRef::from_obj(object).to_string();
        self.failures.lock().expect("not poisoned").remove(&key);
    }
}

/// The wait after `failures` consecutive failures.
pub fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    BACKOFF_START.saturating_mul(factor).min(BACKOFF_MAX)
}

/// Writes an object's whole status by server-side apply: fields the
/// operator no longer sets (a finished restart, an unreachable cluster's
/// counts) go away.
pub async fn write_status<K>(
    api: &Api<K>,
    object: &K,
    status: &impl serde::Serialize,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    Ok(())
}

/// Why a reconcile failed; `reason` labels the error metric.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Kafka admin API: {0}")]
    Kafka(#[from] crate::kafka_admin::AdminError),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApi",
            Error::Kafka(_) => "KafkaAdmin",
            Error::Finalizer(_) => "Finalizer",
        }
    }
}

/// Runs both controllers until the process is asked to stop.
pub async fn run(ctx: Context) {
    use futures::StreamExt;
    use kube::runtime::controller::Controller;
    use kube::runtime::watcher;

    let client = ctx.client.clone();
    let ctx = Arc::new(ctx);

    let clusters = Controller::new(
        Api::<KafkaCluster>::all(client.clone()),
        watcher::Config::default(),
    )
    // Only the objects the operator made (its managed-by label), not every
    // StatefulSet and ConfigMap of the cluster: a change to one brings its
    // KafkaCluster back to the desired state at once.
    .owns(
        Api::<k8s_openapi::api::apps::v1::StatefulSet>::all(client.clone()),
        watcher::Config::default().labels(MANAGED_BY_SELECTOR),
    )
    .owns(
        Api::<k8s_openapi::api::core::v1::ConfigMap>::all(client.clone()),
        watcher::Config::default().labels(MANAGED_BY_SELECTOR),
    );
    let cluster_store = clusters.store();
    let clusters = clusters
        .shutdown_on_signal()
        .run(
            cluster::reconcile,
            |obj, err, ctx: Arc<Context>| {
                error_policy(crate::metrics::CLUSTER_CONTROLLER, obj.as_ref(), err, &ctx)
            },
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "cluster controller event");
            }
        });

    let topics = Controller::new(
        Api::<crate::crd::KafkaTopic>::all(client.clone()),
        watcher::Config::default(),
    );
    let topic_store = topics.store();
    let topics = topics
        .shutdown_on_signal()
        .run(
            topic::reconcile,
            |obj, err, ctx: Arc<Context>| {
                error_policy(crate::metrics::TOPIC_CONTROLLER, obj.as_ref(), err, &ctx)
            },
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "topic controller event");
            }
        });

    // The watched-resource gauges, for the "stalled" alert.
    let metrics = ctx.metrics.clone();
    let counts = tokio::spawn(async move {
        loop {
            metrics.set_resources(
                crate::metrics::CLUSTER_CONTROLLER,
                cluster_store.state().len(),
            );
            metrics.set_resources(crate::metrics::TOPIC_CONTROLLER, topic_store.state().len());
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    });
    tokio::join!(clusters, topics);
    counts.abort();
}

/// What a controller does with a failed reconcile: count it by reason, log
/// it, and retry the object after an exponentially growing delay.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    controller: &str,
    object: &K,
    error: &Error,
    ctx: &Context,
) -> kube::runtime::controller::Action {
    ctx.metrics.reconcile_failed(controller, error.reason());
    let delay = ctx.backoff_after_failure(object);
    tracing::warn!(
        controller,
        object = %ObjectRef::from_obj(object),
        reason = error.reason(),
        error = %error,
        retry_in_s = delay.as_secs(),
        "reconcile failed"
    );
    kube::runtime::controller::Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(3), Duration::from_secs(20));
        assert_eq!(backoff(7), Duration::from_secs(300));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }
}
