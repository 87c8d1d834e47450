//! What the coordinator does by itself: abort transactions open longer
//! than their `transaction.timeout.ms` (at a bumped epoch, so the stalled
//! producer is fenced and a hanging transaction cannot hold back
//! read_committed consumers for longer than its timeout), and forget
//! transactional ids idle for `transactional.id.expiration.ms`.

use std::sync::Arc;

use super::{Decision, TransactionCoordinator};
use crate::util::now_ms;

impl TransactionCoordinator {
    /// Aborts every timed-out transaction this broker coordinates; returns
    /// how many it started to abort.
    pub async fn abort_timed_out(self: &Arc<Self>) -> usize {
        let now = now_ms();
        let timed_out: Vec<String> = {
            let state = self.state.lock();
            state
                .txns
                .iter()
                .filter(|(id, m)| m.timed_out(now) && !state.pending.contains(*id))
                .map(|(id, _)| id.clone())
                .collect()
        };
        let mut aborted = 0;
        for txn_id in timed_out {
            let result = self
                .transition(&txn_id, |current| match current {
                    Some(m) if m.timed_out(now_ms()) => {
                        Ok(Decision::Write(m.fence_and_abort(now_ms()), true))
                    }
                    _ => Ok(Decision::Answer(false)),
                })
                .await;
            match result {
                Ok(true) => {
                    tracing::info!(
                        transactional_id = txn_id,
                        "aborting a transaction open longer than its timeout"
                    );
                    self.metrics.record_transaction_timed_out();
                    aborted += 1;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(transactional_id = txn_id, error = %e, "cannot abort a timed-out transaction now; next round")
                }
            }
        }
        aborted
    }

    /// Writes tombstones for ids without a transaction for longer than
    /// `transactional.id.expiration.ms`. The tombstone is not waited for:
    /// if it is lost, the id comes back unchanged, which is harmless.
    pub fn remove_expired(&self) -> usize {
        let now = now_ms();
        let mut state = self.state.lock();
        let expired: Vec<String> = state
            .txns
            .iter()
            .filter(|(id, m)| {
                m.expired(now, self.config.id_expiration_ms) && !state.pending.contains(*id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut removed = 0;
        for txn_id in expired {
            match self.write_tombstone(&mut state, &txn_id) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::debug!(transactional_id = txn_id, error = %e, "cannot expire now")
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "expired transactional ids");
        }
        removed
    }
}
