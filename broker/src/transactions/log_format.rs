//! The record format of `__transaction_state`, byte-compatible with Kafka's
//! `TransactionLogKey` / `TransactionLogValue`, so the topic can be read by
//! Kafka tooling and compacted by key (the transactional id).
//!
//! ```text
//! key      : version i16 = 0 | transactional_id string
//! value v0 : version i16 = 0 | producer_id i64 | producer_epoch i16 | timeout_ms i32
//!            | status i8 | partitions [topic string | [partition i32]]? (nullable)
//!            | last_update_ms i64 | start_ms i64
//! value v1 : the same fields, flexible (compact strings and arrays, tagged fields),
//!            plus tags 0 previous_producer_id i64, 1 next_producer_id i64,
//!            2 client_transaction_version i16
//! ```
//! Version 1 is written for transactions of clients using transaction
//! version 2 (KIP-890 part 2), version 0 otherwise, as Kafka 4 does. A null
//! value is a tombstone: the transactional id expired.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::metadata::TxnState;

const KEY_VERSION: i16 = 0;

/// What the log stores of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLogValue {
    pub producer_id: i64,
    pub previous_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_ms: i64,
    pub start_ms: i64,
    pub client_version: i16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed __transaction_state record: {0}")]
pub struct FormatError(&'static str);

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + transactional_id.len());
    buf.put_i16(KEY_VERSION);
    buf.put_i16(transactional_id.len() as i16);
    buf.put_slice(transactional_id.as_bytes());
    buf.freeze()
}

pub fn decode_key(mut buf: Bytes) -> Result<String, FormatError> {
    if need(&buf, 2).is_err() || buf.get_i16() != KEY_VERSION {
        return Err(FormatError("unknown key version"));
    }
    let len = get_i16(&mut buf)?;
    string(&mut buf, len as i64)
}

impl TxnLogValue {
    pub fn encode(&self) -> Bytes {
        let flexible = self.client_version >= 2;
        let mut buf = BytesMut::with_capacity(64);
        buf.put_i16(if flexible { 1 } else { 0 });
        buf.put_i64(self.producer_id);
        buf.put_i16(self.producer_epoch);
        buf.put_i32(self.timeout_ms);
        buf.put_i8(self.state as i8);
        // Kafka writes no partition list (null) for an Empty transaction.
        let null = self.state == TxnState::Empty;
        let topics = if null { Vec::new() } else { self.topics() };
        match (flexible, null) {
            (true, true) => put_uvarint(&mut buf, 0),
            (true, false) => put_uvarint(&mut buf, topics.len() as u64 + 1),
            (false, true) => buf.put_i32(-1),
            (false, false) => buf.put_i32(topics.len() as i32),
        }
        for (topic, partitions) in &topics {
            if flexible {
                put_uvarint(&mut buf, topic.len() as u64 + 1);
            } else {
                buf.put_i16(topic.len() as i16);
            }
            buf.put_slice(topic.as_bytes());
            if flexible {
                put_uvarint(&mut buf, partitions.len() as u64 + 1);
            } else {
                buf.put_i32(partitions.len() as i32);
            }
            for p in partitions {
                buf.put_i32(*p);
            }
            if flexible {
                put_uvarint(&mut buf, 0); // no tagged fields
            }
        }
        buf.put_i64(self.last_update_ms);
        buf.put_i64(self.start_ms);
        if flexible {
            put_uvarint(&mut buf, 3);
            for (tag, value) in [
                (0u64, self.previous_producer_id.to_be_bytes().to_vec()),
                (1, self.next_producer_id.to_be_bytes().to_vec()),
                (2, self.client_version.to_be_bytes().to_vec()),
            ] {
                put_uvarint(&mut buf, tag);
                put_uvarint(&mut buf, value.len() as u64);
                buf.put_slice(&value);
            }
        }
        buf.freeze()
    }

    /// The partitions grouped by topic, as the record lists them.
    fn topics(&self) -> Vec<(&str, Vec<i32>)> {
        let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
        for (topic, partition) in &self.partitions {
            match topics.last_mut() {
                Some((t, ps)) if *t == topic.as_str() => ps.push(*partition),
                _ => topics.push((topic, vec![*partition])),
            }
        }
        topics
    }

    pub fn decode(mut buf: Bytes) -> Result<TxnLogValue, FormatError> {
        let version = get_i16(&mut buf)?;
        let flexible = match version {
            0 => false,
            1 => true,
            _ => return Err(FormatError("unknown value version")),
        };
        need(&buf, 15)?;
        let producer_id = buf.get_i64();
        let producer_epoch = buf.get_i16();
        let timeout_ms = buf.get_i32();
        let state = TxnState::from_code(buf.get_i8()).ok_or(FormatError("unknown status"))?;
        let count = if flexible {
            get_uvarint(&mut buf)? as i64 - 1
        } else {
            get_i32(&mut buf)? as i64
        };
        let mut partitions = BTreeSet::new();
        for _ in 0..count.max(0) {
            let len = if flexible {
                get_uvarint(&mut buf)? as i64 - 1
            } else {
                get_i16(&mut buf)? as i64
            };
            let topic = string(&mut buf, len)?;
            let n = if flexible {
                get_uvarint(&mut buf)? as i64 - 1
            } else {
                get_i32(&mut buf)? as i64
            };
            for _ in 0..n.max(0) {
                partitions.insert((topic.clone(), get_i32(&mut buf)?));
            }
            if flexible {
                skip_tagged_fields(&mut buf)?;
            }
        }
        need(&buf, 16)?;
        let last_update_ms = buf.get_i64();
        let start_ms = buf.get_i64();
        let mut value = TxnLogValue {
            producer_id,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch,
            timeout_ms,
            state,
            partitions,
            last_update_ms,
            start_ms,
            client_version: 0,
        };
        if flexible {
            for _ in 0..get_uvarint(&mut buf)? {
                let tag = get_uvarint(&mut buf)?;
                let size = get_uvarint(&mut buf)? as usize;
                need(&buf, size)?;
                let mut field = buf.split_to(size);
                match (tag, size) {
                    (0, 8) => value.previous_producer_id = field.get_i64(),
                    (1, 8) => value.next_producer_id = field.get_i64(),
                    (2, 2) => value.client_version = field.get_i16(),
                    _ => {} // a tag this version does not know
                }
            }
        }
        Ok(value)
    }
}

fn need(buf: &Bytes, n: usize) -> Result<(), FormatError> {
    if buf.remaining() < n {
        Err(FormatError("truncated"))
    } else {
        Ok(())
    }
}

fn get_i16(buf: &mut Bytes) -> Result<i16, FormatError> {
    need(buf, 2)?;
    Ok(buf.get_i16())
}

fn get_i32(buf: &mut Bytes) -> Result<i32, FormatError> {
    need(buf, 4)?;
    Ok(buf.get_i32())
}

fn string(buf: &mut Bytes, len: i64) -> Result<String, FormatError> {
    if len < 0 {
        return Err(FormatError("null string"));
    }
    need(buf, len as usize)?;
    String::from_utf8(buf.split_to(len as usize).to_vec())
        .map_err(|_| FormatError("string is not UTF-8"))
}

fn put_uvarint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

fn get_uvarint(buf: &mut Bytes) -> Result<u64, FormatError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        need(buf, 1)?;
        let byte = buf.get_u8();
        value |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(FormatError("varint too long"))
}

fn skip_tagged_fields(buf: &mut Bytes) -> Result<(), FormatError> {
    for _ in 0..get_uvarint(buf)? {
        get_uvarint(buf)?;
        let size = get_uvarint(buf)? as usize;
        need(buf, size)?;
        buf.advance(size);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(client_version: i16) -> TxnLogValue {
        TxnLogValue {
            producer_id: 4000,
            previous_producer_id: if client_version >= 2 { 3999 } else { -1 },
            next_producer_id: -1,
            producer_epoch: 7,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [
                ("a".to_string(), 0),
                ("a".to_string(), 3),
                ("b".to_string(), 1),
            ]
            .into_iter()
            .collect(),
            last_update_ms: 1_700_000_000_123,
            start_ms: 1_700_000_000_000,
            client_version,
        }
    }

    #[test]
    fn keys_and_both_value_versions_round_trip() {
        assert_eq!(decode_key(encode_key("txn-é")).unwrap(), "txn-é");
        for version in [0, 2] {
            let v = value(version);
            let bytes = v.encode();
            assert_eq!(bytes[..2], [0, if version >= 2 { 1 } else { 0 }]);
            assert_eq!(TxnLogValue::decode(bytes).unwrap(), v);
        }
    }

    /// The exact bytes of Kafka's version 0, so Kafka tooling reads ours.
    #[test]
    fn version_0_is_kafkas_layout() {
        let mut v = value(0);
        v.partitions = [("t".to_string(), 2)].into_iter().collect();
        let mut expected = vec![0, 0];
        expected.extend(4000i64.to_be_bytes());
        expected.extend(7i16.to_be_bytes());
        expected.extend(60_000i32.to_be_bytes());
        expected.push(1); // Ongoing
        expected.extend(1i32.to_be_bytes());
        expected.extend([0, 1, b't']);
        expected.extend(1i32.to_be_bytes());
        expected.extend(2i32.to_be_bytes());
        expected.extend(1_700_000_000_123i64.to_be_bytes());
        expected.extend(1_700_000_000_000i64.to_be_bytes());
        assert_eq!(v.encode().to_vec(), expected);
        assert_eq!(encode_key("t").to_vec(), vec![0, 0, 0, 1, b't']);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for len in 0..value(2).encode().len() {
            let bytes = value(2).encode().slice(..len);
            assert!(TxnLogValue::decode(bytes).is_err(), "{len}");
        }
        assert!(TxnLogValue::decode(Bytes::from_static(&[0, 9])).is_err());
        assert!(decode_key(Bytes::from_static(&[0, 1, 0, 1, b'x'])).is_err());
    }
}
