//! The transaction coordinator: the transactional ids whose
//! `__transaction_state` partition this broker leads, their state, and the
//! markers that end their transactions.
//!
//! A transactional id belongs to partition `abs(javaHashCode(id)) % 50`
//! of `__transaction_state`; its leader is the id's coordinator
//! (FindCoordinator key type 1). Every change of state is appended to that
//! partition and applied in memory only once the ISR has it (`write`), so
//! what a client was told is what a new coordinator replays (`replay`).
//! While a write for an id is in flight, other requests for it get
//! CONCURRENT_TRANSACTIONS, as in Kafka.
//!
//! The transitions themselves are pure (`metadata`); `requests` answers
//! the client APIs with them; `completion` writes the COMMIT or ABORT
//! markers to every partition of a prepared transaction (through
//! `markers`, on whichever broker leads it) and then the Complete state,
//! retrying until it is done or this broker stops coordinating the id;
//! `upkeep` aborts transactions past their timeout and forgets expired ids;
//! `verification` is the partition leader's question to a coordinator
//! before a producer's first transactional batch (KIP-890 part 1).

mod completion;
pub mod log_format;
mod markers;
pub mod metadata;
mod replay;
mod requests;
mod upkeep;
mod verification;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use parking_lot::Mutex;

use crate::coordinator::offsets_format::partition_for;
use crate::error::ResponseError;
use crate::metadata::MetadataQuorum;
use crate::ops::metrics::Metrics;
use crate::partition::{Append, AppendFailure, LogManager, Partition};
use crate::util::now_ms;
use markers::MarkerSender;
use metadata::TxnMetadata;

pub use requests::{DescribedTxn, ListFilter, ListedTxn};
pub use verification::VerificationFailure;

/// The internal topic holding transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// How long a write to `__transaction_state` may wait for the ISR.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`.
    pub id_expiration_ms: i64,
}

/// A `__transaction_state` partition this broker leads.
struct TxnPartition {
    partition: Arc<Partition>,
    /// Its leader epoch: the coordinator epoch markers carry, so a
    /// partition can refuse markers of a coordinator that was replaced.
    coordinator_epoch: i32,
}

#[derive(Default)]
struct State {
    partitions: HashMap<i32, TxnPartition>,
    /// Partitions being replayed: their ids get COORDINATOR_LOAD_IN_PROGRESS.
    loading: HashSet<i32>,
    txns: HashMap<String, TxnMetadata>,
    /// Ids with a write in flight.
    pending: HashSet<String>,
    /// Partitions of `__transaction_state`; 0 until the topic exists.
    num_partitions: i32,
}

impl State {
    /// The state partition of `txn_id` if this broker coordinates it.
    fn route(&self, txn_id: &str) -> Result<i32, ResponseError> {
        if self.num_partitions <= 0 {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let partition = partition_for(txn_id, self.num_partitions);
        if self.loading.contains(&partition) {
            Err(ResponseError::CoordinatorLoadInProgress)
        } else if self.partitions.contains_key(&partition) {
            Ok(partition)
        } else {
            Err(ResponseError::NotCoordinator)
        }
    }
}

pub struct TransactionCoordinator {
    /// Held while `__transaction_state` is created, so concurrent
    /// FindCoordinator requests create it once.
    pub creating_topic: tokio::sync::Mutex<()>,
    config: TxnConfig,
    logs: Arc<LogManager>,
    node_id: i32,
    state: Mutex<State>,
    markers: MarkerSender,
    /// Connections for verifying with other coordinators.
    peers: verification::PeerPool,
    metrics: Arc<Metrics>,
    /// Woken whenever a completion ends (EndTxn waits on it).
    completions: tokio::sync::Notify,
}

/// What a write decided: the new state of the id, and what the caller
/// gets back.
enum Decision<T> {
    Write(TxnMetadata, T),
    Answer(T),
}

impl TransactionCoordinator {
    pub fn new(
        config: TxnConfig,
        logs: Arc<LogManager>,
        quorum: Arc<MetadataQuorum>,
        metrics: Arc<Metrics>,
        node_id: i32,
    ) -> Arc<Self> {
        Arc::new(TransactionCoordinator {
            creating_topic: tokio::sync::Mutex::new(()),
            config,
            logs,
            node_id,
            state: Mutex::new(State::default()),
            markers: MarkerSender::new(quorum.clone(), node_id),
            peers: verification::PeerPool::new(quorum, node_id),
            metrics,
            completions: tokio::sync::Notify::new(),
        })
    }

    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    /// Transactions coordinated here that are open or being completed.
    pub fn open_count(&self) -> usize {
        self.state
            .lock()
            .txns
            .values()
            .filter(|m| !m.state().is_idle())
            .count()
    }

    /// Whether this broker coordinates `txn_id` right now.
    pub fn check_coordinator(&self, txn_id: &str) -> Result<(), ResponseError> {
        self.state.lock().route(txn_id).map(|_| ())
    }

    /// The one way state changes: `decide` sees the id's current state
    /// (`None` for an unknown id) and either answers at once or names the
    /// new state, which is appended to the id's partition; once the ISR
    /// has it, it becomes the state in memory and the caller gets its
    /// answer. A prepared transaction starts its completion then.
    async fn transition<T>(
        self: &Arc<Self>,
        txn_id: &str,
        decide: impl FnOnce(Option<&TxnMetadata>) -> Result<Decision<T>, ResponseError>,
    ) -> Result<T, ResponseError> {
        let (wait, next, answer, coordinator_epoch) = {
            let mut state = self.state.lock();
            let index = state.route(txn_id)?;
            if state.pending.contains(txn_id) {
                return Err(ResponseError::ConcurrentTransactions);
            }
            let (next, answer) = match decide(state.txns.get(txn_id))? {
                Decision::Answer(answer) => return Ok(answer),
                Decision::Write(next, answer) => (next, answer),
            };
            let part = state.partitions.get(&index).expect("routed");
            let record = state_batch(txn_id, Some(&next), now_ms());
            let appended = part.partition.append(Append::Coordinator {
                records: &record,
                leader_epoch: part.coordinator_epoch,
                verified: None,
            });
            let wait = match appended {
                Ok(appended) => appended
                    .replication
                    .ok_or(ResponseError::CoordinatorNotAvailable)?,
                Err(AppendFailure::NotLeader) => return Err(ResponseError::NotCoordinator),
                Err(e) => {
                    tracing::error!(partition = %part.partition.tp, error = %e, "cannot write to the transaction state topic");
                    return Err(ResponseError::CoordinatorNotAvailable);
                }
            };
            let coordinator_epoch = part.coordinator_epoch;
            state.pending.insert(txn_id.to_string());
            (wait, next, answer, coordinator_epoch)
        };
        let outcome = wait.wait(tokio::time::Instant::now() + WRITE_TIMEOUT).await;
        let mut state = self.state.lock();
        state.pending.remove(txn_id);
        let still_led = state
            .route(txn_id)
            .ok()
            .and_then(|i| state.partitions.get(&i))
            .is_some_and(|p| p.coordinator_epoch == coordinator_epoch);
        match outcome {
            // The ISR has it, even when it shrank below min.insync.replicas
            // meanwhile: the log and memory must agree, but the client is
            // told the write did not count and retries.
            Ok(()) | Err(ResponseError::NotEnoughReplicasAfterAppend) if still_led => {
                self.apply(&mut state, txn_id, next, coordinator_epoch);
                outcome
                    .map(|_| answer)
                    .map_err(|_| ResponseError::CoordinatorNotAvailable)
            }
            Ok(()) | Err(ResponseError::NotEnoughReplicasAfterAppend) => {
                Err(ResponseError::NotCoordinator)
            }
            Err(ResponseError::NotLeaderOrFollower) => Err(ResponseError::NotCoordinator),
            Err(_) => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// Makes `next` the id's state; a prepared transaction is completed
    /// from here (markers, then the Complete state).
    fn apply(
        self: &Arc<Self>,
        state: &mut State,
        txn_id: &str,
        next: TxnMetadata,
        coordinator_epoch: i32,
    ) {
        let prepared = next.state().is_prepare().then(|| next.clone());
        state.txns.insert(txn_id.to_string(), next);
        if let Some(prepared) = prepared {
            self.start_completion(txn_id.to_string(), prepared, coordinator_epoch);
        }
    }

    /// Removes an expired id by writing its tombstone.
    fn write_tombstone(&self, state: &mut State, txn_id: &str) -> Result<(), ResponseError> {
        let index = state.route(txn_id)?;
        let part = state.partitions.get(&index).expect("routed");
        let record = state_batch(txn_id, None, now_ms());
        part.partition
            .append(Append::Coordinator {
                records: &record,
                leader_epoch: part.coordinator_epoch,
                verified: None,
            })
            .map_err(|_| ResponseError::NotCoordinator)?;
        state.txns.remove(txn_id);
        Ok(())
    }
}

/// A record batch holding one state record (or a tombstone) of `txn_id`.
fn state_batch(txn_id: &str, value: Option<&TxnMetadata>, now_ms: i64) -> Vec<u8> {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms,
        key: Some(log_format::encode_key(txn_id)),
        value: value.map(|m| m.value.encode()),
        headers: IndexMap::new(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &[record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encoding an uncompressed batch cannot fail");
    buf.to_vec()
}
