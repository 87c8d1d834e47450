//! The table of every configuration key the broker understands.
//!
//! Names, types, defaults and meanings are Apache Kafka's, so a properties
//! file written for Kafka reads the same here. Two tables: broker keys (read
//! at start-up from file, environment and flags; some may also be changed at
//! run time through AlterConfigs) and topic keys (per-topic overrides whose
//! defaults come from a broker key, Kafka's "synonyms").

/// The type of a configuration value, as DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Long,
    Double,
    List,
}

impl ConfigType {
    /// The numeric code DescribeConfigs v3+ uses (`ConfigType` in Kafka's clients).
    pub fn code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
        }
    }
}

/// What values a key accepts beyond parsing as its type.
#[derive(Debug, Clone, Copy)]
pub enum Validator {
    None,
    /// Inclusive numeric range.
    Range(f64, f64),
    /// The value (or, for lists, each element) must be one of these.
    OneOf(&'static [&'static str]),
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub kind: ConfigType,
    /// `None` means "no default" (Kafka's `null`).
    pub default: Option<&'static str>,
    pub validator: Validator,
    /// For broker keys: whether AlterConfigs may change it while running.
    pub dynamic: bool,
    pub doc: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";
const I32_MAX: f64 = i32::MAX as f64;
const I64_MAX: f64 = i64::MAX as f64;

macro_rules! def {
    ($name:expr, $kind:ident, $default:expr, $validator:expr, $dynamic:expr, $doc:expr) => {
        ConfigDef {
            name: $name,
            kind: ConfigType::$kind,
            default: $default,
            validator: $validator,
            dynamic: $dynamic,
            doc: $doc,
        }
    };
}

/// Keys of the broker's own configuration.
pub const BROKER_CONFIGS: &[ConfigDef] = &[
    def!("node.id", Int, Some("1"), Validator::Range(0.0, I32_MAX), false,
        "The node id of this server in the cluster."),
    def!("broker.id", Int, None, Validator::Range(0.0, I32_MAX), false,
        "Legacy alias of node.id; must equal node.id when both are set."),
    def!("process.roles", List, Some("broker,controller"), Validator::OneOf(&["broker", "controller"]), false,
        "The roles this process plays: broker, controller, or both (a single node runs both and is its own one-voter metadata quorum). Unset with controller.quorum.voters: both for a node in the voter list, broker for any other."),
    def!("cluster.id", String, None, Validator::None, false,
        "The cluster id. When unset, a new id is generated on first start and kept in meta.properties."),
    def!("controller.quorum.voters", List, None, Validator::None, false,
        "The metadata quorum's voters, id@host:port,... (host:port is each voter's controller listener). Unset: this node is a quorum of one."),
    def!("broker.heartbeat.interval.ms", Int, Some("2000"), Validator::Range(1.0, I32_MAX), false,
        "How often a broker tells the active controller it is alive."),
    def!("broker.session.timeout.ms", Int, Some("9000"), Validator::Range(1.0, I32_MAX), false,
        "How long the active controller waits for a broker's heartbeat before fencing it and moving its leaderships."),
    def!("controller.listener.names", List, Some("CONTROLLER"), Validator::None, false,
        "Names of the listeners that carry metadata-quorum traffic between controllers; Kafka clients are not served on them."),
    def!("listeners", List, Some("PLAINTEXT://127.0.0.1:9092"), Validator::None, false,
        "Comma-separated listener URIs the broker binds, NAME://host:port."),
    def!("advertised.listeners", List, None, Validator::None, false,
        "Listeners published to clients in Metadata responses; defaults to listeners."),
    def!("outbound.bind.host", String, None, Validator::None, false,
        "Local IP address that connections to other brokers and controllers originate from (for hosts with several addresses); unset lets the operating system choose."),
    def!("broker.rack", String, None, Validator::None, false,
        "Rack of this broker, used for rack-aware replica placement."),
    def!("log.dirs", List, None, Validator::None, false,
        "Directory where log data is kept (one directory is supported). Overrides log.dir."),
    def!("log.dir", String, Some("./data"), Validator::None, false,
        "Directory where log data is kept when log.dirs is not set."),
    def!("log.dir.reserved.bytes", Long, Some("-1"), Validator::Range(-1.0, I64_MAX), false,
        "Free space the log directory keeps for the broker's own writes (metadata log, checkpoints, coordinator records, controlled shutdown): below it, produce and replication appends are refused with KAFKA_STORAGE_ERROR until space returns. -1 chooses 2 % of the file system, at most 256 MiB; 0 refuses only when a write fails for lack of space."),
    def!("log.direct.io.enable", String, Some("false"), Validator::OneOf(&["auto", "true", "false"]), false,
        "How the active segments are written. true: with O_DIRECT from the broker's own reused buffers, bypassing the page cache, and reads of their newest bytes (followers and consumers at the tail) are answered from those buffers. auto: the same buffers and reads, but appends go through the page cache while the kernel's dirty pages stay below half of its writeback threshold (vm.dirty_background_ratio), and directly once they reach it, until they have drained below a quarter. false: through the page cache, no buffers. Falls back to buffered writes on file systems without O_DIRECT (tmpfs)."),
    def!("log.direct.io.buffer.bytes", Long, Some("536870912"), Validator::Range(0.0, I64_MAX), false,
        "Memory the direct-write windows of all active segments may hold together (each actively written partition keeps up to two 4 MiB windows). Above it, windows shrink to what each append needs and reads of older tail data go to the file."),
    def!("log.segment.writeback.bytes", Long, Some("0"), Validator::Range(0.0, I64_MAX), false,
        "Every time this many bytes have been appended to a segment through the page cache, the broker asks the kernel to start writing them to the disk (sync_file_range, without waiting), so dirty pages never pile up into a stall at the fsync of a roll or at the kernel's dirty limit. Makes nothing durable by itself (flush.messages and flush.ms do). 0 (the default) leaves writeback to the kernel; 8388608 measured best for sustained high write rates, and costs tail latency at low ones (docs/direct-io.md)."),
    def!("http.listener", String, Some("127.0.0.1:9644"), Validator::None, false,
        "host:port of the HTTP server for /metrics, /healthz and /readyz."),
    def!("num.partitions", Int, Some("1"), Validator::Range(1.0, I32_MAX), true,
        "Default number of partitions of an auto-created topic or a CreateTopics request with -1 partitions."),
    def!("default.replication.factor", Int, Some("1"), Validator::Range(1.0, I32_MAX), false,
        "Default replication factor of auto-created topics and of CreateTopics requests with -1."),
    def!("auto.create.topics.enable", Boolean, Some("true"), Validator::None, false,
        "Create a topic when a client asks for its metadata or produces to it and it does not exist."),
    def!("delete.topic.enable", Boolean, Some("true"), Validator::None, false,
        "Allow DeleteTopics."),
    def!("socket.request.max.bytes", Int, Some("104857600"), Validator::Range(1.0, I32_MAX), false,
        "Largest request frame accepted; a larger size prefix closes the connection before the body is read."),
    def!("log.retention.check.interval.ms", Long, Some("300000"), Validator::Range(1.0, I64_MAX), false,
        "How often the retention task looks for segments to delete."),
    def!("log.flush.scheduler.interval.ms", Long, Some(LONG_MAX), Validator::Range(0.0, I64_MAX), false,
        "How often the flusher checks whether a log must be flushed for flush.ms; capped at one second."),
    def!("log.flush.offset.checkpoint.interval.ms", Int, Some("60000"), Validator::Range(0.0, I32_MAX), false,
        "How often the recovery point (the offset below which data is known to be on disk) is checkpointed."),
    def!("log.flush.start.offset.checkpoint.interval.ms", Int, Some("60000"), Validator::Range(0.0, I32_MAX), false,
        "How often the log start offsets are checkpointed."),
    // Topic defaults: each has a topic-level synonym below and may be changed
    // cluster-wide or per broker at run time, as in Kafka.
    def!("log.segment.bytes", Int, Some("1073741824"), Validator::Range(14.0, I32_MAX), true,
        "Default segment.bytes: the largest size of a single log segment file."),
    def!("log.roll.ms", Long, None, Validator::Range(1.0, I64_MAX), true,
        "Default segment.ms; when unset log.roll.hours is used."),
    def!("log.roll.hours", Int, Some("168"), Validator::Range(1.0, I32_MAX), true,
        "Default segment.ms in hours, used when log.roll.ms is not set."),
    def!("log.retention.ms", Long, None, Validator::Range(-1.0, I64_MAX), true,
        "Default retention.ms; when unset log.retention.minutes, then log.retention.hours is used. -1 keeps data forever."),
    def!("log.retention.minutes", Int, None, Validator::Range(-1.0, I32_MAX), true,
        "Default retention in minutes, used when log.retention.ms is not set."),
    def!("log.retention.hours", Int, Some("168"), Validator::Range(-1.0, I32_MAX), true,
        "Default retention in hours, used when neither log.retention.ms nor log.retention.minutes is set."),
    def!("log.retention.bytes", Long, Some("-1"), Validator::Range(-1.0, I64_MAX), true,
        "Default retention.bytes: the largest size of a partition before old segments are deleted; -1 is unlimited."),
    def!("message.max.bytes", Int, Some("1048588"), Validator::Range(0.0, I32_MAX), true,
        "Default max.message.bytes: the largest record batch accepted."),
    def!("log.message.timestamp.type", String, Some("CreateTime"), Validator::OneOf(&["CreateTime", "LogAppendTime"]), true,
        "Default message.timestamp.type."),
    def!("log.message.timestamp.before.max.ms", Long, Some(LONG_MAX), Validator::Range(0.0, I64_MAX), true,
        "Default message.timestamp.before.max.ms."),
    def!("log.message.timestamp.after.max.ms", Long, Some(LONG_MAX), Validator::Range(0.0, I64_MAX), true,
        "Default message.timestamp.after.max.ms."),
    def!("log.flush.interval.messages", Long, Some(LONG_MAX), Validator::Range(1.0, I64_MAX), true,
        "Default flush.messages: fsync after this many messages; 1 fsyncs every batch before it is acknowledged."),
    def!("log.flush.interval.ms", Long, None, Validator::Range(0.0, I64_MAX), true,
        "Default flush.ms: the longest time data may stay unflushed; unset means never forced by time."),
    def!("log.cleanup.policy", List, Some("delete"), Validator::OneOf(&["delete", "compact"]), true,
        "Default cleanup.policy."),
    def!("log.index.interval.bytes", Int, Some("4096"), Validator::Range(0.0, I32_MAX), true,
        "Default index.interval.bytes: bytes between two offset index entries."),
    def!("log.index.size.max.bytes", Int, Some("10485760"), Validator::Range(4.0, I32_MAX), true,
        "Default segment.index.bytes: a segment rolls when its offset index reaches this size."),
    def!("log.segment.delete.delay.ms", Long, Some("60000"), Validator::Range(0.0, I64_MAX), true,
        "Default file.delete.delay.ms."),
    def!("log.cleaner.backoff.ms", Long, Some("15000"), Validator::Range(0.0, I64_MAX), false,
        "How often the log cleaner looks for compacted logs (cleanup.policy=compact) to clean."),
    def!("log.cleaner.delete.retention.ms", Long, Some("86400000"), Validator::Range(0.0, I64_MAX), true,
        "Default delete.retention.ms."),
    def!("log.cleaner.min.cleanable.ratio", Double, Some("0.5"), Validator::Range(0.0, 1.0), true,
        "Default min.cleanable.dirty.ratio."),
    def!("log.cleaner.min.compaction.lag.ms", Long, Some("0"), Validator::Range(0.0, I64_MAX), true,
        "Default min.compaction.lag.ms."),
    def!("log.cleaner.max.compaction.lag.ms", Long, Some(LONG_MAX), Validator::Range(1.0, I64_MAX), true,
        "Default max.compaction.lag.ms."),
    // The consumer-group coordinator and its internal offsets topic.
    def!("group.min.session.timeout.ms", Int, Some("6000"), Validator::Range(0.0, I32_MAX), false,
        "Shortest session.timeout.ms a consumer may ask for; shorter ones get INVALID_SESSION_TIMEOUT."),
    def!("group.max.session.timeout.ms", Int, Some("1800000"), Validator::Range(0.0, I32_MAX), false,
        "Longest session.timeout.ms a consumer may ask for; longer ones get INVALID_SESSION_TIMEOUT."),
    def!("group.initial.rebalance.delay.ms", Int, Some("3000"), Validator::Range(0.0, I32_MAX), false,
        "How long the first rebalance of an empty group waits for more members before completing."),
    def!("group.max.size", Int, Some("2147483647"), Validator::Range(1.0, I32_MAX), false,
        "Most members one group may have; further joins get GROUP_MAX_SIZE_REACHED."),
    def!("offsets.topic.num.partitions", Int, Some("50"), Validator::Range(1.0, I32_MAX), false,
        "Partitions of __consumer_offsets, created on the first FindCoordinator for a group."),
    def!("offsets.topic.replication.factor", Int, Some("3"), Validator::Range(1.0, 32767.0), false,
        "Replication factor of __consumer_offsets; capped at the number of registered brokers when it is created."),
    def!("offsets.topic.segment.bytes", Int, Some("104857600"), Validator::Range(1.0, I32_MAX), false,
        "segment.bytes of __consumer_offsets, kept small so compaction can work on closed segments."),
    // The transaction coordinator and its internal state topic.
    def!("transaction.state.log.num.partitions", Int, Some("50"), Validator::Range(1.0, I32_MAX), false,
        "Partitions of __transaction_state, created on the first FindCoordinator or InitProducerId for a transactional id."),
    def!("transaction.state.log.replication.factor", Int, Some("3"), Validator::Range(1.0, 32767.0), false,
        "Replication factor of __transaction_state; capped at the number of live brokers when it is created."),
    def!("transaction.state.log.min.isr", Int, Some("2"), Validator::Range(1.0, I32_MAX), false,
        "min.insync.replicas of __transaction_state (capped at its replication factor)."),
    def!("transaction.state.log.segment.bytes", Int, Some("104857600"), Validator::Range(1.0, I32_MAX), false,
        "segment.bytes of __transaction_state, kept small so compaction can work on closed segments."),
    def!("transaction.max.timeout.ms", Int, Some("900000"), Validator::Range(1.0, I32_MAX), false,
        "Longest transaction.timeout.ms a producer may ask for; longer ones get INVALID_TRANSACTION_TIMEOUT."),
    def!("transactional.id.expiration.ms", Int, Some("604800000"), Validator::Range(1.0, I32_MAX), false,
        "A transactional id with no transaction for this long is forgotten."),
    def!("producer.id.expiration.ms", Int, Some("86400000"), Validator::Range(1.0, I32_MAX), false,
        "A producer whose last batch in a partition is this old, with no transaction open there, is forgotten by that partition."),
    def!("producer.id.expiration.check.interval.ms", Int, Some("600000"), Validator::Range(1.0, I32_MAX), false,
        "How often idle producers are looked for and forgotten."),
    def!("transaction.abort.timed.out.transaction.cleanup.interval.ms", Int, Some("10000"), Validator::Range(1.0, I32_MAX), false,
        "How often transactions open longer than their timeout are looked for and aborted."),
    def!("transaction.remove.expired.transaction.cleanup.interval.ms", Int, Some("3600000"), Validator::Range(1.0, I32_MAX), false,
        "How often expired transactional ids are looked for and removed."),
    def!("offsets.retention.minutes", Int, Some("10080"), Validator::Range(1.0, I32_MAX), false,
        "How long the committed offsets of a group without members are kept after it became empty (or after the last commit)."),
    def!("offsets.retention.check.interval.ms", Long, Some("600000"), Validator::Range(1.0, I64_MAX), false,
        "How often expired committed offsets are looked for."),
    def!("offset.metadata.max.bytes", Int, Some("4096"), Validator::Range(0.0, I32_MAX), false,
        "Largest metadata string accepted with a committed offset; longer ones get OFFSET_METADATA_TOO_LARGE."),
    def!("min.insync.replicas", Int, Some("1"), Validator::Range(1.0, I32_MAX), true,
        "Default min.insync.replicas."),
    def!("unclean.leader.election.enable", Boolean, Some("false"), Validator::None, true,
        "Default unclean.leader.election.enable."),
    // Replication between brokers (followers fetch from leaders).
    def!("replica.lag.time.max.ms", Long, Some("30000"), Validator::Range(1.0, I64_MAX), false,
        "A follower that has not caught up with the leader's log end for this long is removed from the ISR."),
    def!("max.incremental.fetch.session.cache.slots", Int, Some("1000"), Validator::Range(0.0, I32_MAX), false,
        "Incremental fetch sessions (KIP-227) the broker keeps; 0 turns sessions off (every fetch is a full fetch)."),
    def!("replica.fetch.max.bytes", Int, Some("1048576"), Validator::Range(0.0, I32_MAX), false,
        "Bytes a follower asks for per partition in one fetch (a larger first batch is still returned whole)."),
    def!("replica.fetch.response.max.bytes", Int, Some("10485760"), Validator::Range(0.0, I32_MAX), false,
        "Bytes a follower asks for in one fetch across partitions."),
    def!("replica.fetch.wait.max.ms", Int, Some("500"), Validator::Range(0.0, I32_MAX), false,
        "How long a follower's fetch waits on the leader for data; must stay below replica.lag.time.max.ms."),
    def!("replica.fetch.backoff.ms", Int, Some("1000"), Validator::Range(0.0, I32_MAX), false,
        "How long a follower waits before retrying after a fetch error."),
    def!("replica.socket.timeout.ms", Int, Some("30000"), Validator::Range(1.0, I32_MAX), false,
        "How long a follower waits for a fetch response before reconnecting."),
    def!("leader.replication.throttled.rate", Long, Some(LONG_MAX), Validator::Range(0.0, I64_MAX), true,
        "Bytes per second a leader sends to throttled followers (replicas being added by a reassignment)."),
    def!("follower.replication.throttled.rate", Long, Some(LONG_MAX), Validator::Range(0.0, I64_MAX), true,
        "Bytes per second a follower fetches for throttled replicas (replicas being added by a reassignment)."),
    def!("cordoned.log.dirs", List, Some(""), Validator::None, true,
        "Log directories that receive no new replicas (KIP-1066); a broker has one log directory, so any value cordons the broker: CreateTopics, CreatePartitions and the balancer place nothing new on it, and what it holds stays."),
    def!("replica.alter.log.dirs.io.max.bytes.per.second", Long, Some(LONG_MAX), Validator::Range(0.0, I64_MAX), true,
        "Throttle of moves between log directories; accepted for Kafka's tools (a broker has one log directory, so there are no such moves)."),
    def!("auto.leader.rebalance.enable", Boolean, Some("true"), Validator::None, false,
        "Periodically move leadership back to each partition's preferred (first) replica when brokers are imbalanced."),
    def!("leader.imbalance.check.interval.seconds", Long, Some("300"), Validator::Range(1.0, I64_MAX), false,
        "How often the controller checks leader imbalance."),
    def!("leader.imbalance.per.broker.percentage", Int, Some("10"), Validator::Range(0.0, 100.0), false,
        "Share of a broker's preferred partitions it may fail to lead before a preferred election is triggered."),
    def!("controlled.shutdown.enable", Boolean, Some("true"), Validator::None, false,
        "On SIGTERM, ask the controller to move every leadership off this broker before stopping."),
    def!("controlled.shutdown.timeout.ms", Long, Some("30000"), Validator::Range(0.0, I64_MAX), false,
        "Longest wait for leaderships to move during a controlled shutdown before stopping anyway."),
    def!("compression.type", String, Some("producer"), Validator::OneOf(COMPRESSION_TYPES), true,
        "Default compression.type: 'producer' keeps each batch as the producer sent it; a codec makes the leader recompress produced batches into it."),
    def!("compression.gzip.level", Int, Some("-1"), Validator::Range(-1.0, 9.0), true,
        "Default gzip level when the broker compresses (KIP-390); -1 is zlib's default (6)."),
    def!("compression.lz4.level", Int, Some("9"), Validator::Range(1.0, 17.0), true,
        "Default lz4 level when the broker compresses (KIP-390)."),
    def!("compression.zstd.level", Int, Some("3"), Validator::Range(-131072.0, 22.0), true,
        "Default zstd level when the broker compresses (KIP-390)."),
];

/// A topic-level key and the broker keys its default comes from, in order of precedence.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub synonyms: &'static [&'static str],
    /// The value used when the topic sets nothing and no synonym has a value.
    pub default: Option<&'static str>,
    pub kind: ConfigType,
    pub validator: Validator,
    pub doc: &'static str,
}

macro_rules! topic {
    ($name:expr, [$($syn:expr),*], $default:expr, $kind:ident, $validator:expr, $doc:expr) => {
        TopicConfigDef {
            name: $name,
            synonyms: &[$($syn),*],
            default: $default,
            kind: ConfigType::$kind,
            validator: $validator,
            doc: $doc,
        }
    };
}

/// The values of `compression.type`.
const COMPRESSION_TYPES: &[&str] = &["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"];

pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    topic!("cleanup.policy", ["log.cleanup.policy"], Some("delete"), List,
        Validator::OneOf(&["delete", "compact"]),
        "'delete' removes old segments by retention; 'compact' keeps the latest record per key."),
    topic!("compression.type", ["compression.type"], Some("producer"), String,
        Validator::OneOf(COMPRESSION_TYPES),
        "'producer' keeps batches compressed as the producer sent them; 'uncompressed', 'gzip', 'snappy', 'lz4' or 'zstd' makes the leader store every produced batch in that codec."),
    topic!("compression.gzip.level", ["compression.gzip.level"], Some("-1"), Int,
        Validator::Range(-1.0, 9.0), "gzip level when the broker recompresses; -1 is zlib's default (6)."),
    topic!("compression.lz4.level", ["compression.lz4.level"], Some("9"), Int,
        Validator::Range(1.0, 17.0), "lz4 level when the broker recompresses."),
    topic!("compression.zstd.level", ["compression.zstd.level"], Some("3"), Int,
        Validator::Range(-131072.0, 22.0), "zstd level when the broker recompresses."),
    topic!("delete.retention.ms", ["log.cleaner.delete.retention.ms"], Some("86400000"), Long,
        Validator::Range(0.0, I64_MAX), "How long tombstones are kept in compacted topics."),
    topic!("file.delete.delay.ms", ["log.segment.delete.delay.ms"], Some("60000"), Long,
        Validator::Range(0.0, I64_MAX), "Time to wait before deleting a file from the filesystem."),
    topic!("flush.messages", ["log.flush.interval.messages"], Some(LONG_MAX), Long,
        Validator::Range(1.0, I64_MAX),
        "fsync after this many messages; 1 fsyncs every batch before acknowledging it. The default leaves durability to replication and the OS, as Kafka does."),
    topic!("flush.ms", ["log.flush.interval.ms"], Some(LONG_MAX), Long,
        Validator::Range(0.0, I64_MAX), "fsync when data has been unflushed this long."),
    topic!("follower.replication.throttled.replicas", [], Some(""), List, Validator::None,
        "Replicas (partition:broker, or *) whose follower fetches are throttled, as kafka-reassign-partitions sets it. Tideline throttles the replicas a reassignment adds, listed here or not."),
    topic!("leader.replication.throttled.replicas", [], Some(""), List, Validator::None,
        "Replicas (partition:broker, or *) the leader throttles, as kafka-reassign-partitions sets it. Tideline throttles the replicas a reassignment adds, listed here or not."),
    topic!("index.interval.bytes", ["log.index.interval.bytes"], Some("4096"), Int,
        Validator::Range(0.0, I32_MAX), "Bytes between two offset index entries."),
    topic!("max.compaction.lag.ms", ["log.cleaner.max.compaction.lag.ms"], Some(LONG_MAX), Long,
        Validator::Range(1.0, I64_MAX), "Longest time a record may stay uncompacted."),
    topic!("max.message.bytes", ["message.max.bytes"], Some("1048588"), Int,
        Validator::Range(0.0, I32_MAX), "Largest record batch size allowed."),
    topic!("message.timestamp.after.max.ms", ["log.message.timestamp.after.max.ms"], Some(LONG_MAX), Long,
        Validator::Range(0.0, I64_MAX), "Largest allowed amount a CreateTime timestamp may be ahead of the broker's clock."),
    topic!("message.timestamp.before.max.ms", ["log.message.timestamp.before.max.ms"], Some(LONG_MAX), Long,
        Validator::Range(0.0, I64_MAX), "Largest allowed amount a CreateTime timestamp may be behind the broker's clock."),
    topic!("message.timestamp.type", ["log.message.timestamp.type"], Some("CreateTime"), String,
        Validator::OneOf(&["CreateTime", "LogAppendTime"]),
        "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's clock."),
    topic!("min.cleanable.dirty.ratio", ["log.cleaner.min.cleanable.ratio"], Some("0.5"), Double,
        Validator::Range(0.0, 1.0), "Dirty ratio above which the cleaner compacts the log."),
    topic!("min.compaction.lag.ms", ["log.cleaner.min.compaction.lag.ms"], Some("0"), Long,
        Validator::Range(0.0, I64_MAX), "Shortest time a record stays uncompacted."),
    topic!("min.insync.replicas", ["min.insync.replicas"], Some("1"), Int,
        Validator::Range(1.0, I32_MAX), "Fewest in-sync replicas for an acks=all produce to succeed."),
    topic!("retention.bytes", ["log.retention.bytes"], Some("-1"), Long,
        Validator::Range(-1.0, I64_MAX), "Largest partition size before old segments are deleted; -1 is unlimited."),
    topic!("retention.ms", ["log.retention.ms", "log.retention.minutes", "log.retention.hours"], Some("604800000"), Long,
        Validator::Range(-1.0, I64_MAX), "How long a segment is kept after its newest record; -1 keeps data forever."),
    topic!("segment.bytes", ["log.segment.bytes"], Some("1073741824"), Int,
        Validator::Range(14.0, I32_MAX), "Largest size of one segment file."),
    topic!("segment.index.bytes", ["log.index.size.max.bytes"], Some("10485760"), Int,
        Validator::Range(4.0, I32_MAX), "Largest size of a segment's offset index; the segment rolls when it is full."),
    topic!("segment.ms", ["log.roll.ms", "log.roll.hours"], Some("604800000"), Long,
        Validator::Range(1.0, I64_MAX), "Time after which a segment rolls even if it is not full."),
    topic!("unclean.leader.election.enable", ["unclean.leader.election.enable"], Some("false"), Boolean,
        Validator::None, "Allow an out-of-sync replica to become leader, at the cost of data loss."),
];

pub fn broker_def(name: &str) -> Option<&'static ConfigDef> {
    BROKER_CONFIGS.iter().find(|d| d.name == name)
}

pub fn topic_def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Multiplier that turns a synonym's unit into the topic key's unit
/// (`log.retention.hours` → milliseconds, ...).
pub fn synonym_scale(synonym: &str) -> i64 {
    if synonym.ends_with(".hours") {
        3_600_000
    } else if synonym.ends_with(".minutes") {
        60_000
    } else {
        1
    }
}

/// Checks one value against its type and validator; the error says why.
pub fn validate_value(
    name: &str,
    kind: ConfigType,
    validator: Validator,
    value: &str,
) -> Result<(), String> {
    let value = value.trim();
    let number = match kind {
        ConfigType::Boolean => {
            return match value.to_ascii_lowercase().as_str() {
                "true" | "false" => Ok(()),
                _ => Err(format!(
                    "{name}: '{value}' is not a boolean (true or false)"
                )),
            }
        }
        ConfigType::Int => value
            .parse::<i32>()
            .map(f64::from)
            .map_err(|_| format!("{name}: '{value}' is not a 32-bit integer"))?,
        ConfigType::Long => value
            .parse::<i64>()
            .map(|v| v as f64)
            .map_err(|_| format!("{name}: '{value}' is not a 64-bit integer"))?,
        ConfigType::Double => value
            .parse::<f64>()
            .map_err(|_| format!("{name}: '{value}' is not a number"))?,
        ConfigType::String | ConfigType::List => {
            if let Validator::OneOf(allowed) = validator {
                let items: Vec<&str> = if kind == ConfigType::List {
                    value.split(',').map(str::trim).collect()
                } else {
                    vec![value]
                };
                for item in items {
                    if !allowed.contains(&item) {
                        return Err(format!(
                            "{name}: '{item}' is not one of {}",
                            allowed.join(", ")
                        ));
                    }
                }
            }
            return Ok(());
        }
    };
    if let Validator::Range(min, max) = validator {
        if number < min || number > max {
            return Err(format!(
                "{name}: {value} is outside the allowed range [{min}, {max}]"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_synonym_is_a_broker_key() {
        for def in TOPIC_CONFIGS {
            for synonym in def.synonyms {
                assert!(broker_def(synonym).is_some(), "{} -> {synonym}", def.name);
            }
        }
    }

    #[test]
    fn validation_names_the_problem() {
        let def = topic_def("retention.ms").unwrap();
        assert!(validate_value(def.name, def.kind, def.validator, "1000").is_ok());
        let err = validate_value(def.name, def.kind, def.validator, "abc").unwrap_err();
        assert!(err.contains("retention.ms"));
        let def = topic_def("cleanup.policy").unwrap();
        assert!(validate_value(def.name, def.kind, def.validator, "compact,delete").is_ok());
        assert!(validate_value(def.name, def.kind, def.validator, "shred").is_err());
    }
}
