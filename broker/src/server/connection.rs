//! One client connection: Kafka's size-prefixed framing, request decoding,
//! and in-order responses.
//!
//! Requests on a connection are processed one after another, in the order
//! they arrive, as Kafka guarantees, and answered in that order; the client
//! may pipeline them, and a separate writer task sends responses while the
//! next request is handled. A produce request is appended in turn, but its
//! wait for the ISR (`acks=all`) is left to the writer, which awaits the
//! queued responses in order: the next requests are read and appended
//! meanwhile, so a connection is not limited to one produce per
//! replication round trip (where Kafka mutes the connection instead).
//! A frame larger than `socket.request.max.bytes` is refused before its body
//! is read, and a frame that cannot be decoded closes the connection — each
//! with a log line naming the peer. A fetch response's large record sets
//! go from the segment file to the socket with `sendfile`.

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use futures::FutureExt;
use kafka_protocol::messages::{
    ApiKey, FetchResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter, Interest};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::response_buf::{self, Piece, ResponseBuf};
use crate::broker::Broker;
use crate::disk::sendfile::{self, FileRegion, StandIns};
use crate::handlers;
use kafka_protocol::protocol::buf::ByteBufMut;

/// Responses waiting to be written (or, for a produce, still waiting for the
/// ISR); bounds memory and pipelining when a client stops reading.
const RESPONSE_QUEUE: usize = 64;

/// Bytes read from the socket at a time for requests smaller than this:
/// a frame's size and body, and often the next frames a client pipelined,
/// come in one `recvfrom` instead of two or more per request. Larger
/// bodies are read straight into their own buffer.
const READ_BUFFER: usize = 16 * 1024;

/// An encoded response frame, in pieces to write in order (a fetch
/// response's records are not copied into one buffer; see `response_buf`).
type Frame = Vec<Piece>;

/// A response in the making: the encoded frame, or `None` when the request
/// expects none (Produce with acks=0).
type PendingResponse = Pin<Box<dyn Future<Output = Result<Option<Frame>, FrameError>> + Send>>;

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
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let (tx, mut rx) = mpsc::channel::<PendingResponse>(RESPONSE_QUEUE);
    let writer_task = tokio::spawn(async move {
        let mut writer = BufWriter::with_capacity(256 * 1024, writer);
        let mut next: Option<PendingResponse> = None;
        loop {
            let response = match next.take() {
                Some(response) => response,
                None => match rx.recv().await {
                    Some(response) => response,
                    None => break,
                },
            };
            let mut result = response.await;
            loop {
                match result {
                    Ok(Some(frame)) => {
                        for piece in &frame {
                            let written = match piece {
                                Piece::Memory(bytes) => writer.write_all(bytes).await,
                                Piece::File(region) => match writer.flush().await {
                                    Ok(()) => send_region(writer.get_ref().as_ref(), region).await,
                                    Err(e) => Err(e),
                                },
                            };
                            if let Err(e) = written {
                                tracing::debug!(%peer, error = %e, "closing connection");
                                return;
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "closing connection");
                        return;
                    }
                }
                // Responses already complete go out in the same write; the
                // buffer is flushed before waiting for one that is not.
                let Ok(mut queued) = rx.try_recv() else {
                    break;
                };
                match (&mut queued).now_or_never() {
                    Some(ready) => result = ready,
                    None => {
                        next = Some(queued);
                        break;
                    }
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
            Ok(response) => {
                if tx.send(response).await.is_err() {
                    break;
                }
            }
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

/// Sends a file region to the socket. A file that ends before the region
/// does (truncated since the fetch read it) fails: the frame's length is
/// already on the wire, so the connection must close.
async fn send_region(socket: &TcpStream, region: &FileRegion) -> std::io::Result<()> {
    let mut sent = 0;
    while sent < region.len {
        socket.writable().await?;
        let position = region.position + sent as u64;
        let result = socket.try_io(Interest::WRITABLE, || {
            sendfile::send(
                socket.as_raw_fd(),
                &region.file,
                position,
                region.len - sent,
            )
        });
        match result {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
    // Read into uninitialized capacity: no zeroing pass over a large produce.
    let mut body = BytesMut::with_capacity(size);
    while body.len() < size {
        let want = size - body.len();
        if reader.read_buf(&mut (&mut body).limit(want)).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    Ok(Some(body))
}

/// Decodes and handles one request; what it returns yields the encoded
/// response (for a produce, once the ISR has its batches).
async fn handle_frame(
    broker: &Arc<Broker>,
    peer: SocketAddr,
    frame: BytesMut,
) -> Result<PendingResponse, FrameError> {
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
        return ready(encode_response(&header, api_key, 0, &response.into()).map(Some));
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
    if let RequestKind::Produce(request) = request {
        // Verifying a transaction (KIP-890) may ask another broker; the
        // connection's next request waits, so appends keep their order.
        let verified = handlers::produce::verify(broker, &request).await;
        let pending = handlers::produce::append(broker, request, api_version, &verified);
        let broker = broker.clone();
        return Ok(Box::pin(async move {
            let response = pending.finish(&broker).await;
            timer.observe_duration();
            response
                .map(|r| encode_response(&header, api_key, api_version, &r.into()))
                .transpose()
        }));
    }
    if let RequestKind::Fetch(request) = request {
        let reply = handlers::fetch::handle(broker, request, api_version).await;
        timer.observe_duration();
        let frame = encode_fetch(&header, api_version, &reply.response, reply.file_regions);
        return ready(frame.map(Some));
    }
    let response = handlers::handle(broker, &header, peer, request).await;
    timer.observe_duration();
    ready(
        response
            .map(|r| encode_response(&header, api_key, api_version, &r))
            .transpose(),
    )
}

fn ready(response: Result<Option<Frame>, FrameError>) -> Result<PendingResponse, FrameError> {
    // An encoding failure closes the connection now, as before.
    let response = response?;
    Ok(Box::pin(std::future::ready(Ok(response))))
}

fn encode_response(
    header: &RequestHeader,
    api_key: ApiKey,
    version: i16,
    response: &ResponseKind,
) -> Result<Frame, FrameError> {
    let mut response_header = ResponseHeader::default();
    response_header.correlation_id = header.correlation_id;
    // ApiVersions responses always use header v0 so any client can read them.
    let header_version = if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    };
    if let ResponseKind::Fetch(fetch) = response {
        return encode_fetch(header, version, fetch, StandIns::default());
    }
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0);
    response_header
        .encode(&mut buf, header_version)
        .and_then(|_| response.encode(&mut buf, version))
        .map_err(|e| cannot_encode(api_key, version, e))?;
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(vec![Piece::Memory(buf.freeze())])
}

/// A fetch response is sized up front (the frame is not one buffer to
/// patch); its large record sets in memory are referenced instead of
/// copied, and those `file_regions` stands in for are sent from the file.
fn encode_fetch(
    header: &RequestHeader,
    version: i16,
    fetch: &FetchResponse,
    file_regions: StandIns,
) -> Result<Frame, FrameError> {
    let mut response_header = ResponseHeader::default();
    response_header.correlation_id = header.correlation_id;
    let header_version = ApiKey::Fetch.response_header_version(version);
    let failed = |e| cannot_encode(ApiKey::Fetch, version, e);
    let size = response_header
        .compute_size(header_version)
        .and_then(|h| Ok(h + fetch.compute_size(version)?))
        .map_err(failed)?;
    let shared = fetch
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter_map(|p| p.records.clone())
        .filter(|r| r.len() >= response_buf::BORROW_AT_LEAST && !StandIns::is_stand_in(r))
        .collect();
    let mut buf = ResponseBuf::new(size.min(1 << 20) + 4, shared, file_regions);
    buf.put_i32(size as i32);
    response_header
        .encode(&mut buf, header_version)
        .and_then(|_| fetch.encode(&mut buf, version))
        .map_err(failed)?;
    debug_assert_eq!(buf.offset(), size + 4);
    buf.into_pieces()
        .map_err(|e| cannot_encode(ApiKey::Fetch, version, e.into()))
}

fn cannot_encode(api_key: ApiKey, version: i16, e: anyhow::Error) -> FrameError {
    FrameError::Malformed(format!(
        "cannot encode {api_key:?} v{version} response: {e}"
    ))
}
