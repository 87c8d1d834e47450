//! The log's disk work that appends must not wait for: the fsync of a
//! segment that a roll closed, and early writeback of the active segments.
//!
//! A roll used to fsync the old segment inside the append that rolled, under
//! the partition lock. Written through the page cache, a 1 GiB segment can
//! still hold most of its gigabyte as dirty pages at that moment (the
//! kernel starts writeback at 10 % of memory), so that append — and every
//! produce and follower fetch queued behind the lock — waited about a
//! second on this disk (3-node RF=3, 1 KiB at 110,000 msg/s: ack p99 936 ms
//! with a roll in the run, 49 ms without). Kafka schedules the same flush on
//! its background scheduler at roll (`flush-log` in `UnifiedLog.roll`);
//! this module does that.
//!
//! Even off the append path, gigabytes of dirty pages written back in one
//! burst (at an fsync, or when the kernel reaches its dirty limits and
//! throttles every writer) stall the disk for everyone. So, when
//! `log.segment.writeback.bytes` is set, every that many bytes appended to a
//! segment the flusher asks the kernel to start writing them
//! (`disk::write::start_writeback`), the way RocksDB's `bytes_per_sync`
//! does: writeback runs steadily behind the appends, and the fsync at roll
//! finds little left to do. Off by default: at low write rates it starts
//! writeback the kernel would have deferred, and the appends contend with
//! it (docs/direct-io.md).
//!
//! One process-wide thread runs the jobs in submission order. The log's
//! recovery point moves only when a flush has completed, and a truncation
//! makes every flush still in flight count for nothing, so the recovery
//! point never claims more than the disk holds. A failed fsync is reported
//! to the directory's health exactly as one in the append path would be.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::disk::{write, LogDirHealth};

type Job = Box<dyn FnOnce() + Send>;

/// The flusher thread's queue, started on first use.
fn queue() -> &'static Sender<Job> {
    static QUEUE: OnceLock<Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("log-flusher".into())
            .spawn(move || {
                for job in receiver {
                    job();
                }
            })
            .expect("spawn the log flusher thread");
        sender
    })
}

static WRITEBACK_INTERVAL: AtomicU64 = AtomicU64::new(0);
static WRITEBACK_STARTED: AtomicU64 = AtomicU64::new(0);

/// Sets `log.segment.writeback.bytes` (0: leave writeback to the kernel).
pub fn set_writeback_interval(bytes: u64) {
    WRITEBACK_INTERVAL.store(bytes, Ordering::Relaxed);
}

/// Bytes a segment accumulates before their writeback is started; `None`
/// when early writeback is off.
pub fn writeback_interval() -> Option<u64> {
    #[cfg(test)]
    if let Some(bytes) = WRITEBACK_INTERVAL_HERE.with(|b| b.get()) {
        return (bytes > 0).then_some(bytes);
    }
    Some(WRITEBACK_INTERVAL.load(Ordering::Relaxed)).filter(|&b| b > 0)
}

/// Bytes whose writeback the flusher has started since start-up.
pub fn writeback_started_bytes() -> u64 {
    WRITEBACK_STARTED.load(Ordering::Relaxed)
}

/// Queues the start of writeback for `len` bytes of `file` from
/// `position`. Failing to start it only leaves the work to the kernel (and
/// a write error to the next fsync), so it is logged, not reported.
pub fn start_writeback(file: Arc<File>, path: PathBuf, position: u64, len: u64) {
    let job: Job = Box::new(move || match write::start_writeback(&file, position, len) {
        Ok(()) => {
            WRITEBACK_STARTED.fetch_add(len, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::debug!(segment = %path.display(), error = %e, "cannot start writeback");
        }
    });
    let _ = queue().send(job);
}

#[cfg(test)]
thread_local! {
    /// A writeback interval for this thread's segments only (unit tests).
    pub static WRITEBACK_INTERVAL_HERE: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// A segment file to fsync.
pub struct PendingFile {
    pub file: Arc<File>,
    pub path: PathBuf,
}

/// One partition log's background flushes: what they have made durable.
pub struct RollFlushes {
    done: Arc<Mutex<Completed>>,
    /// Bumped by every truncation; flushes submitted before it are ignored.
    generation: u64,
}

#[derive(Clone, Copy)]
struct Completed {
    generation: u64,
    durable_up_to: i64,
}

impl Default for RollFlushes {
    fn default() -> Self {
        RollFlushes {
            done: Arc::new(Mutex::new(Completed {
                generation: 0,
                durable_up_to: i64::MIN,
            })),
            generation: 0,
        }
    }
}

impl RollFlushes {
    /// The offset below which background flushes of this generation made
    /// the log durable (`i64::MIN` if none did).
    pub fn durable_up_to(&self) -> i64 {
        let done = *self.done.lock();
        if done.generation == self.generation {
            done.durable_up_to
        } else {
            i64::MIN
        }
    }

    /// The log was truncated: nothing in flight may move the recovery point.
    pub fn invalidate(&mut self) {
        self.generation += 1;
    }

    /// Queues the fsync of `files`, which hold everything below `up_to`.
    pub fn submit(
        &self,
        files: Vec<PendingFile>,
        up_to: i64,
        health: Arc<LogDirHealth>,
        dir: PathBuf,
    ) {
        let done = self.done.clone();
        let generation = self.generation;
        let job: Job = Box::new(move || {
            let synced: io::Result<()> = files
                .iter()
                .try_for_each(|f| write::sync_data(&f.file, &f.path));
            match synced {
                Ok(()) => {
                    let mut done = done.lock();
                    if generation > done.generation {
                        *done = Completed {
                            generation,
                            durable_up_to: up_to,
                        };
                    } else if generation == done.generation {
                        done.durable_up_to = done.durable_up_to.max(up_to);
                    }
                }
                Err(e) => {
                    tracing::error!(dir = %dir.display(), error = %e, "background fsync of a rolled segment failed");
                    health.record_failure(&e, &dir);
                }
            }
        });
        // The thread lives as long as the process; a send can only fail
        // if it panicked, and then the flush happens at the next
        // synchronous flush (the segment still counts as unflushed).
        let _ = queue().send(job);
    }
}

/// Waits until every flush submitted so far has run (tests).
#[cfg(test)]
pub fn wait_for_all() {
    let (sender, receiver) = mpsc::channel();
    queue()
        .send(Box::new(move || {
            let _ = sender.send(());
        }))
        .expect("flusher running");
    receiver.recv().expect("flusher ran the marker");
}

/// Holds the flusher thread until dropped (tests: a flush in flight).
#[cfg(test)]
pub struct Paused(#[allow(dead_code)] Sender<()>);

#[cfg(test)]
pub fn pause() -> Paused {
    let (release, released) = mpsc::channel::<()>();
    let (started, running) = mpsc::channel::<()>();
    queue()
        .send(Box::new(move || {
            let _ = started.send(());
            let _ = released.recv();
        }))
        .expect("flusher running");
    running.recv().expect("flusher paused");
    Paused(release)
}
