//! An encoding buffer that does not copy large byte strings already in
//! memory: a fetch response is mostly record batches just read from the
//! log, and copying them into one contiguous frame before the socket copies
//! them again is a wasted pass over every byte served (to consumers and,
//! three times over with RF=3, to followers).
//!
//! `kafka-protocol` encodes into any [`ByteBufMut`]; this one keeps the
//! frame as pieces. A `put_slice` of at least [`BORROW_AT_LEAST`] bytes
//! that lies inside one of the `shared` buffers becomes a reference to it
//! (`Bytes::slice_ref`), everything else is copied into the current piece.
//! The connection writes the pieces in order.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Smaller strings are cheaper to copy than to send as their own piece;
/// from this size on the connection's write buffer also passes them
/// through without copying.
pub const BORROW_AT_LEAST: usize = 256 * 1024;

pub struct ResponseBuf {
    /// Finished pieces, in order.
    done: Vec<Bytes>,
    done_len: usize,
    head: BytesMut,
    shared: Vec<Bytes>,
}

impl ResponseBuf {
    /// `shared`: the buffers whose contents may be referenced.
    pub fn new(capacity: usize, shared: Vec<Bytes>) -> ResponseBuf {
        ResponseBuf {
            done: Vec::new(),
            done_len: 0,
            head: BytesMut::with_capacity(capacity),
            shared,
        }
    }

    /// The encoded frame, as pieces to write in order.
    pub fn into_pieces(mut self) -> Vec<Bytes> {
        if !self.head.is_empty() {
            self.done.push(self.head.freeze());
        }
        self.done
    }

    fn shared_slice(&self, src: &[u8]) -> Option<Bytes> {
        let (start, end) = (src.as_ptr() as usize, src.as_ptr() as usize + src.len());
        self.shared
            .iter()
            .find(|b| {
                let b_start = b.as_ptr() as usize;
                b_start <= start && end <= b_start + b.len()
            })
            .map(|b| b.slice_ref(src))
    }

    /// Offsets before the current piece cannot be revisited.
    fn in_head(&self, offset: usize) -> usize {
        offset
            .checked_sub(self.done_len)
            .expect("encoders only revisit the current piece")
    }
}

// SAFETY: every method delegates to the `BytesMut` of the current piece,
// which upholds `BufMut`'s contract.
unsafe impl BufMut for ResponseBuf {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialized `cnt` bytes of `chunk_mut()`.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= BORROW_AT_LEAST {
            if let Some(piece) = self.shared_slice(src) {
                if !self.head.is_empty() {
                    self.done_len += self.head.len();
                    self.done.push(self.head.split().freeze());
                }
                self.done_len += piece.len();
                self.done.push(piece);
                return;
            }
        }
        self.head.extend_from_slice(src);
    }
}

impl ByteBufMut for ResponseBuf {
    fn offset(&self) -> usize {
        self.done_len + self.head.len()
    }

    fn seek(&mut self, offset: usize) {
        let offset = self.in_head(offset);
        self.head.resize(offset, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let (start, end) = (self.in_head(r.start), self.in_head(r.end));
        &mut self.head[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_shared_strings_are_referenced_and_the_rest_copied() {
        let records = Bytes::from(vec![7u8; BORROW_AT_LEAST + 10]);
        let other = vec![9u8; BORROW_AT_LEAST];
        let mut buf = ResponseBuf::new(16, vec![records.clone()]);
        buf.put_i32(5);
        buf.put_slice(&records[5..]);
        buf.put_u8(1);
        buf.put_slice(&other);
        assert_eq!(buf.offset(), 4 + records.len() - 5 + 1 + other.len());
        let pieces = buf.into_pieces();
        assert_eq!(pieces.len(), 3);
        assert_eq!(
            pieces[1].as_ptr(),
            records[5..].as_ptr(),
            "referenced, not copied"
        );
        let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        let mut expected = 5i32.to_be_bytes().to_vec();
        expected.extend_from_slice(&records[5..]);
        expected.push(1);
        expected.extend_from_slice(&other);
        assert_eq!(joined, expected);
    }

    #[test]
    fn a_fetch_response_encodes_to_the_same_bytes_either_way() {
        use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        use kafka_protocol::messages::FetchResponse;
        use kafka_protocol::protocol::Encodable;
        let records = Bytes::from((0..600_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let mut partition = PartitionData::default();
        partition.records = Some(records.clone());
        let mut topic = FetchableTopicResponse::default();
        topic.partitions.push(partition.clone());
        topic.partitions.push(partition);
        let mut response = FetchResponse::default();
        response.responses.push(topic);
        for version in [4, 12, 16] {
            let mut plain = BytesMut::new();
            response.encode(&mut plain, version).unwrap();
            let mut pieces = ResponseBuf::new(64, vec![records.clone()]);
            response.encode(&mut pieces, version).unwrap();
            let pieces = pieces.into_pieces();
            assert!(
                pieces.len() >= 4,
                "v{version}: the records are their own pieces"
            );
            let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
            assert_eq!(joined, plain.to_vec(), "v{version}");
        }
    }
}
