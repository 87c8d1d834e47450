//! The one way the coordinator writes to `__consumer_offsets`: an append as
//! the partition's leader, applied to the replayed view once the log has it,
//! so the view and the log agree.

use super::State;
use crate::coordinator::offset_store::{OffsetStore, StoreRecord, TxnProducer};
use crate::error::ResponseError;
use crate::log::AppendError;
use crate::partition::{Append, AppendFailure, ReplicationWait};
use crate::util::now_ms;

impl State {
    /// Appends records to an offsets partition and applies them to its view.
    /// Returns what to wait for before the write counts as durable: the
    /// partition's ISR must have it, as Kafka's coordinator appends with
    /// `acks=all`.
    pub(super) fn append(
        &mut self,
        partition: i32,
        records: &[StoreRecord],
    ) -> Result<ReplicationWait, ResponseError> {
        self.append_as(partition, records, None)
    }

    /// Appends records, inside `txn`'s transaction when given: they are
    /// then pending until its marker (see `offset_store`).
    pub(super) fn append_as(
        &mut self,
        partition: i32,
        records: &[StoreRecord],
        txn: Option<TxnProducer>,
    ) -> Result<ReplicationWait, ResponseError> {
        let Some(part) = self.partitions.get_mut(&partition) else {
            return Err(ResponseError::NotCoordinator);
        };
        let now = now_ms();
        let batch = OffsetStore::batch_of(records, txn, now);
        let appended = part.partition.append(Append::Coordinator {
            records: &batch,
            leader_epoch: part.leader_epoch,
            verified: txn.and_then(|t| t.verified),
        });
        match appended {
            Ok(appended) => {
                for (key, value) in records {
                    match txn {
                        Some(t) => part.store.apply_pending(
                            t.producer_id,
                            Some(key.encode()),
                            value.clone(),
                        ),
                        None => part.store.apply_decoded(key.clone(), value.clone()),
                    }
                }
                // Always set for coordinator appends.
                appended
                    .replication
                    .ok_or(ResponseError::CoordinatorNotAvailable)
            }
            Err(AppendFailure::NotLeader) => Err(ResponseError::NotCoordinator),
            Err(AppendFailure::UnverifiedTransaction) => Err(ResponseError::InvalidTxnState),
            Err(AppendFailure::Log(AppendError::InvalidProducerEpoch { .. })) => {
                Err(ResponseError::ProducerFenced)
            }
            Err(e) => {
                tracing::error!(partition = %part.partition.tp, error = %e, "cannot write to the offsets topic");
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    }
}
