//! Message payload layout, shared by producers (which write it) and
//! consumers (which read the timestamp back for end-to-end latency).
//!
//! Layout: bytes 0..8 hold the send time in microseconds since the UNIX epoch
//! (big endian); the rest is filler copied from a fixed pseudo-random pool at
//! a per-message offset. The pool mixes random 32-byte chunks with copies of
//! earlier chunks, so the data compresses roughly 2:1 with LZ-style codecs
//! instead of being either incompressible noise or trivially repetitive.

use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes reserved at the start of each payload for the send timestamp.
pub const HEADER_LEN: usize = 8;

const POOL_MIN_LEN: usize = 1 << 20;
const CHUNK: usize = 32;
/// Back-references stay within gzip's 32 KiB window so every codec sees them.
const WINDOW: usize = 32 * 1024;

/// Wall-clock microseconds since the UNIX epoch.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Writes the send timestamp into the header of `payload`.
pub fn stamp(payload: &mut [u8], micros: u64) {
    payload[..HEADER_LEN].copy_from_slice(&micros.to_be_bytes());
}

/// Reads the send timestamp back, if the payload is long enough.
pub fn read_stamp(payload: &[u8]) -> Option<u64> {
    let header: [u8; HEADER_LEN] = payload.get(..HEADER_LEN)?.try_into().ok()?;
    Some(u64::from_be_bytes(header))
}

/// Source of filler bytes.
pub struct FillerPool {
    bytes: Vec<u8>,
}

impl FillerPool {
    pub fn new(message_size: usize) -> Self {
        let len = POOL_MIN_LEN.max(2 * message_size);
        let mut rng = SplitMix64(0x7469_6465_6c69_6e65);
        let mut bytes: Vec<u8> = Vec::with_capacity(len + CHUNK);
        while bytes.len() < len {
            let r = rng.next();
            if bytes.len() >= WINDOW && r & 1 == 0 {
                let back = CHUNK + (r >> 1) as usize % (WINDOW - CHUNK);
                let from = bytes.len() - back;
                bytes.extend_from_within(from..from + CHUNK);
            } else {
                for _ in 0..CHUNK / 8 {
                    bytes.extend_from_slice(&rng.next().to_le_bytes());
                }
            }
        }
        bytes.truncate(len);
        FillerPool { bytes }
    }

    /// Fills `dst` with pool bytes starting at an offset derived from `index`.
    pub fn fill(&self, index: u64, dst: &mut [u8]) {
        let span = self.bytes.len() - dst.len() + 1;
        let offset = (SplitMix64(index).next() % span as u64) as usize;
        dst.copy_from_slice(&self.bytes[offset..offset + dst.len()]);
    }
}

/// Small, fast, deterministic generator; statistical quality is irrelevant
/// here, it only has to look random to a compressor.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips() {
        let mut buf = vec![0u8; 16];
        stamp(&mut buf, 1_700_000_000_123_456);
        assert_eq!(read_stamp(&buf), Some(1_700_000_000_123_456));
        assert_eq!(read_stamp(&buf[..4]), None);
    }

    #[test]
    fn filler_fits_any_size() {
        let pool = FillerPool::new(3_000_000);
        for size in [0, 1, 1016, 3_000_000 - HEADER_LEN] {
            let mut dst = vec![0u8; size];
            pool.fill(42, &mut dst);
        }
    }
}
