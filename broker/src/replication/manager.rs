//! The replica manager: keeps every local partition's role in step with the
//! metadata image (leader, follower or offline), starts and stops the
//! fetchers that follow, records follower progress on leaders and sends ISR
//! changes to the controller. The decisions are the partition's
//! (`partition::leadership`); this module carries them out.

use std::sync::Arc;
use std::time::Duration;

use super::fetcher::FetcherManager;
use super::throttle::Throttle;
use crate::config::settings::{Reader, ReplicationSettings};
use crate::config::BrokerConfig;
use crate::error::ResponseError;
use crate::metadata::controller::Controller;
use crate::metadata::records::{PartitionChange, PartitionRecord};
use crate::metadata::{MetadataImage, MetadataQuorum};
use crate::ops::metrics::Metrics;
use crate::partition::{IsrProposal, LogManager, Partition, RoleChange};
use crate::util::now_ms;

pub struct ReplicaManager {
    node_id: i32,
    logs: Arc<LogManager>,
    controller: Controller,
    fetchers: FetcherManager,
    metrics: Arc<Metrics>,
    /// `replica.lag.time.max.ms`.
    lag_max_ms: i64,
    /// Bytes sent to replicas a reassignment is adding.
    pub leader_throttle: Throttle,
    /// The static configuration, under the dynamic configs of the metadata.
    config: BrokerConfig,
}

impl ReplicaManager {
    pub fn new(
        config: &BrokerConfig,
        logs: Arc<LogManager>,
        controller: Controller,
        quorum: Arc<MetadataQuorum>,
        metrics: Arc<Metrics>,
    ) -> Arc<ReplicaManager> {
        let settings = &config.settings.replication;
        Arc::new(ReplicaManager {
            node_id: config.node_id,
            fetchers: FetcherManager::new(
                config.node_id,
                quorum,
                settings.fetch.clone(),
                metrics.clone(),
                logs.clone(),
            ),
            logs,
            controller,
            metrics,
            lag_max_ms: settings.lag_max_ms,
            leader_throttle: Throttle::new(settings.throttled_rate),
            config: config.clone(),
        })
    }

    pub fn lag_max(&self) -> Duration {
        Duration::from_millis(self.lag_max_ms.max(1) as u64)
    }

    /// Brings every local partition's role in line with the image: becomes
    /// leader (starting a leader epoch), follower (fetching from the new
    /// leader after truncating), or stops replicating an offline partition.
    pub fn apply_metadata(self: &Arc<Self>, image: &MetadataImage) {
        for partition in self.logs.all() {
            let record = image
                .topics
                .get(&partition.tp.topic)
                .filter(|t| t.topic_id == partition.topic_id)
                .and_then(|t| t.partitions.get(partition.tp.partition as usize));
            match record {
                Some(record) => self.apply_partition(&partition, record),
                None => self.fetchers.remove(&partition.tp),
            }
        }
        self.fetchers.retain(|tp, partition| {
            self.logs
                .get(tp)
                .is_some_and(|p| Arc::ptr_eq(&p, partition))
        });
        // Dynamic config changes (throttle rates) take effect here too:
        // this broker's, then the cluster default, then the static value.
        let lookup = |key: &str| {
            image
                .dynamic_config(self.node_id, key)
                .or_else(|| self.config.get(key))
        };
        match ReplicationSettings::read(&Reader::new(&lookup)) {
            Ok(settings) => self.leader_throttle.set_rate(settings.throttled_rate),
            Err(e) => tracing::warn!(error = %e, "ignoring an invalid dynamic replication config"),
        }
    }

    fn apply_partition(self: &Arc<Self>, partition: &Arc<Partition>, record: &PartitionRecord) {
        match partition.apply_record(record, self.node_id, now_ms()) {
            None => {}
            Some(RoleChange::BecameLeader | RoleChange::Stop) => {
                self.fetchers.remove(&partition.tp)
            }
            Some(RoleChange::Follow {
                leader,
                leader_epoch,
            }) => self
                .fetchers
                .follow(leader, partition.clone(), leader_epoch),
        }
    }

    /// On a leader, for a fetch from replica `follower` at `fetch_offset`
    /// (its log end) with its `log_start_offset`: records its progress,
    /// advances the high watermark and asks the controller to add it to the
    /// ISR once it has caught up.
    pub fn on_follower_fetch(
        self: &Arc<Self>,
        partition: &Arc<Partition>,
        follower: i32,
        fetch_offset: i64,
        log_start_offset: i64,
    ) -> Result<(), ResponseError> {
        let recorded =
            partition.record_follower_fetch(follower, fetch_offset, log_start_offset, now_ms())?;
        if let Some(proposal) = recorded {
            tracing::info!(partition = %partition.tp, follower, "follower caught up: expanding the ISR");
            self.submit_isr_change(partition.clone(), proposal, IsrChange::Expand);
        }
        Ok(())
    }

    /// Takes followers that have not caught up within
    /// `replica.lag.time.max.ms` out of the ISR of every partition led here.
    pub fn shrink_isrs(self: &Arc<Self>) {
        let now = now_ms();
        for partition in self.logs.all() {
            if let Some(proposal) = partition.propose_shrink(self.node_id, now, self.lag_max_ms) {
                self.submit_isr_change(partition, proposal, IsrChange::Shrink);
            }
        }
    }

    /// Sends an ISR change to the controller (AlterPartition). The pending
    /// ISR is cleared when the metadata shows the result, or here if the
    /// controller refused it (a stale partition epoch: the next metadata
    /// update or check decides again).
    fn submit_isr_change(
        self: &Arc<Self>,
        partition: Arc<Partition>,
        proposal: IsrProposal,
        kind: IsrChange,
    ) {
        let this = self.clone();
        let epoch = proposal.partition_epoch;
        let change = PartitionChange {
            topic_id: partition.topic_id,
            partition: partition.tp.partition,
            expected_partition_epoch: epoch,
            leader: None,
            isr: Some(proposal.isr),
            replicas: None,
            unclean: false,
        };
        tokio::spawn(async move {
            match this.controller.change_partitions(vec![change]).await {
                Ok(()) => match kind {
                    IsrChange::Expand => this.metrics.isr_expands.inc(),
                    IsrChange::Shrink => this.metrics.isr_shrinks.inc(),
                },
                Err(e) => {
                    tracing::warn!(partition = %partition.tp, error = %e, "ISR change refused");
                    partition.proposal_refused(epoch);
                }
            }
        });
    }

    /// The largest fetch lag (leader's high watermark minus our log end)
    /// over partitions followed here.
    pub fn max_follower_lag(&self) -> i64 {
        self.fetchers.max_lag()
    }

    pub fn shutdown(&self) {
        self.fetchers.stop_all();
    }
}

#[derive(Debug, Clone, Copy)]
enum IsrChange {
    Expand,
    Shrink,
}
