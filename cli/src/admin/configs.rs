//! DescribeConfigs and IncrementalAlterConfigs for topics, brokers and the
//! cluster-wide broker default.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use serde::Serialize;

use super::{name, Admin, Target};
use crate::error::Result;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// A config resource: a topic, one broker, or the default of every broker.
#[derive(Clone, Debug)]
pub enum Resource {
    Topic(String),
    Broker(i32),
    BrokerDefault,
}

impl Resource {
    fn wire(&self) -> (i8, String) {
        match self {
            Resource::Topic(t) => (RESOURCE_TOPIC, t.clone()),
            Resource::Broker(id) => (RESOURCE_BROKER, id.to_string()),
            Resource::BrokerDefault => (RESOURCE_BROKER, String::new()),
        }
    }

    /// A broker's own settings are only known to that broker.
    fn target(&self) -> Target {
        match self {
            Resource::Broker(id) => Target::Broker(*id),
            _ => Target::Any,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Resource::Topic(t) => format!("topic {t}"),
            Resource::Broker(id) => format!("broker {id}"),
            Resource::BrokerDefault => "the cluster-wide broker default".to_string(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: &'static str,
    pub read_only: bool,
    pub sensitive: bool,
}

/// Kafka's ConfigSource names (DescribeConfigs v1+).
fn source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

pub enum Change {
    Set(String, String),
    Delete(String),
}

impl Admin {
    /// The resource's configs (all of them when `keys` is empty), sorted by
    /// name.
    pub async fn describe_configs(
        &mut self,
        resource: &Resource,
        keys: &[String],
    ) -> Result<Vec<ConfigEntry>> {
        let target = resource.target();
        let (resource_type, resource_name) = resource.wire();
        let mut wanted = DescribeConfigsResource::default();
        wanted.resource_type = resource_type;
        wanted.resource_name = name(&resource_name);
        wanted.configuration_keys =
            (!keys.is_empty()).then(|| keys.iter().map(|k| name(k)).collect());
        let mut request = DescribeConfigsRequest::default();
        request.resources = vec![wanted];
        let response = self.call(target, &request, 4).await?;
        let mut entries = Vec::new();
        for result in response.results {
            self.check(
                target,
                || format!("describing the configs of {}", resource.describe()),
                result.error_code,
                result.error_message.as_ref(),
            )?;
            entries.extend(result.configs.into_iter().map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                source: source_name(c.config_source),
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            }));
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    pub async fn alter_configs(&mut self, resource: &Resource, changes: &[Change]) -> Result<()> {
        let target = resource.target();
        let (resource_type, resource_name) = resource.wire();
        let mut altered = AlterConfigsResource::default();
        altered.resource_type = resource_type;
        altered.resource_name = name(&resource_name);
        altered.configs = changes
            .iter()
            .map(|change| {
                let mut c = AlterableConfig::default();
                match change {
                    Change::Set(key, value) => {
                        c.name = name(key);
                        c.config_operation = 0;
                        c.value = Some(name(value));
                    }
                    Change::Delete(key) => {
                        c.name = name(key);
                        c.config_operation = 1;
                    }
                }
                c
            })
            .collect();
        let mut request = IncrementalAlterConfigsRequest::default();
        request.resources = vec![altered];
        let response = self.call(target, &request, 1).await?;
        for r in response.responses {
            self.check(
                target,
                || format!("changing the configs of {}", resource.describe()),
                r.error_code,
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }
}

impl Admin {
    /// One config's value for each of `topics`, in one request.
    pub async fn topic_config_value(
        &mut self,
        topics: &[String],
        key: &str,
    ) -> Result<std::collections::BTreeMap<String, Option<String>>> {
        let mut request = DescribeConfigsRequest::default();
        request.resources = topics
            .iter()
            .map(|t| {
                let mut r = DescribeConfigsResource::default();
                r.resource_type = RESOURCE_TOPIC;
                r.resource_name = name(t);
                r.configuration_keys = Some(vec![name(key)]);
                r
            })
            .collect();
        let mut values = std::collections::BTreeMap::new();
        if topics.is_empty() {
            return Ok(values);
        }
        let response = self.call(Target::Any, &request, 4).await?;
        for result in response.results {
            // A topic deleted since the metadata answer has no value.
            if result.error_code != 0 {
                continue;
            }
            let value = result
                .configs
                .into_iter()
                .find(|c| c.name.as_str() == key)
                .and_then(|c| c.value.map(|v| v.to_string()));
            values.insert(result.resource_name.to_string(), value);
        }
        Ok(values)
    }
}
