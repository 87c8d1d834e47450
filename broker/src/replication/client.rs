//! A minimal Kafka protocol client for broker-to-broker requests: a follower
//! fetching from its leader talks to it exactly as any Kafka client would,
//! one request at a time on one connection.

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response accepted (a replica fetch is bounded by
/// `replica.fetch.response.max.bytes`, far below this).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

pub struct KafkaClient {
    stream: TcpStream,
    client_id: StrBytes,
    next_correlation_id: i32,
}

impl KafkaClient {
    pub async fn connect(
        address: &str,
        client_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let stream = tokio::time::timeout(timeout, crate::util::connect_to_peer(address))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {address} timed out"))??;
        stream.set_nodelay(true)?;
        Ok(KafkaClient {
            stream,
            client_id: StrBytes::from_string(client_id.to_string()),
            next_correlation_id: 0,
        })
    }

    /// Sends `request` at `version` and waits for its response, for at most
    /// `timeout` (a broker that stops answering must not stall the caller).
    pub async fn send<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> anyhow::Result<R::Response> {
        tokio::time::timeout(timeout, self.round_trip(request, version))
            .await
            .map_err(|_| anyhow::anyhow!("request timed out after {timeout:?}"))?
    }

    async fn round_trip<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> anyhow::Result<R::Response> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        header.client_id = Some(self.client_id.clone());
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version))?;
        request.encode(&mut body, version)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).await?;

        let size = self.stream.read_i32().await?;
        if size < 4 || size as usize > MAX_RESPONSE_BYTES {
            anyhow::bail!("invalid response size {size}");
        }
        let size = size as usize;
        let mut buf = BytesMut::with_capacity(size);
        while buf.len() < size {
            let want = size - buf.len();
            if self.stream.read_buf(&mut (&mut buf).limit(want)).await? == 0 {
                anyhow::bail!("the leader closed the connection mid-response");
            }
        }
        let mut buf = buf.freeze();
        let response_header_version = <R::Response as HeaderVersion>::header_version(version);
        let got = if response_header_version >= 1 {
            let header = kafka_protocol::messages::ResponseHeader::decode(
                &mut buf,
                response_header_version,
            )?;
            header.correlation_id
        } else {
            buf.get_i32()
        };
        if got != correlation_id {
            anyhow::bail!("response correlation id {got}, expected {correlation_id}");
        }
        R::Response::decode(&mut buf, version)
    }
}
