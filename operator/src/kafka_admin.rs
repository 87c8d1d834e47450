//! The operator's Kafka admin client: the few admin APIs the topic
//! controller needs, over the shared protocol client (`tideline-protocol`). Any broker
//! takes them (controller-bound changes are forwarded by the broker).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tideline_protocol::KafkaClient;

use crate::roll::{ClusterHealth, PartitionHealth};
use crate::topic_plan::{ObservedTopic, TopicAction};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Kafka's resource type TOPIC and config source DYNAMIC_TOPIC_CONFIG.
const TOPIC_RESOURCE: i8 = 2;
const TOPIC_OVERRIDE: i8 = 1;
/// Kafka's resource type BROKER and config source DYNAMIC_DEFAULT_BROKER_CONFIG.
const BROKER_RESOURCE: i8 = 4;
const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot reach the cluster: {0}")]
    Connection(String),
    #[error("{api} failed with Kafka error {code}: {message}")]
    Kafka {
        api: &'static str,
        code: i16,
        message: String,
    },
}

pub struct KafkaAdmin {
    client: KafkaClient,
}

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn check(api: &'static str, code: i16, message: &Option<StrBytes>) -> Result<(), AdminError> {
    if code == 0 {
        return Ok(());
    }
    Err(AdminError::Kafka {
        api,
        code,
        message: message.as_deref().unwrap_or("").to_string(),
    })
}

impl KafkaAdmin {
    /// Connects to the first address of `bootstrap` that answers.
    pub async fn connect(bootstrap: &str) -> Result<KafkaAdmin, AdminError> {
        let mut last = String::from("no address given");
        for address in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            match KafkaClient::connect(address, "tideline-operator", Duration::from_secs(5)).await {
                Ok(client) => return Ok(KafkaAdmin { client }),
                Err(e) => last = format!("{address}: {e}"),
            }
        }
        Err(AdminError::Connection(last))
    }

    async fn send<R: kafka_protocol::protocol::Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, AdminError> {
        self.client
            .send(request, version, TIMEOUT)
            .await
            .map_err(|e| AdminError::Connection(e.to_string()))
    }

    /// The topic's partition count, replication factor and overrides;
    /// `None` if it does not exist.
    pub async fn describe_topic(
        &mut self,
        topic: &str,
    ) -> Result<Option<ObservedTopic>, AdminError> {
        let mut t = MetadataRequestTopic::default();
        t.name = Some(TopicName(name(topic)));
        let mut request = MetadataRequest::default();
        request.topics = Some(vec![t]);
        let metadata = self.send(&request, 12).await?;
        let Some(found) = metadata.topics.first() else {
            return Ok(None);
        };
        if found.error_code == UNKNOWN_TOPIC_OR_PARTITION {
            return Ok(None);
        }
        check("Metadata", found.error_code, &None)?;
        let replication_factor = found
            .partitions
            .iter()
            .map(|p| p.replica_nodes.len() as i32)
            .max()
            .unwrap_or(0);
        let configs = self
            .configs_from(TOPIC_RESOURCE, topic, TOPIC_OVERRIDE)
            .await?;
        let topic_id =
            (!found.topic_id.is_nil()).then(|| URL_SAFE_NO_PAD.encode(found.topic_id.as_bytes()));
        Ok(Some(ObservedTopic {
            topic_id,
            partitions: found.partitions.len() as i32,
            replication_factor,
            configs,
        }))
    }

    /// Live brokers, the active controller, and every partition's replicas,
    /// ISR and `min.insync.replicas`, for the rolling-restart decision.
    pub async fn cluster_health(&mut self) -> Result<ClusterHealth, AdminError> {
        let mut request = MetadataRequest::default();
        request.topics = None;
        let metadata = self.send(&request, 12).await?;
        // Any broker's metadata may trail the controller's (a broker that
        // just restarted most of all), and a roll must not act on a stale
        // ISR: ask the active controller itself when it is a broker.
        let controller = metadata
            .brokers
            .iter()
            .find(|b| b.node_id == metadata.controller_id)
            .map(|b| format!("{}:{}", b.host, b.port));
        let metadata = match controller {
            Some(address) => {
                match KafkaClient::connect(&address, "tideline-operator", Duration::from_secs(5))
                    .await
                {
                    Ok(mut client) => client.send(&request, 12, TIMEOUT).await.unwrap_or(metadata),
                    Err(_) => metadata,
                }
            }
            None => metadata,
        };
        let mut resources = Vec::new();
        for t in &metadata.topics {
            let Some(topic) = &t.name else { continue };
            let mut resource = DescribeConfigsResource::default();
            resource.resource_type = TOPIC_RESOURCE;
            resource.resource_name = topic.0.clone();
            resource.configuration_keys = Some(vec![name("min.insync.replicas")]);
            resources.push(resource);
        }
        let mut min_isr = BTreeMap::new();
        if !resources.is_empty() {
            let mut request = DescribeConfigsRequest::default();
            request.resources = resources;
            let described = self.send(&request, 4).await?;
            for result in &described.results {
                check("DescribeConfigs", result.error_code, &result.error_message)?;
                let value = result
                    .configs
                    .iter()
                    .find(|c| c.name.as_str() == "min.insync.replicas")
                    .and_then(|c| c.value.as_ref()?.parse::<i32>().ok())
                    .unwrap_or(1);
                min_isr.insert(result.resource_name.to_string(), value);
            }
        }
        let mut partitions = Vec::new();
        for t in &metadata.topics {
            let Some(topic) = &t.name else { continue };
            let topic = topic.0.to_string();
            for p in &t.partitions {
                partitions.push(PartitionHealth {
                    topic: topic.clone(),
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    min_insync_replicas: min_isr.get(&topic).copied().unwrap_or(1),
                });
            }
        }
        Ok(ClusterHealth {
            live_brokers: metadata.brokers.iter().map(|b| b.node_id.0).collect(),
            controller: (metadata.controller_id.0 >= 0).then_some(metadata.controller_id.0),
            partitions,
        })
    }

    pub async fn apply(&mut self, topic: &str, action: &TopicAction) -> Result<(), AdminError> {
        match action {
            TopicAction::Create {
                partitions,
                replication_factor,
                configs,
            } => {
                self.create(topic, *partitions, *replication_factor, configs)
                    .await
            }
            TopicAction::AddPartitions { total } => {
                let mut t = CreatePartitionsTopic::default();
                t.name = TopicName(name(topic));
                t.count = *total;
                let mut request = CreatePartitionsRequest::default();
                request.topics = vec![t];
                request.timeout_ms = TIMEOUT.as_millis() as i32;
                let response = self.send(&request, 3).await?;
                for r in &response.results {
                    check("CreatePartitions", r.error_code, &r.error_message)?;
                }
                Ok(())
            }
            TopicAction::AlterConfigs { set, delete } => {
                self.incremental_alter(TOPIC_RESOURCE, topic, set, delete)
                    .await
            }
        }
    }

    /// Broker settings set dynamically for the whole cluster (Kafka's
    /// `--entity-default` broker configs).
    pub async fn cluster_dynamic_config(&mut self) -> Result<BTreeMap<String, String>, AdminError> {
        self.configs_from(BROKER_RESOURCE, "", DYNAMIC_DEFAULT_BROKER_CONFIG)
            .await
    }

    /// The settings of one config resource that come from `source`.
    async fn configs_from(
        &mut self,
        resource_type: i8,
        resource_name: &str,
        source: i8,
    ) -> Result<BTreeMap<String, String>, AdminError> {
        let mut resource = DescribeConfigsResource::default();
        resource.resource_type = resource_type;
        resource.resource_name = name(resource_name);
        // Null: every key (the default is an empty list).
        resource.configuration_keys = None;
        let mut request = DescribeConfigsRequest::default();
        request.resources = vec![resource];
        let described = self.send(&request, 4).await?;
        let result = described.results.first().ok_or_else(|| AdminError::Kafka {
            api: "DescribeConfigs",
            code: -1,
            message: "no result".into(),
        })?;
        check("DescribeConfigs", result.error_code, &result.error_message)?;
        Ok(result
            .configs
            .iter()
            .filter(|c| c.config_source == source)
            .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
            .collect())
    }

    /// Sets and removes cluster-wide dynamic broker settings; running
    /// brokers apply them without a restart.
    pub async fn alter_cluster_dynamic_config(
        &mut self,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<(), AdminError> {
        self.incremental_alter(BROKER_RESOURCE, "", set, delete)
            .await
    }

    async fn incremental_alter(
        &mut self,
        resource_type: i8,
        resource_name: &str,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<(), AdminError> {
        let mut resource = AlterConfigsResource::default();
        resource.resource_type = resource_type;
        resource.resource_name = name(resource_name);
        for (key, value) in set {
            let mut c = AlterableConfig::default();
            c.name = name(key);
            c.config_operation = 0; // SET
            c.value = Some(name(value));
            resource.configs.push(c);
        }
        for key in delete {
            let mut c = AlterableConfig::default();
            c.name = name(key);
            c.config_operation = 1; // DELETE
            resource.configs.push(c);
        }
        let mut request = IncrementalAlterConfigsRequest::default();
        request.resources = vec![resource];
        let response = self.send(&request, 1).await?;
        for r in &response.responses {
            check("IncrementalAlterConfigs", r.error_code, &r.error_message)?;
        }
        Ok(())
    }

    async fn create(
        &mut self,
        topic: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), AdminError> {
        let mut t = CreatableTopic::default();
        t.name = TopicName(name(topic));
        t.num_partitions = partitions;
        t.replication_factor = replication_factor as i16;
        for (key, value) in configs {
            let mut c = CreatableTopicConfig::default();
            c.name = name(key);
            c.value = Some(name(value));
            t.configs.push(c);
        }
        let mut request = CreateTopicsRequest::default();
        request.topics = vec![t];
        request.timeout_ms = TIMEOUT.as_millis() as i32;
        let response = self.send(&request, 7).await?;
        for r in &response.topics {
            check("CreateTopics", r.error_code, &r.error_message)?;
        }
        Ok(())
    }

    pub async fn delete_topic(&mut self, topic: &str) -> Result<(), AdminError> {
        let mut t = DeleteTopicState::default();
        t.name = Some(TopicName(name(topic)));
        let mut request = DeleteTopicsRequest::default();
        request.topics = vec![t];
        request.timeout_ms = TIMEOUT.as_millis() as i32;
        let response = self.send(&request, 6).await?;
        for r in &response.responses {
            if r.error_code != UNKNOWN_TOPIC_OR_PARTITION {
                check("DeleteTopics", r.error_code, &r.error_message)?;
            }
        }
        Ok(())
    }
}

/// Makes `topic` match `spec` (see `topic_plan`): applies every action and
/// returns the plan, whose warnings the controller reports.
pub async fn sync_topic(
    admin: &mut KafkaAdmin,
    topic: &str,
    spec: &crate::crd::KafkaTopicSpec,
) -> Result<crate::topic_plan::TopicPlan, AdminError> {
    let observed = admin.describe_topic(topic).await?;
    let plan = crate::topic_plan::plan(spec, observed.as_ref());
    for action in &plan.actions {
        admin.apply(topic, action).await?;
    }
    Ok(plan)
}
