//! Metadata, DescribeCluster and UnregisterBroker: brokers, the
//! controller, topics and their partitions.

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, MetadataRequest, TopicName, UnregisterBrokerRequest,
};
use serde::Serialize;

use super::{name, Admin, Target};
use crate::error::Result;

#[derive(Clone, Debug, Serialize)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    pub fenced: bool,
}

impl BrokerInfo {
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PartitionInfo {
    pub partition: i32,
    /// -1 when the partition has no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline_replicas: Vec<i32>,
    #[serde(skip)]
    pub error_code: i16,
}

#[derive(Clone, Debug, Serialize)]
pub struct TopicInfo {
    pub name: String,
    pub internal: bool,
    pub partitions: Vec<PartitionInfo>,
    #[serde(skip)]
    pub error_code: i16,
}

impl TopicInfo {
    pub fn replication_factor(&self) -> usize {
        self.partitions
            .iter()
            .map(|p| p.replicas.len())
            .max()
            .unwrap_or(0)
    }
}

#[derive(Clone, Debug)]
pub struct Metadata {
    pub cluster_id: Option<String>,
    pub controller: i32,
    pub brokers: Vec<BrokerInfo>,
    pub topics: Vec<TopicInfo>,
}

impl Metadata {
    pub fn topic(&self, topic: &str) -> Option<&TopicInfo> {
        self.topics.iter().find(|t| t.name == topic)
    }
}

impl Admin {
    /// Metadata for `topics` (`None`: every topic; `Some(&[])`: none, only
    /// the brokers). Topics the cluster does not know come back with
    /// UNKNOWN_TOPIC_OR_PARTITION in `error_code`.
    pub async fn metadata(&mut self, topics: Option<&[String]>) -> Result<Metadata> {
        let version = self.version::<MetadataRequest>(Target::Any, 12).await?;
        let mut request = MetadataRequest::default();
        request.allow_auto_topic_creation = false;
        request.topics = topics.map(|names| {
            names
                .iter()
                .map(|n| {
                    let mut t = MetadataRequestTopic::default();
                    t.name = Some(TopicName(name(n)));
                    t
                })
                .collect()
        });
        let response = self.send(Target::Any, &request, version).await?;
        let brokers: Vec<BrokerInfo> = response
            .brokers
            .iter()
            .map(|b| BrokerInfo {
                id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
                fenced: false,
            })
            .collect();
        self.learn_addresses(brokers.iter().map(|b| (b.id, b.endpoint())));
        let mut topics: Vec<TopicInfo> = response
            .topics
            .iter()
            .map(|t| {
                let mut partitions: Vec<PartitionInfo> = t
                    .partitions
                    .iter()
                    .map(|p| PartitionInfo {
                        partition: p.partition_index,
                        leader: p.leader_id.0,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                        isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                        offline_replicas: p.offline_replicas.iter().map(|b| b.0).collect(),
                        error_code: p.error_code,
                    })
                    .collect();
                partitions.sort_by_key(|p| p.partition);
                TopicInfo {
                    name: t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                    internal: t.is_internal,
                    partitions,
                    error_code: t.error_code,
                }
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Metadata {
            cluster_id: response.cluster_id.map(|c| c.to_string()),
            controller: response.controller_id.0,
            brokers,
            topics,
        })
    }

    /// Every registered broker, fenced ones included where the cluster
    /// tells (DescribeCluster v2, KIP-1073); older brokers list only the
    /// live ones.
    pub async fn describe_cluster(&mut self) -> Result<(String, i32, Vec<BrokerInfo>)> {
        let version = self
            .version::<DescribeClusterRequest>(Target::Any, 2)
            .await?;
        let mut request = DescribeClusterRequest::default();
        request.endpoint_type = 1;
        request.include_fenced_brokers = version >= 2;
        let response = self.send(Target::Any, &request, version).await?;
        self.check(
            Target::Any,
            || "describing the cluster".into(),
            response.error_code,
            response.error_message.as_ref(),
        )?;
        let mut brokers: Vec<BrokerInfo> = response
            .brokers
            .iter()
            .map(|b| BrokerInfo {
                id: b.broker_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
                fenced: b.is_fenced,
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        self.learn_addresses(
            brokers
                .iter()
                .filter(|b| !b.fenced)
                .map(|b| (b.id, b.endpoint())),
        );
        Ok((
            response.cluster_id.to_string(),
            response.controller_id.0,
            brokers,
        ))
    }

    /// Removes a broker from the cluster's metadata (UnregisterBroker).
    pub async fn unregister_broker(&mut self, broker_id: i32) -> Result<()> {
        let mut request = UnregisterBrokerRequest::default();
        request.broker_id = BrokerId(broker_id);
        let response = self.call(Target::Any, &request, 0).await?;
        self.check(
            Target::Any,
            || format!("unregistering broker {broker_id}"),
            response.error_code,
            response.error_message.as_ref(),
        )
    }

    /// The named topics, each known to the cluster; an unknown one is an
    /// UNKNOWN_TOPIC_OR_PARTITION error naming it.
    pub async fn topics(&mut self, names: &[String]) -> Result<Vec<TopicInfo>> {
        let metadata = self.metadata(Some(names)).await?;
        for topic in &metadata.topics {
            self.check(
                Target::Any,
                || format!("looking up topic {}", topic.name),
                topic.error_code,
                None,
            )?;
        }
        Ok(metadata.topics)
    }
}
