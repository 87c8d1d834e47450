//! The broker's shared state and the glue between its subsystems: the
//! metadata quorum and controller, the log manager, metrics, and the
//! publisher that keeps local partition logs in step with the metadata image.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Mutex as AsyncMutex;

use crate::config::log_config::ConfigLayers;
use crate::config::{BrokerConfig, LogConfig};
use crate::coordinator::group::GroupLimits;
use crate::coordinator::groups::{CoordinatorConfig, GroupCoordinator};
use crate::disk::DirState;
use crate::error::{ApiError, ResponseError};
use crate::handlers::fetch::FetchSessionCache;
use crate::log::TopicPartition;
use crate::metadata::controller::{Controller, NewTopic};
use crate::metadata::elections;
use crate::metadata::records::PartitionChange;
use crate::metadata::{MetadataImage, MetadataQuorum, TopicImage};
use crate::ops::metrics::Metrics;
use crate::partition::{LogManager, Partition};
use crate::replication::ReplicaManager;

pub struct Broker {
    pub config: Arc<BrokerConfig>,
    pub cluster_id: String,
    pub quorum: Arc<MetadataQuorum>,
    pub controller: Controller,
    pub logs: Arc<LogManager>,
    pub metrics: Arc<Metrics>,
    pub groups: Arc<GroupCoordinator>,
    pub replicas: Arc<ReplicaManager>,
    /// Incremental fetch sessions (KIP-227) of consumers and followers.
    pub fetch_sessions: FetchSessionCache,
    /// The producer-id block this broker hands out from: (next, end).
    producer_ids: AsyncMutex<(i64, i64)>,
    /// Serializes reconciliations of local logs with the image.
    sync_lock: AsyncMutex<()>,
    ready: AtomicBool,
}

impl Broker {
    pub fn new(
        config: Arc<BrokerConfig>,
        cluster_id: String,
        quorum: Arc<MetadataQuorum>,
        logs: Arc<LogManager>,
        metrics: Arc<Metrics>,
    ) -> Broker {
        let groups =
            GroupCoordinator::new(coordinator_config(&config), logs.clone(), config.node_id);
        let controller = Controller::new(quorum.clone(), config.clone());
        let replicas = ReplicaManager::new(
            &config,
            logs.clone(),
            controller.clone(),
            quorum.clone(),
            metrics.clone(),
        );
        Broker {
            controller,
            groups,
            replicas,
            fetch_sessions: FetchSessionCache::new(
                config.settings.fetch_session_slots,
                // Often enough that a follower's progress on idle
                // partitions stays fresh well within the ISR's lag limit.
                (config.settings.replication.lag_max_ms / 4).clamp(1, 1000),
            ),
            config,
            cluster_id,
            quorum,
            logs,
            metrics,
            producer_ids: AsyncMutex::new((0, 0)),
            sync_lock: AsyncMutex::new(()),
            ready: AtomicBool::new(false),
        }
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.quorum.image()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// The effective log config of a topic on this broker.
    pub fn log_config(&self, image: &MetadataImage, topic: &TopicImage) -> LogConfig {
        self.config_layers(image, Some(topic)).log_config()
    }

    pub fn config_layers<'a>(
        &'a self,
        image: &'a MetadataImage,
        topic: Option<&'a TopicImage>,
    ) -> ConfigLayers<'a> {
        ConfigLayers {
            topic: topic.map(|t| &t.configs),
            broker_dynamic: image.broker_configs.get(&self.node_id()),
            cluster_dynamic: Some(&image.cluster_configs),
            static_config: &self.config,
        }
    }

    /// The local partition, if this broker hosts it.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.logs.get(&TopicPartition::new(topic, partition))
    }

    /// Opens logs for partitions the image assigns to this broker, applies
    /// config changes to open logs, and deletes logs of deleted topics.
    pub async fn sync_logs(&self) {
        let _guard = self.sync_lock.lock().await;
        let image = self.image();
        let me = self.node_id();
        tokio::task::block_in_place(|| {
            for topic in image.topics.values() {
                let config = self.log_config(&image, topic);
                for (index, partition) in topic.partitions.iter().enumerate() {
                    if !partition.replicas.contains(&me) {
                        continue;
                    }
                    let tp = TopicPartition::new(topic.name.clone(), index as i32);
                    match self.logs.get(&tp) {
                        Some(existing) if existing.topic_id == topic.topic_id => {
                            existing.set_config(&config);
                        }
                        _ => {
                            if let Err(e) =
                                self.logs
                                    .open_partition(&tp, topic.topic_id, config.clone())
                            {
                                tracing::error!(partition = %tp, error = %e, "cannot open partition log");
                            }
                        }
                    }
                }
            }
            let known = |tp: &TopicPartition| {
                image
                    .topics
                    .get(&tp.topic)
                    .and_then(|t| t.partitions.get(tp.partition as usize))
                    .is_some_and(|p| p.replicas.contains(&me))
            };
            for partition in self.logs.all() {
                let current = image.topics.get(&partition.tp.topic).map(|t| t.topic_id);
                if !known(&partition.tp) || current != Some(partition.topic_id) {
                    tracing::info!(partition = %partition.tp, "deleting the log of a removed partition");
                    if let Err(e) = self.logs.remove_partition(&partition.tp) {
                        tracing::error!(partition = %partition.tp, error = %e, "cannot delete partition log");
                    }
                }
            }
            match self.logs.stray_dirs(&known) {
                Ok(dirs) => {
                    for dir in dirs {
                        tracing::info!(dir = %dir.display(), "removing a partition directory the metadata does not know");
                        if let Err(e) = std::fs::remove_dir_all(&dir) {
                            tracing::error!(dir = %dir.display(), error = %e, "cannot remove directory");
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot list the log directory"),
            }
        });
        self.metrics.partitions.set(self.logs.all().len() as i64);
        // Lead, follow or stand by, as the image says.
        tokio::task::block_in_place(|| self.replicas.apply_metadata(&image));
        // Offsets partitions this broker now leads make it their groups' coordinator.
        tokio::task::block_in_place(|| self.groups.on_metadata(&image));
    }

    /// Creates a topic with the broker defaults, for Metadata and Produce
    /// requests naming a missing topic when `auto.create.topics.enable` is on.
    pub async fn auto_create_topic(&self, name: &str) -> Result<(), ApiError> {
        let request = NewTopic {
            name: name.to_string(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: Vec::new(),
            configs: Default::default(),
        };
        match self.controller.create_topic(request, false).await {
            Ok(_) => {
                tracing::info!(topic = name, "auto-created topic");
                self.sync_logs().await;
                Ok(())
            }
            Err(e) if e.kind == ResponseError::TopicAlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The active controller's periodic elections: unclean elections of
    /// offline partitions whose topic allows them and, when `rebalance` is
    /// set, preferred elections for imbalanced brokers.
    pub async fn run_elections(&self, rebalance: bool) {
        if !self.quorum.is_active_controller() {
            return;
        }
        let image = self.image();
        let unclean = elections::unclean_elections(&image, |topic| {
            self.log_config(&image, topic).unclean_leader_election
        });
        for change in unclean {
            self.commit_election(&image, change, "unclean leader election: no in-sync replica is live, so an out-of-sync replica leads; records it did not have are lost").await;
        }
        let balance = &self.config.settings.leader_balance;
        if rebalance && balance.enable {
            let percentage = balance.imbalance_percentage;
            for change in elections::rebalance_elections(&image, percentage) {
                self.commit_election(&image, change, "preferred leader election (auto rebalance)")
                    .await;
            }
        }
    }

    async fn commit_election(&self, image: &MetadataImage, change: PartitionChange, what: &str) {
        let leader = change.leader.unwrap_or(-1);
        let partition = change.partition;
        let topic = image
            .topic_names
            .get(&change.topic_id)
            .cloned()
            .unwrap_or_default();
        let unclean = change.unclean;
        match self.controller.change_partitions(vec![change]).await {
            Ok(()) if unclean => tracing::warn!(topic, partition, leader, "{what}"),
            Ok(()) => tracing::info!(topic, partition, leader, "{what}"),
            Err(e) => tracing::warn!(topic, partition, error = %e, "{what} failed"),
        }
    }

    /// Controlled shutdown: asks the controller to move every leadership off
    /// this broker and waits (at most `timeout`) until the metadata shows it
    /// leads nothing another replica could lead. Skipped when no other
    /// broker is live: there is nowhere to move leadership to.
    pub async fn controlled_shutdown(&self, timeout: std::time::Duration) {
        if tokio::time::timeout(timeout, self.move_leadership_away())
            .await
            .is_err()
        {
            tracing::warn!("controlled shutdown timed out; stopping anyway");
        }
    }

    async fn move_leadership_away(&self) {
        let me = self.node_id();
        let image = self.image();
        if !image.brokers.keys().any(|b| *b != me && image.is_live(*b)) {
            return;
        }
        let started = std::time::Instant::now();
        let mut images = self.quorum.subscribe();
        let mut requested = false;
        loop {
            if !requested {
                match self.controller.shutdown_broker(me).await {
                    Ok(()) => requested = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "controlled shutdown request failed; retrying")
                    }
                }
            }
            let image = self.image();
            let still_leading = image
                .topics
                .values()
                .flat_map(|t| t.partitions.iter())
                .filter(|p| p.leader == me)
                .count();
            if requested && still_leading == 0 {
                tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "controlled shutdown: leadership moved off this broker"
                );
                // Let the local replicas see it before the listeners stop.
                self.sync_logs().await;
                return;
            }
            tokio::select! {
                _ = images.changed() => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
            }
        }
    }

    /// Makes the metadata say what the log directory's health says (full,
    /// offline or writable), so the controller moves leaderships off a
    /// directory that takes no writes and lets the broker back once it does.
    /// Idempotent: called on every health change and periodically.
    pub async fn report_log_dir_state(&self) {
        let me = self.node_id();
        let local = self.logs.health().state();
        let image = self.image();
        if !image.brokers.contains_key(&me) {
            return;
        }
        let published = image
            .unwritable_log_dirs
            .get(&me)
            .copied()
            .unwrap_or(DirState::Writable);
        if local == published {
            return;
        }
        match self.controller.set_log_dir_state(me, local).await {
            Ok(()) => {
                tracing::info!(state = ?local, "log directory state reported to the controller")
            }
            Err(e) => {
                tracing::warn!(state = ?local, error = %e, "cannot report the log directory state; retrying")
            }
        }
    }

    /// Hands out a new producer id, taking a new block from the controller
    /// when the current one is used up.
    pub async fn next_producer_id(&self) -> Result<i64, ApiError> {
        let mut block = self.producer_ids.lock().await;
        if block.0 >= block.1 {
            let (start, len) = self.controller.allocate_producer_ids().await?;
            *block = (start, start + len);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}

/// The group coordinator's settings from the broker configuration.
fn coordinator_config(config: &BrokerConfig) -> CoordinatorConfig {
    let groups = &config.settings.groups;
    CoordinatorConfig {
        limits: GroupLimits {
            min_session_timeout_ms: groups.min_session_timeout_ms,
            max_session_timeout_ms: groups.max_session_timeout_ms,
            initial_rebalance_delay_ms: groups.initial_rebalance_delay_ms,
            max_size: groups.max_size,
        },
        max_metadata_bytes: groups.max_metadata_bytes,
        offsets_retention_ms: groups.offsets_retention_ms,
    }
}
