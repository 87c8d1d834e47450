//! Rewriting a batch: into another codec (a topic's `compression.type`), or
//! down to the records the log cleaner keeps. A rewrite keeps the fields
//! that identify the batch — offsets, producer id, epoch and sequence,
//! leader epoch — and ends with [`seal`], since its length and CRC change.
//! The compression algorithms themselves are `log::compression`'s.

use std::io;

use super::records::{self, Record};
use super::{
    field, BatchError, BatchHeader, ATTR_COMPRESSION_MASK, CRC_START, HEADER_SIZE, LOG_OVERHEAD,
};
use crate::log::compression::{self, Codec, CompressionLevels};

/// The records section of `batch` (headed by `header`), uncompressed.
pub fn decompress(header: &BatchHeader, batch: &[u8]) -> io::Result<Vec<u8>> {
    compression::decompress(codec_of(header)?, &batch[HEADER_SIZE..])
}

fn codec_of(header: &BatchHeader) -> io::Result<Codec> {
    Codec::from_id(header.compression())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// A produced batch rewritten in `target`'s codec, or `None` when it is
/// already in it (then it is stored as sent). Its records are checked as
/// they are unpacked, since a client's compressed bytes were opaque so far.
/// The CRC is recomputed; offsets and leader epoch are assigned later.
pub fn recompress(
    bytes: &[u8],
    header: &BatchHeader,
    target: Codec,
    levels: CompressionLevels,
) -> Result<Option<Vec<u8>>, BatchError> {
    let source = Codec::from_id(header.compression())?;
    if source == target {
        return Ok(None);
    }
    let records = compression::decompress(source, &bytes[HEADER_SIZE..])
        .map_err(|_| BatchError::BadRecords("the batch does not decompress"))?;
    records::check_uncompressed(&records, header.records_count)?;
    let packed = compression::compress(target, levels, &records)
        .map_err(|_| BatchError::BadRecords("the batch cannot be recompressed"))?;
    let mut out = Vec::with_capacity(HEADER_SIZE + packed.len());
    out.extend_from_slice(&bytes[..HEADER_SIZE]);
    out.extend_from_slice(&packed);
    let attributes = (header.attributes & !ATTR_COMPRESSION_MASK) | target as i16;
    out[field::ATTRIBUTES].copy_from_slice(&attributes.to_be_bytes());
    Ok(Some(seal(out)))
}

/// The batch with only `kept` of its records, recompressed in its own
/// codec at the default levels. Every other header field stays (as Kafka
/// keeps them for v2) but `recordsCount` and, for CreateTime, the largest
/// timestamp, which is the kept records'.
pub fn rebuild_batch(
    original: &[u8],
    header: &BatchHeader,
    kept: &[&Record],
) -> io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    for record in kept {
        raw.extend_from_slice(record.raw);
    }
    let payload = compression::compress(codec_of(header)?, CompressionLevels::default(), &raw)?;
    let mut out = Vec::with_capacity(HEADER_SIZE + payload.len());
    out.extend_from_slice(&original[..HEADER_SIZE]);
    out.extend_from_slice(&payload);
    if !header.is_log_append_time() {
        let max = kept
            .iter()
            .map(|r| r.timestamp)
            .max()
            .unwrap_or(header.max_timestamp);
        out[field::MAX_TIMESTAMP].copy_from_slice(&max.to_be_bytes());
    }
    out[field::RECORDS_COUNT].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    Ok(seal(out))
}

/// A header-only batch keeping the producer fields and offset range, as
/// Kafka's `DefaultRecordBatch.writeEmptyHeader` (no compression, both
/// timestamps set to the batch's largest).
pub fn empty_batch(original: &[u8], header: &BatchHeader) -> Vec<u8> {
    let mut out = original[..HEADER_SIZE].to_vec();
    let attributes = header.attributes & !ATTR_COMPRESSION_MASK;
    out[field::ATTRIBUTES].copy_from_slice(&attributes.to_be_bytes());
    out[field::BASE_TIMESTAMP].copy_from_slice(&header.max_timestamp.to_be_bytes());
    out[field::MAX_TIMESTAMP].copy_from_slice(&header.max_timestamp.to_be_bytes());
    out[field::RECORDS_COUNT].copy_from_slice(&0i32.to_be_bytes());
    seal(out)
}

/// Sets a rewritten batch's length and CRC.
pub fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let length = (out.len() - LOG_OVERHEAD) as i32;
    out[field::BATCH_LENGTH].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[field::CRC].copy_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch;
    use crate::log::batch::test_support::batch;

    #[test]
    fn recompression_keeps_the_records_and_every_header_field_but_codec_length_and_crc() {
        let original = batch(&[b"one", b"two", b"three"], 1_000, (7, 1, 40));
        let header = batch::validate_produced(&original).unwrap();
        for target in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let packed = recompress(&original, &header, target, CompressionLevels::default())
                .unwrap()
                .expect("rewritten");
            let new = batch::validate(&packed).expect("valid batch with a good CRC");
            assert_eq!(new.compression(), target as i16);
            assert_eq!(
                (new.producer_id, new.producer_epoch, new.base_sequence),
                (7, 1, 40)
            );
            assert_eq!(new.records_count, 3);
            assert_eq!(new.base_timestamp, header.base_timestamp);
            assert_eq!(
                compression::decompress(target, &packed[HEADER_SIZE..]).unwrap(),
                &original[HEADER_SIZE..]
            );
            // And back to uncompressed: the very bytes the producer sent.
            let back = recompress(&packed, &new, Codec::None, CompressionLevels::default())
                .unwrap()
                .unwrap();
            assert_eq!(back, original);
        }
        assert_eq!(
            recompress(
                &original,
                &header,
                Codec::None,
                CompressionLevels::default()
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn a_batch_that_does_not_decompress_or_miscounts_its_records_is_refused() {
        let original = batch(&[b"one"], 1_000, (-1, -1, -1));
        let mut header = batch::validate_produced(&original).unwrap();
        // Claims gzip, holds plain records.
        let mut lying = original.clone();
        // The codec bits are in the attributes' low byte.
        lying[field::ATTRIBUTES.end - 1] |= Codec::Gzip as u8;
        header.attributes |= Codec::Gzip as i16;
        assert!(matches!(
            recompress(&lying, &header, Codec::Zstd, CompressionLevels::default()),
            Err(BatchError::BadRecords(_))
        ));
        // Compressed properly, but the header counts two records.
        let packed = recompress(
            &original,
            &batch::validate_produced(&original).unwrap(),
            Codec::Lz4,
            CompressionLevels::default(),
        )
        .unwrap()
        .unwrap();
        let mut miscounted = BatchHeader::parse(&packed).unwrap();
        miscounted.records_count = 2;
        assert!(matches!(
            recompress(
                &packed,
                &miscounted,
                Codec::None,
                CompressionLevels::default()
            ),
            Err(BatchError::BadRecords(_))
        ));
    }
}
