//! A small real file system that a test can fill up: a size-limited tmpfs
//! mounted on a temporary directory (the test command runs as root in CI).
//!
//! Space is taken with a filler file ([`Tmpfs::fill_leaving`]) and given
//! back by deleting it ([`Tmpfs::free_filler`]), so a broker writing there
//! meets a real ENOSPC from the kernel, not a simulated one. Where mounting
//! is impossible (not root, no tmpfs), [`Tmpfs::mount`] says why and
//! returns `None`, and the test skips with that message.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

pub const MIB: u64 = 1024 * 1024;

pub struct Tmpfs {
    root: TempDir,
    filler: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_bytes`, or explains on stderr why it cannot.
    pub fn mount(size_bytes: u64) -> Option<Tmpfs> {
        let root = tempfile::Builder::new()
            .prefix("tideline-tmpfs-")
            .tempdir()
            .expect("temporary directory");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_bytes}"))
            .arg("tmpfs")
            .arg(root.path())
            .output();
        match output {
            Ok(o) if o.status.success() => Some(Tmpfs {
                filler: root.path().join("filler"),
                root,
            }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs (the test needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// Bytes a non-root writer could still write.
    pub fn free_bytes(&self) -> u64 {
        statvfs(self.path()).0
    }

    /// Writes `bytes` into the filler file (another tenant of the disk).
    pub fn fill(&self, bytes: u64) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.filler)
            .expect("open the filler file");
        let chunk = vec![0x5au8; MIB as usize];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(MIB) as usize;
            file.write_all(&chunk[..n]).expect("write the filler file");
            left -= n as u64;
        }
        file.sync_all().expect("sync the filler file");
    }

    /// Grows the filler until about `free_bytes` are left.
    pub fn fill_leaving(&self, free_bytes: u64) {
        let free = self.free_bytes();
        if free > free_bytes {
            self.fill(free - free_bytes);
        }
    }

    /// Deletes the filler file, giving its space back.
    pub fn free_filler(&self) {
        std::fs::remove_file(&self.filler).expect("remove the filler file");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy, so a broker still holding files open cannot keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// (available bytes, total bytes) of the file system holding `path`.
fn statvfs(path: &Path) -> (u64, u64) {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in path");
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and stat is a valid out-pointer.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    assert_eq!(rc, 0, "statvfs {}", path.display());
    let block = stat.f_frsize as u64;
    (stat.f_bavail as u64 * block, stat.f_blocks as u64 * block)
}
