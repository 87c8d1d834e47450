//! Committed offsets as a view of one `__consumer_offsets` partition: the
//! latest record per key wins, and a tombstone removes the entry. The view
//! is rebuilt by replaying the partition when this broker becomes its
//! coordinator; commits are appended to the partition first and applied to
//! the view once written, so what a client reads back is what the log holds.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::offsets_format::{OffsetValue, OffsetsKey};
use crate::log::PartitionLog;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OffsetKey {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

#[derive(Debug, Default)]
pub struct OffsetStore {
    offsets: HashMap<OffsetKey, OffsetValue>,
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
                    if record.offset >= offset {
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
        let OffsetsKey::Offset {
            group,
            topic,
            partition,
        } = key
        else {
            return;
        };
        let key = OffsetKey {
            group,
            topic,
            partition,
        };
        match value.map(OffsetValue::decode) {
            Some(Ok(value)) => {
                self.offsets.insert(key, value);
            }
            Some(Err(_)) => {}
            None => {
                self.offsets.remove(&key);
            }
        }
    }

    pub fn get(&self, key: &OffsetKey) -> Option<&OffsetValue> {
        self.offsets.get(key)
    }

    /// Every committed offset of a group.
    pub fn group_offsets(&self, group: &str) -> Vec<(&OffsetKey, &OffsetValue)> {
        self.offsets
            .iter()
            .filter(|(k, _)| k.group == group)
            .collect()
    }

    /// A record batch (ready for `PartitionLog::append`) holding commits
    /// (`Some`) and deletions (`None`).
    pub fn batch(entries: &[(OffsetKey, Option<OffsetValue>)], now_ms: i64) -> Vec<u8> {
        let records: Vec<Record> = entries
            .iter()
            .enumerate()
            .map(|(i, (key, value))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: now_ms,
                key: Some(
                    OffsetsKey::Offset {
                        group: key.group.clone(),
                        topic: key.topic.clone(),
                        partition: key.partition,
                    }
                    .encode(),
                ),
                value: value.as_ref().map(OffsetValue::encode),
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
        }
    }

    #[test]
    fn commits_survive_a_replay_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) =
            PartitionLog::open(dir.path(), LogConfig::default(), true, 0, 0, 0).unwrap();
        log.append(
            &OffsetStore::batch(
                &[(key("g", 0), Some(value(5))), (key("g", 1), Some(value(7)))],
                1,
            ),
            0,
            1,
        )
        .unwrap();
        log.append(
            &OffsetStore::batch(
                &[(key("g", 0), Some(value(9))), (key("h", 0), Some(value(3)))],
                2,
            ),
            0,
            2,
        )
        .unwrap();
        log.append(&OffsetStore::batch(&[(key("h", 0), None)], 3), 0, 3)
            .unwrap();
        let store = OffsetStore::load(&log).unwrap();
        assert_eq!(store.get(&key("g", 0)).map(|v| v.offset), Some(9));
        assert_eq!(store.get(&key("g", 1)).map(|v| v.offset), Some(7));
        assert_eq!(store.get(&key("h", 0)), None, "deleted by a tombstone");
        assert_eq!(store.group_offsets("g").len(), 2);
    }
}
