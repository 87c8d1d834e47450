//! ListOffsets (earliest, latest, by timestamp) and DeleteRecords, each sent
//! to the partitions' leaders.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, DeleteRecordsRequest, ListOffsetsRequest, TopicName};

use super::metadata::TopicInfo;
use super::{name, pause, Admin, Target};
use crate::error::{CliError, Result};

pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;

pub type TopicPartition = (String, i32);

/// NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, FENCED_LEADER_EPOCH,
/// UNKNOWN_LEADER_EPOCH: the partition is led elsewhere now.
const LEADER_MOVED: [i16; 4] = [6, 5, 74, 75];
/// How often a request follows a moved leader before giving up.
const MOVE_RETRIES: usize = 10;

impl Admin {
    /// For each `(topic, partition)` with its leader, the offset ListOffsets
    /// gives for `spec` (LATEST, EARLIEST or a timestamp in ms). A timestamp
    /// after the last record gives -1 (Kafka's answer), which callers map
    /// to the log end.
    pub async fn list_offsets(
        &mut self,
        partitions: &[(TopicPartition, i32)],
        spec: i64,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let mut offsets = BTreeMap::new();
        let mut pending: Vec<(TopicPartition, i32)> = partitions.to_vec();
        let mut attempt = 0;
        while !pending.is_empty() {
            let moved = self
                .list_offsets_once(&pending, spec, &mut offsets, attempt >= MOVE_RETRIES)
                .await?;
            if moved.is_empty() {
                break;
            }
            // Leadership moved since the metadata answer: ask again where
            // those partitions are led, then retry them.
            attempt += 1;
            pause(Duration::from_millis(300)).await;
            pending = self.current_leaders(&moved).await?;
        }
        Ok(offsets)
    }

    /// One round of ListOffsets; returns the partitions whose leader moved
    /// (unless `last`, when that is an error like any other).
    async fn list_offsets_once(
        &mut self,
        partitions: &[(TopicPartition, i32)],
        spec: i64,
        offsets: &mut BTreeMap<TopicPartition, i64>,
        last: bool,
    ) -> Result<Vec<TopicPartition>> {
        let mut by_leader: HashMap<i32, BTreeMap<String, Vec<i32>>> = HashMap::new();
        for ((topic, partition), leader) in partitions {
            if *leader < 0 {
                return Err(CliError::failed(
                    format!("partition {topic}-{partition} has no leader"),
                    "check `tideline cluster health`; offsets are only known to a leader",
                ));
            }
            by_leader
                .entry(*leader)
                .or_default()
                .entry(topic.clone())
                .or_default()
                .push(*partition);
        }
        let mut moved = Vec::new();
        for (leader, topics) in by_leader {
            let target = Target::Broker(leader);
            let version = self.version::<ListOffsetsRequest>(target, 7).await?;
            let mut request = ListOffsetsRequest::default();
            request.replica_id = BrokerId(-1);
            request.topics = topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let mut t = ListOffsetsTopic::default();
                    t.name = TopicName(name(&topic));
                    t.partitions = partitions
                        .into_iter()
                        .map(|p| {
                            let mut lp = ListOffsetsPartition::default();
                            lp.partition_index = p;
                            lp.current_leader_epoch = -1;
                            lp.timestamp = spec;
                            lp
                        })
                        .collect();
                    t
                })
                .collect();
            let response = self.send(target, &request, version).await?;
            for topic in response.topics {
                for p in topic.partitions {
                    let topic_name = topic.name.0.to_string();
                    if !last && LEADER_MOVED.contains(&p.error_code) {
                        moved.push((topic_name, p.partition_index));
                        continue;
                    }
                    self.check(
                        target,
                        || format!("listing offsets of {topic_name}-{}", p.partition_index),
                        p.error_code,
                        None,
                    )?;
                    offsets.insert((topic_name, p.partition_index), p.offset);
                }
            }
        }
        Ok(moved)
    }

    /// The leaders of `partitions` from a fresh metadata answer.
    async fn current_leaders(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, i32)>> {
        let topics: Vec<String> = partitions
            .iter()
            .map(|(t, _)| t.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let metadata = self.metadata(Some(&topics)).await?;
        Ok(leaders(&metadata.topics)
            .into_iter()
            .filter(|(tp, _)| partitions.contains(tp))
            .collect())
    }

    /// Earliest and latest (high watermark) offsets of every partition of
    /// `topics`.
    pub async fn offset_range(
        &mut self,
        topics: &[TopicInfo],
    ) -> Result<BTreeMap<TopicPartition, (i64, i64)>> {
        let partitions = leaders(topics);
        let earliest = self.list_offsets(&partitions, EARLIEST).await?;
        let latest = self.list_offsets(&partitions, LATEST).await?;
        Ok(earliest
            .into_iter()
            .map(|(tp, start)| {
                let end = latest.get(&tp).copied().unwrap_or(start);
                (tp, (start, end))
            })
            .collect())
    }

    /// Moves the log start of each partition to its offset (-1: the high
    /// watermark). Returns each partition's low watermark.
    pub async fn delete_records(
        &mut self,
        targets: &[(TopicPartition, i32, i64)],
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let mut by_leader: HashMap<i32, BTreeMap<String, Vec<(i32, i64)>>> = HashMap::new();
        for ((topic, partition), leader, offset) in targets {
            by_leader
                .entry(*leader)
                .or_default()
                .entry(topic.clone())
                .or_default()
                .push((*partition, *offset));
        }
        let timeout_ms = self.options().timeout.as_millis().min(i32::MAX as u128) as i32;
        let mut low_watermarks = BTreeMap::new();
        for (leader, topics) in by_leader {
            let target = Target::Broker(leader);
            let mut request = DeleteRecordsRequest::default();
            request.timeout_ms = timeout_ms;
            request.topics = topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let mut t = DeleteRecordsTopic::default();
                    t.name = TopicName(name(&topic));
                    t.partitions = partitions
                        .into_iter()
                        .map(|(p, offset)| {
                            let mut d = DeleteRecordsPartition::default();
                            d.partition_index = p;
                            d.offset = offset;
                            d
                        })
                        .collect();
                    t
                })
                .collect();
            let response = self.call(target, &request, 2).await?;
            for topic in response.topics {
                let topic_name = topic.name.0.to_string();
                for p in topic.partitions {
                    self.check(
                        target,
                        || format!("deleting records of {topic_name}-{}", p.partition_index),
                        p.error_code,
                        None,
                    )?;
                    low_watermarks.insert((topic_name.clone(), p.partition_index), p.low_watermark);
                }
            }
        }
        Ok(low_watermarks)
    }
}

/// Every partition of `topics` with its leader.
pub fn leaders(topics: &[TopicInfo]) -> Vec<(TopicPartition, i32)> {
    topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| ((t.name.clone(), p.partition), p.leader))
        })
        .collect()
}
