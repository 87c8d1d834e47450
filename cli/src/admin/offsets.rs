//! ListOffsets (earliest, latest, by timestamp) and DeleteRecords, each sent
//! to the partitions' leaders.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, DeleteRecordsRequest, ListOffsetsRequest, TopicName};

use super::metadata::TopicInfo;
use super::{name, Admin, Target};
use crate::error::{CliError, Result};

pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;

pub type TopicPartition = (String, i32);

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
        let mut offsets = BTreeMap::new();
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
        Ok(offsets)
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
