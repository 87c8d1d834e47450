//! Test records: what tests send, and what they expect to read back.
//!
//! Records are generated deterministically from `(seed, index)` so a failure
//! can be reproduced and a record can be regenerated instead of stored. The
//! "varied" generator deliberately covers the corners of Kafka's record
//! format that a broker could get wrong: null vs. empty keys and values
//! (distinct on the wire: varint length -1 vs. 0), headers with null values,
//! repeated header keys, binary and highly compressible payloads, and sizes
//! from 0 bytes up to tens of KiB.

/// One record as a producer sends it and a consumer should receive it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Header order (and repeated keys) must survive the round trip.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Explicit CreateTime timestamp (ms); `None` lets the client choose.
    pub timestamp: Option<i64>,
}

/// SplitMix64: tiny, fast, good enough to vary test data reproducibly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Random bytes, `min + below(spread)` of them.
    pub fn bytes_between(&mut self, min: usize, spread: u64) -> Vec<u8> {
        let len = min + self.below(spread.max(1)) as usize;
        self.bytes(len)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

const WORDS: &[&str] = &[
    "tide", "line", "kafka", "broker", "segment", "offset", "batch", "record", "replica", "leader",
];

impl TestRecord {
    /// A record with a value only.
    pub fn value(value: impl Into<Vec<u8>>) -> TestRecord {
        TestRecord {
            value: Some(value.into()),
            ..TestRecord::default()
        }
    }

    /// A record whose value starts with its zero-padded `index` (see
    /// [`TestRecord::index_of`]) and is padded to at least `size` bytes, with
    /// key `"k<index % keys>"`.
    pub fn indexed(index: u64, size: usize, keys: u64) -> TestRecord {
        let mut value = format!("{index:012}|").into_bytes();
        let mut rng = Rng::new(index);
        while value.len() < size {
            value.push(b'a' + rng.below(26) as u8);
        }
        TestRecord {
            key: Some(format!("k{}", index % keys.max(1)).into_bytes()),
            value: Some(value),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// Recovers the index from a value made by [`TestRecord::indexed`].
    pub fn index_of(value: &[u8]) -> u64 {
        std::str::from_utf8(&value[..12])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("value does not start with an index: {:?}", &value[..12]))
    }

    /// A record exercising the awkward corners of the record format.
    pub fn varied(seed: u64, index: u64) -> TestRecord {
        let mut rng = Rng::new(seed.wrapping_mul(0x1000_0000_01B3) ^ index);
        let key = match rng.below(10) {
            0 | 1 => None,
            2 => Some(Vec::new()),
            3 => Some(rng.bytes_between(1, 40)),
            _ => Some(format!("key-{}", rng.below(500)).into_bytes()),
        };
        let value = match rng.below(1000) {
            0..=39 => None,
            40..=59 => Some(Vec::new()),
            // About one record in 300 is large, one in 25 medium-sized.
            60..=62 => Some(rng.bytes_between(4096, 28 * 1024)),
            63..=102 => Some(rng.bytes_between(256, 3840)),
            103..=502 => {
                // Compressible text.
                let n = rng.below(60) as usize;
                let mut text = format!("#{index} ");
                for _ in 0..n {
                    text.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
                    text.push(' ');
                }
                Some(text.into_bytes())
            }
            _ => Some(rng.bytes_between(0, 256)),
        };
        let mut headers = Vec::new();
        let n_headers = match rng.below(10) {
            0..=4 => 0,
            5..=7 => 1,
            _ => 1 + rng.below(4),
        };
        for h in 0..n_headers {
            let name = if h > 0 && rng.below(4) == 0 {
                // Kafka allows repeated header keys; order must be kept.
                headers
                    .first()
                    .map(|(k, _): &(String, _)| k.clone())
                    .unwrap()
            } else {
                format!("h{}", rng.below(8))
            };
            let value = match rng.below(6) {
                0 => None,
                1 => Some(Vec::new()),
                _ => Some(rng.bytes_between(0, 64)),
            };
            headers.push((name, value));
        }
        TestRecord {
            key,
            value,
            headers,
            timestamp: None,
        }
    }

    /// Approximate encoded size, for sizing test data.
    pub fn approx_size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
            + 16
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_indexed_roundtrips() {
        assert_eq!(TestRecord::varied(7, 42), TestRecord::varied(7, 42));
        let r = TestRecord::indexed(123_456, 100, 10);
        assert_eq!(TestRecord::index_of(r.value.as_ref().unwrap()), 123_456);
        assert_eq!(r.value.unwrap().len(), 100);
    }
}
