//! One transactional id's state and the transitions the coordinator may
//! make to it, as pure functions: each takes the current state and a
//! request and returns the state to write to `__transaction_state` (or the
//! error Kafka answers), so every rule is unit-tested without a broker.
//!
//! The rules are Kafka's `TransactionMetadata` / `TransactionCoordinator`:
//! a transaction is Empty → Ongoing (partitions added) → PrepareCommit or
//! PrepareAbort (EndTxn; the answer goes out once this is written) →
//! CompleteCommit or CompleteAbort (once every partition has its marker).
//! InitProducerId bumps the epoch, fencing the previous instance; a
//! transaction still open is aborted at a bumped epoch first. Clients of
//! transaction version 2 (EndTxn v5, KIP-890 part 2) get a new epoch with
//! every EndTxn, so a late write of the old transaction is fenced too.

use std::collections::BTreeSet;

use super::log_format::TxnLogValue;
use crate::error::ResponseError;

pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// Kafka's `TransactionState`, with its codes in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum TxnState {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TxnState {
    pub fn from_code(code: i8) -> Option<TxnState> {
        use TxnState::*;
        [
            Empty,
            Ongoing,
            PrepareCommit,
            PrepareAbort,
            CompleteCommit,
            CompleteAbort,
            Dead,
            PrepareEpochFence,
        ]
        .into_iter()
        .find(|s| *s as i8 == code)
    }

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        (0..=7)
            .filter_map(TxnState::from_code)
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    pub fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }

    /// No transaction is open: a new one may start.
    pub fn is_idle(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

/// A version 2 EndTxn at this epoch or above rotates the producer id at
/// completion, so that the bumped epoch is never the last one.
pub const ROTATING_END_EPOCH: i16 = i16::MAX - 2;

/// Epochs at or above this cannot be bumped again: the producer id rotates.
fn is_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// A transactional id's state: what the log stores, plus the previous
/// epoch this coordinator handed out (memory only, as in Kafka), which
/// lets a retried InitProducerId be told from a zombie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub value: TxnLogValue,
    pub last_producer_epoch: i16,
}

/// What InitProducerId does.
#[derive(Debug, PartialEq, Eq)]
pub enum InitOutcome {
    /// Write this and answer with its producer id and epoch.
    Ready(TxnMetadata),
    /// A transaction is still open: write this (PrepareAbort at a fenced
    /// epoch), finish the abort, and answer CONCURRENT_TRANSACTIONS so the
    /// client retries.
    AbortFirst(TxnMetadata),
}

/// What EndTxn does.
#[derive(Debug, PartialEq, Eq)]
pub enum EndOutcome {
    /// Write this Prepare state, answer, then write the markers.
    Prepare(TxnMetadata),
    /// A retry of an EndTxn that already completed: answer success.
    AlreadyDone,
}

impl TxnMetadata {
    /// A transactional id seen for the first time, before its first epoch.
    pub fn new(producer_id: i64, timeout_ms: i32, now_ms: i64) -> TxnMetadata {
        TxnMetadata {
            value: TxnLogValue {
                producer_id,
                previous_producer_id: NO_PRODUCER_ID,
                next_producer_id: NO_PRODUCER_ID,
                producer_epoch: NO_PRODUCER_EPOCH,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                last_update_ms: now_ms,
                start_ms: -1,
                client_version: 0,
            },
            last_producer_epoch: NO_PRODUCER_EPOCH,
        }
    }

    pub fn loaded(value: TxnLogValue) -> TxnMetadata {
        TxnMetadata {
            value,
            last_producer_epoch: NO_PRODUCER_EPOCH,
        }
    }

    pub fn state(&self) -> TxnState {
        self.value.state
    }

    fn with(&self, state: TxnState, now_ms: i64) -> TxnMetadata {
        let mut next = self.clone();
        next.value.state = state;
        next.value.last_update_ms = now_ms;
        next
    }

    /// Whether InitProducerId must be given a fresh producer id: the epoch
    /// cannot be bumped again (and the caller is the current producer).
    pub fn needs_new_producer_id(&self, expected: Option<(i64, i16)>) -> bool {
        is_exhausted(self.value.producer_epoch)
            && expected.is_none_or(|(_, epoch)| epoch == self.value.producer_epoch)
    }

    /// InitProducerId. `expected` is the producer id and epoch a producer
    /// recovering from an error sends (KIP-360); `new_producer_id` is set
    /// when `needs_new_producer_id` said so.
    pub fn init_producer_id(
        &self,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        new_producer_id: Option<i64>,
        now_ms: i64,
    ) -> Result<InitOutcome, ResponseError> {
        let v = &self.value;
        if let Some((pid, epoch)) = expected {
            // Kafka's `isValidProducerId`: a brand-new id, the current
            // producer, or a retry after a rotation the client missed.
            let valid = v.producer_epoch == NO_PRODUCER_EPOCH
                || pid == v.producer_id
                || (pid == v.previous_producer_id && is_exhausted(epoch));
            if !valid {
                return Err(ResponseError::ProducerFenced);
            }
        }
        match v.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(ResponseError::ConcurrentTransactions)
            }
            TxnState::Ongoing => Ok(InitOutcome::AbortFirst(self.fence_and_abort(now_ms))),
            TxnState::Dead | TxnState::PrepareEpochFence => {
                Err(ResponseError::ConcurrentTransactions)
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let mut next = self.with(TxnState::Empty, now_ms);
                next.value.timeout_ms = timeout_ms;
                next.value.partitions.clear();
                next.value.start_ms = -1;
                next.value.next_producer_id = NO_PRODUCER_ID;
                if let Some(pid) = new_producer_id {
                    next.value.previous_producer_id = v.producer_id;
                    next.value.producer_id = pid;
                    next.value.producer_epoch = 0;
                    next.last_producer_epoch = match expected {
                        Some(_) => v.producer_epoch,
                        None => NO_PRODUCER_EPOCH,
                    };
                    return Ok(InitOutcome::Ready(next));
                }
                let (epoch, last) = match expected {
                    None => (v.producer_epoch + 1, NO_PRODUCER_EPOCH),
                    Some((_, e))
                        if v.producer_epoch == NO_PRODUCER_EPOCH || e == v.producer_epoch =>
                    {
                        (v.producer_epoch + 1, v.producer_epoch)
                    }
                    // A retry of a bump whose answer was lost.
                    Some((_, e)) if e == self.last_producer_epoch => {
                        (v.producer_epoch, self.last_producer_epoch)
                    }
                    Some(_) => return Err(ResponseError::ProducerFenced),
                };
                next.value.producer_epoch = epoch;
                next.last_producer_epoch = last;
                Ok(InitOutcome::Ready(next))
            }
        }
    }

    /// Aborts the open transaction at a bumped epoch, so its producer is
    /// fenced (InitProducerId of a new instance, or the transaction timed
    /// out). The epoch is never handed out: the next InitProducerId bumps
    /// again.
    pub fn fence_and_abort(&self, now_ms: i64) -> TxnMetadata {
        let mut next = self.with(TxnState::PrepareAbort, now_ms);
        // Transaction version 2 bumps once more for the abort itself, as
        // Kafka does: the fenced producer is then two epochs behind, so its
        // EndTxn cannot pass for the retry of a bumping one.
        let bump = if self.value.client_version >= 2 { 2 } else { 1 };
        next.value.producer_epoch = next.value.producer_epoch.saturating_add(bump);
        next.last_producer_epoch = NO_PRODUCER_EPOCH;
        next
    }

    /// Checks that a request comes from this id's current producer.
    fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), ResponseError> {
        if producer_id != self.value.producer_id {
            Err(ResponseError::InvalidProducerIdMapping)
        } else if epoch != self.value.producer_epoch {
            Err(ResponseError::ProducerFenced)
        } else {
            Ok(())
        }
    }

    /// AddPartitionsToTxn and AddOffsetsToTxn: `None` when every partition
    /// is already in the transaction (nothing to write).
    pub fn add_partitions(
        &self,
        producer_id: i64,
        epoch: i16,
        partitions: &BTreeSet<(String, i32)>,
        now_ms: i64,
    ) -> Result<Option<TxnMetadata>, ResponseError> {
        self.check_producer(producer_id, epoch)?;
        match self.value.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(ResponseError::ConcurrentTransactions)
            }
            TxnState::Dead | TxnState::PrepareEpochFence => {
                Err(ResponseError::ConcurrentTransactions)
            }
            TxnState::Ongoing if partitions.is_subset(&self.value.partitions) => Ok(None),
            state => {
                let mut next = self.with(TxnState::Ongoing, now_ms);
                if state.is_idle() {
                    next.value.start_ms = now_ms;
                }
                next.value.partitions.extend(partitions.iter().cloned());
                Ok(Some(next))
            }
        }
    }

    /// AddPartitionsToTxn v4+ with `verify_only` (KIP-890 part 1), asked by
    /// a partition leader before the first transactional batch of a
    /// producer: is this partition part of its open transaction?
    pub fn verify_partition(
        &self,
        producer_id: i64,
        epoch: i16,
        partition: &(String, i32),
    ) -> Result<(), ResponseError> {
        self.check_producer(producer_id, epoch)?;
        if self.value.state.is_prepare() {
            Err(ResponseError::ConcurrentTransactions)
        } else if self.value.state == TxnState::Ongoing && self.value.partitions.contains(partition)
        {
            Ok(())
        } else {
            Err(ResponseError::InvalidTxnState)
        }
    }

    /// EndTxn. `version2`: the client uses transaction version 2 (EndTxn
    /// v5), whose epoch is bumped by every EndTxn; `new_producer_id` is
    /// needed then when the epoch is exhausted.
    pub fn end_txn(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        version2: bool,
        new_producer_id: Option<i64>,
        now_ms: i64,
    ) -> Result<EndOutcome, ResponseError> {
        let v = &self.value;
        if version2 && self.is_retry_of_bumping_end(producer_id, epoch) {
            // The answer to a bumping EndTxn was lost; the client retries
            // with the epoch it had. The other result is a state error,
            // as in Kafka.
            return match (v.state, commit) {
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                    Ok(EndOutcome::AlreadyDone)
                }
                (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                    Err(ResponseError::ConcurrentTransactions)
                }
                _ => Err(ResponseError::InvalidTxnState),
            };
        }
        self.check_producer(producer_id, epoch)?;
        let prepare = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        match (v.state, commit) {
            (TxnState::Ongoing, _) => Ok(EndOutcome::Prepare(self.prepare(
                prepare,
                version2,
                new_producer_id,
                now_ms,
            ))),
            // Version 2 clients cannot know whether a partition was added
            // implicitly, so an empty transaction may be ended too.
            (state, _) if version2 && state.is_idle() => Ok(EndOutcome::Prepare(self.prepare(
                prepare,
                version2,
                new_producer_id,
                now_ms,
            ))),
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) if !version2 => {
                Ok(EndOutcome::AlreadyDone)
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(ResponseError::ConcurrentTransactions)
            }
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// A version 2 EndTxn that bumped the epoch, retried with the epoch
    /// the client had before (its answer was lost, or the coordinator
    /// failed over). Told from the stored state alone, as Kafka's
    /// `retryOnEpochBump` and `retryOnOverflow` are, so a new coordinator
    /// that replayed the log recognises it too.
    fn is_retry_of_bumping_end(&self, producer_id: i64, epoch: i16) -> bool {
        let v = &self.value;
        let ended = v.state.is_prepare()
            || matches!(v.state, TxnState::CompleteCommit | TxnState::CompleteAbort);
        let bumped = producer_id == v.producer_id && epoch.checked_add(1) == Some(v.producer_epoch);
        // The completion rotated to a new producer id (the epoch ran out).
        let rotated = producer_id == v.previous_producer_id
            && producer_id != NO_PRODUCER_ID
            && v.producer_epoch == 0
            && epoch >= ROTATING_END_EPOCH;
        ended && epoch != NO_PRODUCER_EPOCH && (bumped || rotated)
    }

    fn prepare(
        &self,
        state: TxnState,
        version2: bool,
        new_producer_id: Option<i64>,
        now_ms: i64,
    ) -> TxnMetadata {
        let mut next = self.with(state, now_ms);
        if version2 {
            next.value.client_version = 2;
            next.last_producer_epoch = self.value.producer_epoch;
            next.value.producer_epoch = next.value.producer_epoch.saturating_add(1);
            if let Some(pid) = new_producer_id {
                // The markers still carry the old id at its last epoch;
                // the new id takes over when the transaction completes.
                next.value.next_producer_id = pid;
            }
        }
        next
    }

    /// The id and epoch the client continues with after an EndTxn that
    /// wrote `self` (a version 2 client switches to them).
    pub fn epoch_for_client(&self) -> (i64, i16) {
        if self.value.next_producer_id != NO_PRODUCER_ID {
            (self.value.next_producer_id, 0)
        } else {
            (self.value.producer_id, self.value.producer_epoch)
        }
    }

    /// Every partition has its marker: CompleteCommit or CompleteAbort.
    pub fn complete(&self, now_ms: i64) -> TxnMetadata {
        let state = match self.value.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            _ => TxnState::CompleteAbort,
        };
        let mut next = self.with(state, now_ms);
        next.value.partitions.clear();
        if next.value.next_producer_id != NO_PRODUCER_ID {
            next.value.previous_producer_id = next.value.producer_id;
            next.value.producer_id = next.value.next_producer_id;
            next.value.producer_epoch = 0;
            next.value.next_producer_id = NO_PRODUCER_ID;
            next.last_producer_epoch = NO_PRODUCER_EPOCH;
        }
        next
    }

    /// An open transaction older than its timeout.
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.value.state == TxnState::Ongoing
            && self.value.start_ms >= 0
            && now_ms - self.value.start_ms > self.value.timeout_ms as i64
    }

    /// An id with no transaction for `expiration_ms` is forgotten.
    pub fn expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        self.value.state.is_idle() && now_ms - self.value.last_update_ms > expiration_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(list: &[(&str, i32)]) -> BTreeSet<(String, i32)> {
        list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    fn ready(outcome: Result<InitOutcome, ResponseError>) -> TxnMetadata {
        match outcome {
            Ok(InitOutcome::Ready(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    fn prepared(outcome: Result<EndOutcome, ResponseError>) -> TxnMetadata {
        match outcome {
            Ok(EndOutcome::Prepare(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    fn initialized() -> TxnMetadata {
        ready(TxnMetadata::new(100, 60_000, 0).init_producer_id(60_000, None, None, 1))
    }

    #[test]
    fn a_transaction_goes_from_empty_to_ongoing_to_prepare_to_complete() {
        let m = initialized();
        assert_eq!((m.value.producer_id, m.value.producer_epoch), (100, 0));
        assert_eq!(m.state(), TxnState::Empty);
        let m = m
            .add_partitions(100, 0, &parts(&[("a", 0)]), 5)
            .unwrap()
            .unwrap();
        assert_eq!((m.state(), m.value.start_ms), (TxnState::Ongoing, 5));
        assert_eq!(
            m.add_partitions(100, 0, &parts(&[("a", 0)]), 6),
            Ok(None),
            "already in the transaction: nothing to write"
        );
        let m = m
            .add_partitions(100, 0, &parts(&[("b", 1)]), 7)
            .unwrap()
            .unwrap();
        assert_eq!(m.value.start_ms, 5, "the start is the first add");
        assert_eq!(m.value.partitions, parts(&[("a", 0), ("b", 1)]));
        let p = prepared(m.end_txn(100, 0, true, false, None, 8));
        assert_eq!(p.state(), TxnState::PrepareCommit);
        assert_eq!(p.value.producer_epoch, 0, "version 1 keeps the epoch");
        assert_eq!(
            p.add_partitions(100, 0, &parts(&[("c", 0)]), 9),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            p.end_txn(100, 0, true, false, None, 9),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            p.end_txn(100, 0, false, false, None, 9),
            Err(ResponseError::InvalidTxnState)
        );
        let c = p.complete(10);
        assert_eq!(c.state(), TxnState::CompleteCommit);
        assert!(c.value.partitions.is_empty());
        assert_eq!(
            c.end_txn(100, 0, true, false, None, 11),
            Ok(EndOutcome::AlreadyDone),
            "a retried commit"
        );
        assert_eq!(
            c.end_txn(100, 0, false, false, None, 11),
            Err(ResponseError::InvalidTxnState)
        );
        assert_eq!(
            initialized().end_txn(100, 0, true, false, None, 2),
            Err(ResponseError::InvalidTxnState),
            "EndTxn without a transaction"
        );
    }

    #[test]
    fn a_new_instance_fences_the_old_one_and_aborts_its_open_transaction() {
        let m = initialized()
            .add_partitions(100, 0, &parts(&[("a", 0)]), 5)
            .unwrap()
            .unwrap();
        let Ok(InitOutcome::AbortFirst(aborting)) = m.init_producer_id(60_000, None, None, 6)
        else {
            panic!("an open transaction is aborted first");
        };
        assert_eq!(aborting.state(), TxnState::PrepareAbort);
        assert_eq!(
            aborting.value.producer_epoch, 1,
            "markers at a fenced epoch"
        );
        assert_eq!(
            aborting.init_producer_id(60_000, None, None, 7),
            Err(ResponseError::ConcurrentTransactions)
        );
        let done = aborting.complete(8);
        let new = ready(done.init_producer_id(60_000, None, None, 9));
        assert_eq!(new.value.producer_epoch, 2);
        // The old instance's requests are fenced.
        assert_eq!(
            new.add_partitions(100, 0, &parts(&[("a", 0)]), 10),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            new.end_txn(100, 0, true, false, None, 10),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            new.end_txn(99, 2, true, false, None, 10),
            Err(ResponseError::InvalidProducerIdMapping)
        );
    }

    #[test]
    fn kip_360_recovery_bumps_for_the_current_producer_and_fences_others() {
        let m = initialized();
        let bumped = ready(m.init_producer_id(60_000, Some((100, 0)), None, 2));
        assert_eq!(
            (bumped.value.producer_epoch, bumped.last_producer_epoch),
            (1, 0)
        );
        // The same call again (its answer was lost): the same epoch.
        let again = ready(bumped.init_producer_id(60_000, Some((100, 0)), None, 3));
        assert_eq!(again.value.producer_epoch, 1);
        assert_eq!(
            bumped.init_producer_id(60_000, Some((55, 0)), None, 3),
            Err(ResponseError::ProducerFenced),
            "another producer id"
        );
        let other = ready(bumped.init_producer_id(60_000, None, None, 4));
        assert_eq!(
            other.init_producer_id(60_000, Some((100, 1)), None, 5),
            Err(ResponseError::ProducerFenced),
            "a newer instance took over"
        );
    }

    #[test]
    fn an_exhausted_epoch_rotates_the_producer_id() {
        let mut m = initialized();
        m.value.producer_epoch = i16::MAX - 1;
        assert!(m.needs_new_producer_id(None));
        let rotated = ready(m.init_producer_id(60_000, None, Some(200), 2));
        assert_eq!(
            (
                rotated.value.producer_id,
                rotated.value.producer_epoch,
                rotated.value.previous_producer_id
            ),
            (200, 0, 100)
        );
    }

    #[test]
    fn version_2_bumps_the_epoch_on_every_end_and_recognises_retries() {
        let m = initialized()
            .add_partitions(100, 0, &parts(&[("a", 0)]), 5)
            .unwrap()
            .unwrap();
        let p = prepared(m.end_txn(100, 0, true, true, None, 6));
        assert_eq!(p.value.producer_epoch, 1, "markers and the client move on");
        assert_eq!(p.epoch_for_client(), (100, 1));
        let c = p.complete(7);
        assert_eq!(
            c.end_txn(100, 0, true, true, None, 8),
            Ok(EndOutcome::AlreadyDone),
            "a retry with the epoch before the bump"
        );
        assert_eq!(
            c.end_txn(100, 0, false, true, None, 8),
            Err(ResponseError::InvalidTxnState),
            "a retry asking for the other result"
        );
        // A coordinator that replayed the log knows no previous epoch and
        // still recognises the retry, in the Prepare state and after it.
        let replayed = |m: &TxnMetadata| TxnMetadata::loaded(m.value.clone());
        assert_eq!(
            replayed(&p).end_txn(100, 0, true, true, None, 8),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            replayed(&c).end_txn(100, 0, true, true, None, 8),
            Ok(EndOutcome::AlreadyDone)
        );
        assert_eq!(
            replayed(&c).end_txn(100, 2, true, true, None, 8),
            Err(ResponseError::ProducerFenced),
            "an epoch the coordinator never handed out"
        );
        // Version 2 may end an empty transaction (an implicit add it cannot see).
        let empty = prepared(c.end_txn(100, 1, false, true, None, 9));
        assert_eq!(
            (empty.state(), empty.value.producer_epoch),
            (TxnState::PrepareAbort, 2)
        );
        // Rotation when the epoch runs out: the id changes at completion.
        let mut old = m.clone();
        old.value.producer_epoch = i16::MAX - 1;
        let p = prepared(old.end_txn(100, i16::MAX - 1, false, true, Some(300), 10));
        assert_eq!(p.epoch_for_client(), (300, 0));
        assert_eq!(p.value.producer_id, 100, "markers use the old id");
        let c = p.complete(11);
        assert_eq!((c.value.producer_id, c.value.producer_epoch), (300, 0));
        assert_eq!(
            replayed(&c).end_txn(100, i16::MAX - 1, false, true, None, 12),
            Ok(EndOutcome::AlreadyDone),
            "a retry with the old id after the rotation"
        );
        // A version 2 transaction aborted by its timeout: the producer is
        // fenced, not mistaken for a retry.
        let open = prepared(m.end_txn(100, 0, true, true, None, 20))
            .complete(21)
            .add_partitions(100, 1, &parts(&[("a", 0)]), 22)
            .unwrap()
            .unwrap();
        let timed_out = open.fence_and_abort(90_000).complete(90_001);
        assert_eq!(timed_out.value.producer_epoch, 3);
        assert_eq!(
            timed_out.end_txn(100, 1, true, true, None, 90_002),
            Err(ResponseError::ProducerFenced)
        );
    }

    #[test]
    fn verification_timeouts_and_expiry() {
        let m = initialized()
            .add_partitions(100, 0, &parts(&[("a", 0)]), 5)
            .unwrap()
            .unwrap();
        let a0 = ("a".to_string(), 0);
        let b0 = ("b".to_string(), 0);
        assert_eq!(m.verify_partition(100, 0, &a0), Ok(()));
        assert_eq!(
            m.verify_partition(100, 0, &b0),
            Err(ResponseError::InvalidTxnState)
        );
        assert_eq!(
            m.verify_partition(100, 1, &a0),
            Err(ResponseError::ProducerFenced)
        );
        assert!(!m.timed_out(5 + 60_000));
        assert!(m.timed_out(5 + 60_001));
        let aborted = m.fence_and_abort(70_000);
        assert_eq!(
            aborted.verify_partition(100, 0, &a0),
            Err(ResponseError::ProducerFenced)
        );
        let done = aborted.complete(70_001);
        assert!(!done.expired(70_001 + 1000, 1000));
        assert!(done.expired(70_001 + 1001, 1000));
        assert!(
            !m.expired(i64::MAX / 2, 1000),
            "an open transaction never expires"
        );
    }
}
