//! Follower fetchers: one task per leader broker fetches every partition
//! this broker follows from it, as Kafka's replica fetcher threads do.
//!
//! A partition starts (or restarts, after a leader change) in the
//! truncating state: the fetcher asks the leader where this replica's
//! latest leader epoch ended (OffsetsForLeaderEpoch) and cuts the local log
//! there, repeating until the epochs agree. Then it fetches from its log end
//! with its replica id, appends what comes back unchanged, and takes the
//! leader's high watermark (capped by its own log end).
//!
//! Each fetcher keeps a fetch session (KIP-227) with its leader: after the
//! first full fetch it sends only the partitions whose fetch position
//! changed, and the leader answers only those with news, so a round over
//! many idle partitions costs little on both sides. What the leader's
//! session holds for a partition lives in that partition's fetch state, so
//! a round reads each followed partition's log end once and copies
//! nothing for the idle ones.
//!
//! While the log directory takes no writes (full, or offline) the fetchers
//! pause instead of fetching what they cannot append; the controller has
//! taken this broker out of the ISRs meanwhile, and it catches up and
//! rejoins them once the directory is writable again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::settings::FollowerFetchSettings as FetchSettings;
use crate::disk::{DirState, LogDirHealth};
use crate::error::ResponseError;
use crate::log::{AppendError, TopicPartition};
use crate::metadata::MetadataQuorum;
use crate::ops::metrics::Metrics;
use crate::partition::{Append, AppendFailure, Partition};
use tideline_protocol::KafkaClient;

/// Fetch v12: replica id in the body, topics by name, fetch sessions.
const FETCH_VERSION: i16 = 12;
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 4;

/// One followed partition as its fetcher sees it.
#[derive(Clone)]
struct FetchState {
    partition: Arc<Partition>,
    leader_epoch: i32,
    /// False until the log was truncated to agree with this leader epoch.
    truncated: bool,
    /// After an error, the partition waits until then.
    retry_at: Option<Instant>,
    /// Leader's high watermark minus our log end at the last fetch.
    lag: i64,
    /// What the leader's fetch session holds for this partition: the
    /// session's generation and what was sent in it.
    in_session: Option<(u64, SessionEntry)>,
}

/// What the leader's session remembers of a partition; the follower sends
/// the partition again whenever this changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SessionEntry {
    fetch_offset: i64,
    log_start: i64,
    leader_epoch: i32,
}

impl FetchState {
    fn ready(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }
}

/// What a fetcher task and its manager share.
struct Shared {
    partitions: Mutex<HashMap<TopicPartition, FetchState>>,
    /// Partitions no longer fetched here that a leader's session may still
    /// hold, with that session's generation: the next fetch forgets them.
    removed: Mutex<Vec<(TopicPartition, u64)>>,
    wake: Notify,
}

impl Shared {
    /// Removes the partitions `remove` picks, remembering those the
    /// leader's session holds so the next fetch forgets them.
    fn remove_where(&self, mut remove: impl FnMut(&TopicPartition, &FetchState) -> bool) {
        let mut removed = self.removed.lock();
        self.partitions.lock().retain(|tp, state| {
            if !remove(tp, state) {
                return true;
            }
            if let Some((generation, _)) = state.in_session {
                removed.push((tp.clone(), generation));
            }
            false
        });
    }
}

struct Fetcher {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Context {
    node_id: i32,
    quorum: Arc<MetadataQuorum>,
    settings: FetchSettings,
    metrics: Arc<Metrics>,
    health: Arc<LogDirHealth>,
}

pub struct FetcherManager {
    context: Arc<Context>,
    /// By leader broker id.
    fetchers: Mutex<HashMap<i32, Fetcher>>,
}

impl FetcherManager {
    pub fn new(
        node_id: i32,
        quorum: Arc<MetadataQuorum>,
        settings: FetchSettings,
        metrics: Arc<Metrics>,
        health: Arc<LogDirHealth>,
    ) -> Self {
        FetcherManager {
            context: Arc::new(Context {
                node_id,
                quorum,
                settings,
                metrics,
                health,
            }),
            fetchers: Mutex::new(HashMap::new()),
        }
    }

    /// Starts (or restarts, truncating first) replicating `partition` from
    /// `leader` at `leader_epoch`.
    pub fn follow(&self, leader: i32, partition: Arc<Partition>, leader_epoch: i32) {
        let mut fetchers = self.fetchers.lock();
        let tp = partition.tp.clone();
        for (id, fetcher) in fetchers.iter() {
            if *id != leader {
                fetcher.shared.remove_where(|t, _| *t == tp);
            }
        }
        let fetcher = fetchers.entry(leader).or_insert_with(|| {
            let shared = Arc::new(Shared {
                partitions: Mutex::new(HashMap::new()),
                removed: Mutex::new(Vec::new()),
                wake: Notify::new(),
            });
            let task = tokio::spawn(run(self.context.clone(), leader, shared.clone()));
            Fetcher { shared, task }
        });
        fetcher.shared.partitions.lock().insert(
            tp,
            FetchState {
                partition,
                leader_epoch,
                truncated: false,
                retry_at: None,
                lag: 0,
                // A new fetch position: sent again, replacing the old.
                in_session: None,
            },
        );
        fetcher.shared.wake.notify_one();
        drop_idle(&mut fetchers);
    }

    pub fn remove(&self, tp: &TopicPartition) {
        let mut fetchers = self.fetchers.lock();
        for fetcher in fetchers.values() {
            fetcher.shared.remove_where(|t, _| t == tp);
        }
        drop_idle(&mut fetchers);
    }

    /// Keeps only the partitions `keep` approves (drops deleted logs).
    pub fn retain(&self, keep: impl Fn(&TopicPartition, &Arc<Partition>) -> bool) {
        let mut fetchers = self.fetchers.lock();
        for fetcher in fetchers.values() {
            fetcher
                .shared
                .remove_where(|tp, state| !keep(tp, &state.partition));
        }
        drop_idle(&mut fetchers);
    }

    pub fn max_lag(&self) -> i64 {
        self.fetchers
            .lock()
            .values()
            .flat_map(|f| {
                f.shared
                    .partitions
                    .lock()
                    .values()
                    .map(|s| s.lag)
                    .collect::<Vec<_>>()
            })
            .max()
            .unwrap_or(0)
    }

    pub fn stop_all(&self) {
        let mut fetchers = self.fetchers.lock();
        for (_, fetcher) in fetchers.drain() {
            fetcher.task.abort();
        }
    }
}

fn drop_idle(fetchers: &mut HashMap<i32, Fetcher>) {
    fetchers.retain(|_, f| {
        let idle = f.shared.partitions.lock().is_empty();
        if idle {
            f.task.abort();
        }
        !idle
    });
}

/// The follower's side of its fetch session with one leader. What the
/// leader holds for each partition is kept in the partition's
/// [`FetchState::in_session`], tagged with the session's generation, so a
/// new session makes every partition's entry stale at once.
struct FetchSession {
    /// 0: none yet (the next fetch is a full one).
    id: i32,
    epoch: i32,
    generation: u64,
}

impl FetchSession {
    fn new() -> FetchSession {
        static GENERATIONS: AtomicU64 = AtomicU64::new(1);
        FetchSession {
            id: 0,
            epoch: 0,
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// The fetcher task for one leader.
async fn run(context: Arc<Context>, leader: i32, shared: Arc<Shared>) {
    let mut client: Option<KafkaClient> = None;
    let mut session = FetchSession::new();
    loop {
        let now = Instant::now();
        // One look over the followed partitions, without copying them.
        let (followed, any_ready, truncating) = {
            let partitions = shared.partitions.lock();
            let mut any_ready = false;
            let mut truncating = Vec::new();
            for (tp, state) in partitions.iter().filter(|(_, s)| s.ready(now)) {
                any_ready = true;
                if !state.truncated {
                    truncating.push((tp.clone(), state.clone()));
                }
            }
            (partitions.len(), any_ready, truncating)
        };
        if followed == 0 {
            shared.wake.notified().await;
            continue;
        }
        if context.health.state() != DirState::Writable {
            // Nothing fetched could be appended: wait for space (or a
            // restart, for an offline directory) instead of failing.
            let mut changes = context.health.subscribe();
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        if !any_ready {
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            continue;
        }
        if client.is_none() {
            match connect(&context, leader).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    tracing::debug!(leader, error = %e, "cannot reach the leader");
                    tokio::time::sleep(context.settings.backoff.min(Duration::from_millis(500)))
                        .await;
                    continue;
                }
            }
        }
        let connection = client.as_mut().expect("connected above");
        let result = if !truncating.is_empty() {
            truncate(&context, connection, &shared, truncating).await
        } else {
            fetch(&context, connection, &shared, &mut session).await
        };
        if let Err(e) = result {
            tracing::debug!(leader, error = %e, "replica fetch failed; reconnecting");
            client = None;
            session = FetchSession::new();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn connect(context: &Context, leader: i32) -> anyhow::Result<KafkaClient> {
    let image = context.quorum.image();
    let broker = image
        .brokers
        .get(&leader)
        .ok_or_else(|| anyhow::anyhow!("leader {leader} is not registered"))?;
    let address = format!("{}:{}", broker.host, broker.port);
    let client_id = format!("tideline-replica-fetcher-{}", context.node_id);
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        crate::util::connect_to_peer(&address),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connecting to {address} timed out"))??;
    KafkaClient::over(stream, &client_id)
}

/// The entry of topic `name` in a request's topic list, added if missing
/// (requests group their partitions by topic).
fn topic_entry<'a, T>(
    topics: &'a mut Vec<T>,
    name: &str,
    name_of: impl Fn(&T) -> &TopicName,
    new: impl FnOnce() -> T,
) -> &'a mut T {
    match topics.iter().position(|t| name_of(t).0.as_str() == name) {
        Some(i) => &mut topics[i],
        None => {
            topics.push(new());
            topics.last_mut().expect("just pushed")
        }
    }
}

/// Updates a partition's fetch state if it is still followed at `epoch`.
fn update_state(
    shared: &Shared,
    tp: &TopicPartition,
    epoch: i32,
    partition: &Arc<Partition>,
    f: impl FnOnce(&mut FetchState),
) {
    let mut partitions = shared.partitions.lock();
    if let Some(state) = partitions.get_mut(tp) {
        if state.leader_epoch == epoch && Arc::ptr_eq(&state.partition, partition) {
            f(state);
        }
    }
}

/// One OffsetsForLeaderEpoch round for the partitions that must truncate.
async fn truncate(
    context: &Context,
    client: &mut KafkaClient,
    shared: &Shared,
    partitions: Vec<(TopicPartition, FetchState)>,
) -> anyhow::Result<()> {
    let mut request = OffsetForLeaderEpochRequest::default();
    request.replica_id = BrokerId(context.node_id);
    let mut asked = Vec::new();
    for (tp, state) in partitions {
        let latest = state.partition.latest_epoch();
        let Some(latest) = latest else {
            // Nothing written under any epoch: nothing can have diverged.
            update_state(shared, &tp, state.leader_epoch, &state.partition, |s| {
                s.truncated = true
            });
            continue;
        };
        let mut p = OffsetForLeaderPartition::default();
        p.partition = tp.partition;
        p.current_leader_epoch = state.leader_epoch;
        p.leader_epoch = latest;
        topic_entry(
            &mut request.topics,
            &tp.topic,
            |t| &t.topic,
            || {
                let mut topic = OffsetForLeaderTopic::default();
                topic.topic = TopicName(StrBytes::from_string(tp.topic.clone()));
                topic
            },
        )
        .partitions
        .push(p);
        asked.push((tp, state, latest));
    }
    if asked.is_empty() {
        return Ok(());
    }
    let response = client
        .send(
            &request,
            OFFSET_FOR_LEADER_EPOCH_VERSION,
            context.settings.socket_timeout,
        )
        .await?;
    for (tp, state, asked_epoch) in asked {
        let answer = response
            .topics
            .iter()
            .filter(|t| t.topic.0.as_str() == tp.topic)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition == tp.partition);
        let Some(answer) = answer else { continue };
        if answer.error_code != 0 {
            let error = ResponseError::try_from_code(answer.error_code);
            tracing::debug!(partition = %tp, error = ?error, "OffsetsForLeaderEpoch failed; retrying");
            let retry = Instant::now() + context.settings.backoff.min(Duration::from_millis(500));
            update_state(shared, &tp, state.leader_epoch, &state.partition, |s| {
                s.retry_at = Some(retry)
            });
            continue;
        }
        let done = tokio::task::block_in_place(|| {
            state
                .partition
                .truncate_to_leader(asked_epoch, answer.leader_epoch, answer.end_offset)
        });
        match done {
            Ok(done) => update_state(shared, &tp, state.leader_epoch, &state.partition, |s| {
                s.truncated = done;
                s.retry_at = None;
            }),
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "truncation failed");
                let retry = Instant::now() + context.settings.backoff;
                update_state(shared, &tp, state.leader_epoch, &state.partition, |s| {
                    s.retry_at = Some(retry)
                });
            }
        }
    }
    Ok(())
}

/// The fetch request for one round: every ready partition for a full
/// fetch; for an incremental one those whose position changed since the
/// leader's session last got it, and those to forget (no longer followed
/// here, or waiting out an error or a truncation). Marks what it sends as
/// held by the session.
fn build_request(context: &Context, shared: &Shared, session: &FetchSession) -> FetchRequest {
    let settings = &context.settings;
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(context.node_id);
    request.max_wait_ms = settings.max_wait_ms;
    request.min_bytes = 1;
    request.max_bytes = settings.response_max_bytes;
    // Epoch 0 without an id: a full fetch that opens a session.
    request.session_id = session.id;
    request.session_epoch = if session.id == 0 { 0 } else { session.epoch };
    let full = session.id == 0;
    let generation = session.generation;
    let mut forget: Vec<TopicPartition> = std::mem::take(&mut *shared.removed.lock())
        .into_iter()
        .filter(|(_, g)| !full && *g == generation)
        .map(|(tp, _)| tp)
        .collect();
    let now = Instant::now();
    let mut partitions = shared.partitions.lock();
    for (tp, state) in partitions.iter_mut() {
        let held = state.in_session.filter(|(g, _)| *g == generation);
        if !state.truncated || !state.ready(now) {
            // Not fetched this round: the leader must not answer for it.
            if held.is_some() && !full {
                forget.push(tp.clone());
            }
            state.in_session = None;
            continue;
        }
        let offsets = state.partition.offsets();
        let entry = SessionEntry {
            fetch_offset: offsets.log_end_offset,
            log_start: offsets.log_start_offset,
            leader_epoch: state.leader_epoch,
        };
        if !full && held.map(|(_, e)| e) == Some(entry) {
            continue; // the leader's session has it as it is
        }
        state.in_session = Some((generation, entry));
        let mut p = FetchPartition::default();
        p.partition = tp.partition;
        p.current_leader_epoch = entry.leader_epoch;
        p.fetch_offset = entry.fetch_offset;
        p.log_start_offset = entry.log_start;
        p.partition_max_bytes = settings.partition_max_bytes;
        p.last_fetched_epoch = -1;
        topic_entry(
            &mut request.topics,
            &tp.topic,
            |t| &t.topic,
            || {
                let mut topic = FetchTopic::default();
                topic.topic = TopicName(StrBytes::from_string(tp.topic.clone()));
                topic
            },
        )
        .partitions
        .push(p);
    }
    for tp in forget {
        topic_entry(
            &mut request.forgotten_topics_data,
            &tp.topic,
            |t| &t.topic,
            || {
                let mut topic = ForgottenTopic::default();
                topic.topic = TopicName(StrBytes::from_string(tp.topic.clone()));
                topic
            },
        )
        .partitions
        .push(tp.partition);
    }
    request
}

/// One fetch round: only partitions with news come back, each answered
/// from the position the leader's session holds for it.
async fn fetch(
    context: &Context,
    client: &mut KafkaClient,
    shared: &Shared,
    session: &mut FetchSession,
) -> anyhow::Result<()> {
    let settings = &context.settings;
    let request = build_request(context, shared, session);
    let timeout = settings.socket_timeout + Duration::from_millis(settings.max_wait_ms as u64);
    let response = client.send(&request, FETCH_VERSION, timeout).await?;
    match ResponseError::try_from_code(response.error_code) {
        None => {}
        Some(ResponseError::FetchSessionIdNotFound | ResponseError::InvalidFetchSessionEpoch) => {
            // Evicted, or the leader restarted: start over with a full fetch.
            tracing::debug!(
                session = session.id,
                "fetch session lost; opening a new one"
            );
            *session = FetchSession::new();
            return Ok(());
        }
        Some(error) => anyhow::bail!("fetch failed: {error:?}"),
    }
    if session.id == 0 {
        session.id = response.session_id;
        session.epoch = 1;
    } else {
        session.epoch = if session.epoch == i32::MAX {
            1
        } else {
            session.epoch + 1
        };
    }
    let generation = session.generation;
    let mut any_error = false;
    // Partitions that brought records or an error, handled below; each
    // with the offset the leader answered from.
    let mut with_records = Vec::new();
    {
        let mut followed = shared.partitions.lock();
        for topic in &response.responses {
            for data in &topic.partitions {
                let tp = TopicPartition::new(topic.topic.0.as_str(), data.partition_index);
                let Some(state) = followed.get_mut(&tp) else {
                    continue;
                };
                // Answered for the position this session holds, or stale.
                let Some((_, entry)) = state.in_session.filter(|(g, _)| *g == generation) else {
                    continue;
                };
                if data.error_code != 0 || data.records.as_ref().is_some_and(|r| !r.is_empty()) {
                    with_records.push((tp, state.clone(), entry.fetch_offset, data));
                    continue;
                }
                // Nothing new: only the leader's high watermark to take.
                let end = state
                    .partition
                    .take_leader_high_watermark(data.high_watermark);
                state.lag = (data.high_watermark - end).max(0);
            }
        }
    }
    for (tp, state, fetch_offset, data) in with_records {
        let tp = &tp;
        let state = &state;
        let partition = &state.partition;
        if data.error_code != 0 {
            any_error = true;
            handle_partition_error(context, shared, tp, state, data, fetch_offset);
            continue;
        }
        let records = data.records.as_deref().unwrap_or(&[]);
        let appended = partition.append(Append::Replication {
            records,
            leader_epoch: state.leader_epoch,
            fetch_offset,
            leader_high_watermark: data.high_watermark,
        });
        match appended {
            Ok(appended) => {
                if appended.info.records > 0 {
                    context.metrics.record_replicated(appended.info.bytes);
                }
                let lag = (data.high_watermark - appended.log_end_offset).max(0);
                update_state(shared, tp, state.leader_epoch, partition, |s| s.lag = lag);
            }
            // Truncated or re-led meanwhile: the next round refetches.
            Err(AppendFailure::Stale) => {}
            Err(e) => {
                any_error = true;
                let storage = matches!(
                    e,
                    AppendFailure::Log(AppendError::Io(_) | AppendError::Storage(_))
                );
                if storage {
                    tracing::warn!(partition = %tp, error = %e, "cannot append replicated records; pausing until the log directory takes writes");
                } else {
                    tracing::error!(partition = %tp, error = %e, "cannot append replicated records");
                }
                let retry = Instant::now() + settings.backoff;
                update_state(shared, tp, state.leader_epoch, partition, |s| {
                    // A non-contiguous batch means the logs disagree:
                    // truncate again. A storage failure changed nothing.
                    s.truncated &= storage;
                    s.retry_at = Some(retry);
                });
            }
        }
    }
    if any_error {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn handle_partition_error(
    context: &Context,
    shared: &Shared,
    tp: &TopicPartition,
    state: &FetchState,
    data: &kafka_protocol::messages::fetch_response::PartitionData,
    fetch_offset: i64,
) {
    let error = ResponseError::try_from_code(data.error_code);
    let partition = &state.partition;
    let backoff = context.settings.backoff.min(Duration::from_millis(500));
    match error {
        Some(ResponseError::OffsetOutOfRange) => {
            // Our log ends before the leader's log start (retention moved
            // on while we were away), or past its end (we diverged).
            let leader_start = data.log_start_offset;
            if leader_start >= 0 && fetch_offset < leader_start {
                tracing::warn!(partition = %tp, fetch_offset, leader_start, "follower is behind the leader's log start: restarting the log there");
                if let Err(e) = partition.restart_at_leader_start(leader_start) {
                    tracing::error!(partition = %tp, error = %e, "cannot reset the log");
                }
                update_state(shared, tp, state.leader_epoch, partition, |s| {
                    s.retry_at = None
                });
            } else {
                update_state(shared, tp, state.leader_epoch, partition, |s| {
                    s.truncated = false;
                    s.retry_at = None;
                });
            }
        }
        _ => {
            tracing::debug!(partition = %tp, error = ?error, "replica fetch error; retrying");
            let retry = Instant::now() + backoff;
            update_state(shared, tp, state.leader_epoch, partition, |s| {
                s.retry_at = Some(retry)
            });
        }
    }
}
