//! The topic controller: a KafkaTopic becomes a topic in its cluster,
//! through the Kafka admin API (`kafka_admin::sync_topic`, decisions in
//! `topic_plan`). Every resync compares the topic with the spec again, so a
//! change made outside the resource is reverted. A finalizer deletes the
//! topic when the resource goes, unless `keepOnDelete` is set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Error as FinalizerError, Event as FinalizerEvent};
use kube::ResourceExt;

use super::conditions::{self, READY, RECONCILING, WARNING};
use super::{write_status, Context, Error, RESYNC};
use crate::crd::{KafkaCluster, KafkaTopic};
use crate::kafka_admin::{sync_topic, KafkaAdmin};
use crate::metrics::TOPIC_CONTROLLER;
use crate::topic_plan::TopicAction;

pub const FINALIZER: &str = "kafka.tideline.dev/topic-deletion";
/// How soon a topic waiting for its cluster is looked at again.
const WAIT_FOR_CLUSTER: Duration = Duration::from_secs(15);

/// The topic's name in Kafka: `spec.topicName`, else the resource name.
pub fn kafka_topic_name(topic: &KafkaTopic) -> String {
    topic
        .spec
        .topic_name
        .clone()
        .unwrap_or_else(|| topic.name_any())
}

pub async fn reconcile(topic: Arc<KafkaTopic>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = topic.namespace().unwrap_or_else(|| "default".into());
    let api: Api<KafkaTopic> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, topic.clone(), |event| async {
        match event {
            FinalizerEvent::Apply(topic) => apply(&topic, &ctx, &api).await,
            FinalizerEvent::Cleanup(topic) => cleanup(&topic, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) => e,
        FinalizerError::AddFinalizer(e) | FinalizerError::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics.reconciled(TOPIC_CONTROLLER, started.elapsed());
    if result.is_ok() {
        ctx.reset_backoff(topic.as_ref());
    }
    result
}

async fn apply(topic: &KafkaTopic, ctx: &Context, api: &Api<KafkaTopic>) -> Result<Action, Error> {
    let name = kafka_topic_name(topic);
    let generation = topic.metadata.generation;
    let mut status = topic.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.topic_name = Some(name.clone());

    let clusters: Api<KafkaCluster> = Api::namespaced(
        ctx.client.clone(),
        &topic.namespace().unwrap_or_else(|| "default".into()),
    );
    let Some(cluster) = clusters.get_opt(&topic.spec.cluster_ref).await? else {
        let message = format!(
            "spec.clusterRef: no KafkaCluster {:?} in this namespace",
            topic.spec.cluster_ref
        );
        conditions::set(
            &mut status.conditions,
            READY,
            false,
            "ClusterNotFound",
            &message,
            generation,
        );
        conditions::set(
            &mut status.conditions,
            RECONCILING,
            true,
            "ClusterNotFound",
            &message,
            generation,
        );
        write_status(api, topic, &status).await?;
        return Ok(Action::requeue(WAIT_FOR_CLUSTER));
    };

    let mut admin = KafkaAdmin::connect(&(ctx.bootstrap)(&cluster)).await?;
    let plan = sync_topic(&mut admin, &name, &topic.spec).await?;
    let observed = admin.describe_topic(&name).await?;

    for action in &plan.actions {
        let (reason, note) = match action {
            TopicAction::Create {
                partitions,
                replication_factor,
                ..
            } => (
                "TopicCreated",
                format!("created topic {name} ({partitions} partitions, RF {replication_factor})"),
            ),
            TopicAction::AddPartitions { total } => (
                "PartitionsAdded",
                format!("raised topic {name} to {total} partitions"),
            ),
            TopicAction::AlterConfigs { set, delete } => (
                "ConfigUpdated",
                format!(
                    "topic {name}: set {:?}, removed {:?}",
                    set.keys().collect::<Vec<_>>(),
                    delete
                ),
            ),
        };
        tracing::info!(topic = %name, reason, "{note}");
        ctx.event(topic, false, reason, note).await;
    }

    if let Some(observed) = &observed {
        status.topic_id = observed.topic_id.clone();
        status.partitions = Some(observed.partitions);
        status.replication_factor = Some(observed.replication_factor);
    }
    conditions::set(
        &mut status.conditions,
        RECONCILING,
        false,
        "InSync",
        "the topic matches the spec",
        generation,
    );
    if plan.warnings.is_empty() {
        conditions::clear(&mut status.conditions, WARNING, generation);
        conditions::set(
            &mut status.conditions,
            READY,
            true,
            "InSync",
            format!("topic {name} matches the spec"),
            generation,
        );
    } else {
        let reason = plan.warnings[0].reason;
        let message = plan
            .warnings
            .iter()
            .map(|w| w.message.clone())
            .collect::<Vec<_>>()
            .join("; ");
        let was_warning = conditions::get(&status.conditions, WARNING)
            .is_some_and(|c| c.status == "True" && c.message == message);
        conditions::set(
            &mut status.conditions,
            WARNING,
            true,
            reason,
            &message,
            generation,
        );
        conditions::set(
            &mut status.conditions,
            READY,
            false,
            reason,
            &message,
            generation,
        );
        if !was_warning {
            tracing::warn!(topic = %name, reason, "{message}");
            ctx.event(topic, true, reason, message).await;
        }
    }
    write_status(api, topic, &status).await?;
    Ok(Action::requeue(RESYNC))
}

async fn cleanup(topic: &KafkaTopic, ctx: &Context) -> Result<Action, Error> {
    let name = kafka_topic_name(topic);
    if topic.spec.keep_on_delete {
        tracing::info!(topic = %name, "resource deleted; topic kept (keepOnDelete)");
        return Ok(Action::await_change());
    }
    let clusters: Api<KafkaCluster> = Api::namespaced(
        ctx.client.clone(),
        &topic.namespace().unwrap_or_else(|| "default".into()),
    );
    // With the cluster itself gone (or going) there is no topic left to
    // delete, and waiting for it would block the resource's deletion forever.
    let cluster = clusters
        .get_opt(&topic.spec.cluster_ref)
        .await?
        .filter(|c| c.metadata.deletion_timestamp.is_none());
    let Some(cluster) = cluster else {
        tracing::info!(topic = %name, "resource deleted; its cluster is gone too");
        return Ok(Action::await_change());
    };
    let mut admin = KafkaAdmin::connect(&(ctx.bootstrap)(&cluster)).await?;
    admin.delete_topic(&name).await?;
    tracing::info!(topic = %name, "deleted topic");
    ctx.event(
        topic,
        false,
        "TopicDeleted",
        format!("deleted topic {name}"),
    )
    .await;
    Ok(Action::await_change())
}
