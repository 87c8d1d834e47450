//! DescribeLogDirs: how many bytes each replica holds, asked of each broker.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::{DescribeLogDirsRequest, TopicName};

use super::metadata::TopicInfo;
use super::{name, Admin, Target};
use crate::error::Result;

/// (topic, partition, broker) → bytes on that broker.
pub type ReplicaSizes = BTreeMap<(String, i32, i32), i64>;

impl Admin {
    /// The size of every replica of `topics` on `brokers`. A broker that
    /// cannot be reached is left out (its replicas have no size), so a
    /// describe still works while a broker is down.
    pub async fn replica_sizes(
        &mut self,
        topics: &[TopicInfo],
        brokers: &[i32],
    ) -> Result<ReplicaSizes> {
        let mut request = DescribeLogDirsRequest::default();
        request.topics = Some(
            topics
                .iter()
                .map(|t| {
                    let mut d = DescribableLogDirTopic::default();
                    d.topic = TopicName(name(&t.name));
                    d.partitions = t.partitions.iter().map(|p| p.partition).collect();
                    d
                })
                .collect(),
        );
        let mut sizes = ReplicaSizes::new();
        for &broker in brokers {
            let target = Target::Broker(broker);
            let Ok(response) = self.call(target, &request, 4).await else {
                continue;
            };
            for dir in response.results {
                for topic in dir.topics {
                    for p in topic.partitions {
                        *sizes
                            .entry((topic.name.0.to_string(), p.partition_index, broker))
                            .or_default() += p.partition_size;
                    }
                }
            }
        }
        Ok(sizes)
    }

    /// The log directories `broker` reports (DescribeLogDirs with no
    /// topics asks for the directories alone).
    pub async fn log_dir_names(&mut self, broker: i32) -> Result<Vec<String>> {
        let mut request = DescribeLogDirsRequest::default();
        request.topics = Some(Vec::new());
        let response = self.call(Target::Broker(broker), &request, 4).await?;
        Ok(response
            .results
            .into_iter()
            .map(|dir| dir.log_dir.to_string())
            .collect())
    }
}
