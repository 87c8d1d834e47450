//! The coordinator's side of the transaction APIs, in plain values (the
//! wire formats are in `handlers::transactions`): each looks up the id,
//! applies a transition from `metadata` and writes the result.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use super::metadata::{EndOutcome, InitOutcome, TxnMetadata, TxnState, ROTATING_END_EPOCH};
use super::{Decision, TransactionCoordinator};
use crate::error::{ApiError, ResponseError};
use crate::util::now_ms;

/// How long EndTxn waits for the markers before answering anyway.
const END_TXN_COMPLETION_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// One transactional id as DescribeTransactions shows it.
#[derive(Debug, Clone)]
pub struct DescribedTxn {
    pub transactional_id: String,
    pub state: TxnState,
    pub timeout_ms: i32,
    pub start_ms: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: BTreeSet<(String, i32)>,
}

/// One transactional id as ListTransactions shows it.
#[derive(Debug, Clone)]
pub struct ListedTxn {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: TxnState,
    /// When the open transaction started, -1 if none is open.
    pub start_ms: i64,
}

/// ListTransactions' filters (KIP-664, KIP-994); empty means any.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub states: Vec<TxnState>,
    pub producer_ids: Vec<i64>,
    /// Only transactions open longer than this (ms); negative means any.
    pub min_duration_ms: i64,
    pub id_pattern: Option<regex::Regex>,
}

impl TransactionCoordinator {
    /// InitProducerId with a transactional id: the producer id and the
    /// epoch the new instance uses. `allocate` hands out a fresh producer
    /// id (only called when the id is new or its epoch is exhausted).
    pub async fn init_producer_id<F, Fut>(
        self: &Arc<Self>,
        txn_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        allocate: F,
    ) -> Result<(i64, i16), ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<i64, ApiError>>,
    {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(ApiError::new(
                ResponseError::InvalidTransactionTimeout,
                format!(
                    "transaction.timeout.ms {timeout_ms} is not in (0, {}] (transaction.max.timeout.ms)",
                    self.config.max_timeout_ms
                ),
            ));
        }
        let needs_id = {
            let state = self.state.lock();
            state.route(txn_id).map_err(plain)?;
            state
                .txns
                .get(txn_id)
                .is_none_or(|m| m.needs_new_producer_id(expected))
        };
        let new_id = if needs_id {
            Some(allocate().await?)
        } else {
            None
        };
        let now = now_ms();
        let answer = self
            .transition(txn_id, |current| {
                let fresh;
                let current = match current {
                    Some(m) => m,
                    None => {
                        let id = new_id.ok_or(ResponseError::ConcurrentTransactions)?;
                        fresh = TxnMetadata::new(id, timeout_ms, now);
                        &fresh
                    }
                };
                let rotate = current.needs_new_producer_id(expected);
                if rotate && new_id.is_none() {
                    // The state changed since the look: the client retries.
                    return Err(ResponseError::ConcurrentTransactions);
                }
                let id = if rotate { new_id } else { None };
                match current.init_producer_id(timeout_ms, expected, id, now)? {
                    InitOutcome::Ready(next) => {
                        let answer = Ok((next.value.producer_id, next.value.producer_epoch));
                        Ok(Decision::Write(next, answer))
                    }
                    InitOutcome::AbortFirst(aborting) => Ok(Decision::Write(
                        aborting,
                        Err(ResponseError::ConcurrentTransactions),
                    )),
                }
            })
            .await
            .map_err(plain)?;
        answer.map_err(plain)
    }

    /// AddPartitionsToTxn (up to v3) and AddOffsetsToTxn.
    pub async fn add_partitions(
        self: &Arc<Self>,
        txn_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: BTreeSet<(String, i32)>,
    ) -> Result<(), ResponseError> {
        self.transition(txn_id, |current| {
            let current = current.ok_or(ResponseError::InvalidProducerIdMapping)?;
            match current.add_partitions(producer_id, epoch, &partitions, now_ms())? {
                Some(next) => Ok(Decision::Write(next, ())),
                None => Ok(Decision::Answer(())),
            }
        })
        .await
    }

    /// AddPartitionsToTxn v4+ with `verify_only`: for each partition,
    /// whether it is part of the producer's open transaction.
    pub fn verify_partitions(
        &self,
        txn_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        let state = self.state.lock();
        state.route(txn_id)?;
        let current = state
            .txns
            .get(txn_id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        Ok(partitions
            .iter()
            .map(|tp| current.verify_partition(producer_id, epoch, tp))
            .collect())
    }

    /// EndTxn: the id and epoch the client continues with. The answer goes
    /// out once the Prepare state is written; the markers follow.
    pub async fn end_txn<F, Fut>(
        self: &Arc<Self>,
        txn_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        version2: bool,
        allocate: F,
    ) -> Result<(i64, i16), ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<i64, ApiError>>,
    {
        let needs_id = version2 && {
            let state = self.state.lock();
            state.route(txn_id).map_err(plain)?;
            state
                .txns
                .get(txn_id)
                .is_some_and(|m| m.value.producer_epoch >= ROTATING_END_EPOCH)
        };
        let new_id = if needs_id {
            Some(allocate().await?)
        } else {
            None
        };
        let answer = self
            .transition(txn_id, |current| {
                let current = current.ok_or(ResponseError::InvalidProducerIdMapping)?;
                let rotate = version2 && current.value.producer_epoch >= ROTATING_END_EPOCH;
                if rotate && new_id.is_none() {
                    return Err(ResponseError::ConcurrentTransactions);
                }
                match current.end_txn(producer_id, epoch, commit, version2, new_id, now_ms())? {
                    EndOutcome::Prepare(next) => {
                        let answer = next.epoch_for_client();
                        Ok(Decision::Write(next, answer))
                    }
                    EndOutcome::AlreadyDone => Ok(Decision::Answer(current.epoch_for_client())),
                }
            })
            .await
            .map_err(plain)?;
        // Answered once the markers are written, not just the Prepare
        // state: a client's next AddPartitionsToTxn would otherwise meet
        // CONCURRENT_TRANSACTIONS and back off for its retry.backoff.ms
        // (100 ms in librdkafka) per transaction. A completion that takes
        // longer (a leader down) goes on after the answer.
        self.wait_for_completion(txn_id, END_TXN_COMPLETION_WAIT)
            .await;
        Ok(answer)
    }

    /// DescribeTransactions of one id.
    pub fn describe(&self, txn_id: &str) -> Result<DescribedTxn, ResponseError> {
        let state = self.state.lock();
        state.route(txn_id)?;
        let m = state
            .txns
            .get(txn_id)
            .ok_or(ResponseError::TransactionalIdNotFound)?;
        Ok(DescribedTxn {
            transactional_id: txn_id.to_string(),
            state: m.state(),
            timeout_ms: m.value.timeout_ms,
            start_ms: m.value.start_ms,
            producer_id: m.value.producer_id,
            producer_epoch: m.value.producer_epoch,
            partitions: m.value.partitions.clone(),
        })
    }

    /// ListTransactions: the ids this broker coordinates that pass `filter`.
    pub fn list(&self, filter: &ListFilter) -> Vec<ListedTxn> {
        let now = now_ms();
        let state = self.state.lock();
        let mut listed: Vec<ListedTxn> = state
            .txns
            .iter()
            .filter(|(id, m)| {
                (filter.states.is_empty() || filter.states.contains(&m.state()))
                    && (filter.producer_ids.is_empty()
                        || filter.producer_ids.contains(&m.value.producer_id))
                    && (filter.min_duration_ms < 0
                        || (m.value.start_ms >= 0
                            && now - m.value.start_ms > filter.min_duration_ms))
                    && filter.id_pattern.as_ref().is_none_or(|p| p.is_match(id))
            })
            .map(|(id, m)| ListedTxn {
                transactional_id: id.clone(),
                producer_id: m.value.producer_id,
                state: m.state(),
                start_ms: m.value.start_ms,
            })
            .collect();
        listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        listed
    }
}

fn plain(kind: ResponseError) -> ApiError {
    let message = match kind {
        ResponseError::NotCoordinator => {
            "this broker is not the coordinator of the transactional id"
        }
        ResponseError::CoordinatorLoadInProgress => {
            "the coordinator is loading the transaction state"
        }
        ResponseError::ConcurrentTransactions => {
            "another operation on this transaction is in progress; retry"
        }
        ResponseError::ProducerFenced => {
            "a newer producer with the same transactional.id fenced this one"
        }
        ResponseError::InvalidProducerIdMapping => {
            "the producer id is not the one assigned to this transactional id"
        }
        ResponseError::InvalidTxnState => "the transaction is not in a state that allows this",
        _ => "",
    };
    ApiError::new(kind, message)
}
