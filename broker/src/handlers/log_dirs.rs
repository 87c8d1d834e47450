//! DescribeLogDirs: the size of every partition this broker hosts, per log
//! directory (this broker has one), with the directory's capacity (v4).
//! Tools and the operator use it to see where data sits before moving it.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::str_bytes;
use crate::broker::Broker;

pub fn describe_log_dirs(
    broker: &Broker,
    request: DescribeLogDirsRequest,
    version: i16,
) -> DescribeLogDirsResponse {
    // `None` asks for every partition.
    let wanted: Option<BTreeMap<String, Vec<i32>>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.topic.to_string(), t.partitions))
            .collect()
    });
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for partition in broker.logs.all() {
        let tp = &partition.tp;
        if let Some(wanted) = &wanted {
            match wanted.get(&tp.topic) {
                Some(partitions) if partitions.contains(&tp.partition) => {}
                _ => continue,
            }
        }
        let mut p = DescribeLogDirsPartition::default();
        p.partition_index = tp.partition;
        p.partition_size = partition.size_bytes() as i64;
        // Partitions have no followers yet, so no replica lags behind.
        p.offset_lag = 0;
        by_topic.entry(tp.topic.clone()).or_default().push(p);
    }
    let mut result = DescribeLogDirsResult::default();
    let dir = broker.logs.dir();
    result.log_dir = str_bytes(
        std::fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.to_path_buf())
            .display()
            .to_string(),
    );
    result.topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            let mut t = DescribeLogDirsTopic::default();
            t.name = TopicName(str_bytes(name));
            t.partitions = partitions;
            t
        })
        .collect();
    if version >= 4 {
        if let Some(space) = crate::disk::health::space(dir) {
            result.total_bytes = space.total as i64;
            result.usable_bytes = space.free as i64;
        }
    }
    let mut response = DescribeLogDirsResponse::default();
    response.results = vec![result];
    response
}
