//! Fetch sessions (KIP-227): a client that fetches many partitions sends
//! only the partitions whose fetch position changed, and the broker answers
//! with only the partitions that have something new (records, an error, a
//! moved high watermark or log start).
//!
//! The broker keeps, per session, what each partition was last fetched
//! with and what was last sent for it. A request names a session by id and
//! epoch:
//!
//! * epoch -1 (`FINAL_EPOCH`): no session; a named one is closed first.
//! * epoch 0 (`INITIAL_EPOCH`): a full fetch; a named session is closed and
//!   a new one is created for the answer, if the cache has room.
//! * epoch n > 0: an incremental fetch of that session, which must expect
//!   epoch n (else INVALID_FETCH_SESSION_EPOCH); an unknown id gets
//!   FETCH_SESSION_ID_NOT_FOUND. Both make Kafka clients start over with a
//!   full fetch.
//!
//! The cache holds at most `max.incremental.fetch.session.cache.slots`
//! sessions and evicts as Kafka's `FetchSessionCache` does: a session
//! unused for longer than the eviction time goes first; otherwise a new
//! session may evict an existing one older than the eviction time that is
//! "smaller" — not from a follower when the new one is, or with fewer
//! partitions — and follower sessions may also evict young consumer
//! sessions. A client whose session was evicted sees
//! FETCH_SESSION_ID_NOT_FOUND once and starts again.
//!
//! An incremental fetch looks only at the partitions that may have
//! something new: those the request names, those whose log, high watermark
//! or role changed since (the session's [`ChangeListener`] collects them),
//! and those the previous response left with data still to read or an
//! error. So a fetch costs what changed, not the session's size; a follower
//! replicating one busy partition among a thousand idle ones fetches as
//! fast as with that one alone. Every `full_pass` interval, and after any
//! metadata change, one fetch looks at every partition of the session, as
//! Kafka's does each time: that keeps each follower's "caught up" time
//! fresh for the ISR on partitions where nothing happens.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use indexmap::IndexMap;
use parking_lot::Mutex;
use uuid::Uuid;

use crate::error::ResponseError;
use crate::log::ChangeListener;
use crate::metadata::MetadataImage;

pub const INVALID_SESSION_ID: i32 = 0;
pub const INITIAL_EPOCH: i32 = 0;
pub const FINAL_EPOCH: i32 = -1;
/// Kafka's `min.incremental.fetch.session.eviction.ms` (not configurable
/// there either): how long a session is safe from eviction.
pub const EVICTION_MS: i64 = 120_000;

/// How a request names a topic: by name before Fetch v13, by id after.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionPartition {
    pub topic: TopicRef,
    pub partition: i32,
}

/// What a partition is fetched with; the client resends it when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionFetch {
    pub fetch_offset: i64,
    pub max_bytes: i32,
    pub current_leader_epoch: i32,
    /// A follower's log start offset (-1 from consumers).
    pub log_start_offset: i64,
}

/// The per-partition facts an incremental response leaves out while they
/// stay the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentState {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
}

/// One partition's outcome in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionResult {
    pub sent: SentState,
    /// Records or an error: always part of the response.
    pub has_news: bool,
    pub has_records: bool,
    /// Data left to read below the bound, or an error: the next fetch
    /// looks at this partition again even if nothing changes.
    pub pending: bool,
}

/// A partition of the full fetch that opens a session: what it was
/// fetched with, what was sent for it, and whether it was left pending.
pub struct OpenedPartition {
    pub key: SessionPartition,
    pub fetch: PartitionFetch,
    pub sent: SentState,
    pub pending: bool,
}

/// How one fetch request is served.
#[derive(Debug, PartialEq, Eq)]
pub enum FetchContext {
    /// No session: answer every partition, session id 0.
    Sessionless,
    /// Answer every partition and open a session for them if there is room.
    Full,
    /// Answer the session's partitions that changed.
    Incremental {
        session_id: i32,
        /// Whether the fetch looks at every partition of the session
        /// (else only at those that may have changed).
        every_partition: bool,
    },
}

/// How a request is served: its context, the partitions to look at (in
/// response order) and the listener that tells which of them change.
pub struct Begun {
    pub context: FetchContext,
    pub partitions: Vec<(SessionPartition, PartitionFetch)>,
    /// The session's, or for a full fetch a new one for the session it
    /// may open; `None` without a session.
    pub listener: Option<Arc<ChangeListener>>,
}

struct CachedPartition {
    fetch: PartitionFetch,
    sent: Option<SentState>,
}

struct Session {
    /// The epoch the next request must carry.
    epoch: i32,
    listener: Arc<ChangeListener>,
    /// Partitions the next fetch looks at whatever happens (see
    /// [`PartitionResult::pending`]).
    pending: HashSet<SessionPartition>,
    /// When a fetch last looked at every partition, and the metadata it
    /// did so with.
    last_full_pass_ms: i64,
    full_pass_metadata: Weak<MetadataImage>,
    /// Sessions of followers may evict consumers' young sessions.
    privileged: bool,
    uses_topic_ids: bool,
    created_ms: i64,
    last_used_ms: i64,
    partitions: IndexMap<SessionPartition, CachedPartition>,
}

pub struct FetchSessionCache {
    max_slots: usize,
    /// How often an incremental fetch looks at every partition.
    full_pass_ms: i64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<i32, Session>,
    evictions: u64,
}

/// What the fetch handler passes in for one request.
pub struct SessionRequest<'a> {
    pub session_id: i32,
    pub epoch: i32,
    pub uses_topic_ids: bool,
    /// From a follower (whose fetches wait for data, not the high watermark).
    pub follower: bool,
    /// Partitions added or updated (all of them, for a full fetch).
    pub partitions: &'a [(SessionPartition, PartitionFetch)],
    pub forgotten: &'a [SessionPartition],
    /// The metadata the fetch is served with.
    pub metadata: &'a Arc<MetadataImage>,
}

impl FetchSessionCache {
    pub fn new(max_slots: usize, full_pass_ms: i64) -> FetchSessionCache {
        FetchSessionCache {
            max_slots,
            full_pass_ms,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Number of open sessions and evictions so far (for the metrics).
    pub fn stats(&self) -> (usize, u64) {
        let inner = self.inner.lock();
        (inner.sessions.len(), inner.evictions)
    }

    /// Decides how a request is served and returns the partitions to
    /// look at, in response order: the request's own for a full fetch; for
    /// an incremental one the session's (updated by the request), all of
    /// them or only those that may have changed.
    pub fn begin(&self, request: SessionRequest<'_>, now_ms: i64) -> Result<Begun, ResponseError> {
        let mut inner = self.inner.lock();
        if request.epoch == FINAL_EPOCH || request.epoch == INITIAL_EPOCH {
            if request.session_id != INVALID_SESSION_ID {
                inner.sessions.remove(&request.session_id);
            }
            let (context, listener) = if request.epoch == INITIAL_EPOCH && self.max_slots > 0 {
                (
                    FetchContext::Full,
                    Some(ChangeListener::new(request.follower)),
                )
            } else {
                (FetchContext::Sessionless, None)
            };
            return Ok(Begun {
                context,
                partitions: request.partitions.to_vec(),
                listener,
            });
        }
        let Some(session) = inner.sessions.get_mut(&request.session_id) else {
            return Err(ResponseError::FetchSessionIdNotFound);
        };
        if session.epoch != request.epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch);
        }
        if session.uses_topic_ids != request.uses_topic_ids {
            return Err(ResponseError::FetchSessionTopicIdError);
        }
        for key in request.forgotten {
            session.partitions.shift_remove(key);
        }
        for (key, fetch) in request.partitions {
            match session.partitions.get_mut(key) {
                Some(cached) => cached.fetch = *fetch,
                None => {
                    session.partitions.insert(
                        key.clone(),
                        CachedPartition {
                            fetch: *fetch,
                            sent: None,
                        },
                    );
                }
            }
        }
        session.epoch = next_epoch(session.epoch);
        session.last_used_ms = now_ms;
        let changed = session.take_changed();
        let every_partition = now_ms - session.last_full_pass_ms >= self.full_pass_ms
            || session.full_pass_metadata.as_ptr() != Arc::as_ptr(request.metadata);
        let partitions = if every_partition {
            session.last_full_pass_ms = now_ms;
            session.full_pass_metadata = Arc::downgrade(request.metadata);
            session
                .partitions
                .iter()
                .map(|(k, c)| (k.clone(), c.fetch))
                .collect()
        } else {
            let mut indexes: Vec<usize> = request
                .partitions
                .iter()
                .map(|(key, _)| key)
                .chain(&changed)
                .filter_map(|key| session.partitions.get_index_of(key))
                .collect();
            indexes.sort_unstable();
            indexes.dedup();
            indexes
                .into_iter()
                .filter_map(|i| session.partitions.get_index(i))
                .map(|(k, c)| (k.clone(), c.fetch))
                .collect()
        };
        Ok(Begun {
            context: FetchContext::Incremental {
                session_id: request.session_id,
                every_partition,
            },
            partitions,
            listener: Some(session.listener.clone()),
        })
    }

    /// While an incremental fetch waits: the session's partitions that
    /// changed since it began (or since the last call) and are not in
    /// `looked_at` yet.
    pub fn changed_since(
        &self,
        session_id: i32,
        looked_at: &HashSet<SessionPartition>,
    ) -> Vec<(SessionPartition, PartitionFetch)> {
        let mut inner = self.inner.lock();
        let Some(session) = inner.sessions.get_mut(&session_id) else {
            return Vec::new();
        };
        session
            .heard_of()
            .into_iter()
            .filter(|key| !looked_at.contains(key))
            .filter_map(|key| {
                let fetch = session.partitions.get(&key)?.fetch;
                Some((key, fetch))
            })
            .collect()
    }

    /// After a full fetch: opens a session holding `partitions` with what
    /// was sent for them; returns its id, or 0 when the cache has no room.
    pub fn create(
        &self,
        privileged: bool,
        uses_topic_ids: bool,
        partitions: Vec<OpenedPartition>,
        listener: Arc<ChangeListener>,
        metadata: &Arc<MetadataImage>,
        now_ms: i64,
    ) -> i32 {
        let mut inner = self.inner.lock();
        if !self.make_room(&mut inner, privileged, partitions.len(), now_ms) {
            return INVALID_SESSION_ID;
        }
        let id = loop {
            let id = (Uuid::new_v4().as_u128() as u32 & i32::MAX as u32) as i32;
            if id != INVALID_SESSION_ID && !inner.sessions.contains_key(&id) {
                break id;
            }
        };
        let pending = partitions
            .iter()
            .filter(|p| p.pending)
            .map(|p| p.key.clone())
            .collect();
        let partitions = partitions
            .into_iter()
            .map(|p| {
                let cached = CachedPartition {
                    fetch: p.fetch,
                    sent: Some(p.sent),
                };
                (p.key, cached)
            })
            .collect();
        inner.sessions.insert(
            id,
            Session {
                epoch: next_epoch(INITIAL_EPOCH),
                listener,
                pending,
                last_full_pass_ms: now_ms,
                full_pass_metadata: Arc::downgrade(metadata),
                privileged,
                uses_topic_ids,
                created_ms: now_ms,
                last_used_ms: now_ms,
                partitions,
            },
        );
        id
    }

    /// After an incremental fetch: which of `results` (in the order
    /// [`FetchSessionCache::begin`] returned) go into the response. Those
    /// sent are remembered; partitions that returned records move to the
    /// end of the session, so under `max_bytes` the others come first next
    /// time (Kafka's rotation).
    pub fn finish_incremental(
        &self,
        session_id: i32,
        results: &[(SessionPartition, PartitionResult)],
    ) -> Vec<bool> {
        let mut inner = self.inner.lock();
        let Some(session) = inner.sessions.get_mut(&session_id) else {
            // Evicted while the fetch waited: the client learns next time.
            return vec![true; results.len()];
        };
        let mut include = Vec::with_capacity(results.len());
        let mut rotate = Vec::new();
        for (key, result) in results {
            let Some(cached) = session.partitions.get_mut(key) else {
                include.push(true);
                continue;
            };
            let changed = result.has_news || cached.sent != Some(result.sent);
            if changed {
                cached.sent = Some(result.sent);
            }
            if result.pending {
                session.pending.insert(key.clone());
            }
            if result.has_records {
                rotate.push(key.clone());
            }
            include.push(changed);
        }
        for key in rotate {
            if let Some(cached) = session.partitions.shift_remove(&key) {
                session.partitions.insert(key, cached);
            }
        }
        include
    }

    /// Frees a slot for a new session of `size` partitions, evicting as
    /// Kafka does; false when the new session must go without.
    fn make_room(&self, inner: &mut Inner, privileged: bool, size: usize, now_ms: i64) -> bool {
        if self.max_slots == 0 {
            return false;
        }
        if inner.sessions.len() < self.max_slots {
            return true;
        }
        let least_recently_used = inner
            .sessions
            .iter()
            .min_by_key(|(_, s)| s.last_used_ms)
            .map(|(id, s)| (*id, s.last_used_ms));
        if let Some((id, last_used)) = least_recently_used {
            if now_ms - last_used > EVICTION_MS {
                inner.sessions.remove(&id);
                inner.evictions += 1;
                return true;
            }
        }
        let smallest = inner
            .sessions
            .iter()
            .filter(|(_, s)| {
                let old = now_ms - s.created_ms > EVICTION_MS;
                old || (privileged && !s.privileged)
            })
            .min_by_key(|(id, s)| (s.privileged, s.partitions.len(), **id))
            .map(|(id, s)| (*id, (s.privileged, s.partitions.len())));
        match smallest {
            Some((id, key)) if (privileged, size) > key => {
                inner.sessions.remove(&id);
                inner.evictions += 1;
                true
            }
            _ => false,
        }
    }
}

impl Session {
    /// The partitions that may have changed since the last fetch, taking
    /// them: those left pending and those the listener heard of.
    fn take_changed(&mut self) -> Vec<SessionPartition> {
        let mut changed: Vec<SessionPartition> = self.pending.drain().collect();
        changed.extend(self.heard_of());
        changed
    }

    /// The partitions the listener heard of since it was last asked.
    fn heard_of(&self) -> Vec<SessionPartition> {
        let uses_topic_ids = self.uses_topic_ids;
        self.listener
            .take_changed()
            .into_iter()
            .map(|(tp, topic_id)| SessionPartition {
                topic: if uses_topic_ids {
                    TopicRef::Id(topic_id)
                } else {
                    TopicRef::Name(tp.topic)
                },
                partition: tp.partition,
            })
            .collect()
    }
}

/// Epochs count up from 1 and wrap past `i32::MAX` back to 1.
fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        return FINAL_EPOCH;
    }
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::change_listener::{Change, Listeners};
    use crate::log::TopicPartition;

    fn key(partition: i32) -> SessionPartition {
        SessionPartition {
            topic: TopicRef::Name("t".into()),
            partition,
        }
    }

    fn fetch(offset: i64) -> PartitionFetch {
        PartitionFetch {
            fetch_offset: offset,
            max_bytes: 1024,
            current_leader_epoch: 0,
            log_start_offset: -1,
        }
    }

    fn sent(hw: i64) -> SentState {
        SentState {
            high_watermark: hw,
            last_stable_offset: hw,
            log_start_offset: 0,
        }
    }

    fn quiet(hw: i64) -> PartitionResult {
        PartitionResult {
            sent: sent(hw),
            has_news: false,
            has_records: false,
            pending: false,
        }
    }

    fn opened(partition: i32, offset: i64, hw: i64) -> OpenedPartition {
        OpenedPartition {
            key: key(partition),
            fetch: fetch(offset),
            sent: sent(hw),
            pending: false,
        }
    }

    fn metadata() -> Arc<MetadataImage> {
        Arc::new(MetadataImage::default())
    }

    fn request<'a>(
        id: i32,
        epoch: i32,
        partitions: &'a [(SessionPartition, PartitionFetch)],
        forgotten: &'a [SessionPartition],
        metadata: &'a Arc<MetadataImage>,
    ) -> SessionRequest<'a> {
        SessionRequest {
            session_id: id,
            epoch,
            uses_topic_ids: false,
            follower: false,
            partitions,
            forgotten,
            metadata,
        }
    }

    /// A session of `n` partitions, created at `now`.
    fn open(cache: &FetchSessionCache, n: i32, privileged: bool, now: i64) -> i32 {
        let partitions = (0..n).map(|p| opened(p, 0, 0)).collect();
        let listener = ChangeListener::new(privileged);
        cache.create(privileged, false, partitions, listener, &metadata(), now)
    }

    fn numbers(parts: &[(SessionPartition, PartitionFetch)]) -> Vec<i32> {
        parts.iter().map(|(k, _)| k.partition).collect()
    }

    #[test]
    fn incremental_fetches_add_update_and_forget_partitions_and_send_only_changes() {
        // Every fetch looks at every partition here (no interval).
        let cache = FetchSessionCache::new(10, 0);
        let image = metadata();
        let full = [(key(0), fetch(5)), (key(1), fetch(7))];
        let begun = cache
            .begin(request(0, INITIAL_EPOCH, &full, &[], &image), 0)
            .unwrap();
        assert_eq!(begun.context, FetchContext::Full);
        assert_eq!(begun.partitions.len(), 2);
        let id = cache.create(
            false,
            false,
            begun
                .partitions
                .iter()
                .map(|(k, f)| opened(k.partition, f.fetch_offset, 10))
                .collect(),
            begun.listener.unwrap(),
            &image,
            0,
        );
        assert_ne!(id, INVALID_SESSION_ID);

        // Epoch 1: partition 1 moves on, partition 2 joins, 0 is unchanged.
        let changes = [(key(1), fetch(9)), (key(2), fetch(0))];
        let begun = cache
            .begin(request(id, 1, &changes, &[], &image), 1)
            .unwrap();
        assert_eq!(
            begun.context,
            FetchContext::Incremental {
                session_id: id,
                every_partition: true
            }
        );
        let offsets: Vec<_> = begun
            .partitions
            .iter()
            .map(|(k, f)| (k.partition, f.fetch_offset))
            .collect();
        assert_eq!(offsets, [(0, 5), (1, 9), (2, 0)]);
        let results = [(key(0), quiet(10)), (key(1), quiet(12)), (key(2), quiet(0))];
        // 0: same as sent; 1: high watermark moved; 2: never sent.
        assert_eq!(cache.finish_incremental(id, &results), [false, true, true]);

        // Epoch 2: forget 0; records on 1 always go out.
        let begun = cache
            .begin(request(id, 2, &[], &[key(0)], &image), 2)
            .unwrap();
        assert_eq!(numbers(&begun.partitions), [1, 2]);
        let results = [
            (
                key(1),
                PartitionResult {
                    sent: sent(12),
                    has_news: true,
                    has_records: true,
                    pending: true,
                },
            ),
            (key(2), quiet(0)),
        ];
        assert_eq!(cache.finish_incremental(id, &results), [true, false]);
        // Partition 1 returned records: it goes to the back of the line.
        let begun = cache.begin(request(id, 3, &[], &[], &image), 3).unwrap();
        assert_eq!(numbers(&begun.partitions), [2, 1]);
    }

    #[test]
    fn between_full_passes_a_fetch_looks_only_at_what_may_have_changed() {
        let cache = FetchSessionCache::new(10, 1_000);
        let image = metadata();
        let full: Vec<_> = (0..5).map(|p| (key(p), fetch(0))).collect();
        let begun = cache
            .begin(request(0, INITIAL_EPOCH, &full, &[], &image), 0)
            .unwrap();
        let listener = begun.listener.unwrap();
        // What the partitions do when the handler registers the listener.
        let partitions: Vec<Listeners> = (0..5).map(|_| Listeners::default()).collect();
        for p in &partitions {
            p.add(&listener);
        }
        // Partition 2 was cut short by the full fetch's byte limit.
        let sent_all = begun.partitions.iter().map(|(k, _)| OpenedPartition {
            pending: k.partition == 2,
            ..opened(k.partition, 0, 0)
        });
        let id = cache.create(false, false, sent_all.collect(), listener, &image, 0);

        let begun = cache.begin(request(id, 1, &[], &[], &image), 5).unwrap();
        assert_eq!(
            numbers(&begun.partitions),
            [2],
            "left pending by the full fetch"
        );
        cache.finish_incremental(id, &[(key(2), quiet(0))]);

        // Nothing named, nothing changed: nothing to look at.
        let begun = cache.begin(request(id, 2, &[], &[], &image), 10).unwrap();
        assert_eq!(
            begun.context,
            FetchContext::Incremental {
                session_id: id,
                every_partition: false
            }
        );
        assert!(begun.partitions.is_empty());

        // Named in the request, changed (told twice), left pending.
        let tp = |p| TopicPartition::new("t", p);
        partitions[3].tell(&tp(3), Uuid::nil(), Change::HighWatermark);
        partitions[3].tell(&tp(3), Uuid::nil(), Change::Data);
        let begun = cache
            .begin(request(id, 3, &[(key(1), fetch(4))], &[], &image), 20)
            .unwrap();
        assert_eq!(numbers(&begun.partitions), [1, 3]);
        let pending = PartitionResult {
            pending: true,
            ..quiet(0)
        };
        cache.finish_incremental(id, &[(key(1), pending), (key(3), quiet(0))]);
        // A change while the fetch waits comes in through changed_since.
        partitions[4].tell(&tp(4), Uuid::nil(), Change::Data);
        let looked_at = HashSet::from([key(1), key(3)]);
        assert_eq!(numbers(&cache.changed_since(id, &looked_at)), [4]);
        assert!(cache.changed_since(id, &looked_at).is_empty(), "taken");

        let begun = cache.begin(request(id, 4, &[], &[], &image), 30).unwrap();
        assert_eq!(numbers(&begun.partitions), [1], "still pending");

        // New metadata, or the interval passing: every partition.
        let new_image = metadata();
        let begun = cache
            .begin(request(id, 5, &[], &[], &new_image), 40)
            .unwrap();
        assert_eq!(begun.partitions.len(), 5);
        let begun = cache
            .begin(request(id, 6, &[], &[], &new_image), 50)
            .unwrap();
        assert!(begun.partitions.is_empty());
        let begun = cache
            .begin(request(id, 7, &[], &[], &new_image), 1_040)
            .unwrap();
        assert_eq!(begun.partitions.len(), 5);
    }

    #[test]
    fn a_wrong_epoch_an_unknown_id_and_a_final_epoch_are_handled_as_kafka_does() {
        let cache = FetchSessionCache::new(10, 0);
        let image = metadata();
        let id = open(&cache, 2, false, 0);
        assert_eq!(
            cache
                .begin(request(id, 5, &[], &[], &image), 0)
                .err()
                .unwrap(),
            ResponseError::InvalidFetchSessionEpoch
        );
        assert_eq!(
            cache
                .begin(request(id ^ 1, 1, &[], &[], &image), 0)
                .err()
                .unwrap(),
            ResponseError::FetchSessionIdNotFound
        );
        let mut by_id = request(id, 1, &[], &[], &image);
        by_id.uses_topic_ids = true;
        assert_eq!(
            cache.begin(by_id, 0).err().unwrap(),
            ResponseError::FetchSessionTopicIdError
        );
        // A wrong epoch does not consume the session's epoch.
        assert!(cache.begin(request(id, 1, &[], &[], &image), 0).is_ok());
        // The final epoch closes the session and fetches without one.
        let begun = cache
            .begin(request(id, FINAL_EPOCH, &[], &[], &image), 0)
            .unwrap();
        assert_eq!(begun.context, FetchContext::Sessionless);
        assert!(begun.listener.is_none());
        assert_eq!(cache.stats().0, 0);
        assert_eq!(
            cache
                .begin(request(id, 2, &[], &[], &image), 0)
                .err()
                .unwrap(),
            ResponseError::FetchSessionIdNotFound
        );
    }

    #[test]
    fn a_full_cache_evicts_stale_then_smaller_old_sessions_and_followers_evict_consumers() {
        let cache = FetchSessionCache::new(2, 0);
        let image = metadata();
        let begin = |id, epoch, now| cache.begin(request(id, epoch, &[], &[], &image), now);
        let small = open(&cache, 1, false, 0);
        let large = open(&cache, 5, false, 0);
        // Young sessions are safe from a consumer's new session.
        assert_eq!(open(&cache, 10, false, 1_000), INVALID_SESSION_ID);
        // A follower's new session evicts the smallest consumer session.
        let follower = open(&cache, 3, true, 2_000);
        assert_ne!(follower, INVALID_SESSION_ID);
        assert_eq!(cache.stats(), (2, 1));
        assert!(begin(small, 1, 2_000).is_err());
        // Once old, a session loses to a bigger one; the follower's, still
        // young, is safe even from a bigger consumer session.
        assert!(begin(large, 1, EVICTION_MS).is_ok());
        let bigger = open(&cache, 6, false, EVICTION_MS + 1);
        assert_ne!(bigger, INVALID_SESSION_ID);
        assert!(begin(large, 2, EVICTION_MS + 1).is_err());
        assert!(begin(follower, 1, EVICTION_MS + 1).is_ok());
        // A session unused for longer than the eviction time goes first,
        // whatever its size.
        let later = 3 * EVICTION_MS;
        assert_ne!(open(&cache, 1, false, later), INVALID_SESSION_ID);
        assert_eq!(cache.stats(), (2, 3));
    }

    #[test]
    fn no_slots_means_no_sessions() {
        let cache = FetchSessionCache::new(0, 0);
        let image = metadata();
        let begun = cache
            .begin(request(0, INITIAL_EPOCH, &[], &[], &image), 0)
            .unwrap();
        assert_eq!(begun.context, FetchContext::Sessionless);
        assert_eq!(open(&cache, 1, true, 0), INVALID_SESSION_ID);
    }
}
