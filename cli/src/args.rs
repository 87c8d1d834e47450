//! The command line: global connection and output flags, then one
//! subcommand tree per area (cluster, topic, group, partition, txn).

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::properties::DEFAULT_BROKERS;

#[derive(Parser, Debug)]
#[command(
    name = "tideline",
    version,
    about = "See and change a Tideline (or any Kafka) cluster",
    after_help = "Exit codes: 0 ok, 1 an error from the cluster (or an unhealthy cluster), 2 a usage mistake."
)]
pub struct Cli {
    /// Bootstrap brokers, host:port[,host:port...]
    #[arg(short = 'b', long = "brokers", global = true, env = "TIDELINE_BROKERS", default_value = DEFAULT_BROKERS)]
    pub brokers: String,

    /// Client property in librdkafka's names (repeatable), as kcat's -X
    #[arg(short = 'X', global = true, value_name = "KEY=VALUE")]
    pub properties: Vec<String>,

    /// Output: table, json or yaml (`topic consume` also takes a kcat-style template)
    #[arg(long, global = true, default_value = "table")]
    pub format: String,

    /// Do destructive operations without asking (asked only when stdin is a terminal)
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The cluster: brokers, health, dynamic broker settings
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Topics: list, describe, create, change, trim, produce, consume
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Consumer groups: states, lag, offsets
    #[command(subcommand)]
    Group(GroupCommand),
    /// Partitions: reassignments, leader elections, replication throttles
    #[command(subcommand)]
    Partition(PartitionCommand),
    /// Transactions: open ones, a partition's producers, aborting a hanging one
    #[command(subcommand)]
    Txn(TxnCommand),
    /// Balances replicas, disk and leaders across the brokers, or drains brokers: plans, then moves
    Rebalance(RebalanceArgs),
    /// Brokers: cordon (no new replicas), uncordon, unregister (removed for good)
    #[command(subcommand)]
    Broker(BrokerCommand),
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell)
    Completion { shell: clap_complete::Shell },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Cluster id, controller and brokers (racks, endpoints, fenced)
    Info,
    /// Offline, leaderless, under-replicated and under-min-ISR partitions and fenced brokers; exits 1 when unhealthy
    Health(HealthArgs),
    /// Dynamic broker settings, per broker or the cluster-wide default
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// Wait until the cluster is healthy (exit 1 if it is not within --timeout)
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, in seconds
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Shows settings with their sources (all, or the named keys)
    Get {
        keys: Vec<String>,
        /// One broker's settings (default: the cluster-wide default)
        #[arg(long)]
        broker: Option<i32>,
    },
    /// Sets dynamic settings: KEY=VALUE...
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        /// One broker (default: the cluster-wide default)
        #[arg(long)]
        broker: Option<i32>,
    },
    /// Removes dynamic settings, back to the static or default value
    Delete {
        #[arg(required = true)]
        keys: Vec<String>,
        /// One broker (default: the cluster-wide default)
        #[arg(long)]
        broker: Option<i32>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Topics with their partition counts and replication factors
    List {
        /// Include internal topics (__consumer_offsets)
        #[arg(long, short = 'i')]
        internal: bool,
    },
    /// Partitions (leader, replicas, ISR, offsets, size) and configs with sources
    Describe {
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Creates a topic
    Create {
        topic: String,
        /// Partitions (default: the broker's num.partitions)
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Replicas per partition (default: the broker's default.replication.factor)
        #[arg(long, short = 'r')]
        replication_factor: Option<i16>,
        /// Topic config KEY=VALUE (repeatable)
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Succeed if the topic already exists
        #[arg(long)]
        if_not_exists: bool,
    },
    /// Deletes topics and their data
    Delete {
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Adds partitions to a topic
    AddPartitions {
        topic: String,
        /// How many partitions to add
        #[arg(
            long,
            short = 'n',
            conflicts_with = "total",
            required_unless_present = "total"
        )]
        num: Option<i32>,
        /// The partition count to grow to
        #[arg(long)]
        total: Option<i32>,
    },
    /// Sets or removes topic configs
    AlterConfig {
        topic: String,
        /// KEY=VALUE to set (repeatable)
        #[arg(long = "set", short = 's', value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// KEY to remove, back to the broker default (repeatable)
        #[arg(long = "delete", short = 'd', value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Deletes records before an offset or a timestamp (DeleteRecords)
    Trim(TrimArgs),
    /// Produces one record per line of stdin
    Produce(ProduceArgs),
    /// Consumes records to stdout
    Consume(ConsumeArgs),
}

#[derive(Args, Debug)]
pub struct TrimArgs {
    pub topic: String,
    /// Delete records before this offset (`end`: everything)
    #[arg(
        long,
        conflicts_with = "timestamp",
        required_unless_present = "timestamp"
    )]
    pub offset: Option<String>,
    /// Delete records older than this timestamp (ms since the epoch)
    #[arg(long)]
    pub timestamp: Option<i64>,
    /// Only this partition (default: every partition)
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Encoding {
    /// Bytes as they are
    Text,
    /// Keys, values and header values in base64 (binary-safe through JSON)
    Base64,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum InputFormat {
    /// A line is a value, or KEY<key-delimiter>VALUE
    Text,
    /// A line is a JSON object: {"key", "value", "headers": [{"key","value"}], "partition"} (what `consume --format json` prints)
    Json,
}

#[derive(Args, Debug)]
pub struct ProduceArgs {
    pub topic: String,
    /// Splits each line into key and value at the first occurrence (kcat's -K)
    #[arg(long, short = 'K')]
    pub key_delimiter: Option<String>,
    /// Record delimiter (default a newline; \n \t \r \0 and \xNN are understood)
    #[arg(long, short = 'D', default_value = "\\n")]
    pub delimiter: String,
    /// Header NAME=VALUE added to every record (repeatable)
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE")]
    pub headers: Vec<String>,
    /// Partition to write to (default: by key, or spread)
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    #[arg(long, short = 'z', value_enum, default_value = "none")]
    pub compression: Compression,
    /// 0, 1 or all (-1)
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// How each input line is read
    #[arg(long, value_enum, default_value = "text")]
    pub input: InputFormat,
    /// How keys, values and header values are written in the input
    #[arg(long, value_enum, default_value = "text")]
    pub encoding: Encoding,
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Consume as a member of this group (committing offsets)
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// Where to start: earliest, latest, N, -N (N before the end) or @TIMESTAMP_MS; with --group, where a group without committed offsets starts
    #[arg(long, short = 'o', allow_hyphen_values = true)]
    pub offset: Option<String>,
    /// Only this partition (not with --group)
    #[arg(long, short = 'p', conflicts_with = "group")]
    pub partition: Option<i32>,
    /// Stop after N records
    #[arg(long, short = 'n')]
    pub num: Option<u64>,
    /// Keep waiting for new records at the end of the partitions
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// How keys, values and header values are printed (json, yaml and %-templates)
    #[arg(long, value_enum, default_value = "text")]
    pub encoding: Encoding,
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Groups with their states
    List {
        /// Only groups in this state (Stable, Empty, ...)
        #[arg(long)]
        state: Option<String>,
    },
    /// Members, assignments, committed offsets and lag per partition and in total
    Describe { group: String },
    /// Moves a group's committed offsets (refused while the group has members)
    Seek(SeekArgs),
    /// Deletes groups and their committed offsets
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Deletes a group's committed offsets for a topic
    DeleteOffsets {
        group: String,
        #[arg(long, short = 't')]
        topic: String,
        /// Only these partitions (default: all of the topic's)
        #[arg(long, short = 'p')]
        partition: Vec<i32>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TxnCommand {
    /// Transactions of every coordinator, with their states
    List {
        /// Only transactions in this state (Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort, Empty); repeatable
        #[arg(long)]
        state: Vec<String>,
        /// Only these producer ids; repeatable
        #[arg(long)]
        producer_id: Vec<i64>,
        /// Only transactions open at least this many milliseconds
        #[arg(long)]
        duration_ms: Option<i64>,
    },
    /// A transactional id's state, producer, timeout and partitions, from its coordinator
    Describe { transactional_id: String },
    /// The producers with state in a partition, and where their open transactions start
    Producers {
        #[arg(long, short = 't')]
        topic: String,
        #[arg(long, short = 'p')]
        partition: i32,
    },
    /// Ends a hanging transaction in a partition with an ABORT marker (as kafka-transactions.sh abort)
    Abort {
        #[arg(long, short = 't')]
        topic: String,
        #[arg(long, short = 'p')]
        partition: i32,
        /// The first offset of the transaction to abort (see `txn producers`)
        #[arg(long)]
        start_offset: i64,
    },
}

#[derive(Args, Debug)]
pub struct SeekArgs {
    pub group: String,
    /// earliest, latest, an offset, or @TIMESTAMP_MS
    #[arg(
        long,
        conflicts_with = "shift_by",
        required_unless_present = "shift_by",
        allow_hyphen_values = true
    )]
    pub to: Option<String>,
    /// Moves each committed offset by N (negative: back)
    #[arg(long, allow_hyphen_values = true)]
    pub shift_by: Option<i64>,
    /// Only this topic (default: every topic the group committed for)
    #[arg(long, short = 't')]
    pub topic: Option<String>,
    /// Only these partitions of --topic
    #[arg(long, short = 'p', requires = "topic")]
    pub partition: Vec<i32>,
    /// Show the new offsets without committing them
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Subcommand, Debug)]
pub enum PartitionCommand {
    /// Moves replicas: a kafka-reassign-partitions JSON plan, or one partition's --replicas
    Reassign(ReassignArgs),
    /// Moves in progress, with bytes copied so far
    Reassignments,
    /// Cancels moves in progress
    Cancel {
        /// Only this topic's moves
        #[arg(long, short = 't')]
        topic: Option<String>,
        /// Only this partition of --topic
        #[arg(long, short = 'p', requires = "topic")]
        partition: Option<i32>,
    },
    /// Elects leaders: the preferred replica, or (losing data) any live replica
    Elect {
        #[arg(long = "type", value_enum, default_value = "preferred")]
        kind: ElectKind,
        /// Only this topic (default: every partition)
        #[arg(long, short = 't')]
        topic: Option<String>,
        /// Only this partition of --topic
        #[arg(long, short = 'p', requires = "topic")]
        partition: Option<i32>,
    },
    /// Replication throttle for replicas being moved (leader and follower rates)
    #[command(subcommand)]
    Throttle(ThrottleCommand),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ElectKind {
    Preferred,
    Unclean,
}

#[derive(Args, Debug)]
pub struct ReassignArgs {
    /// A plan file in kafka-reassign-partitions' format ({"version":1,"partitions":[{"topic","partition","replicas"}]}); - reads stdin
    #[arg(long, conflicts_with_all = ["topic", "replicas"], required_unless_present = "replicas")]
    pub plan: Option<String>,
    /// The topic of the partition to move
    #[arg(long, short = 't', requires = "replicas")]
    pub topic: Option<String>,
    /// The partition to move
    #[arg(long, short = 'p', requires = "replicas")]
    pub partition: Option<i32>,
    /// The new replica list, preferred leader first: 1,2,3
    #[arg(long, value_delimiter = ',', requires_all = ["topic", "partition"])]
    pub replicas: Option<Vec<i32>>,
    #[command(flatten)]
    pub moves: MoveArgs,
}

/// How started moves are followed: shared by `partition reassign` and
/// `rebalance`.
#[derive(Args, Debug)]
pub struct MoveArgs {
    /// Wait until every move has finished, showing progress
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, in seconds
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
    /// Throttle the moves to this many bytes/s (K, M, G: powers of 1024) while waiting, and clear it after (with --wait)
    #[arg(long, requires = "wait")]
    pub throttle: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum BrokerCommand {
    /// No new replicas on these brokers (CreateTopics, CreatePartitions, rebalance); what they hold stays
    Cordon {
        #[arg(required = true, value_delimiter = ',')]
        broker_ids: Vec<i32>,
    },
    /// Lets these brokers receive new replicas again
    Uncordon {
        #[arg(required = true, value_delimiter = ',')]
        broker_ids: Vec<i32>,
    },
    /// Removes stopped, drained brokers from the cluster: Metadata and DescribeCluster no longer list them
    Unregister {
        #[arg(required = true, value_delimiter = ',')]
        broker_ids: Vec<i32>,
        /// Unregister even a broker that still runs or still holds replicas
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
pub struct RebalanceArgs {
    /// Print the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Move every replica off these brokers first: 4,5
    #[arg(long, value_delimiter = ',', value_name = "BROKER_IDS")]
    pub drain: Vec<i32>,
    /// --wait also elects the preferred leaders at the end, and the plan's
    /// time is estimated at --throttle
    #[command(flatten)]
    pub moves: MoveArgs,
    /// Disk use per broker may differ from the mean by this percentage
    #[arg(long, default_value_t = 10.0)]
    pub disk_tolerance: f64,
    /// Seconds over which each partition's produce rate is measured (its growth, by DescribeLogDirs); 0 skips the load goal
    #[arg(long, default_value_t = 5)]
    pub load_window: u64,
}

#[derive(Subcommand, Debug)]
pub enum ThrottleCommand {
    /// Sets the rate (bytes/s; K, M and G suffixes are powers of 1024)
    Set {
        rate: String,
        /// Only these brokers (default: every broker)
        #[arg(long = "broker", id = "broker_ids", value_delimiter = ',')]
        broker_ids: Vec<i32>,
    },
    /// Removes the throttle
    Clear {
        /// Only these brokers (default: every broker)
        #[arg(long = "broker", id = "broker_ids", value_delimiter = ',')]
        broker_ids: Vec<i32>,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        // Catches clashing argument ids (a subcommand flag shadowing a
        // global one) and other definition mistakes.
        super::Cli::command().debug_assert();
    }
}
