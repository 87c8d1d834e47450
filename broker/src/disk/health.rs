//! Whether the log directory takes appends.
//!
//! Three states, as the rest of the cluster sees them too (a broker reports
//! its state to the controller, which moves leaderships off a directory
//! that cannot take writes):
//!
//! * **Writable** — everything is accepted.
//! * **Full** — the free space fell below `log.dir.reserved.bytes`, or a
//!   write failed with ENOSPC/EDQUOT. Client and replication appends are
//!   refused (KAFKA_STORAGE_ERROR, which clients retry); the broker's own
//!   writes — coordinator records, the metadata log, checkpoints, a
//!   controlled shutdown — still go into the reserve. Reads are served. The
//!   state ends by itself once a free-space sample shows room again.
//! * **Offline** — a write or fsync failed for another reason (EIO, ...).
//!   As with Kafka's failed log directory nothing more is read or written
//!   there until the broker restarts and recovers the logs.
//!
//! Free space is sampled with `statvfs` every few hundred milliseconds;
//! between samples the bytes admitted are subtracted from the last sample,
//! so the reserve holds without a system call per append.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The automatic reserve: this share of the file system...
const AUTO_RESERVE_PERCENT: u64 = 2;
/// ...but never more than this.
const AUTO_RESERVE_MAX: u64 = 256 * 1024 * 1024;
/// Extra room a full directory must have before it takes appends again, so
/// it does not flap around the threshold.
const MIN_RESUME_MARGIN: u64 = 1024 * 1024;
/// After a write failed for lack of space although the file system seemed
/// to have room (a quota, a write larger than what was left), appends are
/// tried again this long after the failure.
const RETRY_AFTER_NO_SPACE_MS: i64 = 10_000;

/// Who is appending: decides whether the reserve may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    /// A producer's batch.
    Client,
    /// The broker's own records (`__consumer_offsets`): may use the reserve.
    Coordinator,
    /// A follower appending what it fetched from the leader.
    Replication,
}

/// Whether a log directory takes writes (also carried in the metadata log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DirState {
    Writable,
    Full,
    Offline,
}

impl DirState {
    fn from_u8(v: u8) -> DirState {
        match v {
            0 => DirState::Writable,
            1 => DirState::Full,
            _ => DirState::Offline,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            DirState::Writable => 0,
            DirState::Full => 1,
            DirState::Offline => 2,
        }
    }
}

/// Why an append was refused before it touched the log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageRefusal {
    #[error("log directory {dir} is full ({free} bytes free, log.dir.reserved.bytes={reserved} kept for the broker's own writes)")]
    Full {
        dir: String,
        free: i64,
        reserved: u64,
    },
    #[error("log directory {dir} is offline after a write failure ({reason}); restart the broker once the disk is fixed")]
    Offline { dir: String, reason: String },
}

/// How a failed write is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Out of space or quota: retriable once space returns.
    NoSpace,
    /// Anything else: the directory cannot be trusted any more.
    Failed,
}

pub fn classify(error: &io::Error) -> FailureKind {
    match error.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => FailureKind::NoSpace,
        _ if matches!(
            error.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        ) =>
        {
            FailureKind::NoSpace
        }
        _ => FailureKind::Failed,
    }
}

/// The reserve for a configured `log.dir.reserved.bytes` (-1: automatic,
/// the smaller of 2 % of the file system and 256 MiB).
pub fn resolve_reserve(configured: i64, total_bytes: u64) -> u64 {
    if configured >= 0 {
        return configured as u64;
    }
    (total_bytes / 100 * AUTO_RESERVE_PERCENT).min(AUTO_RESERVE_MAX)
}

/// When a full directory takes appends again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// Once this much is free...
    pub free_bytes: u64,
    /// ...or, from this time on (ms), once the reserve and its margin are.
    pub retry_at_ms: i64,
}

impl Resume {
    /// Full because the free space fell below the reserve.
    fn below_reserve(reserved: u64) -> Resume {
        Resume {
            free_bytes: reserved + margin(reserved),
            retry_at_ms: i64::MAX,
        }
    }

    /// Full because a write failed for lack of space at `now_ms`, with
    /// `free` bytes free then: more must be freed than there was.
    fn after_failure(reserved: u64, free: u64, now_ms: i64) -> Resume {
        Resume {
            free_bytes: reserved.max(free) + margin(reserved),
            retry_at_ms: now_ms.saturating_add(RETRY_AFTER_NO_SPACE_MS),
        }
    }
}

fn margin(reserved: u64) -> u64 {
    (reserved / 4).max(MIN_RESUME_MARGIN)
}

/// The state after a free-space sample at `now_ms` (pure, for testing): a
/// writable directory below the reserve becomes full; a full one with room
/// again becomes writable; an offline one stays offline.
pub fn after_sample(
    state: DirState,
    resume: Resume,
    free: u64,
    reserved: u64,
    now_ms: i64,
) -> (DirState, Resume) {
    match state {
        DirState::Writable if free < reserved => (DirState::Full, Resume::below_reserve(reserved)),
        DirState::Full
            if free >= resume.free_bytes
                || (now_ms >= resume.retry_at_ms && free >= reserved + margin(reserved)) =>
        {
            (DirState::Writable, resume)
        }
        other => (other, resume),
    }
}

struct Inner {
    resume: Resume,
    offline_reason: Option<String>,
}

/// What the metrics show about the directory.
#[derive(Debug, Clone, Copy)]
pub struct HealthSnapshot {
    pub state: DirState,
    pub free_bytes: u64,
    pub total_bytes: u64,
    pub reserved_bytes: u64,
    pub no_space_errors: u64,
    pub failed_writes: u64,
}

pub struct LogDirHealth {
    dir: PathBuf,
    reserved: u64,
    state: AtomicU8,
    /// Free bytes at the last sample minus the bytes admitted since.
    free_estimate: AtomicI64,
    free_sampled: AtomicU64,
    total: AtomicU64,
    no_space_errors: AtomicU64,
    failed_writes: AtomicU64,
    inner: Mutex<Inner>,
    changes: watch::Sender<DirState>,
}

impl LogDirHealth {
    /// Health of `dir` with `log.dir.reserved.bytes = configured_reserve`.
    pub fn new(dir: &Path, configured_reserve: i64) -> LogDirHealth {
        let (free, total) = free_space(dir).unwrap_or((u64::MAX / 4, 0));
        let reserved = resolve_reserve(configured_reserve, total);
        let health = LogDirHealth {
            dir: dir.to_path_buf(),
            reserved,
            state: AtomicU8::new(DirState::Writable.as_u8()),
            free_estimate: AtomicI64::new(free.min(i64::MAX as u64) as i64),
            free_sampled: AtomicU64::new(free),
            total: AtomicU64::new(total),
            no_space_errors: AtomicU64::new(0),
            failed_writes: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                resume: Resume::below_reserve(reserved),
                offline_reason: None,
            }),
            changes: watch::channel(DirState::Writable).0,
        };
        health.apply_sample(free, total);
        health
    }

    /// Health of `dir` with no reserve (refusing only after a write failed
    /// for lack of space), shared.
    pub fn without_reserve(dir: &Path) -> std::sync::Arc<LogDirHealth> {
        std::sync::Arc::new(LogDirHealth::new(dir, 0))
    }

    pub fn state(&self) -> DirState {
        DirState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn reserved_bytes(&self) -> u64 {
        self.reserved
    }

    /// Fires on every state change.
    pub fn subscribe(&self) -> watch::Receiver<DirState> {
        self.changes.subscribe()
    }

    /// Whether reads may be served (everything but an offline directory).
    pub fn check_readable(&self) -> Result<(), StorageRefusal> {
        match self.state() {
            DirState::Offline => Err(self.offline_refusal()),
            _ => Ok(()),
        }
    }

    /// Admits an append of `len` bytes from `origin`, or refuses it before
    /// anything is written.
    pub fn admit(&self, origin: AppendOrigin, len: usize) -> Result<(), StorageRefusal> {
        let state = self.state();
        if state == DirState::Offline {
            return Err(self.offline_refusal());
        }
        let len = len as i64;
        let left = self.free_estimate.fetch_sub(len, Ordering::AcqRel) - len;
        if origin == AppendOrigin::Coordinator {
            return Ok(());
        }
        // With no reserve only a failed write makes the directory full: the
        // estimate is not exact enough to refuse by itself.
        let below_reserve = self.reserved > 0 && left < self.reserved as i64;
        if state == DirState::Full || below_reserve {
            self.free_estimate.fetch_add(len, Ordering::AcqRel);
            if state == DirState::Writable {
                self.transition(
                    DirState::Full,
                    Resume::below_reserve(self.reserved),
                    "free space fell below log.dir.reserved.bytes",
                );
            }
            return Err(StorageRefusal::Full {
                dir: self.dir.display().to_string(),
                free: left.max(0) + len,
                reserved: self.reserved,
            });
        }
        Ok(())
    }

    /// Takes note of a failed write or fsync of `what`: out of space makes
    /// the directory full, anything else takes it offline.
    pub fn record_failure(&self, error: &io::Error, what: &Path) {
        match classify(error) {
            FailureKind::NoSpace => {
                self.no_space_errors.fetch_add(1, Ordering::Relaxed);
                let free = free_space(&self.dir).map(|(f, _)| f).unwrap_or(0);
                self.free_estimate.store(0, Ordering::Release);
                self.free_sampled.store(free, Ordering::Relaxed);
                if self.state() == DirState::Writable {
                    tracing::warn!(file = %what.display(), error = %error, free_bytes = free, "write failed for lack of space");
                    self.transition(
                        DirState::Full,
                        Resume::after_failure(self.reserved, free, crate::util::now_ms()),
                        "a write failed for lack of space",
                    );
                }
            }
            FailureKind::Failed => {
                self.failed_writes.fetch_add(1, Ordering::Relaxed);
                if self.state() != DirState::Offline {
                    tracing::error!(file = %what.display(), error = %error, "write to the log directory failed");
                    self.inner.lock().offline_reason = Some(format!("{}: {error}", what.display()));
                    self.transition(
                        DirState::Offline,
                        Resume::below_reserve(self.reserved),
                        "a write or fsync failed",
                    );
                }
            }
        }
    }

    /// Samples the free space and updates the state (a full directory with
    /// room again becomes writable). Blocking (one `statvfs`).
    pub fn sample(&self) {
        if let Some((free, total)) = free_space(&self.dir) {
            self.apply_sample(free, total);
        }
    }

    fn apply_sample(&self, free: u64, total: u64) {
        self.free_estimate
            .store(free.min(i64::MAX as u64) as i64, Ordering::Release);
        self.free_sampled.store(free, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        let state = self.state();
        let resume = self.inner.lock().resume;
        let (next, next_resume) =
            after_sample(state, resume, free, self.reserved, crate::util::now_ms());
        if next != state {
            let why = match next {
                DirState::Full => "free space fell below log.dir.reserved.bytes",
                _ => "free space is back",
            };
            self.transition(next, next_resume, why);
        }
    }

    fn transition(&self, to: DirState, resume: Resume, why: &str) {
        let mut inner = self.inner.lock();
        let from = self.state();
        if from == to || from == DirState::Offline {
            return;
        }
        inner.resume = resume;
        self.state.store(to.as_u8(), Ordering::Release);
        drop(inner);
        let free = self.free_sampled.load(Ordering::Relaxed);
        match to {
            DirState::Writable => {
                tracing::info!(dir = %self.dir.display(), free_bytes = free, "log directory takes appends again: {why}")
            }
            DirState::Full => tracing::warn!(
                dir = %self.dir.display(),
                free_bytes = free,
                reserved_bytes = self.reserved,
                resume_at_free_bytes = resume.free_bytes,
                "log directory full, refusing client and replication appends: {why}"
            ),
            DirState::Offline => {
                tracing::error!(dir = %self.dir.display(), "log directory offline: {why}")
            }
        }
        self.changes.send_replace(to);
    }

    fn offline_refusal(&self) -> StorageRefusal {
        StorageRefusal::Offline {
            dir: self.dir.display().to_string(),
            reason: self.inner.lock().offline_reason.clone().unwrap_or_default(),
        }
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            state: self.state(),
            free_bytes: self.free_sampled.load(Ordering::Relaxed),
            total_bytes: self.total.load(Ordering::Relaxed),
            reserved_bytes: self.reserved,
            no_space_errors: self.no_space_errors.load(Ordering::Relaxed),
            failed_writes: self.failed_writes.load(Ordering::Relaxed),
        }
    }
}

/// The space of the file system holding a path, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Space {
    /// What an unprivileged writer may still use (`f_bavail`): what the
    /// broker can count on.
    pub available: u64,
    /// Free blocks, including those only root may use (`f_bfree`).
    pub free: u64,
    pub total: u64,
}

/// The space of the file system holding `path` (`statvfs`).
pub fn space(path: &Path) -> Option<Space> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and stat is a valid out-pointer.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize as u64;
    Some(Space {
        available: stat.f_bavail as u64 * block,
        free: stat.f_bfree as u64 * block,
        total: stat.f_blocks as u64 * block,
    })
}

/// (bytes available to the broker, total bytes).
fn free_space(path: &Path) -> Option<(u64, u64)> {
    space(path).map(|s| (s.available, s.total))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn samples_move_between_writable_and_full_with_a_margin() {
        let reserved = 8 * MIB;
        let idle = Resume::below_reserve(reserved);
        let (state, resume) = after_sample(DirState::Writable, idle, 20 * MIB, reserved, 0);
        assert_eq!(state, DirState::Writable);
        let (state, resume) = after_sample(state, resume, 7 * MIB, reserved, 0);
        assert_eq!(state, DirState::Full);
        assert_eq!(resume.free_bytes, 10 * MIB, "reserve plus a quarter of it");
        let (state, resume) = after_sample(state, resume, 9 * MIB, reserved, i64::MAX - 1);
        assert_eq!(state, DirState::Full, "not yet past the margin");
        let (state, _) = after_sample(state, resume, 10 * MIB, reserved, 0);
        assert_eq!(state, DirState::Writable);
        let (state, _) = after_sample(DirState::Offline, idle, 100 * MIB, reserved, 0);
        assert_eq!(state, DirState::Offline, "only a restart brings it back");
    }

    #[test]
    fn after_a_failed_write_more_must_be_freed_or_a_retry_waits() {
        let reserved = 0;
        // ENOSPC with 3 MiB seemingly free (a quota, or a larger write).
        let resume = Resume::after_failure(reserved, 3 * MIB, 1_000);
        let (state, resume) = after_sample(DirState::Full, resume, 3 * MIB, reserved, 2_000);
        assert_eq!(state, DirState::Full, "nothing was freed");
        let (state, _) = after_sample(state, resume, 4 * MIB, reserved, 2_000);
        assert_eq!(state, DirState::Writable, "a MiB was freed");
        let (state, _) = after_sample(
            DirState::Full,
            resume,
            3 * MIB,
            reserved,
            1_000 + RETRY_AFTER_NO_SPACE_MS,
        );
        assert_eq!(state, DirState::Writable, "tried again after a while");
    }

    #[test]
    fn the_automatic_reserve_is_two_percent_up_to_256_mib() {
        assert_eq!(resolve_reserve(-1, 100 * MIB), 2 * MIB);
        assert_eq!(resolve_reserve(-1, 1024 * 1024 * MIB), 256 * MIB);
        assert_eq!(resolve_reserve(0, 1024 * MIB), 0);
        assert_eq!(resolve_reserve(5, 1024 * MIB), 5);
    }

    #[test]
    fn failures_are_classified_by_errno() {
        let full = io::Error::from_raw_os_error(libc::ENOSPC);
        let quota = io::Error::from_raw_os_error(libc::EDQUOT);
        let eio = io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(classify(&full), FailureKind::NoSpace);
        assert_eq!(classify(&quota), FailureKind::NoSpace);
        assert_eq!(classify(&eio), FailureKind::Failed);
    }

    #[test]
    fn the_reserve_refuses_client_appends_but_not_the_brokers_own() {
        let dir = tempfile::tempdir().unwrap();
        // A reserve larger than any disk: every client append is refused.
        let health = LogDirHealth::new(dir.path(), i64::MAX / 2);
        assert_eq!(health.state(), DirState::Full);
        assert!(matches!(
            health.admit(AppendOrigin::Client, 10),
            Err(StorageRefusal::Full { .. })
        ));
        assert!(health.admit(AppendOrigin::Replication, 10).is_err());
        assert!(health.admit(AppendOrigin::Coordinator, 10).is_ok());
        assert!(health.check_readable().is_ok());
    }

    #[test]
    fn no_space_makes_the_directory_full_and_an_io_error_takes_it_offline() {
        let dir = tempfile::tempdir().unwrap();
        let health = LogDirHealth::new(dir.path(), 0);
        let mut changes = health.subscribe();
        assert!(health.admit(AppendOrigin::Client, 10).is_ok());
        health.record_failure(&io::Error::from_raw_os_error(libc::ENOSPC), dir.path());
        assert_eq!(health.state(), DirState::Full);
        assert!(changes.has_changed().unwrap());
        assert_eq!(*changes.borrow_and_update(), DirState::Full);
        assert!(health.admit(AppendOrigin::Client, 10).is_err());
        assert!(health.admit(AppendOrigin::Coordinator, 10).is_ok());
        // Nothing was freed since: still full (the resume rules are above).
        health.sample();
        assert_eq!(health.state(), DirState::Full);

        health.record_failure(&io::Error::from_raw_os_error(libc::EIO), dir.path());
        assert_eq!(health.state(), DirState::Offline);
        health.sample();
        assert_eq!(health.state(), DirState::Offline);
        assert!(matches!(
            health.admit(AppendOrigin::Coordinator, 1),
            Err(StorageRefusal::Offline { .. })
        ));
        assert!(health.check_readable().is_err());
        assert_eq!(health.snapshot().failed_writes, 1);
        assert_eq!(health.snapshot().no_space_errors, 1);
    }
}
