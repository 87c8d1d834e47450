//! Kafka's framing: every request and response is a 4-byte big-endian size
//! followed by that many bytes. A request starts with a header (api key,
//! api version, correlation id, client id, and tagged fields from header
//! v2); a response with its correlation id (and tagged fields from v1).
//! Which header version goes with which API version is the
//! `kafka-protocol` crate's knowledge; this module only puts the pieces in
//! order, so no caller frames bytes by hand.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// Largest frame accepted from a peer. A replica fetch is bounded by
/// `replica.fetch.response.max.bytes`, far below this; anything larger is
/// a corrupt size, not a message.
pub const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

/// A request's header and body, without the size prefix (what a test that
/// builds its own frames sends).
pub fn request_payload<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
) -> anyhow::Result<BytesMut> {
    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(client_id.clone());
    let mut payload = BytesMut::new();
    header.encode(&mut payload, R::header_version(version))?;
    request.encode(&mut payload, version)?;
    Ok(payload)
}

/// The whole frame for one request: size prefix, header, body.
pub fn request_frame<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
) -> anyhow::Result<BytesMut> {
    let payload = request_payload(request, version, correlation_id, client_id)?;
    let mut frame = BytesMut::with_capacity(4 + payload.len());
    frame.put_i32(payload.len() as i32);
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// The payload size a frame's 4-byte prefix announces, refused when it is
/// negative or over [`MAX_FRAME_BYTES`].
pub fn payload_size(prefix: [u8; 4]) -> anyhow::Result<usize> {
    let size = i32::from_be_bytes(prefix);
    if !(0..=MAX_FRAME_BYTES as i32).contains(&size) {
        anyhow::bail!("invalid frame size {size}");
    }
    Ok(size as usize)
}

/// Decodes a response payload (the frame without its size prefix) to a
/// request of type `R` sent at `version`, checking that it answers
/// `correlation_id`.
pub fn decode_response<R: Request>(
    mut payload: Bytes,
    version: i16,
    correlation_id: i32,
) -> anyhow::Result<R::Response> {
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut payload, header_version)?;
    if header.correlation_id != correlation_id {
        anyhow::bail!(
            "response correlation id {}, expected {correlation_id}",
            header.correlation_id
        );
    }
    R::Response::decode(&mut payload, version)
}

/// The highest version of `R` that both the broker (per its ApiVersions
/// answer) and the `kafka-protocol` crate support, capped at `cap`.
pub fn common_version<R: Request>(broker: &ApiVersionsResponse, cap: i16) -> anyhow::Result<i16> {
    let ours = R::VERSIONS;
    let Some(theirs) = broker.api_keys.iter().find(|k| k.api_key == R::KEY) else {
        anyhow::bail!("the broker does not support api key {}", R::KEY);
    };
    let version = theirs.max_version.min(ours.max).min(cap);
    if version < theirs.min_version.max(ours.min) {
        anyhow::bail!(
            "no common version for api key {}: broker {}..={}, ours {}..={}",
            R::KEY,
            theirs.min_version,
            theirs.max_version,
            ours.min,
            ours.max
        );
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{ApiVersionsRequest, FetchRequest, ProduceRequest};

    fn broker_supporting(key: i16, min: i16, max: i16) -> ApiVersionsResponse {
        let mut version = ApiVersion::default();
        version.api_key = key;
        version.min_version = min;
        version.max_version = max;
        let mut response = ApiVersionsResponse::default();
        response.api_keys.push(version);
        response
    }

    #[test]
    fn a_request_frame_is_its_size_then_header_then_body() {
        let client_id = StrBytes::from_static_str("t");
        let frame = request_frame(&ApiVersionsRequest::default(), 0, 7, &client_id).unwrap();
        let size = payload_size(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(size, frame.len() - 4);
        // Header v1: api key 18, version 0, correlation id 7, client id "t".
        assert_eq!(&frame[4..14], &[0, 18, 0, 0, 0, 0, 0, 7, 0, 1]);
        assert_eq!(frame[14], b't');
    }

    #[test]
    fn a_size_outside_the_limit_is_refused() {
        assert!(payload_size((-1i32).to_be_bytes()).is_err());
        assert!(payload_size((MAX_FRAME_BYTES as i32 + 1).to_be_bytes()).is_err());
        assert_eq!(payload_size(12i32.to_be_bytes()).unwrap(), 12);
    }

    #[test]
    fn a_response_for_another_request_is_an_error() {
        let mut payload = BytesMut::new();
        let mut header = ResponseHeader::default();
        header.correlation_id = 3;
        header.encode(&mut payload, 0).unwrap();
        ApiVersionsResponse::default()
            .encode(&mut payload, 0)
            .unwrap();
        let payload = payload.freeze();
        assert!(decode_response::<ApiVersionsRequest>(payload.clone(), 0, 3).is_ok());
        let wrong = decode_response::<ApiVersionsRequest>(payload, 0, 4).unwrap_err();
        assert!(wrong.to_string().contains("correlation id 3"), "{wrong}");
    }

    #[test]
    fn the_common_version_is_the_highest_both_sides_know_under_the_cap() {
        let broker = broker_supporting(ProduceRequest::KEY, 3, 9);
        assert_eq!(common_version::<ProduceRequest>(&broker, 20).unwrap(), 9);
        assert_eq!(common_version::<ProduceRequest>(&broker, 5).unwrap(), 5);
        assert!(common_version::<ProduceRequest>(&broker, 2).is_err());
        assert!(common_version::<FetchRequest>(&broker, 20).is_err());
    }
}
