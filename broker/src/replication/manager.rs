//! The replica manager: keeps every local partition's role in step with the
//! metadata image (leader, follower or offline), and on leaders tracks
//! follower progress, advances the high watermark, changes the ISR through
//! the controller and completes `acks=all` produces.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::fetcher::{FetchSettings, FetcherManager};
use super::throttle::Throttle;
use super::FollowerProgress;
use crate::config::BrokerConfig;
use crate::error::ResponseError;
use crate::log::{LogManager, Partition};
use crate::metadata::controller::Controller;
use crate::metadata::records::{PartitionChange, PartitionRecord};
use crate::metadata::{MetadataImage, MetadataQuorum};
use crate::ops::metrics::Metrics;
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
    /// The rate when no dynamic config sets one.
    static_throttle_rate: i64,
}

impl ReplicaManager {
    pub fn new(
        config: &BrokerConfig,
        logs: Arc<LogManager>,
        controller: Controller,
        quorum: Arc<MetadataQuorum>,
        metrics: Arc<Metrics>,
    ) -> Arc<ReplicaManager> {
        let settings = FetchSettings::from_config(config);
        Arc::new(ReplicaManager {
            node_id: config.node_id,
            fetchers: FetcherManager::new(
                config.node_id,
                quorum,
                settings,
                metrics.clone(),
                logs.health().clone(),
            ),
            logs,
            controller,
            metrics,
            lag_max_ms: config.get_i64("replica.lag.time.max.ms"),
            leader_throttle: Throttle::new(config.get_i64("leader.replication.throttled.rate")),
            static_throttle_rate: config.get_i64("leader.replication.throttled.rate"),
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
        // Config changes (throttle rates) take effect here too.
        let rate = image
            .broker_configs
            .get(&self.node_id)
            .and_then(|c| c.get("leader.replication.throttled.rate"))
            .or_else(|| {
                image
                    .cluster_configs
                    .get("leader.replication.throttled.rate")
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.static_throttle_rate);
        self.leader_throttle.set_rate(rate);
    }

    fn apply_partition(self: &Arc<Self>, partition: &Arc<Partition>, record: &PartitionRecord) {
        let me = self.node_id;
        let now = now_ms();
        let log_end = partition.log.lock().log_end_offset();
        let mut st = partition.replica.lock();
        let role_changed = st.leader != record.leader || st.leader_epoch != record.leader_epoch;
        if !role_changed && st.partition_epoch == record.partition_epoch {
            return;
        }
        st.leader = record.leader;
        st.leader_epoch = record.leader_epoch;
        st.partition_epoch = record.partition_epoch;
        st.replicas = record.replicas.clone();
        st.isr = record.isr.clone();
        st.adding = record.adding_replicas.clone();
        st.pending_isr = None;
        if record.leader == me {
            if role_changed {
                st.is_leader = true;
                st.epoch_start_offset = log_end;
                st.followers = record
                    .replicas
                    .iter()
                    .filter(|r| **r != me)
                    .map(|r| (*r, FollowerProgress::new(now, record.isr.contains(r))))
                    .collect();
                drop(st);
                self.fetchers.remove(&partition.tp);
                if let Err(e) = partition
                    .log
                    .lock()
                    .assign_leader_epoch(record.leader_epoch)
                {
                    tracing::error!(partition = %partition.tp, error = %e, "cannot record the leader epoch");
                }
                tracing::info!(
                    partition = %partition.tp,
                    leader_epoch = record.leader_epoch,
                    isr = ?record.isr,
                    log_end_offset = log_end,
                    high_watermark = partition.high_watermark(),
                    "became leader"
                );
            } else {
                // Same leadership, new ISR or replica set (a reassignment).
                let replicas = record.replicas.clone();
                st.followers.retain(|r, _| replicas.contains(r));
                for r in replicas.iter().filter(|r| **r != me) {
                    st.followers
                        .entry(*r)
                        .or_insert_with(|| FollowerProgress::new(now, false));
                }
                drop(st);
            }
            self.update_high_watermark(partition);
        } else {
            st.is_leader = false;
            st.followers.clear();
            drop(st);
            if role_changed {
                if record.leader >= 0 && record.replicas.contains(&me) {
                    tracing::info!(
                        partition = %partition.tp,
                        leader = record.leader,
                        leader_epoch = record.leader_epoch,
                        "following"
                    );
                    self.fetchers
                        .follow(record.leader, partition.clone(), record.leader_epoch);
                } else {
                    self.fetchers.remove(&partition.tp);
                }
            }
        }
        if role_changed {
            partition.wake_waiters();
        }
    }

    /// On a leader: moves the high watermark to what the ISR allows.
    pub fn update_high_watermark(&self, partition: &Partition) {
        partition.update_leader_high_watermark();
    }

    /// On a leader, for a fetch from replica `follower` at `fetch_offset`
    /// (its log end): records its progress, advances the high watermark and
    /// asks the controller to add it to the ISR once it has caught up.
    pub fn on_follower_fetch(
        self: &Arc<Self>,
        partition: &Arc<Partition>,
        follower: i32,
        fetch_offset: i64,
    ) -> Result<(), ResponseError> {
        let log_end = partition.log.lock().log_end_offset();
        let now = now_ms();
        let expand = {
            let mut st = partition.replica.lock();
            if !st.is_leader {
                return Err(ResponseError::NotLeaderOrFollower);
            }
            if !st.replicas.contains(&follower) {
                return Err(ResponseError::NotLeaderOrFollower);
            }
            if fetch_offset > log_end {
                // Diverged: the follower must truncate first.
                return Err(ResponseError::OffsetOutOfRange);
            }
            st.followers
                .entry(follower)
                .or_insert_with(|| FollowerProgress::new(now, false))
                .on_fetch(fetch_offset, log_end, now);
            let hw = partition.high_watermark();
            if !st.isr.contains(&follower)
                && st.pending_isr.is_none()
                && fetch_offset >= hw
                && fetch_offset >= st.epoch_start_offset
            {
                let mut isr = st.isr.clone();
                isr.push(follower);
                st.pending_isr = Some(isr.clone());
                Some(self.isr_change(partition, st.partition_epoch, isr))
            } else {
                None
            }
        };
        self.update_high_watermark(partition);
        if let Some(change) = expand {
            tracing::info!(partition = %partition.tp, follower, "follower caught up: expanding the ISR");
            self.submit_isr_change(partition.clone(), change, IsrChange::Expand);
        }
        Ok(())
    }

    /// Takes followers that have not caught up within
    /// `replica.lag.time.max.ms` out of the ISR of every partition led here.
    pub fn shrink_isrs(self: &Arc<Self>) {
        let now = now_ms();
        for partition in self.logs.all() {
            let change = {
                let mut st = partition.replica.lock();
                if !st.is_leader || st.pending_isr.is_some() {
                    continue;
                }
                let laggards = st.laggards(self.node_id, now, self.lag_max_ms);
                if laggards.is_empty() {
                    continue;
                }
                let isr: Vec<i32> = st
                    .isr
                    .iter()
                    .copied()
                    .filter(|b| !laggards.contains(b))
                    .collect();
                tracing::warn!(
                    partition = %partition.tp,
                    from = ?st.isr,
                    to = ?isr,
                    lagging = ?laggards,
                    "shrinking the ISR: followers have not caught up within replica.lag.time.max.ms"
                );
                st.pending_isr = Some(isr.clone());
                self.isr_change(&partition, st.partition_epoch, isr)
            };
            self.submit_isr_change(partition, change, IsrChange::Shrink);
        }
    }

    fn isr_change(&self, partition: &Partition, epoch: i32, isr: Vec<i32>) -> PartitionChange {
        PartitionChange {
            topic_id: partition.topic_id,
            partition: partition.tp.partition,
            expected_partition_epoch: epoch,
            leader: None,
            isr: Some(isr),
            replicas: None,
            unclean: false,
        }
    }

    /// Sends an ISR change to the controller (AlterPartition). The pending
    /// ISR is cleared when the metadata shows the result, or here if the
    /// controller refused it (a stale partition epoch: the next metadata
    /// update or check decides again).
    fn submit_isr_change(
        self: &Arc<Self>,
        partition: Arc<Partition>,
        change: PartitionChange,
        kind: IsrChange,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let epoch = change.expected_partition_epoch;
            match this.controller.change_partitions(vec![change]).await {
                Ok(()) => match kind {
                    IsrChange::Expand => this.metrics.isr_expands.inc(),
                    IsrChange::Shrink => this.metrics.isr_shrinks.inc(),
                },
                Err(e) => {
                    tracing::warn!(partition = %partition.tp, error = %e, "ISR change refused");
                    let mut st = partition.replica.lock();
                    if st.partition_epoch == epoch {
                        st.pending_isr = None;
                    }
                }
            }
        });
    }

    /// Waits until the ISR has everything up to `required_offset` (an
    /// `acks=all` produce). Fails with NOT_LEADER_OR_FOLLOWER if leadership
    /// moved, NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below
    /// `min_isr` meanwhile, or REQUEST_TIMED_OUT.
    pub async fn wait_for_replication(
        partition: &Partition,
        leader_epoch: i32,
        required_offset: i64,
        min_isr: i32,
        deadline: Instant,
    ) -> Result<(), ResponseError> {
        let mut changes = partition.subscribe_high_watermark();
        loop {
            {
                let st = partition.replica.lock();
                if !st.is_leader || st.leader_epoch != leader_epoch {
                    return Err(ResponseError::NotLeaderOrFollower);
                }
                if partition.high_watermark() >= required_offset {
                    return if (st.isr.len() as i32) < min_isr {
                        Err(ResponseError::NotEnoughReplicasAfterAppend)
                    } else {
                        Ok(())
                    };
                }
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Err(ResponseError::NotLeaderOrFollower);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return Err(ResponseError::RequestTimedOut),
            }
        }
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
