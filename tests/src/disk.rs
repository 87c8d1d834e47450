//! The broker's on-disk log, read (and damaged) the way Kafka lays it out.
//!
//! Kafka's layout, which the broker follows: one directory per partition,
//! `<log.dirs>/<topic>-<partition>/`, holding segments named by their base
//! offset zero-padded to 20 digits: `00000000000000000000.log` with
//! `.index` and `.timeindex` beside it. A `.log` file is a sequence of
//! magic-v2 record batches exactly as they travel on the wire:
//!
//! ```text
//! offset  size  field
//!      0     8  baseOffset
//!      8     4  batchLength (bytes after this field)
//!     12     4  partitionLeaderEpoch
//!     16     1  magic (2)
//!     17     4  crc (CRC-32C of everything from attributes to the end)
//!     21     2  attributes
//!     23     4  lastOffsetDelta
//!     27     8  baseTimestamp
//!     35     8  maxTimestamp
//!     43     8  producerId
//!     51     2  producerEpoch
//!     53     4  baseSequence
//!     57     4  recordCount
//!     61     …  records
//! ```
//!
//! Crash tests use this to find the last batch of the newest segment and
//! tear or corrupt it while the broker is down; other tests use it to check
//! segment rolls and retention from the outside.

use std::path::{Path, PathBuf};

/// Size of the fixed part of a v2 batch header.
pub const BATCH_HEADER_LEN: usize = 61;

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub base_offset: i64,
    pub path: PathBuf,
    pub size: u64,
}

/// One record batch found in a `.log` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInfo {
    /// Byte position of the batch in the file.
    pub position: u64,
    /// Total length including the 12-byte offset+length prefix.
    pub len: usize,
    pub base_offset: i64,
    pub last_offset_delta: i32,
    pub magic: i8,
    pub attributes: i16,
    pub record_count: i32,
    pub max_timestamp: i64,
    pub crc_ok: bool,
}

impl BatchInfo {
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
}

/// What [`read_batches`] found in a file.
#[derive(Debug, Clone, Default)]
pub struct LogScan {
    pub batches: Vec<BatchInfo>,
    /// Bytes at the end of the file that do not form a complete batch.
    pub trailing_bytes: usize,
}

/// `<data_dir>/<topic>-<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// Kafka's segment file name for `base_offset` and `ext` ("log", "index",
/// "timeindex").
pub fn segment_file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// The `.log` segments of a partition directory, oldest first. A missing
/// directory has no segments.
pub fn segments(dir: &Path) -> Vec<Segment> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Segment> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".log")?;
            if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(Segment {
                base_offset: stem.parse().ok()?,
                size: e.metadata().ok()?.len(),
                path: e.path(),
            })
        })
        .collect();
    out.sort_by_key(|s| s.base_offset);
    out
}

/// The newest (highest base offset) `.log` segment of a partition.
pub fn newest_segment(dir: &Path) -> Segment {
    segments(dir)
        .pop()
        .unwrap_or_else(|| panic!("no .log segments in {}", dir.display()))
}

/// Parses the batches of a `.log` file, stopping at the first incomplete
/// batch (reported as trailing bytes). CRCs are checked, not trusted.
pub fn read_batches(path: &Path) -> LogScan {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    scan(&data)
}

fn be_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes(b[..8].try_into().unwrap())
}
fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes(b[..4].try_into().unwrap())
}
fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes(b[..2].try_into().unwrap())
}

/// Parses batches from the bytes of a `.log` file.
pub fn scan(data: &[u8]) -> LogScan {
    let mut batches = Vec::new();
    let mut pos = 0usize;
    while data.len() - pos >= 12 {
        let b = &data[pos..];
        let batch_length = be_i32(&b[8..]);
        if batch_length < (BATCH_HEADER_LEN - 12) as i32 {
            break;
        }
        let len = 12 + batch_length as usize;
        if b.len() < len {
            break;
        }
        let crc_stored = be_i32(&b[17..]) as u32;
        batches.push(BatchInfo {
            position: pos as u64,
            len,
            base_offset: be_i64(b),
            last_offset_delta: be_i32(&b[23..]),
            magic: b[16] as i8,
            attributes: be_i16(&b[21..]),
            record_count: be_i32(&b[57..]),
            max_timestamp: be_i64(&b[35..]),
            crc_ok: crc32c::crc32c(&b[21..len]) == crc_stored,
        });
        pos += len;
    }
    LogScan {
        batches,
        trailing_bytes: data.len() - pos,
    }
}

/// Total bytes of a partition's `.log` files.
pub fn log_bytes(dir: &Path) -> u64 {
    segments(dir).iter().map(|s| s.size).sum()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn scans_batches_written_by_kafka_protocol() {
        let mut data = crate::wire::record_batch(&[b"a", b"bb", b"ccc"]);
        let one = data.len();
        data.extend(crate::wire::record_batch(&[b"d"]));
        data.extend_from_slice(&[0, 0, 0]);
        let s = scan(&data);
        assert_eq!(s.trailing_bytes, 3);
        assert_eq!(s.batches.len(), 2);
        assert_eq!(s.batches[0].record_count, 3);
        assert_eq!(s.batches[0].last_offset_delta, 2);
        assert_eq!(s.batches[0].len, one);
        assert!(s.batches.iter().all(|b| b.crc_ok && b.magic == 2));
        data[one - 1] ^= 0xff;
        assert!(!scan(&data).batches[0].crc_ok);
        assert_eq!(segment_file_name(42, "log"), "00000000000000000042.log");
    }
}
