//! Following the metadata: when this broker starts leading a
//! `__transaction_state` partition it replays it (the latest record per
//! transactional id wins, a tombstone removes the id) and finishes every
//! transaction it finds prepared, so a coordinator that fails over in the
//! middle of a commit completes the commit, never half of it. When it
//! stops leading a partition it forgets that partition's ids; their
//! completions notice and stop, and the new coordinator takes over.
//! A new leader epoch of a partition it already leads is a new
//! coordinator epoch: the partition is replayed again.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;

use super::log_format::{decode_key, TxnLogValue};
use super::metadata::TxnMetadata;
use super::{TransactionCoordinator, TxnPartition, TRANSACTION_STATE_TOPIC};
use crate::coordinator::offsets_format::partition_for;
use crate::log::{PartitionLog, TopicPartition};
use crate::metadata::MetadataImage;

impl TransactionCoordinator {
    /// Loads the state partitions this broker now leads and drops those it
    /// no longer leads. Blocking (replays logs); call after local logs were
    /// opened for the image, on the runtime (completions are spawned).
    pub fn on_metadata(self: &std::sync::Arc<Self>, image: &MetadataImage) {
        let topic = image.topics.get(TRANSACTION_STATE_TOPIC);
        let led: BTreeMap<i32, i32> = topic
            .map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.leader == self.node_id)
                    .map(|(i, p)| (i as i32, p.leader_epoch))
                    .collect()
            })
            .unwrap_or_default();
        let num_partitions = topic.map_or(0, |t| t.partitions.len() as i32);
        let to_load: Vec<(i32, i32)> = {
            let mut state = self.state.lock();
            state.num_partitions = num_partitions;
            let lost: Vec<i32> = state
                .partitions
                .iter()
                .filter(|(i, p)| led.get(i) != Some(&p.coordinator_epoch))
                .map(|(i, _)| *i)
                .collect();
            for index in lost {
                tracing::info!(
                    partition = index,
                    "no longer coordinating {TRANSACTION_STATE_TOPIC} partition at this epoch"
                );
                state.partitions.remove(&index);
                state
                    .txns
                    .retain(|id, _| partition_for(id, num_partitions) != index);
            }
            let to_load: Vec<(i32, i32)> = led
                .iter()
                .filter(|(i, _)| !state.partitions.contains_key(i))
                .map(|(i, e)| (*i, *e))
                .collect();
            state.loading.extend(to_load.iter().map(|(i, _)| *i));
            to_load
        };
        for (index, coordinator_epoch) in to_load {
            let started = std::time::Instant::now();
            let tp = TopicPartition::new(TRANSACTION_STATE_TOPIC, index);
            let loaded = self
                .logs
                .get(&tp)
                .map(|partition| (partition.read_log(load_state), partition));
            let mut state = self.state.lock();
            state.loading.remove(&index);
            let (values, partition) = match loaded {
                Some((Ok(values), partition)) => (values, partition),
                Some((Err(e), _)) => {
                    tracing::error!(partition = %tp, error = %e, "cannot load transaction state");
                    continue;
                }
                None => continue,
            };
            let ids = values.len();
            let mut prepared = Vec::new();
            for (id, value) in values {
                let meta = TxnMetadata::loaded(value);
                if meta.state().is_prepare() {
                    prepared.push((id.clone(), meta.clone()));
                }
                state.txns.insert(id, meta);
            }
            state.partitions.insert(
                index,
                TxnPartition {
                    partition,
                    coordinator_epoch,
                },
            );
            drop(state);
            tracing::info!(
                partition = index,
                coordinator_epoch,
                transactional_ids = ids,
                prepared = prepared.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "now coordinating {TRANSACTION_STATE_TOPIC} partition"
            );
            for (id, meta) in prepared {
                self.start_completion(id, meta, coordinator_epoch);
            }
        }
    }
}

/// The latest state of every transactional id in a state partition.
pub(super) fn load_state(log: &PartitionLog) -> std::io::Result<HashMap<String, TxnLogValue>> {
    let mut values = HashMap::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let Some(slice) = log
            .read(offset, 1 << 20, true, end)
            .map_err(|e| std::io::Error::other(e.to_string()))?
        else {
            break;
        };
        let mut bytes = Bytes::from(slice.read()?);
        let mut next = offset;
        while let Ok(size) = crate::log::batch::batch_size_at(&bytes) {
            if size > bytes.len() {
                break;
            }
            let mut batch = bytes.split_to(size);
            let set = RecordBatchDecoder::decode(&mut batch)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            for record in set.records {
                next = next.max(record.offset + 1);
                if record.offset < offset || record.control {
                    continue;
                }
                let Some(id) = record.key.and_then(|k| decode_key(k).ok()) else {
                    continue;
                };
                match record.value.map(TxnLogValue::decode) {
                    Some(Ok(value)) => {
                        values.insert(id, value);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(transactional_id = id, error = %e, "skipping an unreadable transaction state record")
                    }
                    None => {
                        values.remove(&id);
                    }
                }
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(values)
}
