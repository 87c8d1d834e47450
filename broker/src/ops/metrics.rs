//! Prometheus metrics. Counters and histograms are updated on the request
//! path; gauges of state (log sizes, offsets, replication, disk, groups)
//! are set from a [`StateSnapshot`] the broker gathers when `/metrics` is
//! scraped, so this module depends on no subsystem.

use kafka_protocol::messages::ApiKey;
use prometheus::{
    Encoder, HistogramOpts, HistogramTimer, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::disk::health::HealthSnapshot;
use crate::disk::DirState;
use crate::error::ResponseError;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_latency: HistogramVec,
    bytes_in: IntCounterVec,
    bytes_out: IntCounterVec,
    messages_in: IntCounterVec,
    produce_errors: IntCounterVec,
    pub connections: IntGauge,
    pub partitions: IntGauge,
    log_size: IntGaugeVec,
    log_start: IntGaugeVec,
    log_end: IntGaugeVec,
    under_replicated: IntGauge,
    under_min_isr: IntGauge,
    offline: IntGauge,
    fenced_brokers: IntGauge,
    leaders: IntGauge,
    active_controller: IntGauge,
    metadata_offset: IntGauge,
    disk_used: IntGauge,
    disk_total: IntGauge,
    disk_free: IntGauge,
    disk_reserved: IntGauge,
    refusing_appends: IntGauge,
    log_dir_offline: IntGauge,
    log_dir_write_errors: IntCounterVec,
    group_committed: IntGaugeVec,
    group_lag: IntGaugeVec,
    group_members: IntGaugeVec,
    group_state: IntGaugeVec,
    pub isr_shrinks: IntCounter,
    pub isr_expands: IntCounter,
    replicated_bytes: IntCounter,
    replica_max_lag: IntGauge,
    high_watermark: IntGaugeVec,
    last_stable_offset: IntGaugeVec,
    fetch_sessions: IntGauge,
    direct_io_buffer: IntGauge,
    direct_io_written: IntCounter,
    writeback_started: IntCounter,
    sendfile_sent: IntCounter,
    fetch_session_evictions: IntCounter,
    fetch_requests: IntCounterVec,
    transactions_completed: IntCounterVec,
    transactions_timed_out: IntCounter,
    transaction_completion: prometheus::Histogram,
    transactions_open: IntGauge,
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels).unwrap(),
    )
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let metrics = Metrics {
            requests: register(
                &r,
                IntCounterVec::new(
                    Opts::new("tideline_requests_total", "Requests handled, by API."),
                    &["api"],
                )
                .unwrap(),
            ),
            request_latency: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "tideline_request_duration_seconds",
                        "Time to handle a request (including long-poll waits), by API.",
                    )
                    .buckets(vec![
                        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                        0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ]),
                    &["api"],
                )
                .unwrap(),
            ),
            bytes_in: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "tideline_bytes_in_total",
                        "Record bytes appended by producers, by topic.",
                    ),
                    &["topic"],
                )
                .unwrap(),
            ),
            bytes_out: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "tideline_bytes_out_total",
                        "Record bytes sent to consumers, by topic.",
                    ),
                    &["topic"],
                )
                .unwrap(),
            ),
            messages_in: register(
                &r,
                IntCounterVec::new(
                    Opts::new("tideline_messages_in_total", "Records appended, by topic."),
                    &["topic"],
                )
                .unwrap(),
            ),
            produce_errors: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "tideline_produce_errors_total",
                        "Rejected produce partitions, by Kafka error.",
                    ),
                    &["error"],
                )
                .unwrap(),
            ),
            connections: register(
                &r,
                IntGauge::new("tideline_connections", "Open client connections.").unwrap(),
            ),
            partitions: register(
                &r,
                IntGauge::new("tideline_partitions", "Partitions hosted by this broker.").unwrap(),
            ),
            group_committed: gauge_vec(
                &r,
                "tideline_group_committed_offset",
                "Committed offset of a consumer group on a partition (groups coordinated here).",
                &["group", "topic", "partition"],
            ),
            group_lag: gauge_vec(
                &r,
                "tideline_group_lag",
                "Records between a group's committed offset and the partition's high watermark (partitions hosted here).",
                &["group", "topic", "partition"],
            ),
            group_members: gauge_vec(
                &r,
                "tideline_group_members",
                "Members of a consumer group coordinated here.",
                &["group"],
            ),
            group_state: gauge_vec(
                &r,
                "tideline_group_state",
                "1 for the current state of a group coordinated here (Empty, PreparingRebalance, CompletingRebalance, Stable).",
                &["group", "state"],
            ),
            log_size: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "tideline_log_size_bytes",
                        "Size of a partition's log on disk.",
                    ),
                    &["topic", "partition"],
                )
                .unwrap(),
            ),
            log_start: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "tideline_log_start_offset",
                        "Log start offset of a partition.",
                    ),
                    &["topic", "partition"],
                )
                .unwrap(),
            ),
            log_end: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("tideline_log_end_offset", "Log end offset of a partition."),
                    &["topic", "partition"],
                )
                .unwrap(),
            ),
            under_replicated: register(
                &r,
                IntGauge::new(
                    "tideline_under_replicated_partitions",
                    "Partitions led here whose ISR is smaller than their replica set.",
                )
                .unwrap(),
            ),
            under_min_isr: register(
                &r,
                IntGauge::new(
                    "tideline_under_min_isr_partitions",
                    "Partitions led here whose ISR is below min.insync.replicas.",
                )
                .unwrap(),
            ),
            offline: register(
                &r,
                IntGauge::new(
                    "tideline_offline_partitions",
                    "Partitions without a leader (reported by the active controller).",
                )
                .unwrap(),
            ),
            fenced_brokers: register(
                &r,
                IntGauge::new(
                    "tideline_fenced_brokers",
                    "Registered brokers the controller stopped hearing from, or that shut down (reported by the active controller).",
                )
                .unwrap(),
            ),
            leaders: register(
                &r,
                IntGauge::new(
                    "tideline_leader_partitions",
                    "Partitions this broker leads.",
                )
                .unwrap(),
            ),
            active_controller: register(
                &r,
                IntGauge::new(
                    "tideline_active_controller",
                    "1 if this node is the active controller.",
                )
                .unwrap(),
            ),
            metadata_offset: register(
                &r,
                IntGauge::new(
                    "tideline_metadata_applied_offset",
                    "Index of the last metadata-log entry applied here.",
                )
                .unwrap(),
            ),
            disk_used: register(
                &r,
                IntGauge::new(
                    "tideline_log_dir_used_bytes",
                    "Bytes used on the filesystem holding the log directory.",
                )
                .unwrap(),
            ),
            disk_total: register(
                &r,
                IntGauge::new(
                    "tideline_log_dir_total_bytes",
                    "Size of the filesystem holding the log directory.",
                )
                .unwrap(),
            ),
            direct_io_buffer: register(
                &r,
                IntGauge::new(
                    "tideline_log_direct_io_buffer_bytes",
                    "Memory the active segments' direct-write windows hold (bounded near log.direct.io.buffer.bytes).",
                )
                .unwrap(),
            ),
            direct_io_written: register(
                &r,
                IntCounter::new(
                    "tideline_log_direct_io_written_bytes_total",
                    "Log bytes written with O_DIRECT (log.direct.io.enable=auto: only while the kernel writes dirty pages back).",
                )
                .unwrap(),
            ),
            writeback_started: register(
                &r,
                IntCounter::new(
                    "tideline_log_writeback_started_bytes_total",
                    "Log bytes whose writeback to the device the broker started early (log.segment.writeback.bytes).",
                )
                .unwrap(),
            ),
            sendfile_sent: register(
                &r,
                IntCounter::new(
                    "tideline_fetch_sendfile_bytes_total",
                    "Record bytes fetch responses sent straight from segment files (sendfile), without reading them into memory.",
                )
                .unwrap(),
            ),
            disk_free: register(
                &r,
                IntGauge::new(
                    "tideline_log_dir_free_bytes",
                    "Bytes available to the broker on the filesystem holding the log directory.",
                )
                .unwrap(),
            ),
            disk_reserved: register(
                &r,
                IntGauge::new(
                    "tideline_log_dir_reserved_bytes",
                    "Free space kept for the broker's own writes (log.dir.reserved.bytes, resolved).",
                )
                .unwrap(),
            ),
            refusing_appends: register(
                &r,
                IntGauge::new(
                    "tideline_log_dir_refusing_appends",
                    "1 while the log directory refuses produce and replication appends (full or offline).",
                )
                .unwrap(),
            ),
            log_dir_offline: register(
                &r,
                IntGauge::new(
                    "tideline_log_dir_offline",
                    "1 once a write or fsync failed for a reason other than space: nothing is read or written there until a restart.",
                )
                .unwrap(),
            ),
            log_dir_write_errors: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "tideline_log_dir_write_errors_total",
                        "Failed writes to the log directory, by kind (no_space: ENOSPC/EDQUOT; failed: anything else).",
                    ),
                    &["kind"],
                )
                .unwrap(),
            ),
            isr_shrinks: register(
                &r,
                IntCounter::new(
                    "tideline_isr_shrinks_total",
                    "ISR shrinks of partitions led here (a follower fell behind replica.lag.time.max.ms).",
                )
                .unwrap(),
            ),
            isr_expands: register(
                &r,
                IntCounter::new(
                    "tideline_isr_expands_total",
                    "ISR expansions of partitions led here (a follower caught up).",
                )
                .unwrap(),
            ),
            replicated_bytes: register(
                &r,
                IntCounter::new(
                    "tideline_replication_bytes_in_total",
                    "Bytes this broker appended as a follower.",
                )
                .unwrap(),
            ),
            fetch_sessions: register(
                &r,
                IntGauge::new(
                    "tideline_fetch_sessions",
                    "Incremental fetch sessions (KIP-227) cached on this broker.",
                )
                .unwrap(),
            ),
            fetch_requests: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "tideline_fetch_requests_total",
                        "Fetch requests by fetch session use: none (sessionless), full (opening a session), incremental, or error (unknown session or wrong epoch).",
                    ),
                    &["session"],
                )
                .unwrap(),
            ),
            transactions_completed: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "tideline_transactions_completed_total",
                        "Transactions this broker coordinated to completion, by result (commit or abort).",
                    ),
                    &["result"],
                )
                .unwrap(),
            ),
            transactions_timed_out: register(
                &r,
                IntCounter::new(
                    "tideline_transactions_timed_out_total",
                    "Transactions this coordinator aborted because they stayed open longer than transaction.timeout.ms.",
                )
                .unwrap(),
            ),
            transaction_completion: register(
                &r,
                prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "tideline_transaction_marker_duration_seconds",
                        "From a transaction's Prepare state to its Complete state: writing its markers to every partition.",
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                        2.5, 5.0, 10.0, 30.0,
                    ]),
                )
                .unwrap(),
            ),
            transactions_open: register(
                &r,
                IntGauge::new(
                    "tideline_transactions_open",
                    "Transactions this broker coordinates that are open (Ongoing) or being completed (PrepareCommit, PrepareAbort).",
                )
                .unwrap(),
            ),
            fetch_session_evictions: register(
                &r,
                IntCounter::new(
                    "tideline_fetch_session_evictions_total",
                    "Fetch sessions evicted to make room for others (max.incremental.fetch.session.cache.slots).",
                )
                .unwrap(),
            ),
            replica_max_lag: register(
                &r,
                IntGauge::new(
                    "tideline_replica_max_lag",
                    "Largest lag in records of a partition followed here behind its leader's high watermark.",
                )
                .unwrap(),
            ),
            high_watermark: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "tideline_high_watermark",
                        "High watermark of a partition hosted here (consumers read below it).",
                    ),
                    &["topic", "partition"],
                )
                .unwrap(),
            ),
            last_stable_offset: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "tideline_last_stable_offset",
                        "Last stable offset of a partition hosted here (read_committed consumers read below it; below the high watermark while a transaction is open).",
                    ),
                    &["topic", "partition"],
                )
                .unwrap(),
            ),
            registry: r,
        };
        // Served from the start, so a rate over them is 0 rather than absent.
        for result in ["commit", "abort"] {
            metrics.transactions_completed.with_label_values(&[result]);
        }
        metrics
    }

    pub fn request_started(&self, api: ApiKey) -> HistogramTimer {
        let name = format!("{api:?}");
        self.requests.with_label_values(&[&name]).inc();
        self.request_latency
            .with_label_values(&[&name])
            .start_timer()
    }

    pub fn record_produce(&self, topic: &str, bytes: u64, records: i64) {
        self.bytes_in.with_label_values(&[topic]).inc_by(bytes);
        self.messages_in
            .with_label_values(&[topic])
            .inc_by(records.max(0) as u64);
    }

    pub fn record_produce_error(&self, error: ResponseError) {
        self.produce_errors
            .with_label_values(&[&format!("{error:?}")])
            .inc();
    }

    pub fn record_replicated(&self, bytes: u64) {
        self.replicated_bytes.inc_by(bytes);
    }

    /// `session`: "none", "full", "incremental" or "error".
    pub fn record_fetch_request(&self, session: &str) {
        self.fetch_requests.with_label_values(&[session]).inc();
    }

    pub fn record_fetch(&self, topic: &str, bytes: u64) {
        self.bytes_out.with_label_values(&[topic]).inc_by(bytes);
    }

    /// A coordinated transaction finished after `seconds` of marker writes.
    pub fn record_transaction_completed(&self, commit: bool, seconds: f64) {
        let result = if commit { "commit" } else { "abort" };
        self.transactions_completed
            .with_label_values(&[result])
            .inc();
        self.transaction_completion.observe(seconds);
    }

    pub fn record_transaction_timed_out(&self) {
        self.transactions_timed_out.inc();
    }

    /// Sets the gauges computed from state to `state`, then renders every
    /// metric.
    pub fn render(&self, state: &StateSnapshot) -> String {
        self.refresh(state);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }

    fn refresh(&self, state: &StateSnapshot) {
        self.log_size.reset();
        self.log_start.reset();
        self.log_end.reset();
        self.high_watermark.reset();
        self.last_stable_offset.reset();
        for partition in &state.partitions {
            let labels = [partition.topic.as_str(), &partition.partition.to_string()];
            self.log_size
                .with_label_values(&labels)
                .set(partition.size_bytes as i64);
            self.log_start
                .with_label_values(&labels)
                .set(partition.log_start_offset);
            self.log_end
                .with_label_values(&labels)
                .set(partition.log_end_offset);
            self.high_watermark
                .with_label_values(&labels)
                .set(partition.high_watermark);
            self.last_stable_offset
                .with_label_values(&labels)
                .set(partition.last_stable_offset);
        }
        self.replica_max_lag.set(state.replica_max_lag);
        self.fetch_sessions.set(state.fetch_sessions as i64);
        raise_to(&self.fetch_session_evictions, state.fetch_session_evictions);
        self.direct_io_buffer
            .set(state.direct_io_buffer_bytes as i64);
        raise_to(&self.direct_io_written, state.direct_io_written_bytes);
        raise_to(&self.writeback_started, state.writeback_started_bytes);
        raise_to(&self.sendfile_sent, state.sendfile_sent_bytes);
        let leadership = &state.leadership;
        self.under_replicated.set(leadership.under_replicated);
        self.under_min_isr.set(leadership.under_min_isr);
        self.offline.set(leadership.offline);
        self.fenced_brokers.set(leadership.fenced_brokers);
        self.leaders.set(leadership.leaders);
        self.active_controller
            .set(leadership.active_controller as i64);
        self.metadata_offset.set(state.metadata_offset as i64);
        if let Some((used, total)) = state.disk_used_and_total {
            self.disk_used.set(used as i64);
            self.disk_total.set(total as i64);
        }
        let dir = &state.log_dir;
        self.disk_free
            .set(dir.free_bytes.min(i64::MAX as u64) as i64);
        self.disk_reserved
            .set(dir.reserved_bytes.min(i64::MAX as u64) as i64);
        self.refusing_appends
            .set((dir.state != DirState::Writable) as i64);
        self.log_dir_offline
            .set((dir.state == DirState::Offline) as i64);
        for (kind, total) in [
            ("no_space", dir.no_space_errors),
            ("failed", dir.failed_writes),
        ] {
            raise_to(&self.log_dir_write_errors.with_label_values(&[kind]), total);
        }
        self.refresh_groups(&state.groups);
        self.transactions_open.set(state.open_transactions as i64);
    }

    /// Committed offsets, lag and membership of the groups coordinated here.
    fn refresh_groups(&self, groups: &[GroupGauges]) {
        self.group_committed.reset();
        self.group_lag.reset();
        self.group_members.reset();
        self.group_state.reset();
        for group in groups {
            let id = group.group_id.as_str();
            self.group_members
                .with_label_values(&[id])
                .set(group.members as i64);
            self.group_state
                .with_label_values(&[id, group.state])
                .set(1);
            for offset in &group.offsets {
                let labels = [id, offset.topic.as_str(), &offset.partition.to_string()];
                self.group_committed
                    .with_label_values(&labels)
                    .set(offset.committed);
                if let Some(lag) = offset.lag {
                    self.group_lag.with_label_values(&labels).set(lag);
                }
            }
        }
    }
}

/// Moves a counter that mirrors a running total kept elsewhere up to that
/// total (Prometheus counters only go up).
fn raise_to(counter: &IntCounter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

/// The state the gauges show, gathered by the broker at scrape time, so
/// this module needs nothing from the subsystems it describes.
#[derive(Debug)]
pub struct StateSnapshot {
    pub partitions: Vec<PartitionGauges>,
    pub replica_max_lag: i64,
    pub fetch_sessions: usize,
    pub fetch_session_evictions: u64,
    pub direct_io_buffer_bytes: u64,
    pub direct_io_written_bytes: u64,
    pub writeback_started_bytes: u64,
    pub sendfile_sent_bytes: u64,
    pub leadership: LeadershipGauges,
    pub metadata_offset: u64,
    /// Of the file system holding the log directory, when it can be read.
    pub disk_used_and_total: Option<(u64, u64)>,
    pub log_dir: HealthSnapshot,
    pub groups: Vec<GroupGauges>,
    /// Transactions coordinated here that are open or being completed.
    pub open_transactions: usize,
}

#[derive(Debug)]
pub struct PartitionGauges {
    pub topic: String,
    pub partition: i32,
    pub size_bytes: u64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
}

/// Partition counts by state. `offline` and `fenced_brokers` come from the
/// active controller only, so a cluster-wide sum counts each once.
#[derive(Debug, Default)]
pub struct LeadershipGauges {
    pub leaders: i64,
    pub under_replicated: i64,
    pub under_min_isr: i64,
    pub offline: i64,
    pub fenced_brokers: i64,
    pub active_controller: bool,
}

#[derive(Debug)]
pub struct GroupGauges {
    pub group_id: String,
    pub state: &'static str,
    pub members: usize,
    pub offsets: Vec<GroupOffsetGauges>,
}

#[derive(Debug)]
pub struct GroupOffsetGauges {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    /// Behind the high watermark; none when the partition is not local.
    pub lag: Option<i64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
