//! One client connection: Kafka's size-prefixed framing, request decoding,
//! and in-order responses.
//!
//! Requests on a connection are processed one after another, in the order
//! they arrive, as Kafka guarantees; the client may pipeline them, and a
//! separate writer task sends responses while the next request is handled.
//! A frame larger than `socket.request.max.bytes` is refused before its body
//! is read, and a frame that cannot be decoded closes the connection — each
//! with a log line naming the peer.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::broker::Broker;
use crate::handlers;

/// Responses waiting to be written; bounds memory when a client stops reading.
const RESPONSE_QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("frame size {0} exceeds socket.request.max.bytes ({1})")]
    TooLarge(usize, usize),
    #[error("invalid frame size {0}")]
    Negative(i32),
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

pub async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    broker.metrics.connections.inc();
    let (mut reader, writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(RESPONSE_QUEUE);
    let writer_task = tokio::spawn(async move {
        let mut writer = BufWriter::with_capacity(256 * 1024, writer);
        while let Some(frame) = rx.recv().await {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
            // Batch responses that are already queued into one write.
            while let Ok(frame) = rx.try_recv() {
                if writer.write_all(&frame).await.is_err() {
                    return;
                }
            }
            if writer.flush().await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });

    let max = broker.config.socket_request_max_bytes;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let frame = tokio::select! {
            frame = read_frame(&mut reader, max) => frame,
            _ = shutdown.changed() => break,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(FrameError::Io(e)) => {
                tracing::debug!(%peer, error = %e, "connection closed");
                break;
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection");
                break;
            }
        };
        match handle_frame(&broker, peer, frame).await {
            Ok(Some(response)) => {
                if tx.send(response).await.is_err() {
                    break;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection");
                break;
            }
        }
    }
    drop(tx);
    let _ = writer_task.await;
    broker.metrics.connections.dec();
}

/// Reads one size-prefixed frame; `None` on a clean end of stream.
async fn read_frame(
    reader: &mut (impl AsyncReadExt + Unpin),
    max: usize,
) -> Result<Option<BytesMut>, FrameError> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size);
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    let size = size as usize;
    if size > max {
        return Err(FrameError::TooLarge(size, max));
    }
    let mut body = BytesMut::zeroed(size);
    reader.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Decodes, handles and encodes one request. `Ok(None)` means the request
/// expects no response (Produce with acks=0).
async fn handle_frame(
    broker: &Broker,
    peer: SocketAddr,
    frame: BytesMut,
) -> Result<Option<Bytes>, FrameError> {
    let mut body = frame.freeze();
    if body.len() < 4 {
        return Err(FrameError::Malformed(format!("{} byte frame", body.len())));
    }
    let api_key_raw = i16::from_be_bytes([body[0], body[1]]);
    let api_version = i16::from_be_bytes([body[2], body[3]]);
    let api_key = ApiKey::try_from(api_key_raw)
        .map_err(|_| FrameError::Malformed(format!("unknown api key {api_key_raw}")))?;
    let header_version = api_key.request_header_version(api_version);
    let header = RequestHeader::decode(&mut body, header_version)
        .map_err(|e| FrameError::Malformed(format!("request header: {e}")))?;

    // An ApiVersions request of a version we do not know still gets an
    // answer (v0, UNSUPPORTED_VERSION) so the client can downgrade.
    if api_key == ApiKey::ApiVersions && !handlers::is_supported(api_key, api_version) {
        let response = handlers::api_versions::unsupported_version_response();
        return encode_response(&header, api_key, 0, &response.into()).map(Some);
    }
    if !handlers::is_supported(api_key, api_version) {
        return Err(FrameError::Malformed(format!(
            "{api_key:?} v{api_version} is not supported"
        )));
    }
    let request = RequestKind::decode(api_key, &mut body, api_version)
        .map_err(|e| FrameError::Malformed(format!("{api_key:?} v{api_version} body: {e}")))?;
    if body.has_remaining() && !matches!(api_key, ApiKey::ApiVersions) {
        tracing::debug!(
            ?api_key,
            trailing = body.remaining(),
            "request has trailing bytes"
        );
    }
    let timer = broker.metrics.request_started(api_key);
    let response = handlers::handle(broker, &header, peer, request).await;
    timer.observe_duration();
    match response {
        Some(response) => encode_response(&header, api_key, api_version, &response).map(Some),
        None => Ok(None),
    }
}

fn encode_response(
    header: &RequestHeader,
    api_key: ApiKey,
    version: i16,
    response: &ResponseKind,
) -> Result<Bytes, FrameError> {
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0);
    let mut response_header = ResponseHeader::default();
    response_header.correlation_id = header.correlation_id;
    // ApiVersions responses always use header v0 so any client can read them.
    let header_version = if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    };
    response_header
        .encode(&mut buf, header_version)
        .and_then(|_| response.encode(&mut buf, version))
        .map_err(|e| {
            FrameError::Malformed(format!(
                "cannot encode {api_key:?} v{version} response: {e}"
            ))
        })?;
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}
