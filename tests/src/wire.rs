//! Raw Kafka protocol access over a plain `TcpStream`.
//!
//! Real clients never send malformed frames, corrupt record batches or
//! requests for API versions that do not exist, yet a broker on a network
//! receives all of these. This module lets tests send exactly the bytes
//! they want: arbitrary frames, or well-formed requests built with the
//! `kafka-protocol` crate (which also decodes the responses).
//!
//! Framing and headers come from the shared protocol crate
//! (`tideline_protocol::frame`); this module adds a blocking connection and
//! the ability to send bytes no client would.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::data::TestRecord;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tideline_protocol::frame;

/// One raw connection to the broker.
pub struct RawConn {
    stream: TcpStream,
    next_correlation: i32,
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> RawConn {
        RawConn::try_connect(addr, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
    }

    /// Connects, with reads timing out after `read_timeout` (for brokers
    /// that may be down or paused).
    pub fn try_connect(addr: SocketAddr, read_timeout: Duration) -> io::Result<RawConn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(read_timeout))?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            next_correlation: 1,
        })
    }

    /// Writes `bytes` as they are (no framing).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes one frame: 4-byte size, then `payload`.
    pub fn send_frame(&mut self, payload: &[u8]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(payload.len() + 4);
        buf.extend_from_slice(&(payload.len() as i32).to_be_bytes());
        buf.extend_from_slice(payload);
        self.stream.write_all(&buf)
    }

    /// Reads one frame and returns its payload.
    pub fn read_frame(&mut self) -> io::Result<Vec<u8>> {
        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix)?;
        let size = frame::payload_size(prefix).map_err(invalid_data)?;
        let mut payload = vec![0u8; size];
        self.stream.read_exact(&mut payload)?;
        Ok(payload)
    }

    /// Encodes a request header plus body (no size prefix), using the
    /// header version Kafka prescribes for this API version.
    pub fn encode_request<R: Request>(req: &R, version: i16, correlation_id: i32) -> Vec<u8> {
        let client_id = StrBytes::from_static_str("tideline-raw-test");
        frame::request_payload(req, version, correlation_id, &client_id)
            .expect("encode request")
            .to_vec()
    }

    /// Sends `req` at `version` and decodes the response (checking the
    /// correlation id).
    pub fn request<R: Request>(&mut self, req: &R, version: i16) -> io::Result<R::Response> {
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        self.send_frame(&Self::encode_request(req, version, correlation_id))?;
        let payload = self.read_frame()?;
        frame::decode_response::<R>(Bytes::from(payload), version, correlation_id)
            .map_err(invalid_data)
    }

    /// ApiVersions v0 (understood by every broker).
    pub fn api_versions(&mut self) -> ApiVersionsResponse {
        self.request(&ApiVersionsRequest::default(), 0)
            .expect("ApiVersions v0")
    }

    /// The highest version of `R` both the broker (per ApiVersions) and the
    /// `kafka-protocol` crate support, capped at `cap`.
    pub fn negotiate<R: Request>(&mut self, cap: i16) -> i16 {
        let versions = self.api_versions();
        frame::common_version::<R>(&versions, cap).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits up to `within` for the broker to close this connection (EOF or
    /// reset); any bytes received meanwhile are discarded. Returns whether
    /// it was closed.
    pub fn closed_by_peer(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
    }
}

/// A Produce request (acks=all) carrying `batch` for one partition.
pub fn produce_request(topic: &str, partition: i32, batch: Vec<u8>) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(batch)))])])
}

/// A magic-v2 record batch holding `values` as records with null keys, as
/// a producer would send it (base offset 0, CreateTime, no producer id).
pub fn record_batch(values: &[&[u8]]) -> Vec<u8> {
    let records: Vec<TestRecord> = values.iter().map(|v| TestRecord::value(*v)).collect();
    record_batch_of(&records, Compression::None)
}

/// One magic-v2 record batch holding `records` (base offset 0, CreateTime
/// now unless a record has its own timestamp, no producer id), compressed
/// with `compression` by the `kafka-protocol` crate's encoder.
///
/// kafka-protocol keeps headers in a map, so a repeated header key keeps
/// only its last value: callers should not use repeated keys.
pub fn record_batch_of(records: &[TestRecord], compression: Compression) -> Vec<u8> {
    let now = crate::now_ms();
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut headers = kafka_protocol::indexmap::IndexMap::new();
            for (k, v) in &r.headers {
                headers.insert(
                    StrBytes::from_string(k.clone()),
                    v.as_ref().map(|v| Bytes::copy_from_slice(v)),
                );
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // kafka-protocol starts a new batch whenever offset - sequence
                // changes; this keeps all records in one batch whose base
                // sequence is -1 (no idempotence), as a plain producer sends.
                sequence: i as i32 - 1,
                timestamp: r.timestamp.unwrap_or(now),
                key: r.key.as_ref().map(|k| Bytes::copy_from_slice(k)),
                value: r.value.as_ref().map(|v| Bytes::copy_from_slice(v)),
                headers,
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode record batch");
    buf.to_vec()
}

fn invalid_data(e: anyhow::Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e.to_string())
}
