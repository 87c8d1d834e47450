//! One log segment: `<base offset, 20 digits>.log` holding record batches
//! back to back exactly as they go on the wire, with its offset and time
//! indexes beside it.
//!
//! Appends go through `&mut self`; reads use positional reads on a shared
//! file handle so a fetch never blocks an append for longer than it takes to
//! find its starting position.
//!
//! The file is written at `size`, its last good length, and `size` only
//! moves after a write succeeded (see `disk::write`): a write that fails
//! half-way is cut off, and the next one never lands behind bytes that no
//! index or offset accounts for.
//!
//! The active segment may write its whole blocks with `O_DIRECT` through a
//! [`DirectTail`], which also answers reads of its newest bytes from memory.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch::{self, BatchHeader, HEADER_SIZE};
use super::direct_tail::DirectTail;
use super::flusher::{self, PendingFile};
use super::index::{OffsetIndex, TimeIndex};
use super::txn_index::{AbortedTxn, TxnIndex};
use crate::disk::sendfile::FileRegion;
use crate::disk::write;
use crate::util::remove_if_exists;

pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

pub fn log_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.log", file_stem(base_offset)))
}

/// Where the log cleaner writes a segment's data before swapping it in.
pub fn cleaned_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.log.cleaned", file_stem(base_offset)))
}

/// Where a batch sits in a segment.
#[derive(Debug, Clone, Copy)]
pub struct BatchPosition {
    pub position: u64,
    pub header: BatchHeader,
}

#[derive(Debug)]
pub struct Segment {
    pub base_offset: i64,
    path: PathBuf,
    file: Arc<File>,
    size: u64,
    index: OffsetIndex,
    time_index: TimeIndex,
    /// The transactions aborted by markers in this segment.
    txn_index: TxnIndex,
    bytes_since_index_entry: u64,
    /// Offset after the last batch in this segment.
    pub next_offset: i64,
    pub max_timestamp: i64,
    /// Wall-clock ms when the first batch arrived, for `segment.ms`.
    pub first_append_ms: Option<i64>,
    /// Bytes appended since the last fsync.
    unflushed_bytes: u64,
    /// Position up to which writeback has been started (`flusher`).
    writeback_from: u64,
    /// A failed write could not be cut off: the file may be longer than
    /// `size` until the next flush trims it.
    tail_unaccounted: bool,
    /// Appends should bypass the page cache (the active segment, when the
    /// broker writes directly and the file system allows it).
    write_directly: bool,
    /// The newest bytes and the `O_DIRECT` handle, from the first direct append.
    tail: Option<DirectTail>,
}

/// Bytes of a segment to send: a region of its file, or a copy of what its
/// direct tail holds in memory.
pub enum ReadSlice {
    File(FileRegion),
    Memory(Vec<u8>),
}

impl ReadSlice {
    pub fn read(self) -> io::Result<Vec<u8>> {
        match self {
            ReadSlice::File(region) => region.read(),
            ReadSlice::Memory(bytes) => Ok(bytes),
        }
    }
}

/// What recovery found in a segment.
pub struct RecoveryOutcome {
    pub valid_bytes: u64,
    pub truncated_bytes: u64,
}

impl Segment {
    pub fn create(dir: &Path, base_offset: i64) -> io::Result<Segment> {
        let path = log_path(dir, base_offset);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        // Make the new file's directory entry durable, so an fsynced batch
        // in it cannot vanish with its name after a power loss.
        if let Err(e) = write::sync_dir(dir) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(Segment::empty(dir, base_offset, path, file))
    }

    /// Creates the log cleaner's output for a segment based at
    /// `base_offset`: the data goes to `<base>.log.cleaned` (truncated if a
    /// stale one exists) while the indexes are built in memory only, under
    /// their final names, and written by [`Segment::install_cleaned`].
    pub fn create_cleaned(dir: &Path, base_offset: i64) -> io::Result<Segment> {
        let path = cleaned_path(dir, base_offset);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(&path)?;
        Ok(Segment::empty(dir, base_offset, path, file))
    }

    /// A segment with no batches yet whose data lives in `file` at `path`.
    fn empty(dir: &Path, base_offset: i64, path: PathBuf, file: File) -> Segment {
        let stem = file_stem(base_offset);
        Segment {
            base_offset,
            file: Arc::new(file),
            size: 0,
            index: OffsetIndex::empty(dir.join(format!("{stem}.index")), base_offset),
            time_index: TimeIndex::empty(dir.join(format!("{stem}.timeindex")), base_offset),
            txn_index: TxnIndex::empty(dir.join(format!("{stem}.txnindex"))),
            bytes_since_index_entry: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            first_append_ms: None,
            unflushed_bytes: 0,
            writeback_from: 0,
            tail_unaccounted: false,
            write_directly: false,
            tail: None,
            path,
        }
    }

    /// fsyncs the log file only (the cleaner's output before its swap).
    pub fn sync_log(&mut self) -> io::Result<()> {
        self.trim_tail()?;
        write::sync_data(&self.file, &self.path)?;
        self.unflushed_bytes = 0;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the segment's log file (the handle stays valid).
    pub fn rename_log(&mut self, to: PathBuf) -> io::Result<()> {
        std::fs::rename(&self.path, &to)?;
        self.path = to;
        Ok(())
    }

    /// Moves a cleaned segment (now at `.log.swap`) to its final `.log`
    /// name and writes its indexes. The replaced segments' files must be
    /// gone already, so no stale index can be paired with the new log.
    pub fn install_cleaned(&mut self, dir: &Path) -> io::Result<()> {
        self.rename_log(log_path(dir, self.base_offset))?;
        self.index.rewrite()?;
        self.time_index.rewrite()?;
        self.txn_index.rewrite()
    }

    /// The transactions aborted by markers in this segment.
    pub fn aborted(&self) -> &[AbortedTxn] {
        self.txn_index.entries()
    }

    /// Notes a transaction an ABORT marker in this segment ended.
    pub fn record_abort(&mut self, aborted: AbortedTxn) {
        self.txn_index.append(aborted);
    }

    /// Sets the aborted transactions (rebuilt from the log, or the
    /// cleaner's sources' for its output); written by the next flush.
    pub fn set_aborted(&mut self, aborted: Vec<AbortedTxn>) {
        self.txn_index.replace(aborted);
    }

    /// Opens an existing segment. With `recover`, every batch is validated,
    /// a torn or corrupt tail is cut off and both indexes are rebuilt;
    /// otherwise the indexes are loaded and only rebuilt if they fail their
    /// sanity check. Returns the segment and how much recovery removed.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        recover: bool,
        index_interval: u64,
    ) -> io::Result<(Segment, RecoveryOutcome)> {
        let path = log_path(dir, base_offset);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let size = file.metadata()?.len();
        let stem = file_stem(base_offset);
        let index_path = dir.join(format!("{stem}.index"));
        let time_path = dir.join(format!("{stem}.timeindex"));
        let mut segment = Segment {
            base_offset,
            file: Arc::new(file),
            size,
            index: OffsetIndex::empty(index_path.clone(), base_offset),
            time_index: TimeIndex::empty(time_path.clone(), base_offset),
            txn_index: TxnIndex::load(dir.join(format!("{stem}.txnindex")))?,
            bytes_since_index_entry: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            first_append_ms: None,
            unflushed_bytes: 0,
            writeback_from: size,
            tail_unaccounted: false,
            write_directly: false,
            tail: None,
            path,
        };
        if !recover {
            let index = OffsetIndex::load(index_path, base_offset, size)?;
            let time_index = TimeIndex::load(time_path, base_offset)?;
            if let (Some(index), Some(time_index)) = (index, time_index) {
                segment.index = index;
                segment.time_index = time_index;
                segment.restore_tail_state()?;
                return Ok((
                    segment,
                    RecoveryOutcome {
                        valid_bytes: size,
                        truncated_bytes: 0,
                    },
                ));
            }
        }
        let outcome = segment.rebuild(index_interval, recover)?;
        segment.writeback_from = segment.size;
        Ok((segment, outcome))
    }

    /// Finds the last batch (from the last index entry onwards) to restore
    /// `next_offset` and `max_timestamp` without scanning the whole file.
    fn restore_tail_state(&mut self) -> io::Result<()> {
        let mut position = self.index.lookup(i64::MAX);
        while position < self.size {
            let header = self.read_header(position)?;
            self.next_offset = header.last_offset() + 1;
            position += header.total_size() as u64;
        }
        self.max_timestamp = self.time_index.last_entry().map(|(ts, _)| ts).unwrap_or(-1);
        Ok(())
    }

    /// Scans every batch from the start, rebuilding the indexes. With
    /// `validate`, the first batch that is torn or fails its checks ends the
    /// segment and everything after it is truncated.
    fn rebuild(&mut self, index_interval: u64, validate: bool) -> io::Result<RecoveryOutcome> {
        self.index = OffsetIndex::empty(self.index.path().to_path_buf(), self.base_offset);
        self.time_index = TimeIndex::empty(self.time_index.path().to_path_buf(), self.base_offset);
        self.bytes_since_index_entry = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        let mut position = 0u64;
        let mut buf = Vec::new();
        while position < self.size {
            let header = match self.read_header(position) {
                Ok(h) => h,
                Err(_) => break,
            };
            let total = header.total_size() as u64;
            if header.batch_length < (HEADER_SIZE - batch::LOG_OVERHEAD) as i32
                || position + total > self.size
                || header.base_offset < self.next_offset
            {
                break;
            }
            if validate {
                buf.resize(total as usize, 0);
                self.file.read_exact_at(&mut buf, position)?;
                if batch::validate(&buf).is_err() {
                    break;
                }
            }
            self.note_batch(&header, position, total, index_interval);
            position += total;
        }
        let truncated = self.size - position;
        if truncated > 0 {
            self.file.set_len(position)?;
            self.file.sync_all()?;
            self.size = position;
        }
        // The rebuilt entries are in memory; if their files cannot be
        // written now (a full disk at start-up), the next flush retries.
        if let Err(e) = self.index.rewrite().and(self.time_index.rewrite()) {
            tracing::warn!(segment = %self.path.display(), error = %e, "cannot write rebuilt indexes yet");
        }
        Ok(RecoveryOutcome {
            valid_bytes: position,
            truncated_bytes: truncated,
        })
    }

    fn note_batch(&mut self, header: &BatchHeader, position: u64, total: u64, index_interval: u64) {
        if self.bytes_since_index_entry >= index_interval || position == 0 {
            self.index.append(header.base_offset, position);
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += total;
        self.next_offset = header.last_offset() + 1;
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.time_index
                .maybe_append(header.max_timestamp, header.last_offset());
        }
    }

    /// Appends batches whose offsets were already assigned. On failure
    /// nothing changes: not the file's good length, not the indexes.
    pub fn append(
        &mut self,
        bytes: &[u8],
        headers: &[BatchHeader],
        index_interval: u64,
        now_ms: i64,
    ) -> io::Result<()> {
        self.append_parts(&[bytes], headers, index_interval, now_ms)
    }

    /// [`Segment::append`] of batches given in pieces (written in order).
    pub fn append_parts(
        &mut self,
        parts: &[&[u8]],
        headers: &[BatchHeader],
        index_interval: u64,
        now_ms: i64,
    ) -> io::Result<()> {
        if self.write_directly && self.tail.is_none() {
            self.tail = DirectTail::open(&self.path, &self.file, self.size)?;
            if self.tail.is_none() {
                tracing::info!(segment = %self.path.display(), "the file system takes no direct writes; writing through the page cache");
                self.write_directly = false;
            }
        }
        let written = match &mut self.tail {
            Some(tail) => tail
                .append(&self.path, &self.file, self.size, parts)
                .inspect_err(|_| {
                    // Cut off what landed, as `append_parts_at` does.
                    let _ = self.file.set_len(self.size);
                }),
            None => write::append_parts_at(&self.file, &self.path, parts, self.size),
        };
        if let Err(e) = written {
            // The failed write was cut back, unless that failed too.
            self.tail_unaccounted = self.file.metadata().map_or(true, |m| m.len() != self.size);
            return Err(e);
        }
        let mut position = self.size;
        for header in headers {
            let total = header.total_size() as u64;
            self.note_batch(header, position, total, index_interval);
            position += total;
        }
        self.size = position;
        self.unflushed_bytes += parts.iter().map(|p| p.len() as u64).sum::<u64>();
        self.first_append_ms.get_or_insert(now_ms);
        self.start_writeback_if_due();
        Ok(())
    }

    /// Hands the bytes appended since the last start of writeback to the
    /// flusher once there are `log.segment.writeback.bytes` of them.
    fn start_writeback_if_due(&mut self) {
        let Some(interval) = flusher::writeback_interval() else {
            return;
        };
        let pending = self.size.saturating_sub(self.writeback_from);
        if pending >= interval {
            flusher::start_writeback(
                self.file.clone(),
                self.path.clone(),
                self.writeback_from,
                pending,
            );
            self.writeback_from = self.size;
        }
    }

    pub fn read_header(&self, position: u64) -> io::Result<BatchHeader> {
        let mut buf = [0u8; HEADER_SIZE];
        let in_memory = position + HEADER_SIZE as u64 <= self.size
            && self
                .tail
                .as_ref()
                .is_some_and(|t| t.read_into(position, &mut buf));
        if !in_memory {
            self.file.read_exact_at(&mut buf, position)?;
        }
        BatchHeader::parse(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// The batch containing `offset` (or the first after it), scanning from
    /// the index's floor entry. `None` if the segment holds nothing at or after it.
    pub fn find_batch(&self, offset: i64) -> io::Result<Option<BatchPosition>> {
        let mut position = self.index.lookup(offset);
        while position < self.size {
            let header = self.read_header(position)?;
            if header.last_offset() >= offset {
                return Ok(Some(BatchPosition { position, header }));
            }
            position += header.total_size() as u64;
        }
        Ok(None)
    }

    /// The first batch holding records at or after `from_offset` whose
    /// largest timestamp is `>= timestamp` (Kafka's `findOffsetByTimestamp`
    /// with a starting offset: the log start may lie inside this segment).
    pub fn find_batch_by_time(
        &self,
        timestamp: i64,
        from_offset: i64,
    ) -> io::Result<Option<BatchPosition>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let start_offset = self.time_index.lookup(timestamp).max(from_offset);
        let mut found = self.find_batch(start_offset)?;
        while let Some(batch) = found {
            // Empty batches (kept by the cleaner for producer state) hold
            // no record to answer with.
            if batch.header.max_timestamp >= timestamp && batch.header.records_count > 0 {
                return Ok(Some(batch));
            }
            let next = batch.position + batch.header.total_size() as u64;
            found = if next < self.size {
                Some(BatchPosition {
                    position: next,
                    header: self.read_header(next)?,
                })
            } else {
                None
            };
        }
        Ok(None)
    }

    /// Visits every batch header in order (for producer-state rebuilds and
    /// max-timestamp lookups).
    pub fn for_each_batch(&self, mut visit: impl FnMut(&BatchPosition)) -> io::Result<()> {
        let mut position = 0;
        while position < self.size {
            let header = self.read_header(position)?;
            visit(&BatchPosition { position, header });
            position += header.total_size() as u64;
        }
        Ok(())
    }

    pub fn read_at(&self, position: u64, len: usize) -> io::Result<Vec<u8>> {
        self.slice(position, len).read()
    }

    /// The bytes at `position`, from memory if the direct tail holds them
    /// (copied now), else as a region of the file to read later.
    pub fn slice(&self, position: u64, len: usize) -> ReadSlice {
        let in_memory = position + len as u64 <= self.size;
        match self
            .tail
            .as_ref()
            .filter(|_| in_memory)
            .and_then(|t| t.read(position, len))
        {
            Some(bytes) => ReadSlice::Memory(bytes),
            None => ReadSlice::File(FileRegion {
                file: self.file.clone(),
                position,
                len,
            }),
        }
    }

    /// Makes appends write whole blocks past the page cache from the next
    /// one on (`true`), or stops doing so and frees the tail's memory
    /// (`false`, when the segment stops being the active one).
    pub fn set_direct_writes(&mut self, enabled: bool) {
        self.write_directly = enabled;
        if !enabled {
            self.tail = None;
        }
    }

    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn index_full(&self, max_index_bytes: u64) -> bool {
        self.index.len_bytes() + 8 > max_index_bytes
    }

    /// fsyncs the log file and persists new index entries.
    pub fn flush(&mut self) -> io::Result<()> {
        self.trim_tail()?;
        if self.unflushed_bytes > 0 {
            write::sync_data(&self.file, &self.path)?;
            self.unflushed_bytes = 0;
        }
        self.index.flush()?;
        self.time_index.flush()?;
        self.txn_index.flush()
    }

    /// Cuts off what a failed write left past the good length.
    fn trim_tail(&mut self) -> io::Result<()> {
        if self.tail_unaccounted {
            self.file.set_len(self.size)?;
            self.tail_unaccounted = false;
        }
        Ok(())
    }

    /// Everything but the fsync of `flush`, for a segment that will not be
    /// written again (a roll closed it): the file to fsync in the
    /// background, if it has unflushed data. The segment keeps counting
    /// that data as unflushed, so a synchronous flush before the background
    /// one has completed still fsyncs it.
    pub fn prepare_background_flush(&mut self) -> io::Result<Option<PendingFile>> {
        self.trim_tail()?;
        self.index.flush()?;
        self.time_index.flush()?;
        self.txn_index.flush()?;
        Ok((self.unflushed_bytes > 0).then(|| PendingFile {
            file: self.file.clone(),
            path: self.path.clone(),
        }))
    }

    /// Cuts the segment so that it ends before `offset`. On error nothing
    /// was cut.
    pub fn truncate_to(&mut self, offset: i64) -> io::Result<()> {
        let position = match self.find_batch(offset)? {
            Some(b) if b.header.base_offset >= offset => b.position,
            Some(b) => b.position + b.header.total_size() as u64,
            None => self.size,
        };
        self.file.set_len(position)?;
        self.size = position;
        self.writeback_from = self.writeback_from.min(position);
        self.tail_unaccounted = false;
        if let Some(tail) = &mut self.tail {
            if let Err(e) = tail.truncate(&self.file, position) {
                // Forget the tail: the next append loads it afresh.
                tracing::warn!(segment = %self.path.display(), error = %e, "cannot reload the direct tail");
                self.tail = None;
            }
        }
        // The indexes drop their entries in memory even if rewriting their
        // files fails now: the next flush rewrites them, and the log's
        // recovery point is already below this segment.
        if let Err(e) = self
            .index
            .truncate_to_position(position)
            .and(self.time_index.truncate_to_offset(offset))
        {
            tracing::warn!(segment = %self.path.display(), error = %e, "cannot rewrite truncated indexes yet");
        }
        self.txn_index.truncate_to(offset);
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        let mut last = None;
        self.for_each_batch(|b| last = Some(b.header))?;
        if let Some(header) = last {
            self.next_offset = header.last_offset() + 1;
        }
        self.max_timestamp = self.time_index.last_entry().map(|(ts, _)| ts).unwrap_or(-1);
        Ok(())
    }

    /// Removes the segment's files (the handle stays readable for fetches in flight).
    pub fn delete_files(&self) -> io::Result<()> {
        for path in [
            self.path.as_path(),
            self.index.path(),
            self.time_index.path(),
            self.txn_index.path(),
        ] {
            remove_if_exists(path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::test_support::{assign, batch};
    use crate::log::batch::validate;

    fn append(segment: &mut Segment, offset: i64, values: &[&[u8]]) {
        let mut bytes = batch(values, 1000 + offset, (-1, -1, -1));
        assign(&mut bytes, offset, 0, None);
        let header = validate(&bytes).unwrap();
        segment.append(&bytes, &[header], 1, 0).unwrap();
    }

    #[test]
    fn finds_batches_and_recovers_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 0).unwrap();
        append(&mut segment, 0, &[b"a", b"b"]);
        append(&mut segment, 2, &[b"c"]);
        append(&mut segment, 3, &[b"d", b"e", b"f"]);
        segment.flush().unwrap();
        assert_eq!(segment.next_offset, 6);
        let found = segment.find_batch(4).unwrap().unwrap();
        assert_eq!(found.header.base_offset, 3);
        let by_time = segment.find_batch_by_time(1002, 0).unwrap().unwrap();
        assert_eq!(by_time.header.base_offset, 2);
        let full = segment.size();
        drop(segment);

        // Tear the last batch: recovery keeps the first two.
        let file = OpenOptions::new()
            .write(true)
            .open(log_path(dir.path(), 0))
            .unwrap();
        file.set_len(full - 5).unwrap();
        let (segment, outcome) = Segment::open(dir.path(), 0, true, 1).unwrap();
        assert!(outcome.truncated_bytes > 0);
        assert_eq!(segment.next_offset, 3);
        assert!(segment.find_batch(3).unwrap().is_none());
    }

    #[test]
    fn clean_open_uses_indexes_and_truncate_to_cuts() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 10).unwrap();
        for i in 0..5 {
            append(&mut segment, 10 + i * 2, &[b"x", b"y"]);
        }
        segment.flush().unwrap();
        drop(segment);
        let (mut segment, outcome) = Segment::open(dir.path(), 10, false, 1).unwrap();
        assert_eq!(outcome.truncated_bytes, 0);
        assert_eq!(segment.next_offset, 20);
        assert_eq!(segment.max_timestamp, 1018);
        segment.truncate_to(14).unwrap();
        assert_eq!(segment.next_offset, 14);
    }

    #[test]
    fn writeback_starts_every_interval_behind_the_appends_and_after_truncation() {
        flusher::WRITEBACK_INTERVAL_HERE.with(|b| b.set(Some(150)));
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 0).unwrap();
        let before = flusher::writeback_started_bytes();
        let mut handed_over = Vec::new();
        for i in 0..6 {
            append(&mut segment, i, &[b"a value of some size"]);
            handed_over.push(segment.writeback_from);
        }
        // Each batch is ~90 bytes: every second append reaches 150.
        let batch = segment.size() / 6;
        assert_eq!(
            handed_over,
            [0, 2, 2, 4, 4, 6].map(|n| n * batch),
            "writeback starts once 150 bytes are pending, for all of them"
        );
        flusher::wait_for_all();
        assert!(flusher::writeback_started_bytes() - before >= segment.size());

        segment.truncate_to(3).unwrap();
        assert_eq!(segment.writeback_from, 3 * batch);
        append(&mut segment, 3, &[b"a value of some size"]);
        assert_eq!(segment.writeback_from, 3 * batch, "90 bytes pending");
        append(&mut segment, 4, &[b"a value of some size"]);
        assert_eq!(segment.writeback_from, 5 * batch);

        flusher::WRITEBACK_INTERVAL_HERE.with(|b| b.set(Some(0)));
        append(&mut segment, 5, &[b"a value of some size"]);
        append(&mut segment, 6, &[b"a value of some size"]);
        assert_eq!(segment.writeback_from, 5 * batch, "0 turns it off");
    }
}
