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

use std::collections::HashMap;

use indexmap::IndexMap;
use parking_lot::Mutex;
use uuid::Uuid;

use crate::error::ResponseError;

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
}

/// How one fetch request is served.
#[derive(Debug, PartialEq, Eq)]
pub enum FetchContext {
    /// No session: answer every partition, session id 0.
    Sessionless,
    /// Answer every partition and open a session for them if there is room.
    Full,
    /// Answer the session's partitions that changed.
    Incremental { session_id: i32 },
}

struct CachedPartition {
    fetch: PartitionFetch,
    sent: Option<SentState>,
}

struct Session {
    /// The epoch the next request must carry.
    epoch: i32,
    /// Sessions of followers may evict consumers' young sessions.
    privileged: bool,
    uses_topic_ids: bool,
    created_ms: i64,
    last_used_ms: i64,
    partitions: IndexMap<SessionPartition, CachedPartition>,
}

pub struct FetchSessionCache {
    max_slots: usize,
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
    /// Partitions added or updated (all of them, for a full fetch).
    pub partitions: &'a [(SessionPartition, PartitionFetch)],
    pub forgotten: &'a [SessionPartition],
}

impl FetchSessionCache {
    pub fn new(max_slots: usize) -> FetchSessionCache {
        FetchSessionCache {
            max_slots,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Number of open sessions and evictions so far (for the metrics).
    pub fn stats(&self) -> (usize, u64) {
        let inner = self.inner.lock();
        (inner.sessions.len(), inner.evictions)
    }

    /// Decides how a request is served and returns the partitions to
    /// fetch, in response order: the request's own for a full fetch, the
    /// session's (updated by the request) for an incremental one.
    pub fn begin(
        &self,
        request: SessionRequest<'_>,
        now_ms: i64,
    ) -> Result<(FetchContext, Vec<(SessionPartition, PartitionFetch)>), ResponseError> {
        let mut inner = self.inner.lock();
        if request.epoch == FINAL_EPOCH || request.epoch == INITIAL_EPOCH {
            if request.session_id != INVALID_SESSION_ID {
                inner.sessions.remove(&request.session_id);
            }
            let context = if request.epoch == INITIAL_EPOCH && self.max_slots > 0 {
                FetchContext::Full
            } else {
                FetchContext::Sessionless
            };
            return Ok((context, request.partitions.to_vec()));
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
        let partitions = session
            .partitions
            .iter()
            .map(|(k, c)| (k.clone(), c.fetch))
            .collect();
        Ok((
            FetchContext::Incremental {
                session_id: request.session_id,
            },
            partitions,
        ))
    }

    /// After a full fetch: opens a session holding `partitions` with what
    /// was sent for them; returns its id, or 0 when the cache has no room.
    pub fn create(
        &self,
        privileged: bool,
        uses_topic_ids: bool,
        partitions: Vec<(SessionPartition, PartitionFetch, SentState)>,
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
        let partitions = partitions
            .into_iter()
            .map(|(key, fetch, sent)| {
                let sent = Some(sent);
                (key, CachedPartition { fetch, sent })
            })
            .collect();
        inner.sessions.insert(
            id,
            Session {
                epoch: next_epoch(INITIAL_EPOCH),
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
        }
    }

    fn request<'a>(
        id: i32,
        epoch: i32,
        partitions: &'a [(SessionPartition, PartitionFetch)],
        forgotten: &'a [SessionPartition],
    ) -> SessionRequest<'a> {
        SessionRequest {
            session_id: id,
            epoch,
            uses_topic_ids: false,
            partitions,
            forgotten,
        }
    }

    /// A session of `n` partitions, created at `now`.
    fn open(cache: &FetchSessionCache, n: i32, privileged: bool, now: i64) -> i32 {
        let partitions = (0..n).map(|p| (key(p), fetch(0), sent(0))).collect();
        cache.create(privileged, false, partitions, now)
    }

    #[test]
    fn incremental_fetches_add_update_and_forget_partitions_and_send_only_changes() {
        let cache = FetchSessionCache::new(10);
        let full = [(key(0), fetch(5)), (key(1), fetch(7))];
        let (context, parts) = cache
            .begin(request(0, INITIAL_EPOCH, &full, &[]), 0)
            .unwrap();
        assert_eq!(context, FetchContext::Full);
        assert_eq!(parts.len(), 2);
        let id = cache.create(
            false,
            false,
            parts.into_iter().map(|(k, f)| (k, f, sent(10))).collect(),
            0,
        );
        assert_ne!(id, INVALID_SESSION_ID);

        // Epoch 1: partition 1 moves on, partition 2 joins, 0 is unchanged.
        let changes = [(key(1), fetch(9)), (key(2), fetch(0))];
        let (context, parts) = cache.begin(request(id, 1, &changes, &[]), 1).unwrap();
        assert_eq!(context, FetchContext::Incremental { session_id: id });
        let offsets: Vec<_> = parts
            .iter()
            .map(|(k, f)| (k.partition, f.fetch_offset))
            .collect();
        assert_eq!(offsets, [(0, 5), (1, 9), (2, 0)]);
        let results = [(key(0), quiet(10)), (key(1), quiet(12)), (key(2), quiet(0))];
        // 0: same as sent; 1: high watermark moved; 2: never sent.
        assert_eq!(cache.finish_incremental(id, &results), [false, true, true]);

        // Epoch 2: forget 0; records on 1 always go out.
        let (_, parts) = cache.begin(request(id, 2, &[], &[key(0)]), 2).unwrap();
        assert_eq!(
            parts.iter().map(|(k, _)| k.partition).collect::<Vec<_>>(),
            [1, 2]
        );
        let results = [
            (
                key(1),
                PartitionResult {
                    sent: sent(12),
                    has_news: true,
                    has_records: true,
                },
            ),
            (key(2), quiet(0)),
        ];
        assert_eq!(cache.finish_incremental(id, &results), [true, false]);
        // Partition 1 returned records: it goes to the back of the line.
        let (_, parts) = cache.begin(request(id, 3, &[], &[]), 3).unwrap();
        assert_eq!(
            parts.iter().map(|(k, _)| k.partition).collect::<Vec<_>>(),
            [2, 1]
        );
    }

    #[test]
    fn a_wrong_epoch_an_unknown_id_and_a_final_epoch_are_handled_as_kafka_does() {
        let cache = FetchSessionCache::new(10);
        let id = open(&cache, 2, false, 0);
        assert_eq!(
            cache.begin(request(id, 5, &[], &[]), 0).unwrap_err(),
            ResponseError::InvalidFetchSessionEpoch
        );
        assert_eq!(
            cache.begin(request(id ^ 1, 1, &[], &[]), 0).unwrap_err(),
            ResponseError::FetchSessionIdNotFound
        );
        let mut by_id = request(id, 1, &[], &[]);
        by_id.uses_topic_ids = true;
        assert_eq!(
            cache.begin(by_id, 0).unwrap_err(),
            ResponseError::FetchSessionTopicIdError
        );
        // A wrong epoch does not consume the session's epoch.
        assert!(cache.begin(request(id, 1, &[], &[]), 0).is_ok());
        // The final epoch closes the session and fetches without one.
        let (context, _) = cache.begin(request(id, FINAL_EPOCH, &[], &[]), 0).unwrap();
        assert_eq!(context, FetchContext::Sessionless);
        assert_eq!(cache.stats().0, 0);
        assert_eq!(
            cache.begin(request(id, 2, &[], &[]), 0).unwrap_err(),
            ResponseError::FetchSessionIdNotFound
        );
    }

    #[test]
    fn a_full_cache_evicts_stale_then_smaller_old_sessions_and_followers_evict_consumers() {
        let cache = FetchSessionCache::new(2);
        let small = open(&cache, 1, false, 0);
        let large = open(&cache, 5, false, 0);
        // Young sessions are safe from a consumer's new session.
        assert_eq!(open(&cache, 10, false, 1_000), INVALID_SESSION_ID);
        // A follower's new session evicts the smallest consumer session.
        let follower = open(&cache, 3, true, 2_000);
        assert_ne!(follower, INVALID_SESSION_ID);
        assert_eq!(cache.stats(), (2, 1));
        assert!(cache.begin(request(small, 1, &[], &[]), 2_000).is_err());
        // Once old, a session loses to a bigger one; the follower's, still
        // young, is safe even from a bigger consumer session.
        assert!(cache
            .begin(request(large, 1, &[], &[]), EVICTION_MS)
            .is_ok());
        let bigger = open(&cache, 6, false, EVICTION_MS + 1);
        assert_ne!(bigger, INVALID_SESSION_ID);
        assert!(cache
            .begin(request(large, 2, &[], &[]), EVICTION_MS + 1)
            .is_err());
        assert!(cache
            .begin(request(follower, 1, &[], &[]), EVICTION_MS + 1)
            .is_ok());
        // A session unused for longer than the eviction time goes first,
        // whatever its size.
        let later = 3 * EVICTION_MS;
        assert_ne!(open(&cache, 1, false, later), INVALID_SESSION_ID);
        assert_eq!(cache.stats(), (2, 3));
    }

    #[test]
    fn no_slots_means_no_sessions() {
        let cache = FetchSessionCache::new(0);
        let (context, _) = cache.begin(request(0, INITIAL_EPOCH, &[], &[]), 0).unwrap();
        assert_eq!(context, FetchContext::Sessionless);
        assert_eq!(open(&cache, 1, true, 0), INVALID_SESSION_ID);
    }
}
