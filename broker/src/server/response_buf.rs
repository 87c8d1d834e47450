//! An encoding buffer that does not copy large byte strings already in
//! memory: a fetch response is mostly record batches just read from the
//! log, and copying them into one contiguous frame before the socket copies
//! them again is a wasted pass over every byte served (to consumers and,
//! three times over with RF=3, to followers).
//!
//! `kafka-protocol` encodes into any [`ByteBufMut`]; this one keeps the
//! frame as pieces. A `put_slice` of a stand-in for a file region
//! (`disk::sendfile`) becomes that region, to be sent from the file; one of
//! at least [`BORROW_AT_LEAST`] bytes that lies inside one of the `shared`
//! buffers becomes a reference to it (`Bytes::slice_ref`); everything else
//! is copied into the current piece. The connection writes the pieces in
//! order.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

use crate::disk::sendfile::{FileRegion, StandIns};

/// Smaller strings are cheaper to copy than to send as their own piece;
/// from this size on the connection's write buffer also passes them
/// through without copying.
pub const BORROW_AT_LEAST: usize = 256 * 1024;

/// Part of an encoded frame: bytes in memory, or a region of a file.
#[derive(Debug)]
pub enum Piece {
    Memory(Bytes),
    File(FileRegion),
}

impl Piece {
    pub fn len(&self) -> usize {
        match self {
            Piece::Memory(bytes) => bytes.len(),
            Piece::File(region) => region.len,
        }
    }
}

/// A stand-in reached the encoder that is not one of the response's own:
/// its zeros must not be sent in place of records.
#[derive(Debug, thiserror::Error)]
#[error("a record set stood in for a file region this response does not know")]
pub struct UnknownStandIn;

pub struct ResponseBuf {
    /// Finished pieces, in order.
    done: Vec<Piece>,
    done_len: usize,
    head: BytesMut,
    shared: Vec<Bytes>,
    file_regions: StandIns,
    unknown_stand_in: bool,
}

impl ResponseBuf {
    /// `shared`: the buffers whose contents may be referenced;
    /// `file_regions`: the file regions the response's stand-ins are for.
    pub fn new(capacity: usize, shared: Vec<Bytes>, file_regions: StandIns) -> ResponseBuf {
        ResponseBuf {
            done: Vec::new(),
            done_len: 0,
            head: BytesMut::with_capacity(capacity),
            shared,
            file_regions,
            unknown_stand_in: false,
        }
    }

    /// The encoded frame, as pieces to write in order.
    pub fn into_pieces(mut self) -> Result<Vec<Piece>, UnknownStandIn> {
        if self.unknown_stand_in {
            return Err(UnknownStandIn);
        }
        if !self.head.is_empty() {
            self.done.push(Piece::Memory(self.head.freeze()));
        }
        Ok(self.done)
    }

    /// Ends the current piece and appends `piece` after it.
    fn push_piece(&mut self, piece: Piece) {
        if !self.head.is_empty() {
            self.done_len += self.head.len();
            self.done.push(Piece::Memory(self.head.split().freeze()));
        }
        self.done_len += piece.len();
        self.done.push(piece);
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
        if StandIns::is_stand_in(src) {
            match self.file_regions.region_of(src).cloned() {
                Some(region) => self.push_piece(Piece::File(region)),
                None => {
                    // Keep the frame's length right; `into_pieces` fails.
                    self.unknown_stand_in = true;
                    self.head.put_bytes(0, src.len());
                }
            }
            return;
        }
        if src.len() >= BORROW_AT_LEAST {
            if let Some(piece) = self.shared_slice(src) {
                self.push_piece(Piece::Memory(piece));
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
    use std::io::Write;
    use std::sync::Arc;

    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::protocol::Encodable;

    /// The frame's bytes, file regions read back.
    fn joined(pieces: &[Piece]) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Memory(bytes) => out.extend_from_slice(bytes),
                Piece::File(region) => out.extend(region.read().unwrap()),
            }
        }
        out
    }

    fn response_with(records: &[Bytes]) -> FetchResponse {
        let mut topic = FetchableTopicResponse::default();
        for r in records {
            let mut partition = PartitionData::default();
            partition.records = Some(r.clone());
            topic.partitions.push(partition);
        }
        let mut response = FetchResponse::default();
        response.responses.push(topic);
        response
    }

    #[test]
    fn large_shared_strings_are_referenced_and_the_rest_copied() {
        let records = Bytes::from(vec![7u8; BORROW_AT_LEAST + 10]);
        let other = vec![9u8; BORROW_AT_LEAST];
        let mut buf = ResponseBuf::new(16, vec![records.clone()], StandIns::default());
        buf.put_i32(5);
        buf.put_slice(&records[5..]);
        buf.put_u8(1);
        buf.put_slice(&other);
        assert_eq!(buf.offset(), 4 + records.len() - 5 + 1 + other.len());
        let pieces = buf.into_pieces().unwrap();
        assert_eq!(pieces.len(), 3);
        let Piece::Memory(referenced) = &pieces[1] else {
            panic!("records in memory stay in memory");
        };
        assert_eq!(
            referenced.as_ptr(),
            records[5..].as_ptr(),
            "referenced, not copied"
        );
        let mut expected = 5i32.to_be_bytes().to_vec();
        expected.extend_from_slice(&records[5..]);
        expected.push(1);
        expected.extend_from_slice(&other);
        assert_eq!(joined(&pieces), expected);
    }

    #[test]
    fn a_fetch_response_encodes_to_the_same_bytes_either_way() {
        let records = Bytes::from((0..600_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let response = response_with(&[records.clone(), records.clone()]);
        for version in [4, 12, 16] {
            let mut plain = BytesMut::new();
            response.encode(&mut plain, version).unwrap();
            let mut pieces = ResponseBuf::new(64, vec![records.clone()], StandIns::default());
            response.encode(&mut pieces, version).unwrap();
            let pieces = pieces.into_pieces().unwrap();
            assert!(
                pieces.len() >= 4,
                "v{version}: the records are their own pieces"
            );
            assert_eq!(joined(&pieces), plain.to_vec(), "v{version}");
        }
    }

    #[test]
    fn stand_ins_become_their_file_regions_in_place() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        let file = Arc::new(file);
        let region = |position: u64, len: usize| FileRegion {
            file: file.clone(),
            position,
            len,
        };
        let in_memory = Bytes::from(vec![5u8; 1_000]);
        for version in [4, 12, 16] {
            let mut stand_ins = StandIns::default();
            let first = stand_ins.stand_in(region(10, 100_000)).unwrap();
            let second = stand_ins.stand_in(region(150_000, 120_000)).unwrap();
            let with_stand_ins = response_with(&[first, in_memory.clone(), second]);
            let real = response_with(&[
                Bytes::copy_from_slice(&data[10..100_010]),
                in_memory.clone(),
                Bytes::copy_from_slice(&data[150_000..270_000]),
            ]);
            let mut expected = BytesMut::new();
            real.encode(&mut expected, version).unwrap();
            let mut buf = ResponseBuf::new(64, Vec::new(), stand_ins);
            with_stand_ins.encode(&mut buf, version).unwrap();
            let pieces = buf.into_pieces().unwrap();
            let files = pieces
                .iter()
                .filter(|p| matches!(p, Piece::File(_)))
                .count();
            assert_eq!(files, 2, "v{version}: both regions are sent from the file");
            assert_eq!(joined(&pieces), expected.to_vec(), "v{version}");
        }
    }

    #[test]
    fn a_stand_in_the_response_does_not_know_fails_the_frame() {
        let file = Arc::new(tempfile::tempfile().unwrap());
        let mut other = StandIns::default();
        let stray = other
            .stand_in(FileRegion {
                file,
                position: 0,
                len: 70_000,
            })
            .unwrap();
        let mut buf = ResponseBuf::new(64, Vec::new(), StandIns::default());
        response_with(&[stray]).encode(&mut buf, 12).unwrap();
        assert!(
            buf.into_pieces().is_err(),
            "zeros are never sent as records"
        );
    }
}
