//! A topic's effective log settings, resolved the way Kafka resolves them:
//! the topic's own override, else the broker synonym set dynamically for this
//! broker, else set dynamically cluster-wide, else set statically, else the
//! documented default.

use std::collections::BTreeMap;

use super::definitions::{synonym_scale, topic_def, TopicConfigDef, TOPIC_CONFIGS};
use super::BrokerConfig;
use crate::log::compression::{CompressionLevels, CompressionType};

/// Where an effective value came from; the numbers are DescribeConfigs' `ConfigSource`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueSource {
    TopicConfig = 1,
    DynamicBrokerConfig = 2,
    DynamicDefaultBrokerConfig = 3,
    StaticBrokerConfig = 4,
    Default = 5,
}

/// The configuration layers a lookup walks through.
pub struct ConfigLayers<'a> {
    pub topic: Option<&'a BTreeMap<String, String>>,
    pub broker_dynamic: Option<&'a BTreeMap<String, String>>,
    pub cluster_dynamic: Option<&'a BTreeMap<String, String>>,
    pub static_config: &'a BrokerConfig,
}

/// One resolved value with its origin and the broker key it came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub value: Option<String>,
    pub source: ValueSource,
    /// The key that supplied the value (the topic key itself or a synonym).
    pub from_key: String,
}

impl ConfigLayers<'_> {
    /// The value of a broker key as this broker sees it (dynamic, then static).
    pub fn broker_value(&self, key: &str) -> Option<(String, ValueSource)> {
        if let Some(v) = self.broker_dynamic.and_then(|m| m.get(key)) {
            return Some((v.clone(), ValueSource::DynamicBrokerConfig));
        }
        if let Some(v) = self.cluster_dynamic.and_then(|m| m.get(key)) {
            return Some((v.clone(), ValueSource::DynamicDefaultBrokerConfig));
        }
        if self.static_config.source(key).is_some() {
            return self
                .static_config
                .get(key)
                .map(|v| (v.to_string(), ValueSource::StaticBrokerConfig));
        }
        None
    }

    /// Resolves a topic key through its synonyms.
    pub fn resolve(&self, def: &TopicConfigDef) -> Resolved {
        if let Some(v) = self.topic.and_then(|m| m.get(def.name)) {
            return Resolved {
                value: Some(v.clone()),
                source: ValueSource::TopicConfig,
                from_key: def.name.to_string(),
            };
        }
        for synonym in def.synonyms {
            if let Some((value, source)) = self.broker_value(synonym) {
                let scale = synonym_scale(synonym);
                let value = if scale == 1 {
                    value
                } else {
                    match value.trim().parse::<i64>() {
                        Ok(v) if v < 0 => v.to_string(),
                        Ok(v) => v.saturating_mul(scale).to_string(),
                        Err(_) => value,
                    }
                };
                return Resolved {
                    value: Some(value),
                    source,
                    from_key: synonym.to_string(),
                };
            }
        }
        Resolved {
            value: def.default.map(String::from),
            source: ValueSource::Default,
            from_key: def.name.to_string(),
        }
    }

    pub fn log_config(&self) -> LogConfig {
        let values: BTreeMap<&str, String> = TOPIC_CONFIGS
            .iter()
            .map(|def| (def.name, self.resolve(def).value.unwrap_or_default()))
            .collect();
        LogConfig::from_values(&values)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Typed topic settings used by the log. Values were validated when set, so
/// parsing falls back to the documented default only for impossible input.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub segment_index_bytes: u64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub max_message_bytes: usize,
    pub timestamp_type: TimestampType,
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub index_interval_bytes: u64,
    pub file_delete_delay_ms: i64,
    pub cleanup_delete: bool,
    pub cleanup_compact: bool,
    pub min_insync_replicas: i32,
    /// `unclean.leader.election.enable`.
    pub unclean_leader_election: bool,
    /// `delete.retention.ms`: how long a tombstone survives once cleaned.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`.
    pub max_compaction_lag_ms: i64,
    /// `compression.type`: how produced batches are stored.
    pub compression: CompressionType,
    /// `compression.{gzip,lz4,zstd}.level` (KIP-390).
    pub compression_levels: CompressionLevels,
}

impl Default for LogConfig {
    fn default() -> Self {
        let values: BTreeMap<&str, String> = TOPIC_CONFIGS
            .iter()
            .map(|def| (def.name, def.default.unwrap_or_default().to_string()))
            .collect();
        LogConfig::from_values(&values)
    }
}

impl LogConfig {
    fn from_values(values: &BTreeMap<&str, String>) -> LogConfig {
        let int = |key: &str| -> i64 {
            values
                .get(key)
                .and_then(|v| v.trim().parse().ok())
                .or_else(|| {
                    topic_def(key)
                        .and_then(|d| d.default)
                        .and_then(|d| d.parse().ok())
                })
                .unwrap_or(0)
        };
        let text = |key: &str| values.get(key).cloned().unwrap_or_default();
        let policy = text("cleanup.policy");
        LogConfig {
            segment_bytes: int("segment.bytes").max(14) as u64,
            segment_ms: int("segment.ms").max(1),
            segment_index_bytes: int("segment.index.bytes").max(8) as u64,
            retention_ms: int("retention.ms"),
            retention_bytes: int("retention.bytes"),
            max_message_bytes: int("max.message.bytes").max(0) as usize,
            timestamp_type: if text("message.timestamp.type") == "LogAppendTime" {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            timestamp_before_max_ms: int("message.timestamp.before.max.ms"),
            timestamp_after_max_ms: int("message.timestamp.after.max.ms"),
            flush_messages: int("flush.messages").max(1),
            flush_ms: int("flush.ms"),
            index_interval_bytes: int("index.interval.bytes").max(0) as u64,
            file_delete_delay_ms: int("file.delete.delay.ms"),
            cleanup_delete: policy.split(',').any(|p| p.trim() == "delete"),
            cleanup_compact: policy.split(',').any(|p| p.trim() == "compact"),
            min_insync_replicas: int("min.insync.replicas") as i32,
            unclean_leader_election: text("unclean.leader.election.enable").trim() == "true",
            delete_retention_ms: int("delete.retention.ms").max(0),
            min_cleanable_dirty_ratio: values
                .get("min.cleanable.dirty.ratio")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|r| (0.0..=1.0).contains(r))
                .unwrap_or(0.5),
            min_compaction_lag_ms: int("min.compaction.lag.ms").max(0),
            max_compaction_lag_ms: int("max.compaction.lag.ms").max(1),
            compression: CompressionType::parse(&text("compression.type"))
                .unwrap_or(CompressionType::Producer),
            compression_levels: CompressionLevels {
                gzip: int("compression.gzip.level") as i32,
                lz4: int("compression.lz4.level") as i32,
                zstd: int("compression.zstd.level") as i32,
            },
        }
    }

    /// The age at which the active segment rolls: `segment.ms`, or for
    /// compacted logs `max.compaction.lag.ms` when smaller (as Kafka does),
    /// so the cleaner can reach records within their compaction deadline.
    pub fn max_segment_ms(&self) -> i64 {
        if self.cleanup_compact {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_override_beats_dynamic_beats_static_beats_default() {
        let static_config = BrokerConfig::load(
            None,
            Vec::new(),
            &[
                "log.retention.hours=1".to_string(),
                "log.segment.bytes=2000".to_string(),
            ],
        )
        .unwrap();
        let cluster: BTreeMap<String, String> =
            [("log.segment.bytes".to_string(), "3000".to_string())].into();
        let topic: BTreeMap<String, String> =
            [("max.message.bytes".to_string(), "500".to_string())].into();
        let layers = ConfigLayers {
            topic: Some(&topic),
            broker_dynamic: None,
            cluster_dynamic: Some(&cluster),
            static_config: &static_config,
        };
        let config = layers.log_config();
        assert_eq!(config.retention_ms, 3_600_000);
        assert_eq!(config.segment_bytes, 3000);
        assert_eq!(config.max_message_bytes, 500);
        assert_eq!(config.flush_messages, i64::MAX);
        assert_eq!(config.delete_retention_ms, 86_400_000);
        assert_eq!(config.min_cleanable_dirty_ratio, 0.5);
        assert_eq!(config.min_compaction_lag_ms, 0);
        assert_eq!(config.max_compaction_lag_ms, i64::MAX);
        let resolved = layers.resolve(topic_def("retention.ms").unwrap());
        assert_eq!(resolved.source, ValueSource::StaticBrokerConfig);
        assert_eq!(resolved.from_key, "log.retention.hours");
    }
}
