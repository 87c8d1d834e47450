//! CreateTopics, DeleteTopics and CreatePartitions.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, TopicName,
};

use super::{name, Admin, Target};
use crate::error::Result;

pub const TOPIC_ALREADY_EXISTS: i16 = 36;

pub struct NewTopic {
    pub name: String,
    /// -1: the broker's `num.partitions`.
    pub partitions: i32,
    /// -1: the broker's `default.replication.factor`.
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

impl Admin {
    fn timeout_ms(&self) -> i32 {
        self.options().timeout.as_millis().min(i32::MAX as u128) as i32
    }

    pub async fn create_topic(&mut self, topic: &NewTopic) -> Result<()> {
        let mut t = CreatableTopic::default();
        t.name = TopicName(name(&topic.name));
        t.num_partitions = topic.partitions;
        t.replication_factor = topic.replication_factor;
        t.configs = topic
            .configs
            .iter()
            .map(|(key, value)| {
                let mut c = CreatableTopicConfig::default();
                c.name = name(key);
                c.value = Some(name(value));
                c
            })
            .collect();
        let mut request = CreateTopicsRequest::default();
        request.topics = vec![t];
        request.timeout_ms = self.timeout_ms();
        let response = self.call(Target::Any, &request, 7).await?;
        for r in response.topics {
            self.check(
                Target::Any,
                || format!("creating topic {}", topic.name),
                r.error_code,
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    pub async fn delete_topic(&mut self, topic: &str) -> Result<()> {
        let version = self.version::<DeleteTopicsRequest>(Target::Any, 6).await?;
        let mut request = DeleteTopicsRequest::default();
        request.timeout_ms = self.timeout_ms();
        if version >= 6 {
            let mut state = DeleteTopicState::default();
            state.name = Some(TopicName(name(topic)));
            request.topics = vec![state];
        } else {
            request.topic_names = vec![TopicName(name(topic))];
        }
        let response = self.send(Target::Any, &request, version).await?;
        for r in response.responses {
            self.check(
                Target::Any,
                || format!("deleting topic {topic}"),
                r.error_code,
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Grows `topic` to `total` partitions.
    pub async fn create_partitions(&mut self, topic: &str, total: i32) -> Result<()> {
        let mut t = CreatePartitionsTopic::default();
        t.name = TopicName(name(topic));
        t.count = total;
        t.assignments = None;
        let mut request = CreatePartitionsRequest::default();
        request.topics = vec![t];
        request.timeout_ms = self.timeout_ms();
        let response = self.call(Target::Any, &request, 3).await?;
        for r in response.results {
            self.check(
                Target::Any,
                || format!("adding partitions to topic {topic}"),
                r.error_code,
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }
}
