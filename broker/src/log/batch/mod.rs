//! Kafka record batches (magic v2) as stored on disk and sent on the wire:
//! a 61-byte header (its fields, big endian, are in [`field`]) and then the
//! records, compressed as one block in the codec the attributes name.
//!
//! The broker keeps batches as the producer sent them; it only rewrites the
//! base offset and leader epoch (outside the CRC) and, for LogAppendTime
//! topics, the timestamp fields (then the CRC is recomputed) — unless the
//! topic's `compression.type` asks for another codec, or the log cleaner
//! drops some of the records (`codec`). `records` walks the records inside.

use bytes::Buf;

pub mod codec;
pub mod records;

/// Where each header field sits, as a byte range of the batch; each starts
/// where the one before ends.
pub mod field {
    use std::ops::Range;

    /// i64
    pub const BASE_OFFSET: Range<usize> = 0..8;
    /// i32, the bytes after this field.
    pub const BATCH_LENGTH: Range<usize> = 8..12;
    /// i32
    pub const PARTITION_LEADER_EPOCH: Range<usize> = 12..16;
    /// i8, always 2.
    pub const MAGIC: Range<usize> = 16..17;
    /// u32, CRC-32C of every byte from the attributes to the batch's end.
    pub const CRC: Range<usize> = 17..21;
    /// i16: codec, timestamp type, transactional, control.
    pub const ATTRIBUTES: Range<usize> = 21..23;
    /// i32
    pub const LAST_OFFSET_DELTA: Range<usize> = 23..27;
    /// i64
    pub const BASE_TIMESTAMP: Range<usize> = 27..35;
    /// i64
    pub const MAX_TIMESTAMP: Range<usize> = 35..43;
    /// i64
    pub const PRODUCER_ID: Range<usize> = 43..51;
    /// i16
    pub const PRODUCER_EPOCH: Range<usize> = 51..53;
    /// i32
    pub const BASE_SEQUENCE: Range<usize> = 53..57;
    /// i32; the records follow.
    pub const RECORDS_COUNT: Range<usize> = 57..61;
}

pub const HEADER_SIZE: usize = field::RECORDS_COUNT.end;
/// Bytes of a batch before `batchLength` counts: baseOffset + batchLength.
pub const LOG_OVERHEAD: usize = field::BATCH_LENGTH.end;
/// The CRC covers the batch from here on.
pub(crate) const CRC_START: usize = field::ATTRIBUTES.start;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

pub const NO_PRODUCER_ID: i64 = -1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch is truncated ({0} bytes left)")]
    Truncated(usize),
    #[error("record batch has invalid length {0}")]
    BadLength(i32),
    #[error("unsupported record batch magic {0} (only v2 is accepted)")]
    BadMagic(i8),
    #[error("record batch CRC mismatch (stored {stored:#x}, computed {computed:#x})")]
    BadCrc { stored: u32, computed: u32 },
    #[error("record batch has {0} records")]
    BadCount(i32),
    #[error("record batch lastOffsetDelta {delta} does not match {count} records")]
    BadOffsetDelta { delta: i32, count: i32 },
    #[error("record batch uses unknown compression codec {0}")]
    BadCompression(i16),
    #[error("records inside the batch are malformed: {0}")]
    BadRecords(&'static str),
    #[error("control batches may not be produced by clients")]
    ControlBatch,
}

/// The fields of a batch header the broker reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `bytes` (which must hold at least
    /// [`HEADER_SIZE`] bytes); checks nothing beyond the length.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < HEADER_SIZE {
            return Err(BatchError::Truncated(bytes.len()));
        }
        let mut b = &bytes[..HEADER_SIZE];
        Ok(BatchHeader {
            base_offset: b.get_i64(),
            batch_length: b.get_i32(),
            partition_leader_epoch: b.get_i32(),
            magic: b.get_i8(),
            crc: b.get_u32(),
            attributes: b.get_i16(),
            last_offset_delta: b.get_i32(),
            base_timestamp: b.get_i64(),
            max_timestamp: b.get_i64(),
            producer_id: b.get_i64(),
            producer_epoch: b.get_i16(),
            base_sequence: b.get_i32(),
            records_count: b.get_i32(),
        })
    }

    /// Size of the whole batch including offset and length fields.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_TYPE != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn has_producer_id(&self) -> bool {
        self.producer_id != NO_PRODUCER_ID
    }

    /// Sequence number of the last record (sequences wrap at i32::MAX).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return self.base_sequence;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        (last % (i32::MAX as i64 + 1)) as i32
    }
}

/// Reads the `batchLength` field of a batch starting at `bytes[0]`, if
/// enough bytes are present, and checks it is plausible.
pub fn batch_size_at(bytes: &[u8]) -> Result<usize, BatchError> {
    if bytes.len() < LOG_OVERHEAD {
        return Err(BatchError::Truncated(bytes.len()));
    }
    let length = i32::from_be_bytes(bytes[field::BATCH_LENGTH].try_into().expect("4 bytes"));
    if length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
        return Err(BatchError::BadLength(length));
    }
    Ok(LOG_OVERHEAD + length as usize)
}

/// The batches of a record set in order, as `(position, size)`; ends with
/// an error where the bytes left are not a whole batch (a produce request
/// with that is corrupt; a fetch response may end so, and its reader stops).
pub fn batch_spans(
    records: &[u8],
) -> impl Iterator<Item = Result<(usize, usize), BatchError>> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= records.len() {
            return None;
        }
        let span = match batch_size_at(&records[pos..]) {
            Ok(size) if pos + size <= records.len() => Ok((pos, size)),
            Ok(_) => Err(BatchError::Truncated(records.len() - pos)),
            Err(e) => Err(e),
        };
        pos = match span {
            Ok((_, size)) => pos + size,
            Err(_) => records.len(),
        };
        Some(span)
    })
}

/// Fully validates one stored or produced batch occupying all of `bytes`:
/// magic, CRC-32C, record count and offset delta, codec.
pub fn validate(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    if header.batch_length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
        return Err(BatchError::BadLength(header.batch_length));
    }
    if header.total_size() != bytes.len() {
        return Err(BatchError::Truncated(bytes.len()));
    }
    if header.magic != 2 {
        return Err(BatchError::BadMagic(header.magic));
    }
    let computed = crc32c::crc32c(&bytes[CRC_START..]);
    if computed != header.crc {
        return Err(BatchError::BadCrc {
            stored: header.crc,
            computed,
        });
    }
    if header.records_count < 0 {
        return Err(BatchError::BadCount(header.records_count));
    }
    if header.compression() > 4 {
        return Err(BatchError::BadCompression(header.compression()));
    }
    Ok(header)
}

/// Extra checks for a batch a client produced: it must hold records whose
/// offsets are consecutive and, when uncompressed, whose framing adds up.
pub fn validate_produced(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = validate(bytes)?;
    if header.is_control() {
        return Err(BatchError::ControlBatch);
    }
    if header.records_count < 1 {
        return Err(BatchError::BadCount(header.records_count));
    }
    if header.last_offset_delta != header.records_count - 1 {
        return Err(BatchError::BadOffsetDelta {
            delta: header.last_offset_delta,
            count: header.records_count,
        });
    }
    if header.compression() == 0 {
        records::check_uncompressed(&bytes[HEADER_SIZE..], header.records_count)?;
    }
    Ok(header)
}

/// Rewrites the broker-assigned fields in a copy of a validated batch's
/// header; `rest` is the batch after the header, which stays as it is (the
/// CRC, when the timestamps change, covers both).
pub fn assign_header(
    header: &mut [u8; HEADER_SIZE],
    rest: &[u8],
    base_offset: i64,
    leader_epoch: i32,
    log_append_time: Option<i64>,
) {
    header[field::BASE_OFFSET].copy_from_slice(&base_offset.to_be_bytes());
    header[field::PARTITION_LEADER_EPOCH].copy_from_slice(&leader_epoch.to_be_bytes());
    if let Some(now) = log_append_time {
        let attributes = i16::from_be_bytes(header[field::ATTRIBUTES].try_into().expect("2 bytes"))
            | ATTR_TIMESTAMP_TYPE;
        header[field::ATTRIBUTES].copy_from_slice(&attributes.to_be_bytes());
        header[field::MAX_TIMESTAMP].copy_from_slice(&now.to_be_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header[CRC_START..]), rest);
        header[field::CRC].copy_from_slice(&crc.to_be_bytes());
    }
}

#[cfg(test)]
pub mod test_support {
    //! Builds small uncompressed batches for unit tests.
    use super::{assign_header, field, CRC_START, HEADER_SIZE, LOG_OVERHEAD};
    use bytes::BufMut;

    /// [`assign_header`] on a whole batch in place.
    pub fn assign(
        bytes: &mut [u8],
        base_offset: i64,
        leader_epoch: i32,
        log_append_time: Option<i64>,
    ) {
        let (header, rest) = bytes.split_at_mut(HEADER_SIZE);
        let header: &mut [u8; HEADER_SIZE] = header.try_into().expect("a header");
        assign_header(header, rest, base_offset, leader_epoch, log_append_time);
    }

    /// A batch of one record with `key` and `value`, no producer id.
    pub fn keyed_batch(key: &[u8], value: &[u8]) -> Vec<u8> {
        build(&[(Some(key), value)], 0, (-1, -1, -1))
    }

    /// Marks a batch made by [`batch`] transactional (KIP-98).
    pub fn transactional(mut bytes: Vec<u8>) -> Vec<u8> {
        let attributes = i16::from_be_bytes(bytes[field::ATTRIBUTES].try_into().expect("2"))
            | super::ATTR_TRANSACTIONAL;
        bytes[field::ATTRIBUTES].copy_from_slice(&attributes.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[CRC_START..]);
        bytes[field::CRC].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    fn put_varint(buf: &mut Vec<u8>, value: i64) {
        let mut v = ((value << 1) ^ (value >> 63)) as u64;
        loop {
            if v < 0x80 {
                buf.put_u8(v as u8);
                return;
            }
            buf.put_u8((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
    }

    /// A batch of `values` with the given producer fields.
    pub fn batch(values: &[&[u8]], timestamp: i64, producer: (i64, i16, i32)) -> Vec<u8> {
        let records: Vec<(Option<&[u8]>, &[u8])> = values.iter().map(|v| (None, *v)).collect();
        build(&records, timestamp, producer)
    }

    /// A batch of `(key, value)` records.
    fn build(
        values: &[(Option<&[u8]>, &[u8])],
        timestamp: i64,
        producer: (i64, i16, i32),
    ) -> Vec<u8> {
        let mut records = Vec::new();
        for (i, (key, value)) in values.iter().enumerate() {
            let mut record = Vec::new();
            record.put_u8(0);
            put_varint(&mut record, 0);
            put_varint(&mut record, i as i64);
            match key {
                Some(key) => {
                    put_varint(&mut record, key.len() as i64);
                    record.extend_from_slice(key);
                }
                None => put_varint(&mut record, -1),
            }
            put_varint(&mut record, value.len() as i64);
            record.extend_from_slice(value);
            put_varint(&mut record, 0);
            put_varint(&mut records, record.len() as i64);
            records.extend_from_slice(&record);
        }
        let mut out = Vec::new();
        out.put_i64(0);
        out.put_i32((HEADER_SIZE - LOG_OVERHEAD + records.len()) as i32);
        out.put_i32(-1);
        out.put_i8(2);
        out.put_u32(0);
        out.put_i16(0);
        out.put_i32(values.len() as i32 - 1);
        out.put_i64(timestamp);
        out.put_i64(timestamp);
        out.put_i64(producer.0);
        out.put_i16(producer.1);
        out.put_i32(producer.2);
        out.put_i32(values.len() as i32);
        out.extend_from_slice(&records);
        let crc = crc32c::crc32c(&out[CRC_START..]);
        out[field::CRC].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::batch;
    use super::*;

    #[test]
    fn a_record_set_splits_into_its_batches_and_a_partial_tail_is_an_error() {
        let (a, b) = (
            batch(&[b"a"], 0, (-1, -1, -1)),
            batch(&[b"bb"], 0, (-1, -1, -1)),
        );
        let mut set = [a.clone(), b.clone()].concat();
        let spans: Vec<_> = batch_spans(&set).collect::<Result<_, _>>().unwrap();
        assert_eq!(spans, vec![(0, a.len()), (a.len(), b.len())]);
        set.truncate(a.len() + 20);
        let spans: Vec<_> = batch_spans(&set).collect();
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].as_ref().ok(), Some(&(0, a.len())));
        assert!(matches!(spans[1], Err(BatchError::Truncated(20))));
        assert_eq!(batch_spans(&[]).count(), 0);
    }

    #[test]
    fn a_well_formed_batch_validates_and_offsets_can_be_assigned() {
        let mut bytes = batch(&[b"a", b"bb", b"ccc"], 1000, (-1, -1, -1));
        let header = validate_produced(&bytes).unwrap();
        assert_eq!(header.records_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        test_support::assign(&mut bytes, 42, 3, Some(5000));
        let header = validate(&bytes).unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.last_offset(), 44);
        assert_eq!(header.partition_leader_epoch, 3);
        assert_eq!(header.max_timestamp, 5000);
        assert!(header.is_log_append_time());
    }

    #[test]
    fn corruption_is_detected() {
        let mut bytes = batch(&[b"hello"], 1, (-1, -1, -1));
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        assert!(matches!(validate(&bytes), Err(BatchError::BadCrc { .. })));
        let bytes = batch(&[b"hello"], 1, (-1, -1, -1));
        assert!(matches!(
            validate(&bytes[..bytes.len() - 1]),
            Err(BatchError::Truncated(_))
        ));
    }

    #[test]
    fn sequences_wrap() {
        let mut bytes = batch(&[b"a", b"b"], 1, (7, 0, i32::MAX));
        let crc = crc32c::crc32c(&bytes[CRC_START..]);
        bytes[field::CRC].copy_from_slice(&crc.to_be_bytes());
        let header = validate(&bytes).unwrap();
        assert_eq!(header.last_sequence(), 0);
    }

    #[test]
    fn the_named_fields_are_the_ones_the_header_parses() {
        let fields = [
            field::BASE_OFFSET,
            field::BATCH_LENGTH,
            field::PARTITION_LEADER_EPOCH,
            field::MAGIC,
            field::CRC,
            field::ATTRIBUTES,
            field::LAST_OFFSET_DELTA,
            field::BASE_TIMESTAMP,
            field::MAX_TIMESTAMP,
            field::PRODUCER_ID,
            field::PRODUCER_EPOCH,
            field::BASE_SEQUENCE,
            field::RECORDS_COUNT,
        ];
        let mut end = 0;
        for range in &fields {
            assert_eq!(range.start, end, "{range:?} follows the field before");
            end = range.end;
        }
        assert_eq!(end, HEADER_SIZE);
        // Each field holds the value `parse` reads for it: its index, in
        // the field's last byte.
        let mut header = [0u8; HEADER_SIZE];
        for (i, range) in fields.iter().enumerate() {
            header[range.end - 1] = i as u8;
        }
        let parsed = BatchHeader::parse(&header).unwrap();
        assert_eq!(
            (
                parsed.base_offset,
                parsed.batch_length,
                parsed.partition_leader_epoch,
                parsed.magic,
                parsed.crc,
                parsed.attributes,
                parsed.last_offset_delta,
            ),
            (0, 1, 2, 3, 4, 5, 6)
        );
        assert_eq!(
            (
                parsed.base_timestamp,
                parsed.max_timestamp,
                parsed.producer_id,
                parsed.producer_epoch,
                parsed.base_sequence,
                parsed.records_count,
            ),
            (7, 8, 9, 10, 11, 12)
        );
    }
}
