//! Command-line interface.
//!
//! All flags live here so the whole surface of the tool (and its `--help`
//! text) can be read in one place, and so the rest of the code receives
//! already-validated values.

use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};

/// What `--cells` may name (the cell groups of `--mode matrix`).
pub const CELL_GROUPS: [&str; 4] = ["single", "compression", "cluster", "latency"];

/// Drive a running Kafka-compatible broker with librdkafka producers and
/// consumers and report throughput and latency.
///
/// In `produce` mode (the default) the tool creates the topic if needed,
/// positions the consumers at the end of every partition, then produces
/// `--messages` messages (or for `--duration` seconds) and reports produce
/// throughput, ack latency (send to delivery report), end-to-end latency
/// (send to consumer receive, from the timestamp embedded in each payload)
/// and consume throughput.
///
/// In `consume` mode the tool reads an existing topic from the beginning up to
/// the end offsets seen at start-up and reports consume throughput.
///
/// MB means 10^6 bytes of message payload (keys and protocol overhead are not
/// counted).
#[derive(Parser, Debug, Clone)]
#[command(name = "tideline-bench", version, verbatim_doc_comment)]
pub struct Args {
    /// Bootstrap servers, host:port[,host:port...].
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,

    /// Topic to produce to / consume from.
    #[arg(long, default_value = "tideline-bench")]
    pub topic: String,

    /// Partition count used when the topic has to be created.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,

    /// Replication factor used when the topic has to be created.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub replication_factor: i32,

    /// Delete and recreate the topic before producing.
    #[arg(long)]
    pub recreate: bool,

    /// `produce`: produce (and consume concurrently); `consume`: only read an
    /// existing topic from the beginning; `commit`: send --messages offset
    /// commits for every partition of the topic from --consumers committers;
    /// `eos`: copy --messages records from --topic to `<topic>-eos-out` in
    /// transactions of --records-per-txn, then read the copy back with
    /// read_uncommitted and read_committed; `txn-failover`: on three
    /// brokers it starts, SIGKILL a transaction's coordinator during its
    /// commit, --repetitions times, and time the new coordinator.
    #[arg(long, value_enum, default_value_t = Mode::Produce)]
    pub mode: Mode,

    /// Payload size of every message in bytes (minimum 8: the first 8 bytes
    /// carry the send timestamp).
    #[arg(long, default_value_t = 1024)]
    pub message_size: usize,

    /// Producer acks setting.
    #[arg(long, value_enum, default_value_t = Acks::All)]
    pub acks: Acks,

    /// Producer compression codec.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,

    /// Number of producer instances, each its own librdkafka client and
    /// sending thread.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,

    /// Total number of messages to produce across all producers (ignored when
    /// --duration is given).
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: u64,

    /// Produce for this many seconds instead of a fixed message count (wins
    /// over --messages).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Target total send rate across all producers in messages/s, spread
    /// evenly over time; 0 = as fast as possible.
    #[arg(long, value_name = "MSGS_PER_SEC", default_value_t = 0.0)]
    pub rate: f64,

    /// Number of consumers (0 = produce only).
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,

    /// Consume through a consumer group (subscribe) instead of manual
    /// partition assignment. Without a NAME the group is
    /// `tideline-bench-<pid>`. Requires consumer-group support in the broker.
    #[arg(long, value_name = "NAME", num_args = 0..=1)]
    pub group: Option<Option<String>>,

    /// Use manual partition assignment (the default; works on brokers
    /// without consumer-group support).
    #[arg(long, conflicts_with = "group")]
    pub no_group: bool,

    /// Producer linger.ms.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u32,

    /// `--mode eos`: records copied per transaction.
    #[arg(long, default_value_t = 100)]
    pub records_per_txn: u64,

    /// Producer batch.size in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    pub batch_size: u64,

    /// Send messages without keys (default key: the message index as a
    /// decimal string).
    #[arg(long)]
    pub no_keys: bool,

    /// After producing ends, how long consumers may take to catch up; in
    /// consume mode, how long without any progress before giving up.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub drain_timeout: f64,

    /// Sample VmRSS/VmHWM of this broker process from /proc/PID/status once a
    /// second and report idle, peak and final RSS.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,

    /// Also print the final report as one JSON line on stdout.
    #[arg(long)]
    pub json: bool,

    /// Reassign mode: the brokers every partition of the topic moves to.
    #[arg(long, value_name = "BROKER,...", value_delimiter = ',')]
    pub reassign_to: Vec<i32>,

    /// Reassign mode: `leader.replication.throttled.rate` (bytes/s) set on
    /// every broker for the duration of the move.
    #[arg(long, value_name = "BYTES_PER_SEC")]
    pub throttle: Option<u64>,

    /// Topic config set when the topic is created (repeatable), e.g.
    /// `--topic-config compression.type=zstd`.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub topic_config: Vec<(String, String)>,

    /// Matrix and txn-failover modes: the broker binary to start (default: `tideline-broker`
    /// next to this binary).
    #[arg(long, value_name = "PATH")]
    pub broker_bin: Option<std::path::PathBuf>,

    /// Matrix and txn-failover modes: where the brokers' data directories go (default: the
    /// system temporary directory).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<std::path::PathBuf>,

    /// Matrix mode: which cell groups to run (`single`, `compression`,
    /// `cluster`, `latency`; default all).
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(CELL_GROUPS))]
    pub cells: Vec<String>,

    /// Matrix mode: runs of every cell (median and min–max are reported);
    /// txn-failover mode: rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub repetitions: u64,

    /// Matrix mode: payload megabytes produced per throughput cell.
    #[arg(long, default_value_t = 300.0)]
    pub cell_megabytes: f64,

    /// Matrix mode: seconds of every fixed-rate latency cell.
    #[arg(long, default_value_t = 10.0)]
    pub latency_seconds: f64,

    /// Matrix mode: also run the single-node cells on a broker that has
    /// first written this many GB (several times the page cache), for the
    /// long-running rows; 0 skips them.
    #[arg(long, default_value_t = 0.0)]
    pub soak_gigabytes: f64,

    /// Matrix mode: also write the tables to this file.
    #[arg(long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,

    /// Extra librdkafka property for producers (repeatable), applied last.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub producer_config: Vec<(String, String)>,

    /// Extra librdkafka property for consumers (repeatable), applied last.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub consumer_config: Vec<(String, String)>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Produce,
    Consume,
    Commit,
    Reassign,
    /// The performance matrix: fixed cells on brokers started by the tool.
    Matrix,
    /// An exactly-once consume-transform-produce pipeline (`eos.rs`).
    Eos,
    /// Transaction coordinator failover on a cluster the tool starts
    /// (`failover.rs`).
    TxnFailover,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    #[value(name = "0")]
    Zero,
    #[value(name = "1")]
    One,
    All,
}

impl Acks {
    /// Value of the librdkafka `acks` property.
    pub fn as_str(self) -> &'static str {
        match self {
            Acks::Zero => "0",
            Acks::One => "1",
            Acks::All => "all",
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// Value of the librdkafka `compression.type` property.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Produce => "produce",
            Mode::Consume => "consume",
            Mode::Commit => "commit",
            Mode::Reassign => "reassign",
            Mode::Matrix => "matrix",
            Mode::Eos => "eos",
            Mode::TxnFailover => "txn-failover",
        }
    }
}

impl Args {
    /// Rejects combinations clap cannot express.
    pub fn validate(&self) -> Result<()> {
        if self.message_size < crate::payload::HEADER_LEN {
            bail!(
                "--message-size must be at least {} bytes",
                crate::payload::HEADER_LEN
            );
        }
        if !(self.rate.is_finite() && self.rate >= 0.0) {
            bail!("--rate must be a non-negative number");
        }
        if let Some(d) = self.duration {
            if !(d.is_finite() && d > 0.0) {
                bail!("--duration must be a positive number of seconds");
            }
        }
        if !(self.drain_timeout.is_finite() && self.drain_timeout >= 0.0) {
            bail!("--drain-timeout must be a non-negative number of seconds");
        }
        match self.mode {
            Mode::Produce => {
                if self.producers == 0 {
                    bail!("--producers must be at least 1");
                }
                if self.duration.is_none() && self.messages == 0 {
                    bail!("--messages must be at least 1");
                }
            }
            Mode::Consume => {
                if self.consumers == 0 {
                    bail!("--mode consume needs at least one consumer");
                }
            }
            Mode::Commit => {
                if self.messages == 0 {
                    bail!("--mode commit needs --messages (the number of commits) of at least 1");
                }
            }
            Mode::Matrix => {
                if !(self.cell_megabytes > 0.0 && self.latency_seconds > 0.0) {
                    bail!("--cell-megabytes and --latency-seconds must be positive");
                }
                if !(self.soak_gigabytes.is_finite() && self.soak_gigabytes >= 0.0) {
                    bail!("--soak-gigabytes must be a non-negative number");
                }
            }
            Mode::Eos | Mode::TxnFailover => {
                if self.records_per_txn == 0 {
                    bail!("--records-per-txn must be at least 1");
                }
            }
            Mode::Reassign => {
                if self.reassign_to.is_empty() {
                    bail!("--mode reassign needs --reassign-to BROKER[,BROKER...]");
                }
            }
        }
        Ok(())
    }

    /// The consumer group to use, or `None` for manual assignment.
    pub fn group_id(&self) -> Option<String> {
        match &self.group {
            None => None,
            Some(Some(name)) => Some(name.clone()),
            Some(None) => Some(format!("tideline-bench-{}", std::process::id())),
        }
    }

    pub fn duration(&self) -> Option<Duration> {
        self.duration.map(Duration::from_secs_f64)
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.drain_timeout)
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}
