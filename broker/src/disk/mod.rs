//! The log directory's file system, as the broker must treat it: a place
//! where any write can fail half-way.
//!
//! `direct` writes the active segment with `O_DIRECT` from the broker's own
//! aligned buffers, bypassing the page cache; `writeback` tells when that
//! pays (the kernel is writing dirty pages back).
//! `read` reads regions into buffers without zeroing them first;
//! `sendfile` sends them to a socket without reading them at all.
//! `write` holds the only ways the broker writes its files — at an explicit
//! position that the caller advances only on success, or by atomic
//! replacement — so a failed or short write (ENOSPC, EIO, EDQUOT) leaves a
//! file at its last good length. `health` decides from those failures and
//! from the free space whether the directory takes appends: all of them,
//! only the broker's own (coordinator records) when the free space is below
//! `log.dir.reserved.bytes`, or none once a write failed for a reason other
//! than space (Kafka's offline log directory).

pub mod direct;
pub mod health;
pub mod read;
pub mod sendfile;
pub mod write;
pub mod writeback;

pub use health::{AppendOrigin, DirState, LogDirHealth, StorageRefusal};
