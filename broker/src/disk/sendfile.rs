//! Sending regions of segment files to a socket without reading them into
//! the broker's memory first (`sendfile(2)`, Kafka's zero-copy
//! `transferTo`): a fetch response's record sets are mostly whole regions
//! of a segment, and a `pread` into a buffer followed by a `send` of it
//! copies every byte twice more than the kernel needs to.
//!
//! The response encoder (`kafka-protocol`) only takes byte strings, so a
//! region rides through it as a *stand-in*: a slice, of the region's
//! length, of one zero-filled array that nothing ever reads. Each
//! stand-in of a response is a different range of that array, so the
//! encoder's output buffer recognises it by its address and puts the
//! region in its place (`server::response_buf`). The array is an
//! anonymous read-only mapping whose pages are never touched, so it costs
//! address space only.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

/// How many bytes of file regions one response can stand in for; regions
/// beyond it are read into memory as before.
const STAND_IN_BYTES: usize = 64 << 20;

/// The zero-filled array stand-ins are slices of, mapped on first use and
/// kept for the life of the process.
fn stand_in_array() -> &'static [u8] {
    static ARRAY: OnceLock<&'static [u8]> = OnceLock::new();
    ARRAY.get_or_init(|| {
        // SAFETY: a fresh private anonymous mapping, read-only and never
        // unmapped, so the slice stays valid for `'static`.
        unsafe {
            let address = libc::mmap(
                std::ptr::null_mut(),
                STAND_IN_BYTES,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            assert!(
                address != libc::MAP_FAILED,
                "mapping {STAND_IN_BYTES} bytes of address space: {}",
                io::Error::last_os_error()
            );
            std::slice::from_raw_parts(address as *const u8, STAND_IN_BYTES)
        }
    })
}

/// Bytes of a file to send as they are.
#[derive(Clone, Debug)]
pub struct FileRegion {
    pub file: Arc<File>,
    pub position: u64,
    pub len: usize,
}

impl FileRegion {
    /// The region's bytes, read into a new buffer.
    pub fn read(&self) -> io::Result<Vec<u8>> {
        super::read::read_exact_at(&self.file, self.len, self.position)
    }
}

/// The regions a response stands in for, by where their stand-in starts.
#[derive(Default)]
pub struct StandIns {
    /// `(offset into the stand-in array, region)`, in increasing offset order.
    regions: Vec<(usize, FileRegion)>,
    used: usize,
}

impl StandIns {
    /// A stand-in for `region`, or the region back when this response
    /// already stands in for as many bytes as the array holds.
    pub fn stand_in(&mut self, region: FileRegion) -> Result<Bytes, FileRegion> {
        let start = self.used;
        let end = start + region.len;
        if end > STAND_IN_BYTES {
            return Err(region);
        }
        self.used = end;
        self.regions.push((start, region));
        Ok(Bytes::from_static(&stand_in_array()[start..end]))
    }

    /// Forgets every stand-in (a fetch that reads its partitions again).
    pub fn clear(&mut self) {
        self.regions.clear();
        self.used = 0;
    }

    /// Whether `bytes` lies inside the stand-in array at all.
    pub fn is_stand_in(bytes: &[u8]) -> bool {
        let base = stand_in_array().as_ptr() as usize;
        let start = bytes.as_ptr() as usize;
        !bytes.is_empty() && base <= start && start < base + STAND_IN_BYTES
    }

    /// The region `bytes` stands in for, if it is exactly one of this
    /// response's stand-ins.
    pub fn region_of(&self, bytes: &[u8]) -> Option<&FileRegion> {
        if !Self::is_stand_in(bytes) {
            return None;
        }
        let offset = bytes.as_ptr() as usize - stand_in_array().as_ptr() as usize;
        let i = self
            .regions
            .binary_search_by_key(&offset, |(start, _)| *start)
            .ok()?;
        let region = &self.regions[i].1;
        (region.len == bytes.len()).then_some(region)
    }
}

/// Bytes this process has sent with `sendfile` (`/metrics`).
static SENT: AtomicU64 = AtomicU64::new(0);

pub fn bytes_sent() -> u64 {
    SENT.load(Ordering::Relaxed)
}

/// Sends up to `len` bytes of `file` from `position` to the socket `socket`;
/// returns how many were sent (0 when the file ends before `position`).
/// A non-blocking socket that is full fails with `WouldBlock`.
pub fn send(socket: RawFd, file: &File, position: u64, len: usize) -> io::Result<usize> {
    let mut offset = position as libc::off_t;
    loop {
        // SAFETY: both descriptors are open for the duration of the call
        // and `offset` is a valid, exclusively borrowed `off_t`.
        let n = unsafe { libc::sendfile(socket, file.as_raw_fd(), &mut offset, len) };
        if n >= 0 {
            SENT.fetch_add(n as u64, Ordering::Relaxed);
            return Ok(n as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn region(file: &Arc<File>, position: u64, len: usize) -> FileRegion {
        FileRegion {
            file: file.clone(),
            position,
            len,
        }
    }

    #[test]
    fn each_stand_in_names_its_own_region() {
        let file = Arc::new(tempfile::tempfile().unwrap());
        let mut stand_ins = StandIns::default();
        let a = stand_ins.stand_in(region(&file, 0, 100)).unwrap();
        let b = stand_ins.stand_in(region(&file, 500, 100)).unwrap();
        assert_eq!(stand_ins.region_of(&a).unwrap().position, 0);
        assert_eq!(stand_ins.region_of(&b).unwrap().position, 500);
        assert!(
            stand_ins.region_of(&a[1..]).is_none(),
            "only whole stand-ins"
        );
        assert!(stand_ins.region_of(&[0u8; 100]).is_none());
        assert!(StandIns::is_stand_in(&a[1..]));
        assert!(!StandIns::is_stand_in(&[0u8; 100]));
        stand_ins.clear();
        assert!(stand_ins.region_of(&a).is_none());
    }

    #[test]
    fn a_response_stands_in_for_a_bounded_number_of_bytes() {
        let file = Arc::new(tempfile::tempfile().unwrap());
        let mut stand_ins = StandIns::default();
        stand_ins
            .stand_in(region(&file, 0, STAND_IN_BYTES - 10))
            .unwrap();
        let refused = stand_ins.stand_in(region(&file, 7, 11)).unwrap_err();
        assert_eq!((refused.position, refused.len), (7, 11));
        assert!(stand_ins.stand_in(region(&file, 0, 10)).is_ok());
    }

    #[test]
    fn sends_the_region_and_nothing_past_the_end_of_the_file() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&data).unwrap();
        let (mut reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let sender = std::thread::spawn(move || {
            let mut sent = 0;
            while sent < 200_000 {
                let n = send(
                    writer.as_raw_fd(),
                    &file,
                    1_000 + sent as u64,
                    200_000 - sent,
                )
                .unwrap();
                assert!(n > 0);
                sent += n;
            }
            assert_eq!(send(writer.as_raw_fd(), &file, 300_000, 10).unwrap(), 0);
        });
        let mut received = vec![0u8; 200_000];
        reader.read_exact(&mut received).unwrap();
        sender.join().unwrap();
        assert_eq!(received, &data[1_000..201_000]);
    }
}
