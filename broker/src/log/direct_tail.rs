//! The active segment's newest bytes, held in the broker's own memory, and
//! the way appends reach the segment file: whole blocks with `O_DIRECT`,
//! the rest through the page cache.
//!
//! A direct write must cover whole blocks from aligned memory, so the tail
//! keeps a window of the file starting at a block boundary and each append
//! is copied in behind the bytes already there. The blocks the append fills
//! completely are written directly; the bytes before the first of them (the
//! rest of the block the old end was in) and after the last (the start of
//! the block the new end is in) are written through the page cache. So the
//! file always ends exactly where the data does — no padding for tools or
//! recovery to see — a small append costs one buffered write as before,
//! and direct writes never touch a block the page cache holds, which would
//! make the kernel write that page back first. With
//! `log.direct.io.enable=auto` ([`DirectPolicy`]) an append writes its full
//! blocks directly only while the kernel is writing dirty pages back, and
//! everything through the page cache otherwise.
//!
//! Every write finishes before the append returns, so an appended batch
//! survives the process being killed exactly as one in the page cache
//! would; only the fsync (`flush`) makes it survive a power loss, as before.
//!
//! Direct writes drop whatever the page cache held for those blocks, so the
//! window doubles as the read cache for the reads that matter most —
//! followers and consumers at the tail — which are answered from memory.
//! When the window is full it slides: the full buffer becomes the previous
//! window (still readable), and a new one starts at the last partial block.
//! Reads from further back go to the file as before.

use std::fs::File;
use std::io;
use std::path::Path;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::disk::direct::{self, align_down, align_up, AlignedBuf, BufferPool};
use crate::disk::{write, writeback};

/// The largest window: an actively written partition keeps up to two (the
/// previous and the current one). A new window starts small and doubles up
/// to this, so a quiet partition holds little.
const WINDOW: usize = 4 << 20;
const FIRST_WINDOW: usize = 64 << 10;

/// Full-size windows, reused across segments and partitions.
static WINDOWS: BufferPool = BufferPool::new(WINDOW, 16);

/// Bytes all tails' windows hold, and what they may hold
/// (`log.direct.io.buffer.bytes`). Over the budget a tail keeps no previous
/// window and sizes a new one to what the append needs, so memory stays
/// near the budget however many partitions are written; reads that the
/// smaller windows miss go to the file.
static HELD: AtomicUsize = AtomicUsize::new(0);
static BUDGET: AtomicUsize = AtomicUsize::new(512 << 20);

/// When the blocks an append fills are written directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectPolicy {
    /// Always (`log.direct.io.enable=true`).
    Always,
    /// Only while the kernel is writing dirty pages back
    /// (`log.direct.io.enable=auto`, see `disk::writeback`); otherwise the
    /// whole append goes through the page cache.
    UnderWritebackPressure,
}

static ALWAYS: AtomicBool = AtomicBool::new(true);

/// Sets when all tails write directly.
pub fn set_policy(policy: DirectPolicy) {
    ALWAYS.store(policy == DirectPolicy::Always, Ordering::Relaxed);
}

/// Whether a tail's next append writes with `O_DIRECT` (and so waits for
/// the device).
pub fn write_directly_now() -> bool {
    #[cfg(test)]
    if let Some(always) = tests::ALWAYS_HERE.with(|a| a.get()) {
        return always || writeback::under_pressure();
    }
    ALWAYS.load(Ordering::Relaxed) || writeback::under_pressure()
}

/// Bytes all tails have written with `O_DIRECT` since start-up.
static WRITTEN_DIRECTLY: AtomicU64 = AtomicU64::new(0);

pub fn bytes_written_directly() -> u64 {
    WRITTEN_DIRECTLY.load(Ordering::Relaxed)
}

/// Sets the memory all tails' windows may hold together.
pub fn set_memory_budget(bytes: usize) {
    BUDGET.store(bytes, Ordering::Relaxed);
}

/// Bytes the tails' windows hold now.
pub fn memory_held() -> usize {
    HELD.load(Ordering::Relaxed)
}

fn over_budget() -> bool {
    #[cfg(test)]
    if let Some(budget) = tests::BUDGET_HERE.with(|b| b.get()) {
        return HELD.load(Ordering::Relaxed) > budget;
    }
    HELD.load(Ordering::Relaxed) > BUDGET.load(Ordering::Relaxed)
}

/// A window's memory, counted in [`HELD`] while a tail has it; full-size
/// ones go back to the pool.
struct Window(AlignedBuf);

impl Window {
    fn new(size: usize) -> Window {
        let buf = if size == WINDOWS.size() {
            WINDOWS.take()
        } else {
            AlignedBuf::zeroed(size)
        };
        HELD.fetch_add(buf.capacity(), Ordering::Relaxed);
        Window(buf)
    }
}

impl std::ops::Deref for Window {
    type Target = AlignedBuf;
    fn deref(&self) -> &AlignedBuf {
        &self.0
    }
}

impl std::ops::DerefMut for Window {
    fn deref_mut(&mut self) -> &mut AlignedBuf {
        &mut self.0
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        HELD.fetch_sub(self.0.capacity(), Ordering::Relaxed);
        WINDOWS.give(std::mem::replace(&mut self.0, AlignedBuf::empty()));
    }
}

pub struct DirectTail {
    /// The segment file, opened with `O_DIRECT` for writing.
    file: File,
    /// Holds the file's bytes from `start` to the segment's end.
    current: Window,
    start: u64,
    /// The window before `current`: its bytes from `previous_start` up to `start`.
    previous: Option<Window>,
    previous_start: u64,
    /// The file system refused a direct write as misaligned (a device with
    /// larger blocks): everything goes through the page cache from then on.
    refused: bool,
    /// Bytes this tail wrote with `O_DIRECT`.
    written_directly: u64,
}

impl DirectTail {
    /// Starts writing `path`, whose data ends at `size`, directly: loads the
    /// last partial block from `buffered` (the segment's read handle).
    /// `None` if the file system does not take direct writes.
    pub fn open(path: &Path, buffered: &File, size: u64) -> io::Result<Option<DirectTail>> {
        let Some(file) = direct::open_for_direct_writes(path)? else {
            return Ok(None);
        };
        let start = align_down(size);
        let mut current = Window::new(FIRST_WINDOW);
        let held = (size - start) as usize;
        if held > 0 {
            use std::os::unix::fs::FileExt;
            buffered.read_exact_at(&mut current.as_mut_slice()[..held], start)?;
        }
        Ok(Some(DirectTail {
            file,
            current,
            start,
            previous: None,
            previous_start: start,
            refused: false,
            written_directly: 0,
        }))
    }

    /// Appends `parts` at `size` (the segment's end of `buffered`, its
    /// page-cache handle) and writes them. On failure the window is as
    /// before and the file may hold part of the write past `size`: the
    /// caller cuts it back.
    pub fn append(
        &mut self,
        path: &Path,
        buffered: &File,
        size: u64,
        parts: &[&[u8]],
    ) -> io::Result<()> {
        let incoming: usize = parts.iter().map(|p| p.len()).sum();
        self.make_room(size, incoming);
        let mut cursor = (size - self.start) as usize;
        for part in parts {
            self.current.as_mut_slice()[cursor..cursor + part.len()].copy_from_slice(part);
            cursor += part.len();
        }
        let end = size + incoming as u64;
        let (full_from, full_to) = (align_up(size), align_down(end));
        let window = |from: u64, to: u64| {
            &self.current.as_slice()[(from - self.start) as usize..(to - self.start) as usize]
        };
        if full_from >= full_to || self.refused || !write_directly_now() {
            // No block filled completely, or the page cache is the cheaper
            // way now: all through the page cache. A later direct write
            // starts at the first block its own append fills completely,
            // so it covers none of these blocks (unless a truncation cut
            // back into them; the kernel then writes the cached pages back
            // first, which is correct, only slower).
            return write::append_at(buffered, path, window(size, end), size);
        }
        if size < full_from {
            write::append_at(buffered, path, window(size, full_from), size)?;
        }
        let blocks = window(full_from, full_to);
        match direct::write_blocks_at(&self.file, path, blocks, full_from) {
            Ok(()) => {
                self.written_directly += blocks.len() as u64;
                WRITTEN_DIRECTLY.fetch_add(blocks.len() as u64, Ordering::Relaxed);
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::warn!(segment = %path.display(), "direct writes refused (block size above 4 KiB?); writing through the page cache");
                self.refused = true;
                write::append_at(buffered, path, blocks, full_from)?;
            }
            Err(e) => return Err(e),
        }
        if full_to < end {
            write::append_at(buffered, path, window(full_to, end), full_to)?;
        }
        Ok(())
    }

    /// Ensures the current window has room for `incoming` more bytes after
    /// `size`: grows a small window, or slides a full one.
    fn make_room(&mut self, size: u64, incoming: usize) {
        let held = (size - self.start) as usize;
        let needed = held + incoming;
        if needed <= self.current.capacity() {
            return;
        }
        let over = over_budget();
        if needed <= WINDOW && self.current.capacity() < WINDOW && !over {
            let mut bigger = Window::new(needed.next_power_of_two());
            bigger.as_mut_slice()[..held].copy_from_slice(&self.current.as_slice()[..held]);
            self.current = bigger;
            return;
        }
        // Slide: a new window from the block holding `size`, while the full
        // one stays readable as the previous window. A batch larger than a
        // window gets a window of its own size; over the budget, a window
        // just large enough and no previous one.
        let new_start = align_down(size);
        let carried = (size - new_start) as usize;
        let fits = align_up((carried + incoming) as u64) as usize;
        let size_wanted = if over {
            fits.max(FIRST_WINDOW)
        } else {
            fits.max(WINDOW)
        };
        let mut next = Window::new(size_wanted);
        let from = (new_start - self.start) as usize;
        next.as_mut_slice()[..carried]
            .copy_from_slice(&self.current.as_slice()[from..from + carried]);
        let full = std::mem::replace(&mut self.current, next);
        self.previous = (!over).then_some(full);
        self.previous_start = self.start;
        self.start = new_start;
    }

    /// Where the windows hold the `len` bytes at `position`: the part in
    /// the previous window and the part in the current one (either may be
    /// empty), or `None` if they do not hold all of them. The caller keeps
    /// `position + len` within the segment.
    fn spans(&self, position: u64, len: usize) -> Option<(&[u8], &[u8])> {
        let end = position + len as u64;
        let mut older: &[u8] = &[];
        if position < self.start {
            let previous = self.previous.as_ref()?;
            if position < self.previous_start {
                return None;
            }
            let from = (position - self.previous_start) as usize;
            let to = (end.min(self.start) - self.previous_start) as usize;
            older = &previous.as_slice()[from..to];
        }
        let newer = if end > self.start {
            let from = (position.max(self.start) - self.start) as usize;
            &self.current.as_slice()[from..(end - self.start) as usize]
        } else {
            &[]
        };
        Some((older, newer))
    }

    /// Copies the bytes at `position` into `out` if the windows hold all of them.
    pub fn read_into(&self, position: u64, out: &mut [u8]) -> bool {
        let Some((older, newer)) = self.spans(position, out.len()) else {
            return false;
        };
        out[..older.len()].copy_from_slice(older);
        out[older.len()..].copy_from_slice(newer);
        true
    }

    /// The bytes at `position` in a new buffer, if the windows hold all of them.
    pub fn read(&self, position: u64, len: usize) -> Option<Vec<u8>> {
        let (older, newer) = self.spans(position, len)?;
        // Filled by copying, not zeroed first: a fetch copies every byte.
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(older);
        out.extend_from_slice(newer);
        Some(out)
    }

    /// The segment was cut to end at `size` (the file already is): forgets
    /// the bytes after it, reloading the window from the file if the cut
    /// went below it.
    pub fn truncate(&mut self, buffered: &File, size: u64) -> io::Result<()> {
        // Within the current window, what was cut is overwritten or
        // zero-padded by the next append; below it, reload.
        if size < self.start {
            let start = align_down(size);
            let mut current = Window::new(FIRST_WINDOW);
            let held = (size - start) as usize;
            use std::os::unix::fs::FileExt;
            buffered.read_exact_at(&mut current.as_mut_slice()[..held], start)?;
            self.previous = None;
            self.current = current;
            self.start = start;
            self.previous_start = start;
        }
        Ok(())
    }
}

impl std::fmt::Debug for DirectTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectTail")
            .field("start", &self.start)
            .field("window", &self.current.capacity())
            .field(
                "previous_start",
                &self.previous.as_ref().map(|_| self.previous_start),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::direct::BLOCK;
    use std::cell::Cell;
    use std::os::unix::fs::FileExt;

    thread_local! {
        /// This thread's budget, so a test can be over it without shrinking
        /// the windows of tests running beside it.
        pub(super) static BUDGET_HERE: Cell<Option<usize>> = const { Cell::new(None) };
        /// This thread's policy (`Some(false)`: auto), likewise.
        pub(super) static ALWAYS_HERE: Cell<Option<bool>> = const { Cell::new(None) };
    }

    #[test]
    fn under_auto_appends_go_through_the_page_cache_until_writeback_pressure() {
        use crate::disk::writeback::force_on_this_thread;
        let dir = tempfile::tempdir().unwrap();
        let (buffered, mut tail, path) = open(dir.path());
        ALWAYS_HERE.with(|a| a.set(Some(false)));
        let mut expected = Vec::new();
        let mut append = |tail: &mut DirectTail, seed: u8| {
            let data = pattern(100_003, seed);
            tail.append(&path, &buffered, expected.len() as u64, &[&data])
                .unwrap();
            expected.extend_from_slice(&data);
        };
        force_on_this_thread(Some(false));
        for seed in 0..3 {
            append(&mut tail, seed);
        }
        assert_eq!(tail.written_directly, 0, "no pressure: page cache only");
        force_on_this_thread(Some(true));
        append(&mut tail, 3);
        let direct = tail.written_directly;
        assert!(direct >= 90_000, "under pressure the full blocks go direct");
        force_on_this_thread(Some(false));
        append(&mut tail, 4);
        append(&mut tail, 5);
        assert_eq!(tail.written_directly, direct);
        force_on_this_thread(None);
        ALWAYS_HERE.with(|a| a.set(None));
        let size = expected.len() as u64;
        let from = size - 300_000;
        assert_eq!(tail.read(from, 300_000).unwrap(), expected[from as usize..]);
        let mut on_disk = vec![0u8; expected.len()];
        buffered.read_exact_at(&mut on_disk, 0).unwrap();
        assert_eq!(on_disk, expected, "every byte in the file, in order");
    }

    #[test]
    fn over_the_memory_budget_a_tail_keeps_only_what_the_last_append_needs() {
        let dir = tempfile::tempdir().unwrap();
        let (buffered, mut tail, path) = open(dir.path());
        BUDGET_HERE.with(|b| b.set(Some(0)));
        let mut expected = Vec::new();
        for i in 0..20u8 {
            let data = pattern(100_000, i);
            tail.append(&path, &buffered, expected.len() as u64, &[&data])
                .unwrap();
            expected.extend_from_slice(&data);
        }
        BUDGET_HERE.with(|b| b.set(None));
        assert!(tail.previous.is_none());
        assert!(tail.current.capacity() <= 100_000 + 2 * BLOCK as usize);
        let size = expected.len() as u64;
        let last = size - 100_000;
        assert_eq!(tail.read(last, 100_000).unwrap(), expected[last as usize..]);
        assert!(tail.read(last - 200_000, 10).is_none());
        let mut on_disk = vec![0u8; expected.len()];
        buffered.read_exact_at(&mut on_disk, 0).unwrap();
        assert_eq!(on_disk, expected);
    }

    fn open(dir: &Path) -> (File, DirectTail, std::path::PathBuf) {
        let path = dir.join("0.log");
        let buffered = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let tail = DirectTail::open(&path, &buffered, 0)
            .unwrap()
            .expect("these tests need a file system with O_DIRECT under TMPDIR");
        (buffered, tail, path)
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
            .collect()
    }

    #[test]
    fn appends_of_every_size_land_in_the_file_and_read_back_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (buffered, mut tail, path) = open(dir.path());
        let mut expected = Vec::new();
        // Small appends grow the first window; large ones slide it, and
        // two are larger than a window.
        let sizes = [
            1,
            100,
            4095,
            4097,
            70_000,
            WINDOW / 2,
            WINDOW * 3 / 4,
            WINDOW + 5000,
            WINDOW,
            10,
        ];
        for (i, len) in sizes.into_iter().enumerate() {
            let data = pattern(len, i as u8);
            let (a, b) = data.split_at(len / 3);
            tail.append(&path, &buffered, expected.len() as u64, &[a, b])
                .unwrap();
            expected.extend_from_slice(&data);
        }
        let size = expected.len() as u64;
        assert_eq!(buffered.metadata().unwrap().len(), size, "no padding");
        let mut on_disk = vec![0u8; expected.len()];
        buffered.read_exact_at(&mut on_disk, 0).unwrap();
        assert_eq!(on_disk, expected, "the file holds every append");
        // The newest bytes come from memory, spanning both windows;
        // older ones are not there.
        let from = size - 3_200_000;
        assert_eq!(
            tail.read(from, 3_200_000).unwrap(),
            expected[from as usize..]
        );
        assert!(tail.read(0, 10).is_none());
    }

    #[test]
    fn a_truncated_tail_forgets_what_was_cut_and_appends_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (buffered, mut tail, path) = open(dir.path());
        let data = pattern(WINDOW * 5 / 2, 7);
        for (i, piece) in data.chunks(300_000).enumerate() {
            tail.append(&path, &buffered, (i * 300_000) as u64, &[piece])
                .unwrap();
        }
        // Within the current window, then below both (reloaded from the file).
        for cut in [(WINDOW * 5 / 2 - 100_000) as u64, 5_000] {
            buffered.set_len(cut).unwrap();
            tail.truncate(&buffered, cut).unwrap();
            tail.append(&path, &buffered, cut, &[b"after"]).unwrap();
            let mut read = vec![0u8; cut as usize + 5];
            buffered.read_exact_at(&mut read, 0).unwrap();
            assert_eq!(&read[..cut as usize], &data[..cut as usize]);
            assert_eq!(&read[cut as usize..], b"after");
            assert_eq!(tail.read(cut - 5, 10).unwrap()[5..], *b"after");
        }
    }

    #[test]
    fn a_refused_direct_write_falls_back_to_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (buffered, mut tail, path) = open(dir.path());
        let blocks = pattern(3 * BLOCK as usize, 5);
        crate::disk::write::faults::fail_write("0.log", 0, libc::EINVAL);
        tail.append(&path, &buffered, 0, &[&blocks]).unwrap();
        assert!(tail.refused);
        tail.append(&path, &buffered, 3 * BLOCK, &[&blocks])
            .unwrap();
        let mut read = vec![0u8; 6 * BLOCK as usize];
        buffered.read_exact_at(&mut read, 0).unwrap();
        assert_eq!(&read[..3 * BLOCK as usize], &blocks[..]);
        assert_eq!(&read[3 * BLOCK as usize..], &blocks[..]);
        assert_eq!(
            tail.read(BLOCK, 10).unwrap(),
            blocks[BLOCK as usize..][..10]
        );
    }

    #[test]
    fn a_failed_write_leaves_the_window_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let (buffered, mut tail, path) = open(dir.path());
        tail.append(&path, &buffered, 0, &[b"good"]).unwrap();
        // A small append (through the page cache) fails, then one that
        // fills whole blocks fails in its direct write; the segment cuts
        // the file back each time, and the next appends land in place.
        crate::disk::write::faults::fail_write("0.log", 0, libc::ENOSPC);
        assert!(tail.append(&path, &buffered, 4, &[b"lost"]).is_err());
        buffered.set_len(4).unwrap();
        tail.append(&path, &buffered, 4, &[b"next"]).unwrap();
        let fill = vec![b'f'; BLOCK as usize - 8];
        tail.append(&path, &buffered, 8, &[&fill]).unwrap();
        let blocks = pattern(3 * BLOCK as usize, 3);
        crate::disk::write::faults::fail_write("0.log", BLOCK as usize, libc::EIO);
        assert!(tail.append(&path, &buffered, BLOCK, &[&blocks]).is_err());
        buffered.set_len(BLOCK).unwrap();
        tail.append(&path, &buffered, BLOCK, &[&blocks]).unwrap();
        let mut read = vec![0u8; 4 * BLOCK as usize];
        buffered.read_exact_at(&mut read, 0).unwrap();
        assert_eq!(&read[..8], b"goodnext");
        assert_eq!(&read[8..BLOCK as usize], &fill[..]);
        assert_eq!(&read[BLOCK as usize..], &blocks[..]);
        assert_eq!(buffered.metadata().unwrap().len(), 4 * BLOCK);
    }
}
