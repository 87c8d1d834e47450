//! Idempotent-producer state of one partition: for each producer id, its
//! epoch and the last few batches it wrote, so a retried batch is recognised
//! (and answered with its original offset) and a gap in sequence numbers is
//! refused, as Kafka's `ProducerStateManager` does.
//!
//! The state is rebuilt from batch headers when a log is recovered and saved
//! as a snapshot (`producer-state.json`) on clean shutdown.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::batch::BatchHeader;

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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMetadata>,
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

    /// Records an appended batch (offsets already assigned).
    pub fn record(&mut self, header: &BatchHeader) {
        if !header.has_producer_id() {
            return;
        }
        let entry = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        if header.base_sequence < 0 {
            return;
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
    }

    /// Forgets batches at or after `offset` (the log was truncated there).
    pub fn truncate_to(&mut self, offset: i64) {
        for entry in self.producers.values_mut() {
            entry.batches.retain(|b| b.last_offset < offset);
        }
        self.producers.retain(|_, e| !e.batches.is_empty());
    }

    /// How many producers have state in this partition.
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
    fn duplicates_gaps_and_fencing() {
        let mut state = ProducerState::default();
        let first = header(7, 0, 0, 3, 0);
        assert_eq!(state.check(&first), SequenceCheck::Accept);
        state.record(&first);
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
        state.record(&next);
        let bumped = header(7, 1, 0, 1, 4);
        assert_eq!(state.check(&bumped), SequenceCheck::Accept);
        state.record(&bumped);
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
        state.record(&header(1, 0, 0, 2, 10));
        state.save(&path).unwrap();
        let loaded = ProducerState::load(&path).unwrap();
        assert!(matches!(
            loaded.check(&header(1, 0, 0, 2, 50)),
            SequenceCheck::Duplicate(_)
        ));
    }
}
