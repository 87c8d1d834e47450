//! The two ways the broker writes a file, both safe against a write that
//! fails part-way:
//!
//! * [`append_at`] writes at an explicit position — the file's last good
//!   length, which the caller advances only after success — and cuts off
//!   whatever part of a failed write landed. Files are never opened with
//!   `O_APPEND`, so even if that cut fails the next write goes where the
//!   caller's length says, over the garbage, and never behind it.
//! * [`write_atomically`] replaces a whole file (checkpoints, snapshots):
//!   a temporary file, fsynced, renamed over the target. A failure leaves
//!   the old file and removes the temporary one.
//!
//! In unit tests, [`faults`] makes the next write or fsync of a chosen file
//! stop after some bytes with a chosen `errno`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Writes all of `bytes` at `position`, the file's last good length. On
/// failure the file is truncated back to `position` (best effort) and the
/// error returned; the caller must not advance its length.
pub fn append_at(file: &File, path: &Path, bytes: &[u8], position: u64) -> io::Result<()> {
    append_parts_at(file, path, &[bytes], position)
}

/// [`append_at`] for data in several pieces (a batch's rewritten header and
/// the rest of it as the client sent it), written with `pwritev` so the
/// pieces need not be copied together first.
pub fn append_parts_at(file: &File, path: &Path, parts: &[&[u8]], position: u64) -> io::Result<()> {
    #[cfg(test)]
    let result = write_all_at(file, path, &parts.concat(), position);
    #[cfg(not(test))]
    let result = {
        let _ = path;
        pwritev_all(file, parts, position)
    };
    if result.is_err() {
        if let Err(e) = file.set_len(position) {
            // The next write still lands at `position` (no O_APPEND), and
            // recovery cuts a tail that no batch accounts for.
            tracing::warn!(file = %path.display(), position, error = %e, "cannot cut off a failed write");
        }
    }
    result
}

fn write_all_at(file: &File, path: &Path, bytes: &[u8], position: u64) -> io::Result<()> {
    let mut written = 0;
    while written < bytes.len() {
        let chunk = &bytes[written..];
        let at = position + written as u64;
        #[cfg(test)]
        if let Some((allowed, error)) = faults::take_write(path) {
            let n = allowed.min(chunk.len());
            file.write_all_at(&chunk[..n], at)?;
            return Err(error);
        }
        #[cfg(not(test))]
        let _ = path;
        match file.write_at(chunk, at) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes every part, in order, from `position` on; retries short writes.
fn pwritev_all(file: &File, parts: &[&[u8]], position: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // Linux takes at most IOV_MAX (1024) pieces per call.
    const MAX_PIECES: usize = 1024;
    let (mut part, mut skip) = (0usize, 0usize);
    let mut at = position;
    while part < parts.len() {
        let iov: Vec<libc::iovec> = parts[part..]
            .iter()
            .take(MAX_PIECES)
            .enumerate()
            .map(|(i, p)| {
                let p = if i == 0 { &p[skip..] } else { p };
                libc::iovec {
                    iov_base: p.as_ptr() as *mut libc::c_void,
                    iov_len: p.len(),
                }
            })
            .collect();
        // SAFETY: every iovec points into a live slice of `parts`.
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                iov.as_ptr(),
                iov.len() as i32,
                at as libc::off_t,
            )
        };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        let total: usize = iov.iter().map(|v| v.iov_len).sum();
        if n == 0 && total > 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        at += n as u64;
        let mut n = n as usize;
        // Step over what was written.
        while part < parts.len() && n >= parts[part].len() - skip {
            n -= parts[part].len() - skip;
            part += 1;
            skip = 0;
        }
        skip += n;
    }
    Ok(())
}

/// fsyncs a file's data (`fdatasync`).
pub fn sync_data(file: &File, path: &Path) -> io::Result<()> {
    injected_sync_failure(path)?;
    file.sync_data()
}

/// Asks the kernel to start writing `len` bytes of `file` from `position`
/// to the device, without waiting for it (`sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE`). It makes nothing durable — no metadata, no
/// device cache flush — and only spreads writeback over time, so dirty
/// pages never pile up into a stall at an fsync or at the kernel's dirty
/// limit. A write error it triggers is still reported by the next fsync:
/// it does not wait for the writeback, so it does not consume the error.
pub fn start_writeback(file: &File, position: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(nbytes)) = (i64::try_from(position), i64::try_from(len)) else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    // SAFETY: a plain syscall on a file descriptor `file` keeps open.
    let rc = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset,
            nbytes,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// fsyncs a directory, making the names created or removed in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let handle = File::open(dir)?;
    sync_all(&handle, dir)
}

fn sync_all(file: &File, path: &Path) -> io::Result<()> {
    injected_sync_failure(path)?;
    file.sync_all()
}

/// In unit tests, the fsync failure planned for `path` (see [`faults`]).
fn injected_sync_failure(path: &Path) -> io::Result<()> {
    #[cfg(test)]
    if let Some(error) = faults::take_sync(path) {
        return Err(error);
    }
    #[cfg(not(test))]
    let _ = path;
    Ok(())
}

/// Replaces `path` with `bytes` so that a crash or a failed write leaves
/// either the old or the new contents: a temporary file beside it, fsynced,
/// renamed over the target, then the directory fsynced. On failure the
/// temporary file is removed and the target is untouched (unless only the
/// final directory fsync failed: the rename is done but may not be durable).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let written = File::create(&tmp).and_then(|file| {
        write_all_at(&file, &tmp, bytes, 0)?;
        sync_all(&file, &tmp)
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// Injected write and fsync failures for unit tests: the next write to a
/// file whose path contains a given fragment writes only some bytes and
/// fails with an `errno`. Per thread, so parallel tests do not interfere.
#[cfg(test)]
pub mod faults {
    use std::cell::RefCell;
    use std::io;
    use std::path::Path;

    struct Fault {
        path_fragment: String,
        /// `Some(n)`: a write that lands `n` bytes; `None`: an fsync.
        write_bytes: Option<usize>,
        errno: i32,
    }

    thread_local! {
        static PLAN: RefCell<Vec<Fault>> = const { RefCell::new(Vec::new()) };
    }

    /// The next write to a matching file lands `bytes` bytes, then fails.
    pub fn fail_write(path_fragment: &str, bytes: usize, errno: i32) {
        PLAN.with(|p| {
            p.borrow_mut().push(Fault {
                path_fragment: path_fragment.to_string(),
                write_bytes: Some(bytes),
                errno,
            })
        });
    }

    /// The next fsync of a matching file fails.
    pub fn fail_sync(path_fragment: &str, errno: i32) {
        PLAN.with(|p| {
            p.borrow_mut().push(Fault {
                path_fragment: path_fragment.to_string(),
                write_bytes: None,
                errno,
            })
        });
    }

    /// Faults for writes done on other threads (the background flusher):
    /// give a fragment no other test's paths contain, such as a temp dir.
    static SHARED: std::sync::Mutex<Vec<Fault>> = std::sync::Mutex::new(Vec::new());

    /// The next fsync of a matching file fails, on whichever thread.
    pub fn fail_sync_on_any_thread(path_fragment: &str, errno: i32) {
        SHARED.lock().unwrap().push(Fault {
            path_fragment: path_fragment.to_string(),
            write_bytes: None,
            errno,
        });
    }

    /// Forgets faults that did not fire.
    pub fn clear() {
        PLAN.with(|p| p.borrow_mut().clear());
    }

    fn take(path: &Path, write: bool) -> Option<(Option<usize>, io::Error)> {
        let path = path.to_string_lossy();
        let take_from = |plan: &mut Vec<Fault>| {
            let i = plan.iter().position(|f| {
                f.write_bytes.is_some() == write && path.contains(f.path_fragment.as_str())
            })?;
            let fault = plan.remove(i);
            Some((fault.write_bytes, io::Error::from_raw_os_error(fault.errno)))
        };
        PLAN.with(|p| take_from(&mut p.borrow_mut()))
            .or_else(|| take_from(&mut SHARED.lock().unwrap()))
    }

    pub(in crate::disk) fn take_write(path: &Path) -> Option<(usize, io::Error)> {
        take(path, true).map(|(bytes, e)| (bytes.unwrap_or(0), e))
    }

    pub(super) fn take_sync(path: &Path) -> Option<io::Error> {
        take(path, false).map(|(_, e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pwritev_writes_every_piece_in_order_past_the_iovec_limit() {
        let file = tempfile::tempfile().unwrap();
        let pieces: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| vec![(i % 256) as u8; (i % 7) as usize])
            .collect();
        let parts: Vec<&[u8]> = pieces.iter().map(|p| p.as_slice()).collect();
        file.write_all_at(b"head", 0).unwrap();
        pwritev_all(&file, &parts, 4).unwrap();
        let mut written = vec![0u8; 4 + parts.iter().map(|p| p.len()).sum::<usize>()];
        file.read_exact_at(&mut written, 0).unwrap();
        assert_eq!(&written[..4], b"head");
        assert_eq!(written[4..], parts.concat()[..]);
    }

    #[test]
    fn a_failed_append_leaves_the_file_at_its_good_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        append_at(&file, &path, b"good", 0).unwrap();
        faults::fail_write("f.log", 3, libc::ENOSPC);
        let err = append_at(&file, &path, b"partial", 4).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(std::fs::read(&path).unwrap(), b"good");
        append_at(&file, &path, b"next", 4).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"goodnext");
    }

    #[test]
    fn a_failed_atomic_write_keeps_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint");
        write_atomically(&path, b"old").unwrap();
        faults::fail_write("checkpoint", 1, libc::EIO);
        assert!(write_atomically(&path, b"new contents").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        faults::fail_sync("checkpoint.tmp", libc::EIO);
        assert!(write_atomically(&path, b"new contents").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("checkpoint")]);
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }
}
