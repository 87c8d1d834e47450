//! An async Kafka client for Tideline's own programs: one request at a time
//! on one connection, each bounded by a timeout so a broker that stops
//! answering never stalls the caller. A follower fetching from its leader
//! talks to it exactly as any Kafka client would.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::frame;

pub struct KafkaClient {
    stream: TcpStream,
    client_id: StrBytes,
    next_correlation_id: i32,
}

impl KafkaClient {
    /// Connects to `address` (host:port), giving up after `timeout`.
    pub async fn connect(
        address: &str,
        client_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {address} timed out"))??;
        Self::over(stream, client_id)
    }

    /// A client over a stream the caller connected (the broker binds its
    /// outbound connections to a chosen local address).
    pub fn over(stream: TcpStream, client_id: &str) -> anyhow::Result<Self> {
        stream.set_nodelay(true)?;
        Ok(KafkaClient {
            stream,
            client_id: StrBytes::from_string(client_id.to_string()),
            next_correlation_id: 0,
        })
    }

    /// Sends `request` at `version` and waits for its response, for at most
    /// `timeout`. After an error the connection may hold half a frame: drop
    /// the client and connect again.
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
        let request = frame::request_frame(request, version, correlation_id, &self.client_id)?;
        self.stream.write_all(&request).await?;

        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix).await?;
        let size = frame::payload_size(prefix)?;
        // Read into spare capacity rather than a zeroed buffer: replica
        // fetch responses are megabytes, and zeroing them is wasted work.
        let mut payload = BytesMut::with_capacity(size);
        while payload.len() < size {
            let want = size - payload.len();
            if self
                .stream
                .read_buf(&mut (&mut payload).limit(want))
                .await?
                == 0
            {
                anyhow::bail!("the broker closed the connection mid-response");
            }
        }
        frame::decode_response::<R>(payload.freeze(), version, correlation_id)
    }
}
