//! Typed settings: one struct per subsystem, read once from the config
//! table at start-up (and again when a dynamic config changes), so each
//! property name appears here and in `definitions` only, and a value of the
//! wrong type is an error naming its key before anything runs.

use std::net::IpAddr;
use std::time::Duration;

use super::ConfigError;

/// Reads typed values by key from a lookup (the merged config table, or
/// dynamic overrides over it). Every failure names the key.
pub struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<&'a str>,
}

impl<'a> Reader<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<&'a str>) -> Self {
        Reader { lookup }
    }

    fn optional(&self, key: &str) -> Option<&'a str> {
        (self.lookup)(key).map(str::trim)
    }

    fn required(&self, key: &str) -> Result<&'a str, ConfigError> {
        self.optional(key)
            .ok_or_else(|| ConfigError::Invalid(format!("{key}: no value and no default")))
    }

    pub fn long(&self, key: &str) -> Result<i64, ConfigError> {
        let value = self.required(key)?;
        value
            .parse()
            .map_err(|_| ConfigError::Invalid(format!("{key}: '{value}' is not a number")))
    }

    pub fn int(&self, key: &str) -> Result<i32, ConfigError> {
        let value = self.long(key)?;
        i32::try_from(value)
            .map_err(|_| ConfigError::Invalid(format!("{key}: {value} is out of range")))
    }

    /// A non-negative size or count.
    pub fn size(&self, key: &str) -> Result<usize, ConfigError> {
        let value = self.long(key)?;
        usize::try_from(value)
            .map_err(|_| ConfigError::Invalid(format!("{key}: {value} must not be negative")))
    }

    pub fn millis(&self, key: &str) -> Result<Duration, ConfigError> {
        Ok(Duration::from_millis(self.size(key)? as u64))
    }

    pub fn boolean(&self, key: &str) -> Result<bool, ConfigError> {
        match self.required(key)? {
            v if v.eq_ignore_ascii_case("true") => Ok(true),
            v if v.eq_ignore_ascii_case("false") => Ok(false),
            v => Err(ConfigError::Invalid(format!(
                "{key}: '{v}' is not true or false"
            ))),
        }
    }

    pub fn string(&self, key: &str) -> Option<String> {
        self.optional(key).map(String::from)
    }
}

/// Every subsystem's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub storage: StorageSettings,
    pub upkeep: UpkeepSettings,
    pub replication: ReplicationSettings,
    pub groups: GroupSettings,
    pub offsets_topic: OffsetsTopicSettings,
    pub transactions: TransactionSettings,
    pub topics: TopicSettings,
    pub leader_balance: LeaderBalanceSettings,
    pub liveness: LivenessSettings,
    pub shutdown: ShutdownSettings,
    /// `max.incremental.fetch.session.cache.slots`.
    pub fetch_session_slots: usize,
    /// `outbound.bind.host`: the source address of connections we open.
    pub outbound_bind_host: Option<IpAddr>,
    /// `cluster.id`, when given.
    pub cluster_id: Option<String>,
}

impl Settings {
    pub fn read(r: &Reader<'_>) -> Result<Settings, ConfigError> {
        let outbound_bind_host = match r.string("outbound.bind.host") {
            None => None,
            Some(host) => Some(host.parse().map_err(|_| {
                ConfigError::Invalid(format!("outbound.bind.host: '{host}' is not an IP address"))
            })?),
        };
        Ok(Settings {
            storage: StorageSettings::read(r)?,
            upkeep: UpkeepSettings::read(r)?,
            replication: ReplicationSettings::read(r)?,
            groups: GroupSettings::read(r)?,
            offsets_topic: OffsetsTopicSettings::read(r)?,
            transactions: TransactionSettings::read(r)?,
            topics: TopicSettings::read(r)?,
            leader_balance: LeaderBalanceSettings::read(r)?,
            liveness: LivenessSettings::read(r)?,
            shutdown: ShutdownSettings::read(r)?,
            fetch_session_slots: r.size("max.incremental.fetch.session.cache.slots")?,
            outbound_bind_host,
            cluster_id: r.string("cluster.id"),
        })
    }
}

/// `log.direct.io.enable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectIo {
    Off,
    On,
    /// Direct writes only while the kernel's writeback is under pressure.
    Auto,
}

/// How the log directory is written.
#[derive(Debug, Clone)]
pub struct StorageSettings {
    /// `log.dir.reserved.bytes` (-1: automatic).
    pub reserved_bytes: i64,
    pub direct_io: DirectIo,
    /// `log.direct.io.buffer.bytes`.
    pub direct_io_buffer_bytes: usize,
    /// `log.segment.writeback.bytes` (0: left to the kernel).
    pub segment_writeback_bytes: u64,
}

impl StorageSettings {
    fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        let direct_io = match r.string("log.direct.io.enable").as_deref() {
            None | Some("false") => DirectIo::Off,
            Some("true") => DirectIo::On,
            Some("auto") => DirectIo::Auto,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "log.direct.io.enable: '{other}' is not true, false or auto"
                )))
            }
        };
        Ok(StorageSettings {
            reserved_bytes: r.long("log.dir.reserved.bytes")?,
            direct_io,
            direct_io_buffer_bytes: r.long("log.direct.io.buffer.bytes")?.max(0) as usize,
            segment_writeback_bytes: r.long("log.segment.writeback.bytes")?.max(0) as u64,
        })
    }
}

/// How often the background upkeep runs (each bounded as the broker has
/// always bounded it).
#[derive(Debug, Clone)]
pub struct UpkeepSettings {
    /// `log.retention.check.interval.ms`, at least 1 ms.
    pub retention_check: Duration,
    /// `log.flush.offset.checkpoint.interval.ms`, at least 100 ms.
    pub checkpoint: Duration,
    /// `log.flush.scheduler.interval.ms`, within 10 ms – 1 s.
    pub flush_check: Duration,
    /// `log.cleaner.backoff.ms`, at least 100 ms.
    pub cleaner_backoff: Duration,
    /// `offsets.retention.check.interval.ms`, at least 100 ms.
    pub offsets_expiry_check: Duration,
    /// `producer.id.expiration.ms`.
    pub producer_id_expiration_ms: i64,
    /// `producer.id.expiration.check.interval.ms`, at least 10 ms.
    pub producer_expiry_check: Duration,
}

impl UpkeepSettings {
    fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        let ms = |key: &str, min: i64, max: i64| -> Result<Duration, ConfigError> {
            Ok(Duration::from_millis(r.long(key)?.clamp(min, max) as u64))
        };
        Ok(UpkeepSettings {
            retention_check: ms("log.retention.check.interval.ms", 1, i64::MAX)?,
            checkpoint: ms("log.flush.offset.checkpoint.interval.ms", 100, i64::MAX)?,
            flush_check: ms("log.flush.scheduler.interval.ms", 10, 1000)?,
            cleaner_backoff: ms("log.cleaner.backoff.ms", 100, i64::MAX)?,
            offsets_expiry_check: ms("offsets.retention.check.interval.ms", 100, i64::MAX)?,
            producer_id_expiration_ms: r.long("producer.id.expiration.ms")?,
            producer_expiry_check: ms("producer.id.expiration.check.interval.ms", 10, i64::MAX)?,
        })
    }
}

/// Replication: the ISR's lag limit, the reassignment throttle, and how
/// followers fetch.
#[derive(Debug, Clone)]
pub struct ReplicationSettings {
    /// `replica.lag.time.max.ms`.
    pub lag_max_ms: i64,
    /// `leader.replication.throttled.rate` (bytes/s; dynamic).
    pub throttled_rate: i64,
    pub fetch: FollowerFetchSettings,
}

/// How a follower fetches from its leaders.
#[derive(Debug, Clone)]
pub struct FollowerFetchSettings {
    /// `replica.fetch.wait.max.ms`.
    pub max_wait_ms: i32,
    /// `replica.fetch.max.bytes`.
    pub partition_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`.
    pub response_max_bytes: i32,
    /// `replica.fetch.backoff.ms`.
    pub backoff: Duration,
    /// `replica.socket.timeout.ms`.
    pub socket_timeout: Duration,
}

impl ReplicationSettings {
    pub fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        Ok(ReplicationSettings {
            lag_max_ms: r.long("replica.lag.time.max.ms")?,
            throttled_rate: r.long("leader.replication.throttled.rate")?,
            fetch: FollowerFetchSettings {
                max_wait_ms: r.int("replica.fetch.wait.max.ms")?,
                partition_max_bytes: r.int("replica.fetch.max.bytes")?,
                response_max_bytes: r.int("replica.fetch.response.max.bytes")?,
                backoff: r.millis("replica.fetch.backoff.ms")?,
                socket_timeout: r.millis("replica.socket.timeout.ms")?,
            },
        })
    }
}

/// The group coordinator's limits.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i64,
    /// `group.max.size`.
    pub max_size: usize,
    /// `offset.metadata.max.bytes`.
    pub max_metadata_bytes: usize,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
}

impl GroupSettings {
    fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        Ok(GroupSettings {
            min_session_timeout_ms: r.int("group.min.session.timeout.ms")?,
            max_session_timeout_ms: r.int("group.max.session.timeout.ms")?,
            initial_rebalance_delay_ms: r.long("group.initial.rebalance.delay.ms")?,
            max_size: r.size("group.max.size")?,
            max_metadata_bytes: r.size("offset.metadata.max.bytes")?,
            offsets_retention_ms: r.long("offsets.retention.minutes")?.saturating_mul(60_000),
        })
    }
}

/// How `__consumer_offsets` is created.
#[derive(Debug, Clone)]
pub struct OffsetsTopicSettings {
    /// `offsets.topic.replication.factor` (capped at the live brokers).
    pub replication_factor: i64,
    /// `offsets.topic.segment.bytes`.
    pub segment_bytes: i64,
    /// `offsets.topic.num.partitions`.
    pub num_partitions: i32,
}

impl OffsetsTopicSettings {
    fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        Ok(OffsetsTopicSettings {
            replication_factor: r.long("offsets.topic.replication.factor")?,
            segment_bytes: r.long("offsets.topic.segment.bytes")?,
            num_partitions: r.int("offsets.topic.num.partitions")?,
        })
    }
}

/// The transaction coordinator and how `__transaction_state` is created.
#[derive(Debug, Clone)]
pub struct TransactionSettings {
    /// `transaction.state.log.num.partitions`.
    pub num_partitions: i32,
    /// `transaction.state.log.replication.factor` (capped at the live brokers).
    pub replication_factor: i64,
    /// `transaction.state.log.min.isr` (capped at the replication factor).
    pub min_isr: i64,
    /// `transaction.state.log.segment.bytes`.
    pub segment_bytes: i64,
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`.
    pub id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_timed_out_interval: Duration,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`.
    pub remove_expired_interval: Duration,
}

impl TransactionSettings {
    fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        Ok(TransactionSettings {
            num_partitions: r.int("transaction.state.log.num.partitions")?,
            replication_factor: r.long("transaction.state.log.replication.factor")?,
            min_isr: r.long("transaction.state.log.min.isr")?,
            segment_bytes: r.long("transaction.state.log.segment.bytes")?,
            max_timeout_ms: r.int("transaction.max.timeout.ms")?,
            id_expiration_ms: r.long("transactional.id.expiration.ms")?,
            abort_timed_out_interval: r
                .millis("transaction.abort.timed.out.transaction.cleanup.interval.ms")?,
            remove_expired_interval: r
                .millis("transaction.remove.expired.transaction.cleanup.interval.ms")?,
        })
    }
}

/// Topic creation and deletion.
#[derive(Debug, Clone)]
pub struct TopicSettings {
    /// `num.partitions` (dynamic).
    pub num_partitions: i32,
    /// `auto.create.topics.enable`.
    pub auto_create: bool,
    /// `delete.topic.enable`.
    pub delete_enable: bool,
    /// `default.replication.factor`.
    pub default_replication_factor: i32,
}

impl TopicSettings {
    pub fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        Ok(TopicSettings {
            num_partitions: r.int("num.partitions")?,
            auto_create: r.boolean("auto.create.topics.enable")?,
            delete_enable: r.boolean("delete.topic.enable")?,
            default_replication_factor: r.int("default.replication.factor")?,
        })
    }
}

/// Preferred-leader rebalancing by the controller.
#[derive(Debug, Clone)]
pub struct LeaderBalanceSettings {
    /// `auto.leader.rebalance.enable`.
    pub enable: bool,
    /// `leader.imbalance.per.broker.percentage`.
    pub imbalance_percentage: i64,
    /// `leader.imbalance.check.interval.seconds`, at least 1 s.
    pub check_interval: Duration,
}

impl LeaderBalanceSettings {
    fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        Ok(LeaderBalanceSettings {
            enable: r.boolean("auto.leader.rebalance.enable")?,
            imbalance_percentage: r.long("leader.imbalance.per.broker.percentage")?,
            check_interval: Duration::from_secs(
                r.long("leader.imbalance.check.interval.seconds")?.max(1) as u64,
            ),
        })
    }
}

/// Broker heartbeats to the controller and fencing.
#[derive(Debug, Clone)]
pub struct LivenessSettings {
    /// `broker.heartbeat.interval.ms`, at least 10 ms.
    pub heartbeat_interval: Duration,
    /// `broker.session.timeout.ms`.
    pub session_timeout: Duration,
}

impl LivenessSettings {
    fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        Ok(LivenessSettings {
            heartbeat_interval: Duration::from_millis(
                r.long("broker.heartbeat.interval.ms")?.max(10) as u64,
            ),
            session_timeout: r.millis("broker.session.timeout.ms")?,
        })
    }
}

/// Controlled shutdown: moving leadership away before stopping.
#[derive(Debug, Clone)]
pub struct ShutdownSettings {
    /// `controlled.shutdown.enable`.
    pub controlled: bool,
    /// `controlled.shutdown.timeout.ms`.
    pub timeout: Duration,
}

impl ShutdownSettings {
    fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        Ok(ShutdownSettings {
            controlled: r.boolean("controlled.shutdown.enable")?,
            timeout: Duration::from_millis(r.long("controlled.shutdown.timeout.ms")?.max(0) as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::definitions::broker_def;

    fn read_with(overrides: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let lookup = |key: &str| {
            overrides
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .or_else(|| broker_def(key).and_then(|d| d.default))
        };
        Settings::read(&Reader::new(&lookup))
    }

    fn message(result: Result<Settings, ConfigError>) -> String {
        result.expect_err("must fail").to_string()
    }

    #[test]
    fn the_defaults_read_into_every_subsystem() {
        let settings = read_with(&[]).unwrap();
        assert_eq!(settings.replication.lag_max_ms, 30_000);
        assert_eq!(settings.storage.direct_io, DirectIo::Off);
        assert!(settings.topics.delete_enable);
        assert_eq!(settings.offsets_topic.num_partitions, 50);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error_naming_its_key() {
        let text = message(read_with(&[("replica.lag.time.max.ms", "ten")]));
        assert!(text.contains("replica.lag.time.max.ms"), "{text}");
        let text = message(read_with(&[("delete.topic.enable", "yes")]));
        assert!(text.contains("delete.topic.enable"), "{text}");
        let text = message(read_with(&[(
            "offsets.topic.num.partitions",
            "99999999999",
        )]));
        assert!(text.contains("offsets.topic.num.partitions"), "{text}");
        let text = message(read_with(&[("outbound.bind.host", "not-an-ip")]));
        assert!(text.contains("outbound.bind.host"), "{text}");
    }

    #[test]
    fn a_key_without_a_value_is_an_error_naming_it() {
        let lookup = |_: &str| None;
        let text = Reader::new(&lookup)
            .long("replica.lag.time.max.ms")
            .unwrap_err()
            .to_string();
        assert!(text.contains("replica.lag.time.max.ms"), "{text}");
    }
}
