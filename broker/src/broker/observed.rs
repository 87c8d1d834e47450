//! What the HTTP server shows of the broker: readiness, and the state its
//! gauges describe, gathered into a plain snapshot at scrape time.

use super::Broker;
use crate::ops::http::Observed;
use crate::ops::metrics::{
    GroupGauges, GroupOffsetGauges, LeadershipGauges, PartitionGauges, StateSnapshot,
};

impl Observed for Broker {
    fn is_ready(&self) -> bool {
        Broker::is_ready(self)
    }

    fn metrics_text(&self) -> String {
        self.metrics.render(&self.state_snapshot())
    }
}

impl Broker {
    fn state_snapshot(&self) -> StateSnapshot {
        let (fetch_sessions, fetch_session_evictions) = self.fetch_sessions.stats();
        StateSnapshot {
            partitions: self.partition_gauges(),
            replica_max_lag: self.replicas.max_follower_lag(),
            fetch_sessions,
            fetch_session_evictions,
            direct_io_buffer_bytes: crate::log::direct_tail::memory_held() as u64,
            direct_io_written_bytes: crate::log::direct_tail::bytes_written_directly(),
            writeback_started_bytes: crate::log::flusher::writeback_started_bytes(),
            sendfile_sent_bytes: crate::disk::sendfile::bytes_sent(),
            leadership: self.leadership_gauges(),
            metadata_offset: self.quorum.applied_index(),
            disk_used_and_total: crate::disk::health::space(self.logs.dir())
                .map(|space| (space.total - space.free, space.total)),
            log_dir: self.logs.health().snapshot(),
            groups: self.group_gauges(),
            open_transactions: self.transactions.open_count(),
        }
    }

    fn partition_gauges(&self) -> Vec<PartitionGauges> {
        self.logs
            .all()
            .iter()
            .map(|partition| {
                let offsets = partition.offsets();
                PartitionGauges {
                    topic: partition.tp.topic.clone(),
                    partition: partition.tp.partition,
                    size_bytes: offsets.size_bytes,
                    log_start_offset: offsets.log_start_offset,
                    log_end_offset: offsets.log_end_offset,
                    high_watermark: partition.high_watermark(),
                    last_stable_offset: partition.last_stable_offset(),
                }
            })
            .collect()
    }

    fn leadership_gauges(&self) -> LeadershipGauges {
        let image = self.image();
        let me = self.node_id();
        let active_controller = self.quorum.is_active_controller();
        let mut gauges = LeadershipGauges {
            active_controller,
            fenced_brokers: if active_controller {
                image.fenced_brokers.len() as i64
            } else {
                0
            },
            ..LeadershipGauges::default()
        };
        for topic in image.topics.values() {
            let min_isr = self.log_config(&image, topic).min_insync_replicas;
            for p in &topic.partitions {
                if p.leader < 0 && active_controller {
                    gauges.offline += 1;
                }
                if p.leader == me {
                    gauges.leaders += 1;
                    if p.isr.len() < p.replicas.len() {
                        gauges.under_replicated += 1;
                    }
                    if (p.isr.len() as i32) < min_isr {
                        gauges.under_min_isr += 1;
                    }
                }
            }
        }
        gauges
    }

    fn group_gauges(&self) -> Vec<GroupGauges> {
        self.groups
            .summaries()
            .into_iter()
            .map(|group| GroupGauges {
                state: group.state.name(),
                members: group.members,
                offsets: group
                    .offsets
                    .into_iter()
                    .map(|(topic, partition, committed)| GroupOffsetGauges {
                        lag: self
                            .partition(&topic, partition)
                            .map(|p| (p.high_watermark() - committed).max(0)),
                        topic,
                        partition,
                        committed,
                    })
                    .collect(),
                group_id: group.group_id,
            })
            .collect()
    }
}
