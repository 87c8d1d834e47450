//! Writing a file with `O_DIRECT`: from block-aligned memory, at
//! block-aligned positions, in whole blocks, so the bytes go from the
//! broker's own buffers to the device without a copy into the page cache.
//!
//! Why: on the machines measured (see `docs/direct-io.md`) the copy into
//! freshly allocated page-cache pages is most of what an appending broker
//! spends, and the page cache's writeback caps sustained writes far below
//! what the device takes. Buffers here are allocated once and reused
//! ([`BufferPool`]), so writing never touches fresh memory.
//!
//! Only the log's active segment is written this way (see
//! `log::direct_tail`); everything else keeps the buffered writes of
//! [`super::write`].

use std::alloc::{self, Layout};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Mutex;

/// The alignment `O_DIRECT` asks of memory, positions and lengths: the
/// page size, which covers every logical block size in use (512 and 4096).
pub const BLOCK: u64 = 4096;

pub fn align_down(position: u64) -> u64 {
    position & !(BLOCK - 1)
}

pub fn align_up(position: u64) -> u64 {
    align_down(position + BLOCK - 1)
}

/// A [`BLOCK`]-aligned buffer of a fixed capacity, zero-filled when new.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    capacity: usize,
}

// SAFETY: the buffer owns its allocation exclusively, like a `Vec<u8>`.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads through `&self`.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// `capacity` is rounded up to a whole number of blocks (at least one).
    pub fn zeroed(capacity: usize) -> AlignedBuf {
        let capacity = align_up(capacity.max(1) as u64) as usize;
        let layout = Self::layout(capacity);
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, capacity }
    }

    /// A buffer of no bytes (allocates nothing).
    pub fn empty() -> AlignedBuf {
        AlignedBuf {
            ptr: NonNull::dangling(),
            capacity: 0,
        }
    }

    fn layout(capacity: usize) -> Layout {
        Layout::from_size_align(capacity, BLOCK as usize).expect("block-aligned layout")
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `capacity` initialized (zeroed) bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.capacity) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.capacity) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.capacity == 0 {
            return;
        }
        // SAFETY: allocated in `zeroed` with this same layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.capacity)) }
    }
}

/// Buffers of one size handed back for reuse, so a rolled segment's memory
/// serves the next one instead of being returned to the system (and, on a
/// virtual machine that reports free pages to its host, faulted in again).
pub struct BufferPool {
    size: usize,
    keep: usize,
    free: Mutex<Vec<AlignedBuf>>,
}

impl BufferPool {
    pub const fn new(size: usize, keep: usize) -> BufferPool {
        BufferPool {
            size,
            keep,
            free: Mutex::new(Vec::new()),
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// A buffer of the pool's size: a reused one holds what it held before.
    pub fn take(&self) -> AlignedBuf {
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        reused.unwrap_or_else(|| AlignedBuf::zeroed(self.size))
    }

    /// Keeps `buf` for reuse if it has the pool's size and the pool is not full.
    pub fn give(&self, buf: AlignedBuf) {
        if buf.capacity() != self.size {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < self.keep {
            free.push(buf);
        }
    }
}

/// Opens `path` for direct writes, or `None` if its file system does not
/// support `O_DIRECT` (tmpfs and some FUSE file systems refuse it with
/// `EINVAL`), in which case the caller writes through the page cache.
pub fn open_for_direct_writes(path: &Path) -> io::Result<Option<File>> {
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` (block-aligned in memory, a whole number of blocks long)
/// at `position` (block-aligned) of a file opened by
/// [`open_for_direct_writes`]; retries short writes. A failure may leave
/// part of the range written: the caller rewrites it from the same
/// position, and cuts the file back to its good length.
pub fn write_blocks_at(file: &File, path: &Path, bytes: &[u8], position: u64) -> io::Result<()> {
    debug_assert_eq!(bytes.as_ptr() as u64 % BLOCK, 0);
    debug_assert_eq!(bytes.len() as u64 % BLOCK, 0);
    debug_assert_eq!(position % BLOCK, 0);
    #[cfg(test)]
    if let Some((allowed, error)) = super::write::faults::take_write(path) {
        let landed = align_down(allowed.min(bytes.len()) as u64) as usize;
        write_blocks_at(file, Path::new(""), &bytes[..landed], position)?;
        return Err(error);
    }
    #[cfg(not(test))]
    let _ = path;
    let mut written = 0usize;
    while written < bytes.len() {
        let rest = &bytes[written..];
        // SAFETY: `rest` is a live slice; pwrite reads at most its length.
        let n = unsafe {
            libc::pwrite(
                file.as_raw_fd(),
                rest.as_ptr().cast(),
                rest.len(),
                (position + written as u64) as libc::off_t,
            )
        };
        match n {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            // A direct write stops short only at a block boundary or on an
            // error the next call reports; a partial block would not be
            // aligned for the retry, so treat it as a failure.
            n if n > 0 => {
                written += n as usize;
                if !(written as u64).is_multiple_of(BLOCK) {
                    return Err(io::Error::other("direct write stopped inside a block"));
                }
            }
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn alignment_rounds_to_blocks() {
        assert_eq!(align_down(4095), 0);
        assert_eq!(align_down(4096), 4096);
        assert_eq!(align_up(1), 4096);
        assert_eq!(align_up(8192), 8192);
        let buf = AlignedBuf::zeroed(10);
        assert_eq!(buf.capacity(), 4096);
        assert_eq!(buf.as_slice().as_ptr() as u64 % BLOCK, 0);
        assert!(buf.as_slice().iter().all(|&b| b == 0));
    }

    #[test]
    fn a_pool_keeps_buffers_of_its_size_up_to_its_limit() {
        let pool = BufferPool::new(8192, 1);
        let mut buf = pool.take();
        buf.as_mut_slice()[100] = 7;
        let address = buf.as_slice().as_ptr();
        pool.give(buf);
        pool.give(AlignedBuf::zeroed(8192));
        pool.give(AlignedBuf::zeroed(4096));
        let reused = pool.take();
        assert_eq!(
            reused.as_slice().as_ptr(),
            address,
            "the first one given back is reused"
        );
        assert_eq!(reused.as_slice()[100], 7);
        assert!(
            pool.take().as_slice().iter().all(|&b| b == 0),
            "the pool kept only one"
        );
    }

    #[test]
    fn direct_writes_land_where_buffered_reads_find_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        File::create(&path).unwrap();
        let Some(file) = open_for_direct_writes(&path).unwrap() else {
            panic!("this test needs a file system with O_DIRECT under TMPDIR");
        };
        let mut buf = AlignedBuf::zeroed(2 * BLOCK as usize);
        buf.as_mut_slice()[..5].copy_from_slice(b"hello");
        write_blocks_at(&file, &path, &buf.as_slice()[..BLOCK as usize], 0).unwrap();
        buf.as_mut_slice()[5..11].copy_from_slice(b" world");
        write_blocks_at(&file, &path, &buf.as_slice()[..BLOCK as usize], 0).unwrap();
        let reader = File::open(&path).unwrap();
        let mut read = [0u8; 11];
        reader.read_exact_at(&mut read, 0).unwrap();
        assert_eq!(&read, b"hello world");
        assert_eq!(reader.metadata().unwrap().len(), BLOCK);
    }
}
