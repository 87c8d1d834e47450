//! Follower fetchers: one task per leader broker fetches every partition
//! this broker follows from it, as Kafka's replica fetcher threads do.
//!
//! A partition starts (or restarts, after a leader change) in the
//! truncating state: the fetcher asks the leader where this replica's
//! latest leader epoch ended (OffsetsForLeaderEpoch) and cuts the local log
//! there, repeating until the epochs agree. Then it fetches from its log end
//! with its replica id, appends what comes back unchanged, and takes the
//! leader's high watermark (capped by its own log end) and log start
//! (capped by its high watermark; records the leader deleted go here too,
//! and the log-start checkpoint is written before the next round).
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
//!
//! One file per job: what is followed (`state`), the per-leader task
//! (`task`), the truncation step (`truncation`), building a fetch
//! (`request`) and appending its answer (`round`).

mod request;
mod round;
mod state;
mod task;
mod truncation;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::settings::FollowerFetchSettings as FetchSettings;
use crate::disk::LogDirHealth;
use crate::log::TopicPartition;
use crate::metadata::MetadataQuorum;
use crate::ops::metrics::Metrics;
use crate::partition::{LogManager, Partition};
use state::{FetchState, Shared};

struct Fetcher {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// What every fetcher task reads: who we are, where leaders are, how to fetch.
struct Context {
    node_id: i32,
    quorum: Arc<MetadataQuorum>,
    settings: FetchSettings,
    metrics: Arc<Metrics>,
    health: Arc<LogDirHealth>,
    /// Checkpoints a log start taken from the leader.
    logs: Arc<LogManager>,
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
        logs: Arc<LogManager>,
    ) -> Self {
        FetcherManager {
            context: Arc::new(Context {
                node_id,
                quorum,
                settings,
                metrics,
                health: logs.health().clone(),
                logs,
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
            let task = tokio::spawn(task::run(self.context.clone(), leader, shared.clone()));
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
