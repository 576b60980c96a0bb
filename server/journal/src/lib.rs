//! A write-ahead journal in front of one redb table.
//!
//! redb is a copy-on-write B-tree without a log: a durable commit rewrites
//! every page on the path to each changed key, and its free list, before
//! its `fdatasync`. Here a commit is one record appended to a journal
//! segment, durable when the commit must be (see `direct`); the
//! changes are kept in memory in front of redb for every read, and a
//! checkpoint thread writes them into redb in bulk, where a page changed a
//! thousand times is written once. Used by the server's embedded store
//! (with group commit) and by a client device's MLS state.
//!
//! # Layout
//! - `segment`: the journal's files, its records, and recovery.
//! - `direct`: records written straight to the disk in whole blocks, a
//!   durable one with `RWF_DSYNC` (`fdatasync` where direct I/O is refused).
//! - `tables`: the changes not yet checkpointed, in memory.
//! - `reader`: [`Reader`], reads through the tables and redb's last
//!   checkpoint, from any thread.
//! - `writer`: [`Writer`], the one writer: commits, checkpoints (on a
//!   thread of its own), opening and closing.
//!
//! # Durability
//! A commit with `sync` returns once its record is on disk (past the
//! drive's write cache);
//! one without is made durable by the next synced commit or
//! [`Writer::sync`], and a crash may take it (a process crash leaves it
//! written, a power cut may not; with [`Options::defer_unsynced`] it is
//! not written until then, so a process crash may take it too). Whatever
//! a crash takes, it takes only the latest unsynced commits: what is read
//! back is always the state after some commit. The journal's directory and
//! each segment are synced when they are made, and the directory holding
//! them at every open. Opening replays the segments after the last
//! checkpoint, syncs them, and hands what they hold to the checkpoint
//! thread, keeping them until it is in redb (or, when one ended in a
//! record cut short, checkpoints it before anything is written after it);
//! dropping the [`Writer`] checkpoints
//! everything and removes the segments, so a closed store's data is all in
//! its redb file.

mod direct;
mod reader;
mod segment;
mod tables;
#[cfg(test)]
mod tests;
mod writer;

use std::{path::Path, sync::Arc, time::Duration};

pub use reader::Reader;
pub use segment::Changes;

/// A key and its value, as a scan returns them.
pub type Entry = (Vec<u8>, Vec<u8>);
pub use writer::{View, Writer};

/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing failed (I/O, redb); the message says what.
    #[error("{0}")]
    Failed(String),
    /// The commit was refused before anything of it was written: it may
    /// be tried again.
    #[error("{0}")]
    NotWritten(String),
    /// Writing the commit's record or syncing it failed: it may or may not
    /// be on disk. The writer refuses every later commit (a failed
    /// `fdatasync` leaves the file's state unknown); reopening reads the
    /// journal again.
    #[error("{0}")]
    MayBeWritten(String),
    /// The journal is damaged before its end: not opened, rather than
    /// lose what follows.
    #[error("{0}")]
    Damaged(String),
    /// Another process (or handle) holds the redb file.
    #[error("{0}")]
    InUse(String),
}

/// Bytes of keys and values that unsynced commits of a deferring journal
/// ([`Options::defer_unsynced`]) may hold in memory before they are
/// written (synced) without waiting for a synced commit.
pub const DEFERRED_BYTES: usize = 1 << 20;

/// How a journal behaves.
#[derive(Clone)]
pub struct Options {
    /// Whether every commit is synced before the next is written: then
    /// only the last record can be torn by a crash, and an intact record
    /// right after a damaged one is damage (refused), not a torn end.
    pub each_synced: bool,
    /// Whether a commit that does not sync is held in memory instead of
    /// written: seen by reads at once, and written as part of the next
    /// synced commit's record (or by [`Writer::sync`], a checkpoint, or
    /// once [`DEFERRED_BYTES`] are held). Every record written is then
    /// synced, so the journal writes directly (see `direct`) without a
    /// lazy commit waiting for the disk; a crash, of the process too, may
    /// take what is held, and never more than that.
    pub defer_unsynced: bool,
    /// Changes held in memory that start a checkpoint.
    pub freeze_bytes: usize,
    /// Told how long each checkpoint took.
    pub on_checkpoint: Option<Arc<dyn Fn(Duration) + Send + Sync>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            each_synced: true,
            defer_unsynced: false,
            freeze_bytes: 16 << 20,
            on_checkpoint: None,
        }
    }
}

impl Options {
    /// Whether every record written is synced, so that records are written
    /// directly (see `direct`).
    pub(crate) fn direct(&self) -> bool {
        self.each_synced || self.defer_unsynced
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("each_synced", &self.each_synced)
            .field("defer_unsynced", &self.defer_unsynced)
            .field("freeze_bytes", &self.freeze_bytes)
            .finish_non_exhaustive()
    }
}

/// `fsync` of directory `dir`: its entries (a created or renamed file)
/// become durable.
///
/// # Errors
/// [`Error::Failed`] when the directory cannot be synced.
pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::Failed(format!("cannot sync {}: {e}", dir.display())))
}

/// The journal's directory of a store whose redb file is in `dir`.
pub fn journal_dir(dir: &Path) -> std::path::PathBuf {
    dir.join(segment::DIR)
}
