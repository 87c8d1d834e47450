//! Idempotent-producer state of one partition: for each producer id, its
//! epoch and the last few batches it wrote, so a retried batch is recognised
//! (and answered with its original offset) and a gap in sequence numbers is
//! refused, as Kafka's `ProducerStateManager` does.
//!
//! It also follows transactions (KIP-98): a producer's first transactional
//! batch opens its transaction in the partition, and a marker (control
//! batch) ends it. The open transactions bound the last stable offset,
//! below which `read_committed` consumers read; so do ended ones until
//! their marker is replicated (it may still be truncated away).
//!
//! The state is rebuilt from the log when a log is recovered and saved
//! as a snapshot (`producer-state.json`) on clean shutdown.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::batch::BatchHeader;
use super::control::TxnMarker;

/// Kafka keeps the metadata of the last five batches per producer, matching
/// the client's `max.in.flight.requests.per.connection` limit for idempotence.
const BATCHES_KEPT: usize = 5;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMetadata>,
    /// The first offset of the producer's open transaction here.
    #[serde(default)]
    pub txn_first_offset: Option<i64>,
    /// The coordinator epoch of the last marker; an older coordinator's
    /// markers are fenced.
    #[serde(default = "no_coordinator_epoch")]
    pub coordinator_epoch: i32,
    /// The largest timestamp of the producer's last batch.
    #[serde(default)]
    pub last_timestamp: i64,
}

fn no_coordinator_epoch() -> i32 {
    -1
}

impl Default for ProducerEntry {
    fn default() -> Self {
        ProducerEntry {
            epoch: 0,
            batches: VecDeque::new(),
            txn_first_offset: None,
            coordinator_epoch: no_coordinator_epoch(),
            last_timestamp: -1,
        }
    }
}

impl ProducerEntry {
    /// The last sequence number written (-1: none).
    pub fn last_sequence(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }
}

/// A transaction a marker ended in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub commit: bool,
}

/// Why a marker may not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerCheck {
    Accept,
    /// The marker's producer epoch is older than the producer's.
    StaleProducerEpoch {
        current: i16,
    },
    /// The marker comes from an older coordinator.
    StaleCoordinatorEpoch {
        current: i32,
    },
}

/// The verdict on a batch about to be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Accept,
    /// Already in the log: answer with the original offsets, append nothing.
    Duplicate(BatchMetadata),
    OutOfOrder {
        expected: i32,
        got: i32,
    },
    /// The producer was fenced by a newer epoch.
    StaleEpoch {
        current: i16,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: first offset → producer id.
    #[serde(default)]
    ongoing: BTreeMap<i64, i64>,
    /// Ended transactions whose marker may not be replicated yet: marker
    /// offset → first offset (dropped once the high watermark passes).
    #[serde(default)]
    unreplicated: BTreeMap<i64, i64>,
    /// A transactional batch was seen: a truncation must rebuild the
    /// state from the log (it may remove a marker and reopen a
    /// transaction), not just forget batches.
    #[serde(default)]
    transactional: bool,
}

fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerState {
    pub fn check(&self, header: &BatchHeader) -> SequenceCheck {
        if !header.has_producer_id() || header.base_sequence < 0 {
            return SequenceCheck::Accept;
        }
        let Some(entry) = self.producers.get(&header.producer_id) else {
            // An unknown producer may start at any sequence (its earlier
            // batches may have been removed by retention), as in Kafka.
            return SequenceCheck::Accept;
        };
        if header.producer_epoch < entry.epoch {
            return SequenceCheck::StaleEpoch {
                current: entry.epoch,
            };
        }
        if header.producer_epoch > entry.epoch {
            return if header.base_sequence == 0 {
                SequenceCheck::Accept
            } else {
                SequenceCheck::OutOfOrder {
                    expected: 0,
                    got: header.base_sequence,
                }
            };
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == header.base_sequence && b.last_seq == header.last_sequence())
        {
            return SequenceCheck::Duplicate(*dup);
        }
        match entry.batches.back() {
            Some(last) if next_sequence(last.last_seq) != header.base_sequence => {
                SequenceCheck::OutOfOrder {
                    expected: next_sequence(last.last_seq),
                    got: header.base_sequence,
                }
            }
            _ => SequenceCheck::Accept,
        }
    }

    /// Whether a marker for `producer_id` at `producer_epoch` from a
    /// coordinator at `coordinator_epoch` may be written (Kafka's
    /// `checkProducerEpoch` and `checkCoordinatorEpoch` for markers).
    pub fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> MarkerCheck {
        let Some(entry) = self.producers.get(&producer_id) else {
            return MarkerCheck::Accept;
        };
        if producer_epoch < entry.epoch {
            MarkerCheck::StaleProducerEpoch {
                current: entry.epoch,
            }
        } else if coordinator_epoch < entry.coordinator_epoch {
            MarkerCheck::StaleCoordinatorEpoch {
                current: entry.coordinator_epoch,
            }
        } else {
            MarkerCheck::Accept
        }
    }

    /// Records an appended batch (offsets already assigned); `marker` is
    /// what a control batch says. Returns the transaction a marker ended.
    pub fn record(
        &mut self,
        header: &BatchHeader,
        marker: Option<TxnMarker>,
    ) -> Option<CompletedTxn> {
        if !header.has_producer_id() {
            return None;
        }
        let pid = header.producer_id;
        let entry = self.producers.entry(pid).or_default();
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = header.max_timestamp;
        if header.is_control() {
            let marker = marker?;
            entry.coordinator_epoch = marker.coordinator_epoch;
            let first_offset = entry.txn_first_offset.take()?;
            self.ongoing.remove(&first_offset);
            self.unreplicated.insert(header.base_offset, first_offset);
            return Some(CompletedTxn {
                producer_id: pid,
                first_offset,
                last_offset: header.base_offset,
                commit: marker.commit,
            });
        }
        if header.is_transactional() {
            self.transactional = true;
            if entry.txn_first_offset.is_none() {
                entry.txn_first_offset = Some(header.base_offset);
                self.ongoing.insert(header.base_offset, pid);
            }
        }
        if header.base_sequence < 0 {
            return None;
        }
        if entry.batches.len() == BATCHES_KEPT {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: header.base_sequence,
            last_seq: header.last_sequence(),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
        });
        None
    }

    /// The first offset a `read_committed` consumer may not read yet, given
    /// the high watermark: the start of the oldest open transaction, or of
    /// an ended one whose marker is not below the high watermark.
    pub fn first_unstable_offset(&self, high_watermark: i64) -> Option<i64> {
        let open = self.ongoing.keys().next().copied();
        let unreplicated = self
            .unreplicated
            .range(high_watermark..)
            .map(|(_, &f)| f)
            .min();
        match (open, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Forgets ended transactions whose marker is below the high watermark.
    pub fn prune_replicated(&mut self, high_watermark: i64) {
        if self
            .unreplicated
            .first_key_value()
            .is_some_and(|(&m, _)| m < high_watermark)
        {
            self.unreplicated = self.unreplicated.split_off(&high_watermark);
        }
    }

    pub fn has_unreplicated(&self) -> bool {
        !self.unreplicated.is_empty()
    }

    /// Whether transactional batches were seen (see `transactional`).
    pub fn has_seen_transactions(&self) -> bool {
        self.transactional
    }

    /// The open transaction of `producer_id`: its first offset.
    pub fn ongoing_transaction(&self, producer_id: i64) -> Option<i64> {
        self.producers.get(&producer_id)?.txn_first_offset
    }

    /// Every producer with state here (DescribeProducers).
    pub fn producers(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(&pid, e)| (pid, e))
    }

    /// Forgets batches at or after `offset` (the log was truncated there).
    /// Only for a state that has seen no transactions (see
    /// `has_seen_transactions`); one that has is rebuilt from the log.
    ///
    /// Returns false when the state no longer describes the log: a
    /// producer lost every batch it had tracked, yet may have older ones
    /// below `offset` (only the last five are kept, and an epoch bump
    /// forgets the old epoch's). Forgetting it would let it in again at
    /// any sequence, so a retry of a batch still in the log would be
    /// stored twice; the caller must rebuild the state from the log.
    pub fn truncate_to(&mut self, offset: i64) -> bool {
        debug_assert!(!self.transactional);
        let mut exact = true;
        for entry in self.producers.values_mut() {
            let had_batches = !entry.batches.is_empty();
            entry.batches.retain(|b| b.last_offset < offset);
            exact &= !(had_batches && entry.batches.is_empty());
        }
        self.producers.retain(|_, e| !e.batches.is_empty());
        exact
    }

    /// How many producers have state in this partition.
    /// Forgets the producers that are idle, as `producer.id.expiration.ms`
    /// asks: no open transaction here and a last batch timestamped before
    /// `horizon_ms`, as Kafka's `ProducerStateManager` judges it. Returns
    /// how many went. A forgotten producer that writes again starts over,
    /// as an unknown one does.
    pub fn remove_expired(&mut self, horizon_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| e.txn_first_offset.is_some() || e.last_timestamp >= horizon_ms);
        before - self.producers.len()
    }

    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        crate::disk::write::write_atomically(path, &json)
    }

    pub fn load(path: &Path) -> Option<ProducerState> {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::test_support::{assign, batch};
    use crate::log::batch::validate;

    fn header(pid: i64, epoch: i16, seq: i32, records: usize, offset: i64) -> BatchHeader {
        let values: Vec<&[u8]> = vec![b"v"; records];
        let mut bytes = batch(&values, 0, (pid, epoch, seq));
        assign(&mut bytes, offset, 0, None);
        validate(&bytes).unwrap()
    }

    #[test]
    fn idle_producers_expire_unless_a_transaction_is_open() {
        let at = |pid: i64, timestamp: i64, transactional: bool| {
            let mut bytes = batch(&[b"v"], timestamp, (pid, 0, 0));
            if transactional {
                bytes = crate::log::batch::test_support::transactional(bytes);
            }
            assign(&mut bytes, pid, 0, None);
            validate(&bytes).unwrap()
        };
        let mut state = ProducerState::default();
        state.record(&at(1, 100, false), None);
        state.record(&at(2, 100, true), None);
        state.record(&at(3, 5000, false), None);
        assert_eq!(state.remove_expired(1000), 1);
        let left: Vec<i64> = state.producers().map(|(pid, _)| pid).collect();
        assert!(left.contains(&2) && left.contains(&3) && !left.contains(&1));
        // The forgotten producer starts over at any sequence.
        assert_eq!(state.check(&header(1, 0, 7, 1, 10)), SequenceCheck::Accept);
    }

    #[test]
    fn duplicates_gaps_and_fencing() {
        let mut state = ProducerState::default();
        let first = header(7, 0, 0, 3, 0);
        assert_eq!(state.check(&first), SequenceCheck::Accept);
        state.record(&first, None);
        // The same batch again is a duplicate with the original offsets.
        match state.check(&header(7, 0, 0, 3, 99)) {
            SequenceCheck::Duplicate(meta) => assert_eq!(meta.first_offset, 0),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            state.check(&header(7, 0, 5, 1, 3)),
            SequenceCheck::OutOfOrder {
                expected: 3,
                got: 5
            }
        );
        let next = header(7, 0, 3, 1, 3);
        assert_eq!(state.check(&next), SequenceCheck::Accept);
        state.record(&next, None);
        let bumped = header(7, 1, 0, 1, 4);
        assert_eq!(state.check(&bumped), SequenceCheck::Accept);
        state.record(&bumped, None);
        assert_eq!(
            state.check(&header(7, 0, 4, 1, 5)),
            SequenceCheck::StaleEpoch { current: 1 }
        );
    }

    #[test]
    fn snapshot_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("producer-state.json");
        let mut state = ProducerState::default();
        state.record(&header(1, 0, 0, 2, 10), None);
        state.save(&path).unwrap();
        let loaded = ProducerState::load(&path).unwrap();
        assert!(matches!(
            loaded.check(&header(1, 0, 0, 2, 50)),
            SequenceCheck::Duplicate(_)
        ));
    }
}
