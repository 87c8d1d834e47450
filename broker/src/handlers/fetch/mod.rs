//! Fetch: return record batches from the requested offsets, long-polling
//! until `min_bytes` are available or `max_wait_ms` passes. Waiting is
//! event driven: consumers wake when the high watermark moves (they read
//! below it), followers when the log end moves (they read up to it).
//!
//! A fetch naming a replica id comes from a follower: its fetch offset is
//! its log end, which the replica manager records before reading (that is
//! how the leader's high watermark advances), with its log start (the low
//! watermark DeleteRecords waits for). Replicas a reassignment is
//! adding are throttled by `leader.replication.throttled.rate`.
//!
//! Limits follow KIP-74: `partition_max_bytes` per partition and `max_bytes`
//! for the response, except that the first batch of the first non-empty
//! partition is always returned whole so a large batch cannot stall a consumer.
//!
//! From v7 a fetch may belong to a fetch session (KIP-227, see `sessions`):
//! the partitions to read then come from the session, updated by the
//! request, and the response leaves out those with nothing new.
//!
//! Record sets of at least [`SEND_FROM_FILE_AT_LEAST`] bytes that lie in a
//! segment file are not read here: the reply carries them as file regions,
//! and the connection sends them with `sendfile` (see `disk::sendfile`).
//! Nothing on this path waits for the disk on an async worker: smaller
//! record sets are read only if the page cache holds them, regions are
//! sent only if it holds all their pages, and the rest is read on the
//! blocking pool once the long poll is over (`read_cold`).

mod sessions;

pub use sessions::FetchSessionCache;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};
use tokio::time::Instant;

use super::str_bytes;
use crate::broker::Broker;
use crate::disk::read;
use crate::disk::sendfile::{FileRegion, StandIns};
use crate::error::ResponseError;
use crate::log::{ChangeListener, ReadError, ReadSlice};
use crate::metadata::MetadataImage;
use crate::partition::Partition;
use crate::util::now_ms;
use sessions::{
    Begun, FetchContext, OpenedPartition, PartitionFetch, PartitionResult, SentState,
    SessionPartition, SessionRequest, TopicRef,
};

struct Target {
    topic_index: usize,
    partition_index: usize,
    partition: Option<Arc<Partition>>,
    error: Option<ResponseError>,
    fetch_offset: i64,
    max_bytes: usize,
    /// A follower fetch subject to the replication throttle.
    throttled: bool,
    /// After a read: an error, or data left below the bound.
    pending: bool,
}

/// Smaller record sets are read into memory. They are the small, frequent
/// fetches of a caught-up follower or consumer, where a `sendfile` call and
/// the flush of the bytes before it cost about what the copy saves; the
/// limit keeps that latency-sensitive path as it was (chosen, not tuned
/// per size).
pub const SEND_FROM_FILE_AT_LEAST: usize = 64 * 1024;

/// A fetch response whose larger record sets may still be regions of
/// segment files, standing in the response for their bytes.
pub struct Reply {
    pub response: FetchResponse,
    pub file_regions: StandIns,
}

impl Reply {
    /// The response with every file region read into memory, for a caller
    /// that cannot send files.
    pub fn read_into_memory(self) -> FetchResponse {
        let Reply {
            mut response,
            file_regions,
        } = self;
        let partitions = response
            .responses
            .iter_mut()
            .flat_map(|t| &mut t.partitions);
        for data in partitions {
            let Some(region) = data
                .records
                .as_ref()
                .and_then(|r| file_regions.region_of(r))
            else {
                continue;
            };
            match region.read() {
                Ok(bytes) => data.records = Some(Bytes::from(bytes)),
                Err(e) => {
                    tracing::error!(partition = data.partition_index, error = %e, "read failed");
                    data.error_code = ResponseError::KafkaStorageError.code();
                    data.records = Some(Bytes::new());
                }
            }
        }
        response
    }
}

pub async fn handle(broker: &Broker, request: FetchRequest, version: i16) -> Reply {
    let mut response = FetchResponse::default();
    let mut file_regions = StandIns::default();
    let mut cold = Vec::new();
    let image = broker.image();
    // v15 moved the replica id into ReplicaState (KIP-903).
    let replica_id = if version >= 15 {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    };
    let follower = (replica_id >= 0).then_some(replica_id);
    let reader = match (follower, request.isolation_level) {
        (Some(_), _) => Reader::Follower,
        (None, 1) => Reader::Committed,
        (None, _) => Reader::Uncommitted,
    };

    // v13 names topics by id (KIP-516); earlier versions by name.
    let uses_topic_ids = version >= 13;
    let topic_ref = |name: &TopicName, id: &uuid::Uuid| {
        if uses_topic_ids {
            TopicRef::Id(*id)
        } else {
            TopicRef::Name(name.0.to_string())
        }
    };
    let requested: Vec<(SessionPartition, PartitionFetch)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                let key = SessionPartition {
                    topic: topic_ref(&t.topic, &t.topic_id),
                    partition: p.partition,
                };
                let fetch = PartitionFetch {
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes,
                    current_leader_epoch: p.current_leader_epoch,
                    log_start_offset: p.log_start_offset,
                };
                (key, fetch)
            })
        })
        .collect();
    // Sessions came with v7 (KIP-227).
    let begun = if version >= 7 {
        let forgotten: Vec<SessionPartition> = request
            .forgotten_topics_data
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |&partition| SessionPartition {
                    topic: topic_ref(&t.topic, &t.topic_id),
                    partition,
                })
            })
            .collect();
        let session = SessionRequest {
            session_id: request.session_id,
            epoch: request.session_epoch,
            uses_topic_ids,
            follower: follower.is_some(),
            partitions: &requested,
            forgotten: &forgotten,
            metadata: &image,
        };
        match broker.fetch_sessions.begin(session, now_ms()) {
            Ok(begun) => begun,
            Err(error) => {
                broker.metrics.record_fetch_request("error");
                // The client starts over with a full fetch.
                response.error_code = error.code();
                return Reply {
                    response,
                    file_regions,
                };
            }
        }
    } else {
        Begun {
            context: FetchContext::Sessionless,
            partitions: requested,
            listener: None,
        }
    };
    let Begun {
        context,
        partitions: mut wanted,
        listener,
    } = begun;

    broker.metrics.record_fetch_request(match context {
        FetchContext::Sessionless => "none",
        FetchContext::Full => "full",
        FetchContext::Incremental { .. } => "incremental",
    });
    let mut targets = Targets {
        broker,
        image: &image,
        follower,
        uses_topic_ids,
        listener: listener.as_ref(),
        topic_indexes: HashMap::new(),
        targets: Vec::with_capacity(wanted.len()),
    };
    for (key, fetch) in &wanted {
        targets.add(&mut response, key, fetch);
    }
    // An incremental fetch that looks only at what changed adds what
    // changes while it waits.
    let watching_changes = match context {
        FetchContext::Incremental {
            session_id,
            every_partition: false,
        } => Some(session_id),
        _ => None,
    };
    let mut looked_at: HashSet<SessionPartition> = match watching_changes {
        Some(_) => wanted.iter().map(|(key, _)| key.clone()).collect(),
        None => HashSet::new(),
    };

    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let deadline = Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = if request.max_bytes <= 0 {
        usize::MAX
    } else {
        request.max_bytes as usize
    };
    loop {
        // Subscribe before reading so an append between the read and the
        // wait still wakes us (a session's listener was registered with
        // every target before the first read).
        let mut watchers: Vec<_> = match listener {
            Some(_) => Vec::new(),
            None => targets
                .targets
                .iter()
                .filter_map(|t| t.partition.as_ref())
                .map(|p| match follower {
                    Some(_) => p.subscribe(),
                    None => p.subscribe_high_watermark(),
                })
                .collect(),
        };
        let (total, any_error) = collect(
            broker,
            &mut response,
            &mut file_regions,
            &mut cold,
            &mut targets.targets,
            max_bytes,
            reader,
        );
        let nothing_to_wait_for = match &listener {
            Some(_) => targets.targets.is_empty() && watching_changes.is_none(),
            None => watchers.is_empty(),
        };
        if total >= min_bytes.max(1)
            || any_error
            || Instant::now() >= deadline
            || nothing_to_wait_for
        {
            break;
        }
        match &listener {
            Some(listener) => {
                tokio::select! {
                    _ = listener.changed() => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
            None => {
                let changed = select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
                tokio::select! {
                    _ = changed => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
        }
        if let Some(session_id) = watching_changes {
            for (key, fetch) in broker.fetch_sessions.changed_since(session_id, &looked_at) {
                targets.add(&mut response, &key, &fetch);
                looked_at.insert(key.clone());
                wanted.push((key, fetch));
            }
        }
    }
    read_cold(&mut response, cold).await;
    Reply {
        response: finish_session(broker, context, response, &targets, wanted),
        file_regions,
    }
}

/// The partitions a fetch reads, each with its place in the response.
struct Targets<'a> {
    broker: &'a Broker,
    image: &'a Arc<MetadataImage>,
    follower: Option<i32>,
    uses_topic_ids: bool,
    /// The session's listener, registered with every partition read.
    listener: Option<&'a Arc<ChangeListener>>,
    topic_indexes: HashMap<TopicRef, usize>,
    targets: Vec<Target>,
}

impl Targets<'_> {
    /// Adds `key` to the response (with its topic, the first time) and
    /// checks that this broker leads it at the epoch the fetch expects; a
    /// follower's fetch offset is recorded as its progress.
    fn add(
        &mut self,
        response: &mut FetchResponse,
        key: &SessionPartition,
        fetch: &PartitionFetch,
    ) {
        let broker = self.broker;
        let found = match &key.topic {
            TopicRef::Id(id) => self.image.topic_by_id(id),
            TopicRef::Name(name) => self.image.topics.get(name.as_str()),
        };
        let ti = *self
            .topic_indexes
            .entry(key.topic.clone())
            .or_insert_with(|| {
                let mut topic_response = FetchableTopicResponse::default();
                match (&key.topic, found) {
                    (_, Some(t)) => {
                        topic_response.topic = TopicName(str_bytes(t.name.clone()));
                        topic_response.topic_id = t.topic_id;
                    }
                    (TopicRef::Name(name), None) => {
                        topic_response.topic = TopicName(str_bytes(name.clone()))
                    }
                    (TopicRef::Id(id), None) => topic_response.topic_id = *id,
                }
                response.responses.push(topic_response);
                response.responses.len() - 1
            });
        let partitions = &mut response.responses[ti].partitions;
        let mut data = PartitionData::default();
        data.partition_index = key.partition;
        data.high_watermark = -1;
        data.last_stable_offset = -1;
        data.log_start_offset = -1;
        data.records = Some(Bytes::new());
        partitions.push(data);
        let mut target = Target {
            topic_index: ti,
            partition_index: partitions.len() - 1,
            partition: None,
            error: None,
            fetch_offset: fetch.fetch_offset,
            max_bytes: fetch.max_bytes.max(0) as usize,
            throttled: false,
            pending: false,
        };
        match found.and_then(|t| t.partitions.get(key.partition as usize).map(|a| (t, a))) {
            None if found.is_none() && self.uses_topic_ids => {
                target.error = Some(ResponseError::UnknownTopicId)
            }
            None => target.error = Some(ResponseError::UnknownTopicOrPartition),
            Some((t, assignment)) => {
                let epoch = fetch.current_leader_epoch;
                if assignment.leader != broker.node_id() {
                    target.error = Some(ResponseError::NotLeaderOrFollower);
                } else if epoch >= 0 && epoch < assignment.leader_epoch {
                    target.error = Some(ResponseError::FencedLeaderEpoch);
                } else if epoch > assignment.leader_epoch {
                    target.error = Some(ResponseError::UnknownLeaderEpoch);
                } else {
                    target.partition = broker.partition(&t.name, key.partition);
                    if let (Some(partition), Some(listener)) = (&target.partition, self.listener) {
                        partition.listen(listener);
                    }
                    match (&target.partition, self.follower) {
                        (None, _) => target.error = Some(ResponseError::NotLeaderOrFollower),
                        (Some(partition), Some(id)) => {
                            if let Err(e) = broker.replicas.on_follower_fetch(
                                partition,
                                id,
                                fetch.fetch_offset,
                                fetch.log_start_offset,
                            ) {
                                target.error = Some(e);
                            }
                            target.throttled = partition.is_adding(id);
                        }
                        (Some(_), None) => {}
                    }
                }
            }
        }
        self.targets.push(target);
    }
}

/// Applies the fetch session to the finished response: a full fetch opens
/// a session, an incremental one keeps only the partitions with news.
fn finish_session(
    broker: &Broker,
    context: FetchContext,
    mut response: FetchResponse,
    read: &Targets,
    wanted: Vec<(SessionPartition, PartitionFetch)>,
) -> FetchResponse {
    let privileged = read.follower.is_some();
    let targets = &read.targets[..];
    let data = |t: &Target| &response.responses[t.topic_index].partitions[t.partition_index];
    let sent = |d: &PartitionData| SentState {
        high_watermark: d.high_watermark,
        last_stable_offset: d.last_stable_offset,
        log_start_offset: d.log_start_offset,
    };
    match context {
        FetchContext::Sessionless => response.session_id = sessions::INVALID_SESSION_ID,
        FetchContext::Full => {
            let partitions = wanted
                .into_iter()
                .zip(targets)
                .map(|((key, fetch), t)| OpenedPartition {
                    key,
                    fetch,
                    sent: sent(data(t)),
                    pending: t.pending,
                })
                .collect();
            let listener = read.listener.expect("a full fetch brings a listener");
            response.session_id = broker.fetch_sessions.create(
                privileged,
                read.uses_topic_ids,
                partitions,
                listener.clone(),
                read.image,
                now_ms(),
            );
        }
        FetchContext::Incremental { session_id, .. } => {
            let results: Vec<(SessionPartition, PartitionResult)> = wanted
                .into_iter()
                .zip(targets)
                .map(|((key, _), t)| {
                    let d = data(t);
                    let has_records = d.records.as_ref().is_some_and(|r| !r.is_empty());
                    let result = PartitionResult {
                        sent: sent(d),
                        has_news: has_records || d.error_code != 0,
                        has_records,
                        pending: t.pending,
                    };
                    (key, result)
                })
                .collect();
            let include = broker
                .fetch_sessions
                .finish_incremental(session_id, &results);
            let mut keep: Vec<Vec<bool>> = response
                .responses
                .iter()
                .map(|t| vec![false; t.partitions.len()])
                .collect();
            for (t, included) in targets.iter().zip(include) {
                keep[t.topic_index][t.partition_index] = included;
            }
            for (topic, keep) in response.responses.iter_mut().zip(keep) {
                let mut keep = keep.into_iter();
                topic.partitions.retain(|_| keep.next().unwrap_or(true));
            }
            response.responses.retain(|t| !t.partitions.is_empty());
            response.session_id = session_id;
        }
    }
    response
}

/// Who reads, and so how far: a follower replicates the whole log, a
/// consumer reads below the high watermark, and one with
/// `isolation.level=read_committed` (1) below the last stable offset, told
/// which transactions there were aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    Follower,
    Uncommitted,
    Committed,
}

/// Reads every target into the response; returns bytes read and whether
/// any partition reported an error (which ends the wait, as in Kafka).
fn collect(
    broker: &Broker,
    response: &mut FetchResponse,
    file_regions: &mut StandIns,
    cold: &mut Vec<ColdRead>,
    targets: &mut [Target],
    max_bytes: usize,
    reader: Reader,
) -> (usize, bool) {
    let read_committed = reader == Reader::Committed;
    file_regions.clear();
    cold.clear();
    let mut total = 0usize;
    let mut any_error = false;
    for target in targets {
        let data = &mut response.responses[target.topic_index].partitions[target.partition_index];
        target.pending = true;
        // Not a stand-in from an earlier pass, whose region is forgotten.
        data.records = Some(Bytes::new());
        if let Some(error) = target.error {
            data.error_code = error.code();
            if let Some(partition) = &target.partition {
                // A follower out of range needs these to recover.
                data.log_start_offset = partition.log_start_offset();
                data.high_watermark = partition.high_watermark();
            }
            any_error = true;
            continue;
        }
        let partition = target
            .partition
            .as_ref()
            .expect("no error means a partition");
        let remaining = max_bytes.saturating_sub(total);
        let mut limit = target.max_bytes.min(remaining);
        if target.throttled && broker.replicas.leader_throttle.is_exceeded() {
            limit = 0;
        }
        let hw = partition.high_watermark();
        let (slice, start, lso, aborted) = partition.read_log(|log| {
            let lso = log.last_stable_offset(hw);
            // Followers replicate everything; consumers see committed
            // records, and read_committed ones only stable ones.
            let upper_bound = match reader {
                Reader::Follower => log.log_end_offset(),
                Reader::Committed => lso,
                Reader::Uncommitted => hw,
            };
            let start = log.log_start_offset();
            let min_one = total == 0 && limit > 0;
            target.pending = target.fetch_offset < upper_bound;
            let slice = log.read(target.fetch_offset, limit, min_one, upper_bound);
            let aborted = match &slice {
                Ok(Some(_)) if read_committed => {
                    log.aborted_transactions(target.fetch_offset, upper_bound)
                }
                _ => Vec::new(),
            };
            (slice, start, lso, aborted)
        });
        data.high_watermark = hw;
        data.last_stable_offset = lso;
        data.log_start_offset = start;
        data.aborted_transactions = read_committed.then(|| {
            aborted
                .into_iter()
                .map(|(producer_id, first_offset)| {
                    let mut a = AbortedTransaction::default();
                    a.producer_id = ProducerId(producer_id);
                    a.first_offset = first_offset;
                    a
                })
                .collect()
        });
        data.error_code = 0;
        match slice {
            Ok(Some(slice)) => match records(slice, file_regions) {
                Ok(records) => {
                    let len = match records {
                        Records::Ready(bytes) => {
                            let len = bytes.len();
                            data.records = Some(bytes);
                            len
                        }
                        Records::Cold(region) => {
                            let len = region.len;
                            cold.push(ColdRead {
                                topic_index: target.topic_index,
                                partition_index: target.partition_index,
                                region,
                            });
                            len
                        }
                    };
                    total += len;
                    if target.throttled {
                        broker.replicas.leader_throttle.record(len);
                    }
                    if reader != Reader::Follower {
                        broker.metrics.record_fetch(&partition.tp.topic, len as u64);
                    }
                }
                Err(e) => {
                    tracing::error!(partition = %partition.tp, error = %e, "read failed");
                    data.error_code = ResponseError::KafkaStorageError.code();
                    any_error = true;
                }
            },
            Ok(None) => data.records = Some(Bytes::new()),
            Err(ReadError::OffsetOutOfRange { .. }) => {
                data.error_code = ResponseError::OffsetOutOfRange.code();
                data.records = Some(Bytes::new());
                any_error = true;
            }
            Err(ReadError::Io(e)) => {
                tracing::error!(partition = %partition.tp, error = %e, "read failed");
                data.error_code = ResponseError::KafkaStorageError.code();
                any_error = true;
            }
            // An offline log directory serves nothing.
            Err(ReadError::Storage(_)) => {
                data.error_code = ResponseError::KafkaStorageError.code();
                any_error = true;
            }
        }
        if data.error_code != 0 {
            target.pending = true;
        }
    }
    (total, any_error)
}

/// The record set to put in the response: a stand-in for a large region of
/// a segment file, else the bytes themselves, or, when the page cache does
/// not hold them, the region to read on the blocking pool.
fn records(slice: ReadSlice, file_regions: &mut StandIns) -> std::io::Result<Records> {
    let region = match slice {
        ReadSlice::Memory(bytes) => return Ok(Records::Ready(Bytes::from(bytes))),
        ReadSlice::File(region) => region,
    };
    let region = if region.len >= SEND_FROM_FILE_AT_LEAST {
        // `sendfile` would wait for the disk on the connection's worker.
        if !read::is_cached(&region.file, region.len, region.position) {
            return Ok(Records::Cold(region));
        }
        match file_regions.stand_in(region) {
            Ok(stand_in) => return Ok(Records::Ready(stand_in)),
            Err(region) => region,
        }
    } else {
        region
    };
    Ok(
        match read::read_if_cached(&region.file, region.len, region.position)? {
            Some(bytes) => Records::Ready(Bytes::from(bytes)),
            None => Records::Cold(region),
        },
    )
}

enum Records {
    Ready(Bytes),
    Cold(FileRegion),
}

/// A record set the page cache did not hold, and where it goes in the
/// response once read.
struct ColdRead {
    topic_index: usize,
    partition_index: usize,
    region: FileRegion,
}

/// Reads the cold record sets on the blocking pool, so a fetch that must
/// wait for the disk holds no async worker meanwhile.
async fn read_cold(response: &mut FetchResponse, cold: Vec<ColdRead>) {
    if cold.is_empty() {
        return;
    }
    let places: Vec<(usize, usize)> = cold
        .iter()
        .map(|c| (c.topic_index, c.partition_index))
        .collect();
    let reads = tokio::task::spawn_blocking(move || {
        cold.into_iter()
            .map(|c| c.region.read())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_else(|e| {
        let failed = || std::io::Error::other(format!("blocking read failed: {e}"));
        places.iter().map(|_| Err(failed())).collect()
    });
    for ((topic_index, partition_index), read) in places.into_iter().zip(reads) {
        let data = &mut response.responses[topic_index].partitions[partition_index];
        match read {
            Ok(bytes) => data.records = Some(Bytes::from(bytes)),
            Err(e) => {
                tracing::error!(partition = data.partition_index, error = %e, "read failed");
                data.error_code = ResponseError::KafkaStorageError.code();
                data.records = Some(Bytes::new());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::sendfile::FileRegion;
    use std::io::Write;

    #[test]
    fn a_reply_read_into_memory_holds_the_file_bytes_in_place_of_stand_ins() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        let file = Arc::new(file);
        let mut file_regions = StandIns::default();
        let mut stand_in = |position: u64, len: usize| {
            let region = FileRegion {
                file: file.clone(),
                position,
                len,
            };
            file_regions.stand_in(region).unwrap()
        };
        let records = [
            stand_in(100, 70_000),
            Bytes::from_static(b"in memory"),
            // Past the end of the file: truncated since the read.
            stand_in(150_000, 70_000),
        ];
        let mut topic = FetchableTopicResponse::default();
        for (i, r) in records.into_iter().enumerate() {
            let mut partition = PartitionData::default();
            partition.partition_index = i as i32;
            partition.records = Some(r);
            topic.partitions.push(partition);
        }
        let mut response = FetchResponse::default();
        response.responses.push(topic);

        let read = Reply {
            response,
            file_regions,
        }
        .read_into_memory();
        let partitions = &read.responses[0].partitions;
        assert_eq!(partitions[0].records.as_deref(), Some(&data[100..70_100]));
        assert_eq!(partitions[0].error_code, 0);
        assert_eq!(partitions[1].records.as_deref(), Some(&b"in memory"[..]));
        assert_eq!(
            partitions[2].error_code,
            ResponseError::KafkaStorageError.code()
        );
        assert_eq!(partitions[2].records.as_deref(), Some(&[][..]));
    }

    /// Writes `data` to a file.
    fn segment_file(data: &[u8]) -> Arc<std::fs::File> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.log");
        std::fs::write(&path, data).unwrap();
        Arc::new(std::fs::File::open(&path).unwrap())
    }

    #[tokio::test]
    async fn record_sets_the_page_cache_lacks_are_read_on_the_blocking_pool() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 239) as u8).collect();
        let file = segment_file(&data);
        let region = |position: u64, len: usize| {
            ReadSlice::File(FileRegion {
                file: file.clone(),
                position,
                len,
            })
        };
        let mut file_regions = StandIns::default();
        let mut cold = Vec::new();
        let mut response = FetchResponse::default();
        response.responses.push(FetchableTopicResponse::default());
        // A small record set and a region for sendfile, both cold.
        for (index, (position, len)) in [(10u64, 1_000usize), (50_000, 100_000)]
            .into_iter()
            .enumerate()
        {
            response.responses[0]
                .partitions
                .push(PartitionData::default());
            // Again before each: a read that misses starts readahead.
            read::evict_from_page_cache(&file);
            match records(region(position, len), &mut file_regions).unwrap() {
                Records::Cold(region) => cold.push(ColdRead {
                    topic_index: 0,
                    partition_index: index,
                    region,
                }),
                Records::Ready(_) => panic!("a cold region at {position} was read on the runtime"),
            }
        }
        read_cold(&mut response, cold).await;
        let partitions = &response.responses[0].partitions;
        assert_eq!(partitions[0].records.as_deref(), Some(&data[10..1_010]));
        assert_eq!(
            partitions[1].records.as_deref(),
            Some(&data[50_000..150_000])
        );

        // Now cached: read in place, and stood in for.
        match records(region(10, 1_000), &mut file_regions).unwrap() {
            Records::Ready(bytes) => assert_eq!(&bytes[..], &data[10..1_010]),
            Records::Cold(_) => panic!("a cached record set went to the blocking pool"),
        }
        match records(region(50_000, 100_000), &mut file_regions).unwrap() {
            Records::Ready(bytes) => assert!(file_regions.region_of(&bytes).is_some()),
            Records::Cold(_) => panic!("a cached region went to the blocking pool"),
        }
    }
}
