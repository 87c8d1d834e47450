//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topic and
//! broker resources, with Kafka's sources and synonyms.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::broker::Broker;
use crate::config::definitions::{topic_def, ConfigType, BROKER_CONFIGS, TOPIC_CONFIGS};
use crate::config::log_config::ValueSource;
use crate::error::{ApiError, ResponseError};
use crate::metadata::controller::ConfigChange;
use crate::metadata::records::ConfigResource;
use crate::metadata::{MetadataImage, TopicImage};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

fn resource(broker: &Broker, resource_type: i8, name: &str) -> Result<ConfigResource, ApiError> {
    match resource_type {
        RESOURCE_TOPIC => Ok(ConfigResource::Topic(name.to_string())),
        RESOURCE_BROKER if name.is_empty() => Ok(ConfigResource::BrokerDefault),
        RESOURCE_BROKER => match name.parse::<i32>() {
            Ok(id) if id == broker.node_id() => Ok(ConfigResource::Broker(id)),
            Ok(id) => Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("broker {id} is not this broker ({})", broker.node_id()),
            )),
            Err(_) => Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("'{name}' is not a broker id"),
            )),
        },
        other => Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!("config resource type {other} is not supported"),
        )),
    }
}

pub fn describe(
    broker: &Broker,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let image = broker.image();
    let mut response = DescribeConfigsResponse::default();
    for r in request.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = r.resource_type;
        result.resource_name = r.resource_name.clone();
        // null lists every key; a list (even an empty one) only those named.
        let keys: Option<Vec<String>> = r
            .configuration_keys
            .map(|k| k.iter().map(|s| s.to_string()).collect());
        let entries = match resource(broker, r.resource_type, r.resource_name.as_str()) {
            Err(e) => Err(e),
            Ok(ConfigResource::Topic(name)) => match image.topics.get(&name) {
                Some(topic) => Ok(topic_entries(
                    broker,
                    &image,
                    topic,
                    request.include_synonyms,
                    request.include_documentation && version >= 3,
                )),
                None => Err(ApiError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic '{name}' does not exist"),
                )),
            },
            Ok(other) => Ok(broker_entries(
                broker,
                &image,
                &other,
                request.include_synonyms,
                request.include_documentation && version >= 3,
            )),
        };
        match entries {
            Ok(entries) => {
                result.configs = entries
                    .into_iter()
                    .filter(|e| {
                        keys.as_ref()
                            .is_none_or(|k| k.iter().any(|k| k == e.name.as_str()))
                    })
                    .collect();
            }
            Err(e) => {
                result.error_code = e.code();
                result.error_message = Some(str_bytes(e.message));
            }
        }
        response.results.push(result);
    }
    response
}

fn synonym(name: &str, value: Option<String>, source: ValueSource) -> DescribeConfigsSynonym {
    let mut s = DescribeConfigsSynonym::default();
    s.name = str_bytes(name);
    s.value = value.map(str_bytes);
    s.source = source as i8;
    s
}

fn entry(
    name: &str,
    value: Option<String>,
    source: ValueSource,
    read_only: bool,
    kind: ConfigType,
    doc: Option<&str>,
) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default();
    e.name = str_bytes(name);
    e.value = value.map(str_bytes);
    e.config_source = source as i8;
    e.read_only = read_only;
    e.is_sensitive = false;
    e.config_type = kind.code();
    e.documentation = doc.map(str_bytes);
    e
}

/// Every topic config with its effective value, source and synonyms.
pub fn topic_entries(
    broker: &Broker,
    image: &MetadataImage,
    topic: &TopicImage,
    include_synonyms: bool,
    include_docs: bool,
) -> Vec<DescribeConfigsResourceResult> {
    let layers = broker.config_layers(image, Some(topic));
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let resolved = layers.resolve(def);
            let mut e = entry(
                def.name,
                resolved.value,
                resolved.source,
                false,
                def.kind,
                include_docs.then_some(def.doc),
            );
            if include_synonyms {
                if let Some(v) = topic.configs.get(def.name) {
                    e.synonyms
                        .push(synonym(def.name, Some(v.clone()), ValueSource::TopicConfig));
                }
                for key in def.synonyms {
                    if let Some((value, source)) = layers.broker_value(key) {
                        e.synonyms.push(synonym(key, Some(value), source));
                    }
                }
                e.synonyms.push(synonym(
                    def.synonyms.first().copied().unwrap_or(def.name),
                    def.default.map(String::from),
                    ValueSource::Default,
                ));
            }
            e
        })
        .collect()
}

fn broker_entries(
    broker: &Broker,
    image: &MetadataImage,
    resource: &ConfigResource,
    include_synonyms: bool,
    include_docs: bool,
) -> Vec<DescribeConfigsResourceResult> {
    let layers = broker.config_layers(image, None);
    BROKER_CONFIGS
        .iter()
        .filter_map(|def| {
            // The cluster default resource shows only what was set dynamically there.
            let (value, source) = match resource {
                ConfigResource::BrokerDefault => (
                    Some(image.cluster_configs.get(def.name)?.clone()),
                    ValueSource::DynamicDefaultBrokerConfig,
                ),
                _ => match layers.broker_value(def.name) {
                    Some((v, s)) => (Some(v), s),
                    None => (def.default.map(String::from), ValueSource::Default),
                },
            };
            let mut e = entry(
                def.name,
                value.clone(),
                source,
                !def.dynamic,
                def.kind,
                include_docs.then_some(def.doc),
            );
            if include_synonyms {
                e.synonyms.push(synonym(def.name, value, source));
            }
            Some(e)
        })
        .collect()
}

/// The legacy AlterConfigs: the given set replaces the resource's dynamic configs.
pub async fn alter(broker: &Broker, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut response = AlterConfigsResponse::default();
    for r in request.resources {
        let result = async {
            let target = resource(broker, r.resource_type, r.resource_name.as_str())?;
            let mut changes = Vec::new();
            for c in &r.configs {
                match &c.value {
                    Some(v) => changes.push(ConfigChange::Set(c.name.to_string(), v.to_string())),
                    None => changes.push(ConfigChange::Delete(c.name.to_string())),
                }
            }
            broker
                .controller
                .alter_configs(target, changes, true, request.validate_only)
                .await
        }
        .await;
        let mut out = alter_configs_response::AlterConfigsResourceResponse::default();
        out.resource_type = r.resource_type;
        out.resource_name = r.resource_name;
        if let Err(e) = result {
            out.error_code = e.code();
            out.error_message = Some(str_bytes(e.message));
        }
        response.responses.push(out);
    }
    broker.sync_logs().await;
    response
}

pub async fn incremental_alter(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut response = IncrementalAlterConfigsResponse::default();
    for r in request.resources {
        let result = async {
            let target = resource(broker, r.resource_type, r.resource_name.as_str())?;
            let mut changes = Vec::new();
            for c in &r.configs {
                let name = c.name.to_string();
                let change = match c.config_operation {
                    OP_SET => ConfigChange::Set(name, value_of(&c.value, &c.name)?),
                    OP_DELETE => ConfigChange::Delete(name),
                    OP_APPEND | OP_SUBTRACT => {
                        let current = current_list(broker, &target, &name)?;
                        let items: Vec<String> = value_of(&c.value, &c.name)?
                            .split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect();
                        let mut list = current;
                        if c.config_operation == OP_APPEND {
                            for item in items {
                                if !list.contains(&item) {
                                    list.push(item);
                                }
                            }
                        } else {
                            list.retain(|x| !items.contains(x));
                        }
                        ConfigChange::Set(name, list.join(","))
                    }
                    other => {
                        return Err(ApiError::new(
                            ResponseError::InvalidRequest,
                            format!("unknown config operation {other}"),
                        ))
                    }
                };
                changes.push(change);
            }
            broker
                .controller
                .alter_configs(target, changes, false, request.validate_only)
                .await
        }
        .await;
        let mut out = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        out.resource_type = r.resource_type;
        out.resource_name = r.resource_name;
        if let Err(e) = result {
            out.error_code = e.code();
            out.error_message = Some(str_bytes(e.message));
        }
        response.responses.push(out);
    }
    broker.sync_logs().await;
    response
}

fn value_of(value: &Option<StrBytes>, name: &StrBytes) -> Result<String, ApiError> {
    value.as_ref().map(|v| v.to_string()).ok_or_else(|| {
        ApiError::new(
            ResponseError::InvalidConfig,
            format!("config '{}' needs a value", name.as_str()),
        )
    })
}

/// The current value of a list-typed key, for APPEND and SUBTRACT.
fn current_list(
    broker: &Broker,
    target: &ConfigResource,
    name: &str,
) -> Result<Vec<String>, ApiError> {
    let image = broker.image();
    let value = match target {
        ConfigResource::Topic(topic) => {
            let def = topic_def(name)
                .filter(|d| d.kind == ConfigType::List)
                .ok_or_else(|| {
                    ApiError::new(
                        ResponseError::InvalidConfig,
                        format!("'{name}' is not a list config"),
                    )
                })?;
            let topic = image.topics.get(topic);
            broker.config_layers(&image, topic).resolve(def).value
        }
        _ => broker
            .config_layers(&image, None)
            .broker_value(name)
            .map(|(v, _)| v)
            .or_else(|| broker.config.get(name).map(String::from)),
    };
    Ok(value
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}
