//! Transaction markers: the control batches that end a producer's
//! transaction in a partition, as Kafka's `EndTransactionMarker` writes
//! them. A marker batch is transactional and control, carries the
//! producer id and epoch, and holds one record whose key is
//! `version i16 = 0 | type i16` (0 ABORT, 1 COMMIT) and whose value is
//! `version i16 = 0 | coordinator epoch i32`.

use bytes::BytesMut;
use indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::batch::{codec, records, BatchHeader};

/// What a marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// The control record types of Kafka's `ControlRecordType`.
const ABORT: i16 = 0;
const COMMIT: i16 = 1;

/// A marker batch for `producer_id` at `producer_epoch`, offsets unassigned.
pub fn marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: TxnMarker,
    timestamp: i64,
) -> Vec<u8> {
    let kind = if marker.commit { COMMIT } else { ABORT };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(key.into()),
        value: Some(value.into()),
        headers: IndexMap::new(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encoding an uncompressed batch cannot fail");
    buf.to_vec()
}

/// The marker a control batch holds; `None` for a batch that is not a
/// transaction marker (not control, or another control type).
pub fn parse_marker(header: &BatchHeader, batch: &[u8]) -> Option<TxnMarker> {
    if !header.is_control() || header.records_count < 1 {
        return None;
    }
    let data = codec::decompress(header, batch).ok()?;
    let records = records::parse(header, &data).ok()?;
    let record = records.first()?;
    let key = record.key?;
    let commit = match i16::from_be_bytes(key.get(2..4)?.try_into().ok()?) {
        COMMIT => true,
        ABORT => false,
        _ => return None,
    };
    let value = record.value?;
    let coordinator_epoch = i32::from_be_bytes(value.get(2..6)?.try_into().ok()?);
    Some(TxnMarker {
        commit,
        coordinator_epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::validate;

    #[test]
    fn markers_round_trip_and_data_batches_are_not_markers() {
        for commit in [true, false] {
            let marker = TxnMarker {
                commit,
                coordinator_epoch: 7,
            };
            let bytes = marker_batch(42, 3, marker, 1_000);
            let header = validate(&bytes).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
            assert_eq!(parse_marker(&header, &bytes), Some(marker));
        }
        let data = crate::log::batch::test_support::batch(&[b"v"], 0, (42, 3, 0));
        let header = validate(&data).unwrap();
        assert_eq!(parse_marker(&header, &data), None);
    }
}
