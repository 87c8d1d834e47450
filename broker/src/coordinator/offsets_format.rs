//! The record format of `__consumer_offsets`, byte-compatible with Kafka's
//! (`OffsetCommitKey`/`OffsetCommitValue` and `GroupMetadataKey`), so the
//! topic can be read by Kafka tooling and compacted by key.
//!
//! ```text
//! offset commit key   : version i16 = 1 | group string | topic string | partition i32
//! offset commit value : version i16 = 3 | offset i64 | leader_epoch i32 | metadata string | commit_timestamp i64
//!                       (version 1 when the commit set its own retention: offset | metadata
//!                        | commit_timestamp | expire_timestamp i64)
//! group metadata key  : version i16 = 2 | group string
//! group metadata value: version i16 = 3 | protocol_type string | generation i32
//!                       | protocol string? | leader string? | state_timestamp i64
//!                       | members [member_id | instance_id? | client_id | client_host
//!                                  | rebalance_timeout i32 | session_timeout i32
//!                                  | subscription bytes | assignment bytes]
//! ```
//! A record with a null value is a tombstone: the offset (or group) was deleted.

use bytes::{Buf, BufMut, Bytes, BytesMut};

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

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
    /// Set by OffsetCommit v2-v4 with an explicit retention time: the
    /// offset expires then, whatever the group does.
    pub expire_timestamp: Option<i64>,
}

/// What a group looked like when it last became stable or empty, so a
/// coordinator taking over (or restarting) knows its members and generation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupMetadataValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<MemberMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberMetadata {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
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

fn put_nullable_string(buf: &mut BytesMut, s: &Option<String>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn get_nullable_string(buf: &mut Bytes) -> Result<Option<String>, FormatError> {
    if buf.remaining() >= 2 && buf[..2] == [0xff, 0xff] {
        buf.advance(2);
        return Ok(None);
    }
    get_string(buf).map(Some)
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

fn get_bytes(buf: &mut Bytes) -> Result<Bytes, FormatError> {
    let len = get_i32(buf)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    if buf.remaining() < len as usize {
        return Err(FormatError("bytes body"));
    }
    Ok(buf.split_to(len as usize))
}

fn get_i32(buf: &mut Bytes) -> Result<i32, FormatError> {
    if buf.remaining() < 4 {
        return Err(FormatError("int32"));
    }
    Ok(buf.get_i32())
}

fn get_i64(buf: &mut Bytes) -> Result<i64, FormatError> {
    if buf.remaining() < 8 {
        return Err(FormatError("int64"));
    }
    Ok(buf.get_i64())
}

impl GroupMetadataValue {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(GROUP_VALUE_VERSION);
        put_string(&mut buf, &self.protocol_type);
        buf.put_i32(self.generation);
        put_nullable_string(&mut buf, &self.protocol);
        put_nullable_string(&mut buf, &self.leader);
        buf.put_i64(self.state_timestamp);
        buf.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_string(&mut buf, &m.member_id);
            put_nullable_string(&mut buf, &m.group_instance_id);
            put_string(&mut buf, &m.client_id);
            put_string(&mut buf, &m.client_host);
            buf.put_i32(m.rebalance_timeout_ms);
            buf.put_i32(m.session_timeout_ms);
            put_bytes(&mut buf, &m.subscription);
            put_bytes(&mut buf, &m.assignment);
        }
        buf.freeze()
    }

    /// Reads Kafka's non-flexible value versions 0-3 (v1 adds the rebalance
    /// timeout, v2 the state timestamp, v3 the instance id).
    pub fn decode(mut buf: Bytes) -> Result<GroupMetadataValue, FormatError> {
        if buf.remaining() < 2 {
            return Err(FormatError("group value version"));
        }
        let version = buf.get_i16();
        if !(0..=3).contains(&version) {
            return Err(FormatError("unknown group value version"));
        }
        let protocol_type = get_string(&mut buf)?;
        let generation = get_i32(&mut buf)?;
        let protocol = get_nullable_string(&mut buf)?;
        let leader = get_nullable_string(&mut buf)?;
        let state_timestamp = if version >= 2 { get_i64(&mut buf)? } else { -1 };
        let count = get_i32(&mut buf)?;
        let mut members = Vec::new();
        for _ in 0..count.max(0) {
            let member_id = get_string(&mut buf)?;
            let group_instance_id = if version >= 3 {
                get_nullable_string(&mut buf)?
            } else {
                None
            };
            let client_id = get_string(&mut buf)?;
            let client_host = get_string(&mut buf)?;
            let rebalance_timeout_ms = if version >= 1 { get_i32(&mut buf)? } else { -1 };
            let session_timeout_ms = get_i32(&mut buf)?;
            members.push(MemberMetadata {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                // v0 had one timeout for both.
                rebalance_timeout_ms: if rebalance_timeout_ms < 0 {
                    session_timeout_ms
                } else {
                    rebalance_timeout_ms
                },
                session_timeout_ms,
                subscription: get_bytes(&mut buf)?,
                assignment: get_bytes(&mut buf)?,
            });
        }
        Ok(GroupMetadataValue {
            protocol_type,
            generation,
            protocol,
            leader,
            state_timestamp,
            members,
        })
    }
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
        match self.expire_timestamp {
            // Only version 1 carries an expire timestamp (as Kafka writes it).
            Some(expire) => {
                buf.put_i16(1);
                buf.put_i64(self.offset);
                put_string(&mut buf, &self.metadata);
                buf.put_i64(self.commit_timestamp);
                buf.put_i64(expire);
            }
            None => {
                buf.put_i16(OFFSET_VALUE_VERSION);
                buf.put_i64(self.offset);
                buf.put_i32(self.leader_epoch);
                put_string(&mut buf, &self.metadata);
                buf.put_i64(self.commit_timestamp);
            }
        }
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
        let expire_timestamp = if version == 1 {
            Some(get_i64(&mut buf)?)
        } else {
            None
        };
        Ok(OffsetValue {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
            expire_timestamp,
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
            expire_timestamp: None,
        };
        assert_eq!(OffsetValue::decode(value.encode()), Ok(value.clone()));
        let value = OffsetValue {
            leader_epoch: -1,
            expire_timestamp: Some(5000),
            ..value
        };
        assert_eq!(OffsetValue::decode(value.encode()), Ok(value));
        assert!(OffsetsKey::decode(Bytes::from_static(&[0, 1, 0, 9, b'x'])).is_err());
    }

    #[test]
    fn group_metadata_round_trips() {
        let value = GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp: 99,
            members: vec![MemberMetadata {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(GroupMetadataValue::decode(value.encode()), Ok(value));
        let empty = GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 5,
            ..GroupMetadataValue::default()
        };
        assert_eq!(GroupMetadataValue::decode(empty.encode()), Ok(empty));
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
