//! Replacing segments with the log cleaner's output, so that a crash at any
//! point leaves the log as it was before the pass or as it is after it.
//!
//! For each group of segments the cleaner compacted into one:
//!
//! 1. The cleaner writes the output to `<base>.log.cleaned` (its indexes
//!    stay in memory) and fsyncs it, without the partition lock.
//! 2. Under the lock, every input segment must still be there, unchanged
//!    (same file, same size) and not active — otherwise nothing is swapped
//!    and the cleaner deletes the `.cleaned` file.
//! 3. Rename `<base>.log.cleaned` → `<base>.log.swap`, fsync the directory.
//!    From here on the output is committed.
//! 4. Delete the input segments (`.log`, `.index`, `.timeindex`), fsync the
//!    directory.
//! 5. Rename `<base>.log.swap` → `<base>.log`, write its indexes, fsync the
//!    directory, and put the segment into the log.
//!
//! On start-up a `.cleaned` file is an unfinished step 1 and is deleted
//! (its inputs are all intact). A `.swap` file is a committed output whose
//! swap was interrupted in step 3–5: the segments whose base offsets fall
//! in `[swap base, swap's next offset)` are deleted together with stale
//! index files of the swap's base, and the swap is renamed to `.log` (its
//! indexes are then rebuilt from the log). If the output's last records
//! were compacted away, an input segment based past its next offset may
//! survive such a recovery; it then holds only original records at offsets
//! the output does not have, so nothing is lost or duplicated — it is just
//! cleaned again by a later pass.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::PartitionLog;
use crate::disk::write::sync_dir;
use crate::log::batch::{self, BatchHeader, HEADER_SIZE};
use crate::log::cleaner::SegmentSnapshot;
use crate::log::segment::{self, Segment};
use crate::util::remove_if_exists;

fn swap_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.log.swap", segment::file_stem(base_offset)))
}

impl PartitionLog {
    /// Steps 2–5: replaces `replaced` (consecutive segments, the first
    /// based where `cleaned` is) by `cleaned`, whose data is fsynced at
    /// `<base>.log.cleaned`. Returns false, changing nothing, if any of them
    /// changed or went away since the cleaner looked (retention,
    /// truncation) or became active.
    pub(crate) fn replace_segments(
        &mut self,
        replaced: &[SegmentSnapshot],
        mut cleaned: Segment,
    ) -> io::Result<bool> {
        let active_base = self.active().base_offset;
        let unchanged = !replaced.is_empty()
            && replaced[0].base_offset == cleaned.base_offset
            && replaced.iter().all(|r| {
                r.base_offset < active_base
                    && self
                        .segments
                        .get(&r.base_offset)
                        .is_some_and(|s| Arc::ptr_eq(&s.file(), &r.file) && s.size() == r.size)
            });
        if !unchanged {
            return Ok(false);
        }
        cleaned.rename_log(swap_path(&self.dir, cleaned.base_offset))?;
        sync_dir(&self.dir)?;
        for r in replaced {
            if let Some(segment) = self.segments.remove(&r.base_offset) {
                segment.delete_files()?;
            }
        }
        sync_dir(&self.dir)?;
        cleaned.install_cleaned(&self.dir)?;
        sync_dir(&self.dir)?;
        self.segments.insert(cleaned.base_offset, cleaned);
        Ok(true)
    }
}

/// Start-up recovery of an interrupted swap (steps 3–5): deletes the
/// segments `<base>.log.swap` replaces, then renames it to `<base>.log`.
/// `bases` (the `.log` files found) is updated.
pub(super) fn complete_swap(dir: &Path, swap_base: i64, bases: &mut Vec<i64>) -> io::Result<()> {
    let stem = segment::file_stem(swap_base);
    let swap = swap_path(dir, swap_base);
    let end = swap_end_offset(&swap, swap_base)?.max(swap_base + 1);
    let replaced = |b: i64| b >= swap_base && b < end;
    for &base in bases.iter().filter(|&&b| replaced(b)) {
        let stem = segment::file_stem(base);
        for ext in ["log", "index", "timeindex", "txnindex"] {
            remove_if_exists(&dir.join(format!("{stem}.{ext}")))?;
        }
    }
    bases.retain(|&b| !replaced(b));
    // The aborted-transaction index is rebuilt with the producer state:
    // a crash mid-swap was not a clean shutdown.
    for ext in ["index", "timeindex", "txnindex"] {
        remove_if_exists(&dir.join(format!("{stem}.{ext}")))?;
    }
    sync_dir(dir)?;
    std::fs::rename(&swap, segment::log_path(dir, swap_base))?;
    sync_dir(dir)?;
    bases.push(swap_base);
    tracing::info!(dir = %dir.display(), base_offset = swap_base, "completed an interrupted log cleaner swap");
    Ok(())
}

/// The offset after the last batch of a (complete) `.swap` file, or its
/// base offset when it holds none.
fn swap_end_offset(path: &Path, base_offset: i64) -> io::Result<i64> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut end = base_offset;
    let mut position = 0u64;
    let mut header = [0u8; HEADER_SIZE];
    while position + HEADER_SIZE as u64 <= size {
        file.read_exact_at(&mut header, position)?;
        let Ok(parsed) = BatchHeader::parse(&header) else {
            break;
        };
        let Ok(total) = batch::batch_size_at(&header) else {
            break;
        };
        end = end.max(parsed.last_offset() + 1);
        position += total as u64;
    }
    Ok(end)
}
