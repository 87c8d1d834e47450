//! Byte-exact round trips through the broker for every compression codec.
//!
//! For each codec, 100,000 records covering the awkward corners of the
//! record format (null vs. empty keys and values, headers with null values
//! and repeated keys, binary and compressible payloads, sizes from 0 to
//! 32 KiB) are produced by librdkafka with batching and many requests in
//! flight to a 3-partition topic, then consumed from the beginning. Every
//! record must come back exactly once, byte-exact (key, value, headers), at
//! the offset its delivery report gave, in send order within its partition.
//! After a clean shutdown the on-disk batches must carry the producer's
//! codec (Kafka stores producer-compressed batches as they arrived, with
//! the default `compression.type=producer`) and valid CRCs.

use std::collections::BTreeMap;

use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::records::Compression;
use tideline_tests::clients::produce_all;
use tideline_tests::disk;
use tideline_tests::wire::{produce_request, record_batch_of, RawConn};
use tideline_tests::{
    consume_all, create_topic, producer_config, unique_topic, Broker, TestRecord,
};

const RECORDS: u64 = 100_000;
const PARTITIONS: i32 = 3;

fn roundtrip(codec: &str, codec_id: i16, seed: u64) {
    let mut broker = Broker::start_with(&[]);
    let bootstrap = broker.bootstrap();
    let topic = unique_topic(&format!("roundtrip-{codec}"));
    create_topic(&bootstrap, &topic, PARTITIONS, &[]);

    let records: Vec<TestRecord> = (0..RECORDS).map(|i| TestRecord::varied(seed, i)).collect();
    let mut cfg = producer_config(&bootstrap);
    cfg.set("compression.type", codec).set("linger.ms", "20");
    let delivered = produce_all(&cfg, &topic, &records);

    // Per partition: (offset, record index) in send order.
    let mut sent: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
    for (i, d) in delivered.iter().enumerate() {
        sent.entry(d.partition).or_default().push((d.offset, i));
    }
    assert_eq!(
        sent.len(),
        PARTITIONS as usize,
        "records did not reach every partition: {:?}",
        sent.keys().collect::<Vec<_>>()
    );
    for (p, list) in &sent {
        let offsets: Vec<i64> = list.iter().map(|(o, _)| *o).collect();
        let expected: Vec<i64> = (0..list.len() as i64).collect();
        assert!(
            offsets == expected,
            "partition {p}: delivery offsets are not 0..{} in send order (first mismatch at \
             position {:?})",
            list.len(),
            offsets.iter().zip(&expected).position(|(a, b)| a != b)
        );
    }

    let ends: Vec<(i32, i64)> = sent.iter().map(|(p, l)| (*p, l.len() as i64)).collect();
    for (p, end) in &ends {
        let (low, high) = tideline_tests::clients::watermarks(&bootstrap, &topic, *p);
        assert_eq!((low, high), (0, *end), "partition {p} watermarks");
    }
    let consumed = consume_all(&bootstrap, &topic, &ends);
    for (p, list) in &sent {
        let got = &consumed[p];
        assert_eq!(got.len(), list.len(), "partition {p}: record count");
        for ((offset, i), c) in list.iter().zip(got) {
            assert_eq!(c.offset, *offset, "partition {p}: offsets out of step");
            let back = c.to_test_record();
            assert!(
                back == records[*i],
                "{codec}: record {i} (partition {p}, offset {offset}) came back different:\n \
                 sent {:?}\n got {:?}",
                records[*i],
                back
            );
        }
    }

    broker.stop();
    for p in 0..PARTITIONS {
        let dir = disk::partition_dir(broker.data_dir(), &topic, p);
        let mut batches = 0;
        let mut with_codec = 0;
        for seg in disk::segments(&dir) {
            let scan = disk::read_batches(&seg.path);
            assert_eq!(
                scan.trailing_bytes,
                0,
                "{}: trailing bytes",
                seg.path.display()
            );
            for b in &scan.batches {
                assert!(b.crc_ok, "{}: bad CRC in {b:?}", seg.path.display());
                assert_eq!(b.magic, 2, "{}: {b:?}", seg.path.display());
                // librdkafka sends a batch uncompressed when compressing it
                // would not make it smaller (a single incompressible record),
                // so a batch carries either the producer's codec or none.
                let codec = b.attributes & 0x7;
                assert!(
                    codec == codec_id || codec == 0,
                    "{}: batch stored with codec {codec}, producer used {codec_id}: {b:?}",
                    seg.path.display()
                );
                if codec == codec_id {
                    with_codec += 1;
                }
            }
            batches += scan.batches.len();
        }
        assert!(batches > 0, "no batches on disk for partition {p}");
        // Compressible batches must really be stored compressed, as sent.
        assert!(
            with_codec > 0,
            "partition {p}: none of {batches} batches carries the producer's codec {codec_id}"
        );
    }
}

#[test]
fn roundtrip_uncompressed() {
    roundtrip("none", 0, 1);
}

#[test]
fn roundtrip_gzip() {
    roundtrip("gzip", 1, 2);
}

#[test]
fn roundtrip_snappy() {
    roundtrip("snappy", 2, 3);
}

#[test]
fn roundtrip_lz4() {
    roundtrip("lz4", 3, 4);
}

#[test]
fn roundtrip_zstd() {
    roundtrip("zstd", 4, 5);
}

/// The same check without librdkafka's codec choice in the way: batches
/// compressed with every codec by the `kafka-protocol` crate are produced
/// over a raw connection, read back with librdkafka (CRC checks on) and
/// must be stored with their codec.
#[test]
fn raw_batches_of_every_codec_roundtrip() {
    let mut broker = Broker::start_with(&[]);
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("roundtrip-raw");
    create_topic(&bootstrap, &topic, 1, &[]);

    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut conn = RawConn::connect(broker.kafka_addr());
    let version = conn.negotiate::<ProduceRequest>(12);
    let mut sent: Vec<TestRecord> = Vec::new();
    for (k, codec) in codecs.iter().enumerate() {
        for batch in 0..4u64 {
            let records: Vec<TestRecord> = (0..250u64)
                .map(|i| {
                    let mut r = TestRecord::varied(100 + k as u64, batch * 1000 + i);
                    // kafka-protocol cannot encode repeated header keys.
                    let mut seen = std::collections::HashSet::new();
                    r.headers.retain(|(key, _)| seen.insert(key.clone()));
                    r
                })
                .collect();
            let resp = conn
                .request(
                    &produce_request(&topic, 0, record_batch_of(&records, *codec)),
                    version,
                )
                .expect("Produce");
            let part = &resp.responses[0].partition_responses[0];
            assert_eq!(
                (part.error_code, part.base_offset),
                (0, sent.len() as i64),
                "{codec:?} batch {batch}: {part:?}"
            );
            sent.extend(records);
        }
    }

    let end = sent.len() as i64;
    let consumed = consume_all(&bootstrap, &topic, &[(0, end)]);
    for r in &consumed[&0] {
        assert_eq!(
            r.to_test_record(),
            sent[r.offset as usize],
            "offset {}",
            r.offset
        );
    }

    broker.stop();
    let dir = disk::partition_dir(broker.data_dir(), &topic, 0);
    let codecs_on_disk: Vec<i16> = disk::segments(&dir)
        .iter()
        .flat_map(|s| disk::read_batches(&s.path).batches)
        .map(|b| b.attributes & 0x7)
        .collect();
    let expected: Vec<i16> = codecs.iter().flat_map(|c| [*c as i16; 4]).collect();
    assert_eq!(codecs_on_disk, expected, "codec of each stored batch");
}
