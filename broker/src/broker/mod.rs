//! The broker's shared state: the metadata quorum and controller, the
//! partitions, the coordinators and metrics, handed to every request
//! handler. What the broker does with them on its own lives beside it, one
//! job per file.

mod elections;
mod log_dir_state;
mod observed;
mod producer_ids;
mod publisher;
mod shutdown;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Mutex as AsyncMutex;

use crate::config::log_config::ConfigLayers;
use crate::config::{BrokerConfig, LogConfig};
use crate::coordinator::group::GroupLimits;
use crate::coordinator::groups::{CoordinatorConfig, GroupCoordinator};
use crate::handlers::fetch::FetchSessionCache;
use crate::log::TopicPartition;
use crate::metadata::controller::Controller;
use crate::metadata::{MetadataImage, MetadataQuorum, TopicImage};
use crate::ops::metrics::Metrics;
use crate::partition::{LogManager, Partition};
use crate::replication::ReplicaManager;
use crate::transactions::{TransactionCoordinator, TxnConfig};

pub struct Broker {
    pub config: Arc<BrokerConfig>,
    pub cluster_id: String,
    pub quorum: Arc<MetadataQuorum>,
    pub controller: Controller,
    pub logs: Arc<LogManager>,
    pub metrics: Arc<Metrics>,
    pub groups: Arc<GroupCoordinator>,
    pub transactions: Arc<TransactionCoordinator>,
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
        let transactions = TransactionCoordinator::new(
            TxnConfig {
                max_timeout_ms: config.settings.transactions.max_timeout_ms,
                id_expiration_ms: config.settings.transactions.id_expiration_ms,
            },
            logs.clone(),
            quorum.clone(),
            metrics.clone(),
            config.node_id,
        );
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
            transactions,
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
