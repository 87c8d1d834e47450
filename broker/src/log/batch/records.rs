//! The records inside a batch (after decompression): each is a varint
//! length and then its attributes, timestamp and offset deltas, key, value
//! and headers. The broker reads them only to check what a client sent and
//! to let the cleaner pick the records it keeps.

use std::io;

use super::{BatchError, BatchHeader};

/// One record, as the cleaner needs to see it.
pub struct Record<'a> {
    /// The record's bytes including its length prefix.
    pub raw: &'a [u8],
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// A null value: a delete of its key.
    pub tombstone: bool,
}

/// Walks the records of an uncompressed batch: each is a varint length
/// followed by that many bytes, and the offset deltas run 0, 1, 2, ...
pub(crate) fn check_uncompressed(mut records: &[u8], count: i32) -> Result<(), BatchError> {
    for expected_delta in 0..count {
        let length = read_varint(&mut records).ok_or(BatchError::BadRecords("record length"))?;
        if length < 0 || length as usize > records.len() {
            return Err(BatchError::BadRecords("record length exceeds the batch"));
        }
        let mut record = &records[..length as usize];
        records = &records[length as usize..];
        if record.is_empty() {
            return Err(BatchError::BadRecords("empty record"));
        }
        record = &record[1..]; // attributes
        read_varint(&mut record).ok_or(BatchError::BadRecords("timestamp delta"))?;
        let delta = read_varint(&mut record).ok_or(BatchError::BadRecords("offset delta"))?;
        if delta != expected_delta as i64 {
            return Err(BatchError::BadRecords("offset deltas are not consecutive"));
        }
    }
    if !records.is_empty() {
        return Err(BatchError::BadRecords("bytes left after the last record"));
    }
    Ok(())
}

/// The records of the batch `header` heads; `data` is its records section,
/// uncompressed.
pub fn parse<'a>(header: &BatchHeader, mut data: &'a [u8]) -> io::Result<Vec<Record<'a>>> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("malformed record in batch {}: {what}", header.base_offset),
        )
    };
    let mut records = Vec::with_capacity(header.records_count.max(0) as usize);
    for _ in 0..header.records_count {
        let start = data;
        let length = read_varint(&mut data).ok_or_else(|| bad("length"))?;
        if length < 1 || length as usize > data.len() {
            return Err(bad("length"));
        }
        let prefix = start.len() - data.len();
        let raw = &start[..prefix + length as usize];
        let mut body = &data[1..length as usize];
        data = &data[length as usize..];
        let ts_delta = read_varint(&mut body).ok_or_else(|| bad("timestamp"))?;
        let offset_delta = read_varint(&mut body).ok_or_else(|| bad("offset"))?;
        let key_length = read_varint(&mut body).ok_or_else(|| bad("key length"))?;
        let key = if key_length < 0 {
            None
        } else {
            if key_length as usize > body.len() {
                return Err(bad("key"));
            }
            let (key, rest) = body.split_at(key_length as usize);
            body = rest;
            Some(key)
        };
        let value_length = read_varint(&mut body).ok_or_else(|| bad("value length"))?;
        let value = if value_length < 0 {
            None
        } else {
            Some(
                body.get(..value_length as usize)
                    .ok_or_else(|| bad("value"))?,
            )
        };
        records.push(Record {
            raw,
            offset: header.base_offset + offset_delta,
            timestamp: header.base_timestamp.saturating_add(ts_delta),
            key,
            value,
            tombstone: value_length < 0,
        });
    }
    Ok(records)
}

/// Zig-zag varint (Kafka's record encoding); `None` if truncated or too long.
fn read_varint(buf: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}
