//! Reading file regions into fresh buffers without zeroing them first: a
//! fetch reads every byte it sends, so filling the buffer with zeros before
//! `pread` overwrites them is a wasted pass over memory.
//!
//! Request handlers run on the async runtime, where a read that waits for
//! the disk stalls every connection on that worker. So they read only what
//! the page cache holds ([`read_if_cached`], and [`is_cached`] before a
//! `sendfile`), and hand the rest to the blocking pool.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Reads exactly `len` bytes at `position` into a new buffer.
pub fn read_exact_at(file: &File, len: usize, position: u64) -> io::Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    while buf.len() < len {
        let filled = buf.len();
        let spare = buf.spare_capacity_mut();
        // SAFETY: `spare` is the vector's own unused capacity, at least
        // `len - filled` bytes long; pread writes at most that many bytes
        // there and reports how many it wrote.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                len - filled,
                (position + filled as u64) as libc::off_t,
            )
        };
        match n {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n if n > 0 => {
                // SAFETY: pread initialized the next `n` bytes.
                unsafe { buf.set_len(filled + n as usize) };
            }
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(buf)
}

/// The region's bytes if the page cache holds all of them, else `None`
/// (nothing waited for the disk, and nothing started reading it: a miss of
/// `preadv2(RWF_NOWAIT)` would start readahead, whose pages then count as
/// cached before they are read, so residency is asked first). A page a
/// concurrent append holds locked for its copy makes `RWF_NOWAIT` give up
/// too; the plain read after it waits only for that copy.
pub fn read_if_cached(file: &File, len: usize, position: u64) -> io::Result<Option<Vec<u8>>> {
    if !is_cached(file, len, position) {
        return Ok(None);
    }
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    if len == 0 {
        return Ok(Some(buf));
    }
    let spare = buf.spare_capacity_mut();
    let iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: len,
    };
    loop {
        // SAFETY: `iov` covers the vector's own unused capacity of `len`
        // bytes; preadv2 writes at most that many and reports how many.
        let n = unsafe {
            libc::preadv2(
                file.as_raw_fd(),
                &iov,
                1,
                position as libc::off_t,
                libc::RWF_NOWAIT,
            )
        };
        if n as usize == len {
            // SAFETY: preadv2 initialized all `len` bytes.
            unsafe { buf.set_len(len) };
            return Ok(Some(buf));
        }
        if n >= 0 {
            // The file ends early: the blocking read reports it.
            return Ok(None);
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            // A locked page, or a file system without RWF_NOWAIT: the
            // pages are there, so a plain read does not go to the disk.
            Some(libc::EAGAIN | libc::EOPNOTSUPP | libc::EINVAL) => {
                return read_exact_at(file, len, position).map(Some)
            }
            _ => return Err(error),
        }
    }
}

/// `cachestat(2)`'s number: new system calls share one table on every
/// architecture since Linux 5.1, and the `libc` crate does not name this
/// one for every target yet.
const SYS_CACHESTAT: libc::c_long = 451;

#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// Whether every page of the region is in the page cache, asked with
/// `cachestat(2)` (Linux 6.5): one call, nothing read, nothing mapped. A
/// kernel without it answers yes, so reads happen on the worker as they
/// did before this check. A page evicted right after the answer makes the
/// caller's read wait once: the price of not copying what is cached.
pub fn is_cached(file: &File, len: usize, position: u64) -> bool {
    if len == 0 {
        return true;
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let first = position / page;
    let last = (position + len as u64).div_ceil(page);
    let range = CachestatRange {
        off: position,
        len: len as u64,
    };
    let mut stat = Cachestat::default();
    // SAFETY: both pointers are to live, correctly laid out structs; the
    // kernel only reads `range` and writes `stat`.
    let result = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const CachestatRange,
            &mut stat as *mut Cachestat,
            0u32,
        )
    };
    if result != 0 {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS);
    }
    stat.nr_cache >= last - first
}

/// Drops every page of `file` from the page cache, for tests of cold
/// reads. Pages another CPU touched a moment ago may sit in its LRU batch,
/// where the first advice misses them, so it repeats until `cachestat`
/// confirms.
#[cfg(test)]
pub fn evict_from_page_cache(file: &File) {
    file.sync_all().unwrap();
    let len = file.metadata().unwrap().len() as usize;
    for _ in 0..100 {
        // SAFETY: advice on an open descriptor has no memory effects.
        let result =
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(result, 0);
        if (0..len)
            .step_by(4096)
            .all(|page| !is_cached(file, 1, page as u64))
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the kernel kept the file's pages in its cache");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_the_region_and_fails_past_the_end() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&data).unwrap();
        assert_eq!(
            read_exact_at(&file, 5_000, 1_000).unwrap(),
            &data[1_000..6_000]
        );
        assert_eq!(read_exact_at(&file, 0, 0).unwrap(), Vec::<u8>::new());
        let error = read_exact_at(&file, 10, 99_995).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn only_cached_bytes_are_read_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(
            read_if_cached(&file, 5_000, 1_000).unwrap().unwrap(),
            &data[1_000..6_000]
        );
        assert!(is_cached(&file, 200_000, 50_000));

        evict_from_page_cache(&file);
        assert!(!is_cached(&file, 200_000, 50_000));
        assert!(read_if_cached(&file, 5_000, 1_000).unwrap().is_none());
        // A blocking read brings the pages back.
        read_exact_at(&file, 5_000, 1_000).unwrap();
        assert!(is_cached(&file, 1_000, 5_000));
        assert!(read_if_cached(&file, 5_000, 1_000).unwrap().is_some());
    }

    #[test]
    fn a_region_past_the_end_is_not_read_without_waiting() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[7u8; 1_000]).unwrap();
        assert_eq!(read_if_cached(&file, 100, 950).unwrap(), None);
        assert_eq!(read_if_cached(&file, 0, 10).unwrap(), Some(Vec::new()));
    }
}
