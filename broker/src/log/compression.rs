//! The codecs of record batches.
//!
//! A batch's attributes name its codec (0 none, 1 gzip, 2 snappy, 3 lz4,
//! 4 zstd); everything after the 61-byte header is the records, compressed
//! as one block in that codec. With a topic's `compression.type` other than
//! `producer`, the leader rewrites each produced batch whose codec differs
//! into the topic's codec (`batch::codec::recompress`, as Kafka's
//! `LogValidator` does); the records inside keep their bytes, so keys,
//! values, headers, timestamps and the producer's sequence numbers are
//! unchanged. Followers store the leader's bytes as they are.
//!
//! The wire formats are Kafka's: gzip streams, snappy in xerial framing (as
//! the Java client writes it; raw snappy is read too), LZ4 frames with
//! independent blocks, zstd frames.

use std::io::{self, Read, Write};

use bytes::{Bytes, BytesMut};

use super::batch::BatchError;

/// A decompressed batch may not exceed this: a small batch of a
/// well-compressible codec must not make the broker allocate gigabytes.
pub const MAX_DECOMPRESSED_BYTES: u64 = 256 * 1024 * 1024;

/// A batch codec, numbered as in the batch attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Codec {
    pub fn from_id(id: i16) -> Result<Codec, BatchError> {
        Ok(match id {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            other => return Err(BatchError::BadCompression(other)),
        })
    }
}

/// A topic's `compression.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    /// Keep each batch as the producer compressed it (byte for byte).
    Producer,
    /// Store every batch in this codec.
    Codec(Codec),
}

impl CompressionType {
    /// Parses a validated config value (`uncompressed` is [`Codec::None`]).
    pub fn parse(value: &str) -> Option<CompressionType> {
        Some(match value.trim() {
            "producer" => CompressionType::Producer,
            "uncompressed" => CompressionType::Codec(Codec::None),
            "gzip" => CompressionType::Codec(Codec::Gzip),
            "snappy" => CompressionType::Codec(Codec::Snappy),
            "lz4" => CompressionType::Codec(Codec::Lz4),
            "zstd" => CompressionType::Codec(Codec::Zstd),
            _ => return None,
        })
    }
}

/// The KIP-390 levels (`compression.gzip.level`, `compression.lz4.level`,
/// `compression.zstd.level`) the broker compresses with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionLevels {
    /// 1–9, or -1 for zlib's default (6).
    pub gzip: i32,
    /// 1–17 (LZ4's high-compression mode from 3; above 12 is 12).
    pub lz4: i32,
    /// -131072–22 (negative levels are zstd's fast modes).
    pub zstd: i32,
}

impl Default for CompressionLevels {
    /// Kafka's defaults.
    fn default() -> Self {
        CompressionLevels {
            gzip: -1,
            lz4: 9,
            zstd: 3,
        }
    }
}

/// Decompresses a batch's records section.
pub fn decompress(codec: Codec, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() * 2);
    let limit = MAX_DECOMPRESSED_BYTES + 1;
    match codec {
        Codec::None => out.extend_from_slice(data),
        // Java's GZIPInputStream reads concatenated members; so do we.
        Codec::Gzip => {
            flate2::read::MultiGzDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)?;
        }
        Codec::Snappy => out = decompress_snappy(data)?,
        Codec::Lz4 => {
            lz4::Decoder::new(data)?.take(limit).read_to_end(&mut out)?;
        }
        Codec::Zstd => {
            zstd::stream::read::Decoder::new(data)?
                .take(limit)
                .read_to_end(&mut out)?;
        }
    }
    if out.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(invalid(format!(
            "batch decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes"
        )));
    }
    Ok(out)
}

/// Snappy: the xerial framing Kafka's Java client writes, or raw snappy
/// (the framing's decoder in `kafka-protocol` tells them apart).
fn decompress_snappy(data: &[u8]) -> io::Result<Vec<u8>> {
    use kafka_protocol::compression::{Decompressor, Snappy};
    let mut buf = Bytes::copy_from_slice(data);
    Snappy::decompress(&mut buf, |b: &mut Bytes| Ok(b.to_vec()))
        .map_err(|e| invalid(format!("cannot decompress snappy: {e:#}")))
}

/// Compresses a records section.
pub fn compress(codec: Codec, levels: CompressionLevels, raw: &[u8]) -> io::Result<Vec<u8>> {
    match codec {
        Codec::None => Ok(raw.to_vec()),
        Codec::Gzip => {
            let level = if levels.gzip < 0 {
                flate2::Compression::default()
            } else {
                flate2::Compression::new(levels.gzip.clamp(1, 9) as u32)
            };
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
            encoder.write_all(raw)?;
            encoder.finish()
        }
        Codec::Snappy => {
            use kafka_protocol::compression::{Compressor, Snappy};
            let mut out = BytesMut::new();
            <Snappy as Compressor<BytesMut>>::compress(&mut out, |b: &mut BytesMut| {
                b.extend_from_slice(raw);
                Ok(())
            })
            .map_err(|e| invalid(format!("cannot compress snappy: {e:#}")))?;
            Ok(out.to_vec())
        }
        Codec::Lz4 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .level(levels.lz4.clamp(1, 17) as u32)
                .block_mode(lz4::BlockMode::Independent)
                .build(Vec::new())?;
            encoder.write_all(raw)?;
            let (out, result) = encoder.finish();
            result.map(|_| out)
        }
        Codec::Zstd => zstd::stream::encode_all(raw, levels.zstd.clamp(-131072, 22)),
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    #[test]
    fn every_codec_round_trips_at_every_level_bound() {
        let raw: Vec<u8> = (0..50_000u32)
            .flat_map(|i| (i % 97).to_be_bytes())
            .collect();
        for codec in ALL {
            for levels in [
                CompressionLevels::default(),
                CompressionLevels {
                    gzip: 1,
                    lz4: 1,
                    zstd: -5,
                },
                CompressionLevels {
                    gzip: 9,
                    lz4: 17,
                    zstd: 22,
                },
            ] {
                let packed = compress(codec, levels, &raw).unwrap();
                if codec != Codec::None {
                    assert!(packed.len() < raw.len() / 2, "{codec:?} compresses");
                }
                assert_eq!(decompress(codec, &packed).unwrap(), raw, "{codec:?}");
            }
        }
    }

    #[test]
    fn a_decompression_bomb_is_refused() {
        let zeros = vec![0u8; (MAX_DECOMPRESSED_BYTES + 1024) as usize];
        let packed = zstd::stream::encode_all(&zeros[..], 3).unwrap();
        drop(zeros);
        assert!(packed.len() < 1024 * 1024);
        assert!(decompress(Codec::Zstd, &packed).is_err());
    }
}
