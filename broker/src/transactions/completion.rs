//! Completing a prepared transaction: its COMMIT or ABORT marker goes to
//! every partition in it, retried (with backoff) until each leader has
//! written it, and then the Complete state is written. A completion
//! belongs to one coordinator epoch: when this broker stops coordinating
//! the id at that epoch it stops, and the next coordinator, which replays
//! the Prepare state, starts over (markers are idempotent for a
//! partition: a second one of the same transaction closes nothing new).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::markers::MarkerOutcome;
use super::metadata::{TxnMetadata, TxnState};
use super::{Decision, TransactionCoordinator};
use crate::error::ResponseError;
use crate::util::now_ms;

const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl TransactionCoordinator {
    pub(super) fn start_completion(
        self: &Arc<Self>,
        txn_id: String,
        prepared: TxnMetadata,
        coordinator_epoch: i32,
    ) {
        let this = self.clone();
        tokio::spawn(async move { this.complete(txn_id, prepared, coordinator_epoch).await });
    }

    async fn complete(self: Arc<Self>, txn_id: String, prepared: TxnMetadata, epoch: i32) {
        self.run_completion(txn_id, prepared, epoch).await;
        self.completions.notify_waiters();
    }

    /// Waits (at most `limit`) until `txn_id` is no longer prepared: its
    /// markers are written and its Complete state too.
    pub(super) async fn wait_for_completion(&self, txn_id: &str, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let woken = self.completions.notified();
            tokio::pin!(woken);
            // Registered before the check, so a completion in between wakes it.
            woken.as_mut().enable();
            let prepared = self.state.lock().txns.get(txn_id).is_some_and(|m| {
                matches!(m.state(), TxnState::PrepareCommit | TxnState::PrepareAbort)
            });
            if !prepared {
                return;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return;
            }
        }
    }

    async fn run_completion(self: &Arc<Self>, txn_id: String, prepared: TxnMetadata, epoch: i32) {
        let started = Instant::now();
        let v = &prepared.value;
        let commit = prepared.state() == TxnState::PrepareCommit;
        let mut remaining = v.partitions.clone();
        let mut backoff = FIRST_BACKOFF;
        while !remaining.is_empty() {
            if !self.still_prepared(&txn_id, &prepared, epoch) {
                return;
            }
            let outcomes = self
                .markers
                .write(v.producer_id, v.producer_epoch, commit, epoch, &remaining)
                .await;
            for (tp, outcome) in outcomes {
                match outcome {
                    MarkerOutcome::Done => {
                        remaining.remove(&tp);
                    }
                    MarkerOutcome::Retry => {}
                    MarkerOutcome::Fenced => {
                        tracing::warn!(
                            transactional_id = txn_id,
                            topic = tp.0,
                            partition = tp.1,
                            "a newer producer or coordinator epoch is on the partition; leaving the transaction to it"
                        );
                        return;
                    }
                }
            }
            // DescribeTransactions lists only the partitions still waiting.
            if let Some(m) = self.state.lock().txns.get_mut(&txn_id) {
                m.value.partitions.retain(|tp| remaining.contains(tp));
            }
            if !remaining.is_empty() {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        let mut backoff = FIRST_BACKOFF;
        loop {
            let written = self
                .transition(&txn_id, |current| match current {
                    Some(m) if same_transaction(m, &prepared) => {
                        Ok(Decision::Write(m.complete(now_ms()), ()))
                    }
                    // Someone else finished it (a replayed coordinator).
                    _ => Ok(Decision::Answer(())),
                })
                .await;
            match written {
                Ok(()) => break,
                Err(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable)
                    if !self.still_prepared(&txn_id, &prepared, epoch) =>
                {
                    return;
                }
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.metrics
            .record_transaction_completed(commit, started.elapsed().as_secs_f64());
        tracing::debug!(
            transactional_id = txn_id,
            commit,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "transaction completed"
        );
    }

    /// This broker still coordinates the id at `epoch`, and the id is
    /// still in the prepared state the completion began from.
    fn still_prepared(&self, txn_id: &str, prepared: &TxnMetadata, epoch: i32) -> bool {
        let state = self.state.lock();
        let led = state
            .route(txn_id)
            .ok()
            .and_then(|i| state.partitions.get(&i))
            .is_some_and(|p| p.coordinator_epoch == epoch);
        led && state
            .txns
            .get(txn_id)
            .is_some_and(|m| same_transaction(m, prepared))
    }
}

fn same_transaction(current: &TxnMetadata, prepared: &TxnMetadata) -> bool {
    current.state() == prepared.state()
        && current.value.producer_id == prepared.value.producer_id
        && current.value.producer_epoch == prepared.value.producer_epoch
}
