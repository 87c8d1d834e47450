//! The controller's decisions: checks an admin request against the current
//! image and Kafka's rules, then turns it into metadata records and commits
//! them through the quorum. Every broker-visible change goes through here.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use super::image::{MetadataImage, TopicImage};
use super::placement::{self, Candidate};
use super::raft::{MetadataQuorum, QuorumError};
use super::records::{
    BrokerRegistration, ConfigResource, MetadataRecord, PartitionChange, PartitionRecord,
    RecordBatch,
};
use crate::config::definitions::{broker_def, topic_def, validate_value};
use crate::config::settings::{Reader, TopicSettings};
use crate::config::BrokerConfig;
use crate::error::{ApiError, ResponseError};

/// Kafka's limit on topic name length.
const MAX_TOPIC_NAME_LENGTH: usize = 249;
/// How many producer ids a broker takes at once.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

#[derive(Clone)]
pub struct Controller {
    quorum: Arc<MetadataQuorum>,
    config: Arc<BrokerConfig>,
}

/// A requested topic.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// -1 for the broker default.
    pub num_partitions: i32,
    /// -1 for the broker default.
    pub replication_factor: i16,
    /// Explicit replica lists per partition, if given.
    pub assignments: Vec<Vec<i32>>,
    pub configs: BTreeMap<String, String>,
}

/// One requested config change, with Kafka's operation semantics.
#[derive(Debug, Clone)]
pub enum ConfigChange {
    Set(String, String),
    Delete(String),
}

fn quorum_error(e: QuorumError) -> ApiError {
    match e {
        QuorumError::NotController => ApiError::new(ResponseError::NotController, e.to_string()),
        QuorumError::Rejected(msg) => ApiError::new(ResponseError::InvalidRequest, msg),
        other => ApiError::new(ResponseError::UnknownServerError, other.to_string()),
    }
}

fn not_registered(broker_id: i32) -> ApiError {
    ApiError::new(
        ResponseError::BrokerIdNotRegistered,
        format!("broker {broker_id} is not registered"),
    )
}

pub fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    let invalid = |why: &str| {
        Err(ApiError::new(
            ResponseError::InvalidTopicException,
            format!("topic name '{name}' is invalid: {why}"),
        ))
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if name.len() > MAX_TOPIC_NAME_LENGTH {
        return invalid("it is longer than 249 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    if name.starts_with("__cluster_metadata") {
        return invalid("the name is reserved for the metadata log");
    }
    Ok(())
}

/// Checks topic config keys and values.
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (key, value) in configs {
        let def = topic_def(key).ok_or_else(|| {
            ApiError::new(
                ResponseError::InvalidConfig,
                format!("unknown topic config '{key}'"),
            )
        })?;
        validate_value(key, def.kind, def.validator, value)
            .map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
    }
    Ok(())
}

impl Controller {
    pub fn new(quorum: Arc<MetadataQuorum>, config: Arc<BrokerConfig>) -> Self {
        Controller { quorum, config }
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.quorum.image()
    }

    /// The registered brokers (explicit assignments may name any of them).
    fn brokers(&self) -> Vec<i32> {
        self.image().brokers.keys().copied().collect()
    }

    /// Brokers new replicas are placed on: registered, not fenced and not
    /// cordoned.
    fn placement_candidates(&self) -> Vec<Candidate> {
        let image = self.image();
        image
            .brokers
            .values()
            .filter(|b| image.is_live(b.broker_id) && !image.is_cordoned(b.broker_id))
            .map(|b| Candidate {
                id: b.broker_id,
                rack: b.rack.clone(),
            })
            .collect()
    }

    /// Records this broker's endpoint in the metadata log (at every start,
    /// with a new incarnation id).
    pub async fn register_broker(&self, registration: BrokerRegistration) -> Result<(), ApiError> {
        self.quorum
            .propose(RecordBatch(vec![MetadataRecord::RegisterBroker(
                registration,
            )]))
            .await
            .map_err(quorum_error)?;
        Ok(())
    }

    /// Topic-creation settings with the dynamic configs in `image` applied.
    fn topic_settings(&self, image: &MetadataImage) -> TopicSettings {
        let lookup = |key: &str| {
            image
                .dynamic_config(self.config.node_id, key)
                .or_else(|| self.config.get(key))
        };
        TopicSettings::read(&Reader::new(&lookup)).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ignoring an invalid dynamic topic config");
            self.config.settings.topics.clone()
        })
    }

    /// Kafka's placement (see `placement`) over the live brokers.
    fn place(
        &self,
        first_partition: i32,
        count: i32,
        replication_factor: usize,
        seed: usize,
    ) -> Vec<Vec<i32>> {
        placement::assign(
            &self.placement_candidates(),
            first_partition,
            count,
            replication_factor,
            seed,
        )
    }

    fn check_assignments(&self, assignments: &[Vec<i32>]) -> Result<(), ApiError> {
        let brokers = self.brokers();
        for replicas in assignments {
            if replicas.is_empty() {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    "a partition has no replicas",
                ));
            }
            let mut seen = replicas.clone();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() != replicas.len() {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    "a partition lists a broker twice",
                ));
            }
            if let Some(b) = replicas.iter().find(|b| !brokers.contains(b)) {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!("broker {b} is not registered"),
                ));
            }
        }
        Ok(())
    }

    /// Validates and (unless `validate_only`) creates a topic. Returns the
    /// topic as it is (or would be) created.
    pub async fn create_topic(
        &self,
        request: NewTopic,
        validate_only: bool,
    ) -> Result<TopicImage, ApiError> {
        validate_topic_name(&request.name)?;
        let image = self.image();
        if image.topics.contains_key(&request.name) {
            return Err(ApiError::new(
                ResponseError::TopicAlreadyExists,
                format!("topic '{}' already exists", request.name),
            ));
        }
        validate_topic_configs(&request.configs)?;
        let assignments = if !request.assignments.is_empty() {
            if request.num_partitions != -1 || request.replication_factor != -1 {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    "both replica assignments and partitions/replication factor were given",
                ));
            }
            self.check_assignments(&request.assignments)?;
            request.assignments.clone()
        } else {
            let partitions = match request.num_partitions {
                -1 => self.topic_settings(&image).num_partitions,
                n if n < 1 => {
                    return Err(ApiError::new(
                        ResponseError::InvalidPartitions,
                        format!("number of partitions must be at least 1, got {n}"),
                    ))
                }
                n => n,
            };
            let rf = match request.replication_factor {
                -1 => self.config.settings.topics.default_replication_factor,
                n if n < 1 => {
                    return Err(ApiError::new(
                        ResponseError::InvalidReplicationFactor,
                        format!("replication factor must be at least 1, got {n}"),
                    ))
                }
                n => n as i32,
            };
            let brokers = self.placement_candidates().len();
            if brokers == 0 || rf as usize > brokers {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicationFactor,
                    format!(
                        "replication factor {rf} is larger than the {brokers} available broker(s)"
                    ),
                ));
            }
            self.place(0, partitions, rf as usize, image.topics.len())
        };
        let topic = TopicImage {
            name: request.name.clone(),
            topic_id: Uuid::new_v4(),
            partitions: assignments.into_iter().map(PartitionRecord::new).collect(),
            configs: request.configs.clone(),
        };
        if validate_only {
            return Ok(topic);
        }
        self.quorum
            .propose(RecordBatch(vec![MetadataRecord::CreateTopic {
                name: topic.name.clone(),
                topic_id: topic.topic_id,
                partitions: topic.partitions.clone(),
                configs: topic.configs.clone(),
            }]))
            .await
            .map_err(|e| match e {
                QuorumError::Rejected(m) => ApiError::new(ResponseError::TopicAlreadyExists, m),
                other => quorum_error(other),
            })?;
        Ok(topic)
    }

    pub async fn delete_topic(&self, topic_id: Uuid) -> Result<(), ApiError> {
        if !self.config.settings.topics.delete_enable {
            return Err(ApiError::new(
                ResponseError::TopicDeletionDisabled,
                "delete.topic.enable is false",
            ));
        }
        self.quorum
            .propose(RecordBatch(vec![MetadataRecord::DeleteTopic { topic_id }]))
            .await
            .map_err(|e| match e {
                QuorumError::Rejected(m) => {
                    ApiError::new(ResponseError::UnknownTopicOrPartition, m)
                }
                other => quorum_error(other),
            })?;
        Ok(())
    }

    /// Raises a topic's partition count to `count`.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Vec<Vec<i32>>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let image = self.image();
        let topic = image.topics.get(name).ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            )
        })?;
        let current = topic.partitions.len() as i32;
        if count < current {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!("topic has {current} partitions; the count cannot be decreased to {count}"),
            ));
        }
        if count == current {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!("topic already has {current} partitions"),
            ));
        }
        let rf = topic
            .partitions
            .first()
            .map(|p| p.replicas.len())
            .unwrap_or(1);
        let added = count - current;
        let new_assignments = if assignments.is_empty() {
            self.place(current, added, rf, image.topics.len())
        } else {
            if assignments.len() as i32 != added {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "{} assignments given for {added} new partitions",
                        assignments.len()
                    ),
                ));
            }
            self.check_assignments(&assignments)?;
            assignments
        };
        if validate_only {
            return Ok(());
        }
        self.quorum
            .propose(RecordBatch(vec![MetadataRecord::CreatePartitions {
                topic_id: topic.topic_id,
                partitions: new_assignments
                    .into_iter()
                    .map(PartitionRecord::new)
                    .collect(),
            }]))
            .await
            .map_err(quorum_error)?;
        Ok(())
    }

    /// Applies config changes to one resource. With `replace_all` (the
    /// legacy AlterConfigs API), keys not named are removed.
    pub async fn alter_configs(
        &self,
        resource: ConfigResource,
        changes: Vec<ConfigChange>,
        replace_all: bool,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let image = self.image();
        let is_topic = matches!(resource, ConfigResource::Topic(_));
        if let ConfigResource::Topic(name) = &resource {
            if !image.topics.contains_key(name) {
                return Err(ApiError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic '{name}' does not exist"),
                ));
            }
        }
        if let ConfigResource::Broker(id) = resource {
            if !image.brokers.contains_key(&id) {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("broker {id} is not this cluster's broker"),
                ));
            }
        }
        let mut records = Vec::new();
        for change in &changes {
            let (key, value) = match change {
                ConfigChange::Set(k, v) => (k, Some(v)),
                ConfigChange::Delete(k) => (k, None),
            };
            if is_topic {
                let def = topic_def(key).ok_or_else(|| {
                    ApiError::new(
                        ResponseError::InvalidConfig,
                        format!("unknown topic config '{key}'"),
                    )
                })?;
                if let Some(v) = value {
                    validate_value(key, def.kind, def.validator, v)
                        .map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
                }
            } else {
                let def = broker_def(key).ok_or_else(|| {
                    ApiError::new(
                        ResponseError::InvalidConfig,
                        format!("unknown broker config '{key}'"),
                    )
                })?;
                if !def.dynamic {
                    return Err(ApiError::new(
                        ResponseError::InvalidConfig,
                        format!("broker config '{key}' cannot be updated dynamically; set it in the broker's configuration and restart"),
                    ));
                }
                if let Some(v) = value {
                    validate_value(key, def.kind, def.validator, v)
                        .map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
                }
            }
            records.push((key.clone(), value.cloned()));
        }
        if replace_all {
            if let Some(current) = image.configs_of(&resource) {
                for key in current.keys() {
                    if !records.iter().any(|(k, _)| k == key) {
                        records.push((key.clone(), None));
                    }
                }
            }
        }
        if validate_only || records.is_empty() {
            return Ok(());
        }
        self.quorum
            .propose(RecordBatch(vec![MetadataRecord::AlterConfigs {
                resource,
                changes: records,
            }]))
            .await
            .map_err(quorum_error)?;
        Ok(())
    }

    /// Reserves a block of producer ids for this broker.
    /// Commits partition changes (ISR changes from leaders, elections,
    /// reassignment steps) as one atomic batch; a change computed from a
    /// stale partition epoch fails the batch with INVALID_UPDATE_VERSION.
    pub async fn change_partitions(&self, changes: Vec<PartitionChange>) -> Result<(), ApiError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.quorum
            .propose(RecordBatch(
                changes
                    .into_iter()
                    .map(MetadataRecord::ChangePartition)
                    .collect(),
            ))
            .await
            .map_err(|e| match e {
                QuorumError::Rejected(m) => ApiError::new(ResponseError::InvalidUpdateVersion, m),
                other => quorum_error(other),
            })?;
        Ok(())
    }

    /// Controlled shutdown: the controller moves every leadership off
    /// `broker_id` and takes it out of the ISRs it shares.
    pub async fn shutdown_broker(&self, broker_id: i32) -> Result<(), ApiError> {
        self.quorum
            .propose(RecordBatch(vec![MetadataRecord::ShutdownBroker {
                broker_id,
            }]))
            .await
            .map_err(quorum_error)?;
        Ok(())
    }

    /// UnregisterBroker: removes a broker that left the cluster from the
    /// metadata (Kafka's BROKER_ID_NOT_REGISTERED if it is not there).
    pub async fn unregister_broker(&self, broker_id: i32) -> Result<(), ApiError> {
        if !self.image().brokers.contains_key(&broker_id) {
            return Err(not_registered(broker_id));
        }
        self.quorum
            .propose(RecordBatch(vec![MetadataRecord::UnregisterBroker {
                broker_id,
            }]))
            .await
            .map_err(|e| match e {
                // Unregistered meanwhile by another request.
                QuorumError::Rejected(_) => not_registered(broker_id),
                other => quorum_error(other),
            })?;
        Ok(())
    }

    /// Tells the controller whether `broker_id`'s log directory takes
    /// writes; while it does not, the broker hands its leaderships to other
    /// in-sync replicas and leaves the ISRs it shares.
    pub async fn set_log_dir_state(
        &self,
        broker_id: i32,
        state: crate::disk::DirState,
    ) -> Result<(), ApiError> {
        self.quorum
            .propose(RecordBatch(vec![MetadataRecord::SetLogDirState {
                broker_id,
                state,
            }]))
            .await
            .map_err(quorum_error)?;
        Ok(())
    }

    pub async fn allocate_producer_ids(&self) -> Result<(i64, i64), ApiError> {
        let outcome = self
            .quorum
            .propose(RecordBatch(vec![MetadataRecord::AllocateProducerIds {
                broker_id: self.config.node_id,
                count: PRODUCER_ID_BLOCK,
            }]))
            .await
            .map_err(quorum_error)?;
        let start = outcome.producer_id_start.ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownServerError,
                "no producer id block granted",
            )
        })?;
        Ok((start, PRODUCER_ID_BLOCK))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_a-b").is_ok());
        for bad in ["", ".", "..", "a b", "ü", "__cluster_metadata"] {
            assert_eq!(
                validate_topic_name(bad).unwrap_err().kind,
                ResponseError::InvalidTopicException,
                "{bad:?}"
            );
        }
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
