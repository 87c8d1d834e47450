//! Committed offsets as a view of one `__consumer_offsets` partition: the
//! latest record per key wins, and a tombstone removes the entry. The view
//! is rebuilt by replaying the partition when this broker becomes its
//! coordinator; commits are appended to the partition first and applied to
//! the view once written, so what a client reads back is what the log holds.
//!
//! Offsets committed inside a transaction (TxnOffsetCommit) are written in
//! a transactional batch and stay pending, per producer, until the
//! transaction's COMMIT marker reaches this partition (they become the
//! committed offsets then) or its ABORT marker (they are dropped). When a
//! commit lands, the transaction's offsets replace the committed ones,
//! even a plain commit made after them: groups that commit inside
//! transactions do not also commit outside them.

use std::collections::{BTreeMap, HashMap};

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::offsets_format::{GroupMetadataValue, OffsetValue, OffsetsKey};
use crate::log::PartitionLog;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OffsetKey {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

#[derive(Debug, Default)]
pub struct OffsetStore {
    /// Committed offsets by group, then by (topic, partition).
    offsets: HashMap<String, BTreeMap<(String, i32), OffsetValue>>,
    groups: HashMap<String, GroupMetadataValue>,
    /// Offsets of open transactions, by producer id.
    pending: HashMap<i64, HashMap<OffsetKey, OffsetValue>>,
}

/// A producer writing offsets inside its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The coordinator's confirmation that the transaction includes the
    /// offsets partition, needed when the write would open it there
    /// (KIP-890, see `partition::verification`).
    pub verified: Option<crate::partition::VerificationGuard>,
}

/// One record of the offsets topic: a key and a value, `None` for a tombstone.
pub type StoreRecord = (OffsetsKey, Option<Bytes>);

pub fn offset_record(key: &OffsetKey, value: Option<&OffsetValue>) -> StoreRecord {
    (
        OffsetsKey::Offset {
            group: key.group.clone(),
            topic: key.topic.clone(),
            partition: key.partition,
        },
        value.map(OffsetValue::encode),
    )
}

pub fn group_record(group: &str, value: Option<&GroupMetadataValue>) -> StoreRecord {
    (
        OffsetsKey::Group {
            group: group.to_string(),
        },
        value.map(GroupMetadataValue::encode),
    )
}

impl OffsetStore {
    /// Replays a `__consumer_offsets` partition from its log start.
    pub fn load(log: &PartitionLog) -> std::io::Result<OffsetStore> {
        let mut store = OffsetStore::default();
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
            let mut last = offset;
            while bytes.len() >= crate::log::batch::HEADER_SIZE {
                let Ok(size) = crate::log::batch::batch_size_at(&bytes) else {
                    break;
                };
                if size > bytes.len() {
                    break;
                }
                let mut batch = bytes.split_to(size);
                let set = RecordBatchDecoder::decode(&mut batch)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                for record in set.records {
                    last = last.max(record.offset);
                    if record.offset < offset {
                        continue;
                    }
                    if record.control {
                        if let Some(commit) = record.key.as_ref().and_then(control_commit) {
                            store.complete_transaction(record.producer_id, commit);
                        }
                    } else if record.transactional {
                        store.apply_pending(record.producer_id, record.key, record.value);
                    } else {
                        store.apply(record.key, record.value);
                    }
                }
            }
            if last < offset {
                break;
            }
            offset = last + 1;
        }
        Ok(store)
    }

    /// Applies one record; records this store does not understand are skipped.
    pub fn apply(&mut self, key: Option<Bytes>, value: Option<Bytes>) {
        let Some(key) = key.and_then(|k| OffsetsKey::decode(k).ok()) else {
            return;
        };
        self.apply_decoded(key, value);
    }

    pub fn apply_decoded(&mut self, key: OffsetsKey, value: Option<Bytes>) {
        match key {
            OffsetsKey::Offset {
                group,
                topic,
                partition,
            } => match value.map(OffsetValue::decode) {
                Some(Ok(value)) => {
                    self.offsets
                        .entry(group)
                        .or_default()
                        .insert((topic, partition), value);
                }
                Some(Err(_)) => {}
                None => {
                    if let Some(offsets) = self.offsets.get_mut(&group) {
                        offsets.remove(&(topic, partition));
                        if offsets.is_empty() {
                            self.offsets.remove(&group);
                        }
                    }
                }
            },
            OffsetsKey::Group { group } => match value.map(GroupMetadataValue::decode) {
                Some(Ok(value)) => {
                    self.groups.insert(group, value);
                }
                Some(Err(_)) => {}
                None => {
                    self.groups.remove(&group);
                }
            },
        }
    }

    /// Records an offset committed inside `producer_id`'s transaction.
    pub fn apply_pending(&mut self, producer_id: i64, key: Option<Bytes>, value: Option<Bytes>) {
        let Some(OffsetsKey::Offset {
            group,
            topic,
            partition,
        }) = key.and_then(|k| OffsetsKey::decode(k).ok())
        else {
            return;
        };
        let Some(Ok(value)) = value.map(OffsetValue::decode) else {
            return;
        };
        let key = OffsetKey {
            group,
            topic,
            partition,
        };
        self.pending
            .entry(producer_id)
            .or_default()
            .insert(key, value);
    }

    /// A transaction's marker reached this partition: its offsets become
    /// the committed ones (commit) or are dropped (abort).
    pub fn complete_transaction(&mut self, producer_id: i64, commit: bool) {
        let Some(pending) = self.pending.remove(&producer_id) else {
            return;
        };
        if commit {
            for (key, value) in pending {
                self.offsets
                    .entry(key.group)
                    .or_default()
                    .insert((key.topic, key.partition), value);
            }
        }
    }

    /// Whether an open transaction holds offsets of `group` (for the given
    /// partition, or any when `None`).
    pub fn has_pending(&self, group: &str, partition: Option<(&str, i32)>) -> bool {
        self.pending.values().any(|offsets| {
            offsets.keys().any(|k| {
                k.group == group && partition.is_none_or(|(t, p)| k.topic == t && k.partition == p)
            })
        })
    }

    /// The last stored metadata of every group.
    pub fn groups(&self) -> &HashMap<String, GroupMetadataValue> {
        &self.groups
    }

    /// Every committed offset's key.
    pub fn keys(&self) -> impl Iterator<Item = OffsetKey> + '_ {
        self.offsets.iter().flat_map(|(group, offsets)| {
            offsets.keys().map(move |(topic, partition)| OffsetKey {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
            })
        })
    }

    /// Every group with committed offsets.
    pub fn groups_with_offsets(&self) -> impl Iterator<Item = &str> {
        self.offsets.keys().map(String::as_str)
    }

    pub fn get(&self, key: &OffsetKey) -> Option<&OffsetValue> {
        self.offsets
            .get(&key.group)?
            .get(&(key.topic.clone(), key.partition))
    }

    /// Every committed offset of a group, by (topic, partition).
    pub fn group_offsets(&self, group: &str) -> Option<&BTreeMap<(String, i32), OffsetValue>> {
        self.offsets.get(group)
    }

    /// A record batch (ready for `PartitionLog::append`) holding records.
    pub fn batch(records: &[StoreRecord], now_ms: i64) -> Vec<u8> {
        Self::batch_of(records, None, now_ms)
    }

    /// A record batch of records, transactional when a producer is given.
    pub fn batch_of(records: &[StoreRecord], txn: Option<TxnProducer>, now_ms: i64) -> Vec<u8> {
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (key, value))| Record {
                transactional: txn.is_some(),
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: txn.map_or(-1, |t| t.producer_id),
                producer_epoch: txn.map_or(-1, |t| t.producer_epoch),
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: now_ms,
                key: Some(key.encode()),
                value: value.clone(),
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .expect("encoding an uncompressed batch cannot fail");
        buf.to_vec()
    }
}

/// Whether a control record's key is a COMMIT marker (`None`: not a
/// transaction marker). Its key is `version i16 | type i16` with type 0
/// ABORT and 1 COMMIT.
fn control_commit(key: &Bytes) -> Option<bool> {
    match key.get(2..4)? {
        [0, 0] => Some(false),
        [0, 1] => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogConfig;

    fn key(group: &str, partition: i32) -> OffsetKey {
        OffsetKey {
            group: group.into(),
            topic: "t".into(),
            partition,
        }
    }

    fn value(offset: i64) -> OffsetValue {
        OffsetValue {
            offset,
            leader_epoch: 0,
            metadata: String::new(),
            commit_timestamp: 1,
            expire_timestamp: None,
        }
    }

    #[test]
    fn commits_survive_a_replay_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open(
            dir.path(),
            LogConfig::default(),
            true,
            0,
            0,
            0,
            crate::disk::LogDirHealth::without_reserve(dir.path()),
        )
        .unwrap();
        log.append(
            &OffsetStore::batch(
                &[
                    offset_record(&key("g", 0), Some(&value(5))),
                    offset_record(&key("g", 1), Some(&value(7))),
                ],
                1,
            ),
            0,
            crate::disk::AppendOrigin::Coordinator,
            1,
        )
        .unwrap();
        log.append(
            &OffsetStore::batch(
                &[
                    offset_record(&key("g", 0), Some(&value(9))),
                    offset_record(&key("h", 0), Some(&value(3))),
                    group_record("g", Some(&GroupMetadataValue::default())),
                ],
                2,
            ),
            0,
            crate::disk::AppendOrigin::Coordinator,
            2,
        )
        .unwrap();
        log.append(
            &OffsetStore::batch(&[offset_record(&key("h", 0), None)], 3),
            0,
            crate::disk::AppendOrigin::Coordinator,
            3,
        )
        .unwrap();
        let store = OffsetStore::load(&log).unwrap();
        assert_eq!(store.get(&key("g", 0)).map(|v| v.offset), Some(9));
        assert_eq!(store.get(&key("g", 1)).map(|v| v.offset), Some(7));
        assert_eq!(store.get(&key("h", 0)), None, "deleted by a tombstone");
        assert_eq!(store.group_offsets("g").map(|o| o.len()), Some(2));
        assert!(store.groups().contains_key("g"));
    }
}
