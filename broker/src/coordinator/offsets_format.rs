//! The record format of `__consumer_offsets`, byte-compatible with Kafka's
//! (`OffsetCommitKey`/`OffsetCommitValue` and `GroupMetadataKey`), so the
//! topic can be read by Kafka tooling and compacted by key.
//!
//! ```text
//! offset commit key   : version i16 = 1 | group string | topic string | partition i32
//! offset commit value : version i16 = 3 | offset i64 | leader_epoch i32 | metadata string | commit_timestamp i64
//! group metadata key  : version i16 = 2 | group string
//! ```
//! A record with a null value is a tombstone: the offset (or group) was deleted.

use bytes::{Buf, BufMut, Bytes, BytesMut};

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OffsetsKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed __consumer_offsets record: {0}")]
pub struct FormatError(&'static str);

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

fn get_string(buf: &mut Bytes) -> Result<String, FormatError> {
    if buf.remaining() < 2 {
        return Err(FormatError("string length"));
    }
    let len = buf.get_i16();
    if len < 0 || buf.remaining() < len as usize {
        return Err(FormatError("string body"));
    }
    String::from_utf8(buf.split_to(len as usize).to_vec())
        .map_err(|_| FormatError("string is not UTF-8"))
}

impl OffsetsKey {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            OffsetsKey::Offset {
                group,
                topic,
                partition,
            } => {
                buf.put_i16(OFFSET_KEY_VERSION);
                put_string(&mut buf, group);
                put_string(&mut buf, topic);
                buf.put_i32(*partition);
            }
            OffsetsKey::Group { group } => {
                buf.put_i16(GROUP_KEY_VERSION);
                put_string(&mut buf, group);
            }
        }
        buf.freeze()
    }

    pub fn decode(mut buf: Bytes) -> Result<OffsetsKey, FormatError> {
        if buf.remaining() < 2 {
            return Err(FormatError("key version"));
        }
        match buf.get_i16() {
            0 | 1 => {
                let group = get_string(&mut buf)?;
                let topic = get_string(&mut buf)?;
                if buf.remaining() < 4 {
                    return Err(FormatError("partition"));
                }
                Ok(OffsetsKey::Offset {
                    group,
                    topic,
                    partition: buf.get_i32(),
                })
            }
            2 => Ok(OffsetsKey::Group {
                group: get_string(&mut buf)?,
            }),
            _ => Err(FormatError("unknown key version")),
        }
    }

    pub fn group(&self) -> &str {
        match self {
            OffsetsKey::Offset { group, .. } | OffsetsKey::Group { group } => group,
        }
    }
}

impl OffsetValue {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(OFFSET_VALUE_VERSION);
        buf.put_i64(self.offset);
        buf.put_i32(self.leader_epoch);
        put_string(&mut buf, &self.metadata);
        buf.put_i64(self.commit_timestamp);
        buf.freeze()
    }

    /// Reads value versions 0-3 (v1 carries an expire timestamp, v3 a leader epoch).
    pub fn decode(mut buf: Bytes) -> Result<OffsetValue, FormatError> {
        if buf.remaining() < 2 {
            return Err(FormatError("value version"));
        }
        let version = buf.get_i16();
        if !(0..=3).contains(&version) {
            return Err(FormatError("unknown value version"));
        }
        if buf.remaining() < 8 {
            return Err(FormatError("offset"));
        }
        let offset = buf.get_i64();
        let leader_epoch = if version >= 3 {
            if buf.remaining() < 4 {
                return Err(FormatError("leader epoch"));
            }
            buf.get_i32()
        } else {
            -1
        };
        let metadata = get_string(&mut buf)?;
        if buf.remaining() < 8 {
            return Err(FormatError("commit timestamp"));
        }
        let commit_timestamp = buf.get_i64();
        Ok(OffsetValue {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
        })
    }
}

/// The `__consumer_offsets` partition holding a group's records: Kafka's
/// `abs(groupId.hashCode) % offsets.topic.num.partitions`, with Java's
/// String.hashCode over UTF-16 code units.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let hash = group
        .encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(unit as i32));
    // Kafka's Utils.abs maps i32::MIN to 0.
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let key = OffsetsKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        assert_eq!(OffsetsKey::decode(key.encode()), Ok(key));
        let key = OffsetsKey::Group { group: "g".into() };
        assert_eq!(OffsetsKey::decode(key.encode()), Ok(key));
        let value = OffsetValue {
            offset: 42,
            leader_epoch: 7,
            metadata: "m".into(),
            commit_timestamp: 1000,
        };
        assert_eq!(OffsetValue::decode(value.encode()), Ok(value));
        assert!(OffsetsKey::decode(Bytes::from_static(&[0, 1, 0, 9, b'x'])).is_err());
    }

    #[test]
    fn a_kafka_v1_value_is_read() {
        // version 1: offset, metadata, commit timestamp, expire timestamp.
        let mut buf = BytesMut::new();
        buf.put_i16(1);
        buf.put_i64(5);
        put_string(&mut buf, "");
        buf.put_i64(10);
        buf.put_i64(20);
        let value = OffsetValue::decode(buf.freeze()).unwrap();
        assert_eq!(
            (value.offset, value.leader_epoch, value.commit_timestamp),
            (5, -1, 10)
        );
    }

    #[test]
    fn partitioning_matches_java_string_hash_code() {
        // Java: "test-group".hashCode() == 627_841_412; 627_841_412 % 50 == 12.
        assert_eq!(partition_for("test-group", 50), 12);
        // A negative hash: "polygenelubricants".hashCode() == i32::MIN, which Kafka maps to 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("", 50), 0);
    }
}
