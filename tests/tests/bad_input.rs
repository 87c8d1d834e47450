//! Hostile or broken input on the wire.
//!
//! A broker listens on a network and must survive whatever arrives: garbage
//! frames, frames cut short, absurd size prefixes. Kafka's behaviour is to
//! close the offending connection and carry on serving everyone else. Also
//! checked: a Produce whose record batch fails its CRC is refused with
//! CORRUPT_MESSAGE (2) and nothing is appended; a keyless record for a
//! compacted topic gets INVALID_RECORD (87) naming it in `record_errors`;
//! a record over the broker's
//! `message.max.bytes` is refused with MESSAGE_TOO_LARGE (10); and an
//! ApiVersions request at a version the broker does not know gets a v0
//! response with UNSUPPORTED_VERSION (35) and the supported API list, as
//! KIP-511 specifies, so clients can fall back.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ProduceRequest, RequestHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::Compression;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::Offset;
use tideline_tests::clients::{consume_range, watermarks};
use tideline_tests::wire::{produce_request, record_batch, record_batch_of, RawConn};
use tideline_tests::{
    consumer_config, create_topic, producer_config, unique_topic, Broker, TestProducer, TestRecord,
};

const MAX_REQUEST: usize = 1_048_576;

fn broker_with_request_limit() -> Broker {
    Broker::start_with(&[("socket.request.max.bytes", &MAX_REQUEST.to_string())])
}

/// The broker process is alive, ready, and serves a fresh rdkafka producer
/// and consumer on new connections.
fn assert_still_serving(broker: &mut Broker, topic: &str) {
    let ready = (0..50).any(|_| {
        let ok =
            tideline_tests::http::get(broker.http_addr(), "/readyz").is_ok_and(|r| r.status == 200);
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    broker.assert_running();
    assert!(ready, "/readyz does not answer 200");
    let bootstrap = broker.bootstrap();
    let producer = TestProducer::new(&producer_config(&bootstrap));
    let recs: Vec<TestRecord> = (0..5).map(|i| TestRecord::indexed(i, 64, 5)).collect();
    for r in &recs {
        producer.send(topic, Some(0), r);
    }
    let delivered = producer.expect_all_delivered(Duration::from_secs(60));
    let start = delivered[0].offset;
    let got = consume_range(
        &consumer_config(&bootstrap),
        topic,
        &[(0, Offset::Offset(start))],
        &[(0, start + 5)],
        Duration::from_secs(60),
    );
    let values: Vec<_> = got[&0].iter().map(|r| r.to_test_record()).collect();
    assert_eq!(values, recs);
}

fn setup() -> (Broker, String) {
    let broker = broker_with_request_limit();
    let topic = unique_topic("bad-input");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    (broker, topic)
}

/// Request header bytes for `api_key`/`api_version` (header v1: no tagged
/// fields), for hand-made frames.
fn header_v1(api_key: i16, api_version: i16, correlation_id: i32) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api_key)
        .with_request_api_version(api_version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("bad-input")))
        .encode(&mut buf, 1)
        .unwrap();
    buf.to_vec()
}

#[test]
fn garbage_frames_close_the_connection() {
    let (mut broker, topic) = setup();
    let frames: Vec<(&str, Vec<u8>)> = vec![
        ("all 0xff", vec![0xff; 64]),
        ("unknown api key", {
            let mut f = header_v1(0x7abc, 0, 1);
            f.extend_from_slice(&[1, 2, 3, 4]);
            f
        }),
        ("Metadata v1 with an undecodable body", {
            let mut f = header_v1(ApiKey::Metadata as i16, 1, 2);
            // Topic array length 2^31-1 with no elements following.
            f.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 0, 1]);
            f
        }),
    ];
    for (what, frame) in frames {
        let mut conn = RawConn::connect(broker.kafka_addr());
        conn.send_frame(&frame).unwrap();
        assert!(
            conn.closed_by_peer(Duration::from_secs(15)),
            "{what}: the broker kept the connection open"
        );
        assert_still_serving(&mut broker, &topic);
    }
}

#[test]
fn truncated_frame_then_disconnect_is_harmless() {
    let (mut broker, topic) = setup();
    for sent in [0usize, 3, 10, 500] {
        let mut conn = RawConn::connect(broker.kafka_addr());
        let mut bytes = 1000i32.to_be_bytes().to_vec();
        let mut body = header_v1(ApiKey::Metadata as i16, 1, 1);
        body.resize(1000, 0);
        bytes.extend_from_slice(&body[..sent]);
        conn.send_bytes(&bytes).unwrap();
        drop(conn);
    }
    // And a frame whose size prefix itself is cut short.
    let mut conn = RawConn::connect(broker.kafka_addr());
    conn.send_bytes(&[0, 0]).unwrap();
    drop(conn);
    assert_still_serving(&mut broker, &topic);
}

#[test]
fn oversized_or_negative_size_prefix_closes_the_connection() {
    let (mut broker, topic) = setup();
    for size in [
        (MAX_REQUEST as i32) * 2,
        i32::MAX,
        -1,
        (MAX_REQUEST as i32) + 1,
    ] {
        let mut conn = RawConn::connect(broker.kafka_addr());
        let mut bytes = size.to_be_bytes().to_vec();
        bytes.extend_from_slice(&header_v1(ApiKey::Metadata as i16, 1, 1));
        // The peer may close while we write; that is the point.
        let _ = conn.send_bytes(&bytes);
        assert!(
            conn.closed_by_peer(Duration::from_secs(15)),
            "size prefix {size} (socket.request.max.bytes={MAX_REQUEST}): connection left open"
        );
        assert_still_serving(&mut broker, &topic);
    }
}

#[test]
fn produce_with_bad_crc_gets_corrupt_message() {
    let (mut broker, topic) = setup();
    let mut conn = RawConn::connect(broker.kafka_addr());
    // v13 addresses topics by id; names are enough up to v12.
    let version = conn.negotiate::<ProduceRequest>(12);

    let mut bad = record_batch(&[b"first", b"second"]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff; // inside the CRC-covered records
    let resp = conn
        .request(&produce_request(&topic, 0, bad), version)
        .expect("Produce with a corrupt batch: the broker should answer, not hang up");
    let part = &resp.responses[0].partition_responses[0];
    assert_eq!(
        part.error_code, 2,
        "expected CORRUPT_MESSAGE (2), got {part:?}"
    );
    assert_eq!(
        watermarks(&broker.bootstrap(), &topic, 0),
        (0, 0),
        "a corrupt batch must not be appended"
    );

    // The same connection still works for a good batch.
    let good = record_batch(&[b"first", b"second"]);
    let resp = conn
        .request(&produce_request(&topic, 0, good), version)
        .expect("Produce after a refused one");
    let part = &resp.responses[0].partition_responses[0];
    assert_eq!((part.error_code, part.base_offset), (0, 0), "{part:?}");
    let got = consume_range(
        &consumer_config(&broker.bootstrap()),
        &topic,
        &[(0, Offset::Beginning)],
        &[(0, 2)],
        Duration::from_secs(60),
    );
    let values: Vec<_> = got[&0].iter().map(|r| r.value.clone().unwrap()).collect();
    assert_eq!(values, vec![b"first".to_vec(), b"second".to_vec()]);
    assert_still_serving(&mut broker, &topic);
}

/// A keyless record in a batch for a compacted topic: Kafka refuses the
/// batch with INVALID_RECORD (87) and names the record in `record_errors`
/// (Produce v8+); nothing of it is stored, and a keyed batch still is.
#[test]
fn a_keyless_record_for_a_compacted_topic_gets_invalid_record_naming_it() {
    let mut broker = Broker::start_with(&[]);
    let topic = unique_topic("compacted-keys");
    create_topic(
        &broker.bootstrap(),
        &topic,
        1,
        &[("cleanup.policy", "compact")],
    );
    let mut conn = RawConn::connect(broker.kafka_addr());
    let version = conn.negotiate::<ProduceRequest>(12);
    assert!(version >= 8, "record_errors came with Produce v8");

    let keyed = |k: &str| TestRecord {
        key: Some(k.as_bytes().to_vec()),
        value: Some(b"v".to_vec()),
        ..TestRecord::default()
    };
    for compression in [Compression::None, Compression::Zstd] {
        let records = [
            keyed("a"),
            TestRecord::value(b"no key".to_vec()),
            keyed("c"),
        ];
        let batch = record_batch_of(&records, compression);
        let resp = conn
            .request(&produce_request(&topic, 0, batch), version)
            .expect("Produce");
        let part = &resp.responses[0].partition_responses[0];
        assert_eq!(part.error_code, 87, "INVALID_RECORD, got {part:?}");
        assert_eq!(part.record_errors.len(), 1, "{part:?}");
        assert_eq!(part.record_errors[0].batch_index, 1, "the keyless record");
        let message = part.record_errors[0].batch_index_error_message.as_deref();
        assert!(
            message.is_some_and(|m| m.contains("without key")),
            "{message:?}"
        );
        assert_eq!(
            watermarks(&broker.bootstrap(), &topic, 0),
            (0, 0),
            "nothing stored"
        );
    }
    let batch = record_batch_of(&[keyed("a"), keyed("b")], Compression::None);
    let resp = conn
        .request(&produce_request(&topic, 0, batch), version)
        .expect("Produce");
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(watermarks(&broker.bootstrap(), &topic, 0), (0, 2));
    broker.assert_running();
}

#[test]
fn oversized_record_gets_message_too_large() {
    // Broker defaults: message.max.bytes=1048588, socket.request.max.bytes
    // of 100 MiB, so the request is read and the batch refused.
    let mut broker = Broker::start_with(&[]);
    let topic = unique_topic("too-large");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);

    let mut cfg = producer_config(&broker.bootstrap());
    // Let the client send it; the broker must refuse it.
    cfg.set("message.max.bytes", "10000000")
        .set("compression.type", "none")
        .set("message.timeout.ms", "30000");
    let producer = TestProducer::new(&cfg);
    let id = producer.send(&topic, Some(0), &TestRecord::value(vec![7u8; 2_000_000]));
    assert!(producer.flush(Duration::from_secs(60)));
    match &producer.outcomes()[id] {
        Some(Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge))) => {}
        other => panic!("expected MESSAGE_TOO_LARGE for a 2 MB record, got {other:?}"),
    }
    assert_eq!(watermarks(&broker.bootstrap(), &topic, 0), (0, 0));
    assert_still_serving(&mut broker, &topic);
}

#[test]
fn api_versions_with_unknown_version_gets_v0_error_and_api_list() {
    let (mut broker, topic) = setup();
    let mut conn = RawConn::connect(broker.kafka_addr());
    // ApiVersions v99: header v2 (flexible, as for v3+), body as v3.
    let mut frame = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(99)
        .with_correlation_id(4242)
        .with_client_id(Some(StrBytes::from_static_str("bad-input")))
        .encode(&mut frame, 2)
        .unwrap();
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("tideline-tests"))
        .with_client_software_version(StrBytes::from_static_str("1.0"))
        .encode(&mut frame, 3)
        .unwrap();
    conn.send_frame(&frame).unwrap();
    let payload = conn
        .read_frame()
        .expect("the broker should answer ApiVersions v99, not hang up");
    let mut buf = Bytes::from(payload);
    let correlation = i32::from_be_bytes(buf[..4].try_into().unwrap());
    assert_eq!(correlation, 4242);
    let _ = buf.split_to(4);
    let resp = ApiVersionsResponse::decode(&mut buf, 0).expect("decode as ApiVersions v0");
    assert_eq!(resp.error_code, 35, "expected UNSUPPORTED_VERSION");
    for key in [
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::Metadata,
        ApiKey::ApiVersions,
    ] {
        let k = key as i16;
        assert!(
            resp.api_keys.iter().any(|v| v.api_key == k),
            "api list lacks {key:?}: {:?}",
            resp.api_keys
        );
    }
    let av = resp
        .api_keys
        .iter()
        .find(|v| v.api_key == ApiKey::ApiVersions as i16)
        .unwrap();
    assert!(av.min_version == 0 && av.max_version >= 3, "{av:?}");

    // A supported version on the same connection works.
    let ok = conn.api_versions();
    assert_eq!(ok.error_code, 0);
    assert_still_serving(&mut broker, &topic);
}
