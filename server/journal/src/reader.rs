//! Reading: the tables in memory first, then redb as the last checkpoint
//! left it.

use std::{
    collections::HashMap,
    ops::Bound,
    sync::{Arc, Mutex, PoisonError, RwLock},
};

use redb::ReadableDatabase;

use crate::{
    Error,
    tables::{self, Found, Tables},
};

/// The redb table, read.
pub(crate) type ReadTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

fn failed(err: impl std::fmt::Display) -> Error {
    Error::Failed(err.to_string())
}

/// The most bytes of keys and values a snapshot keeps read (then it starts
/// again).
const CACHED_BYTES: usize = 8 << 20;

/// Values larger than this are not kept (attachment chunks).
const CACHED_VALUE_MAX: usize = 4096;

/// Range reads answering more bytes than this are not kept (a thread's
/// page of entries, a device's events: each read once); an index's few
/// keys are (a professional's devices, an owner's consults).
const CACHED_RANGE_MAX: usize = 4096;

/// redb as the last checkpoint left it: one read transaction's table,
/// shared by every read until the next checkpoint commits. The checkpoint
/// thread is redb's only writer, so nothing else changes it; a read needs
/// no read transaction and table lookup of its own. The writer refreshes
/// it after each checkpoint, before it drops the checkpoint's table, so a
/// key not in the tables is in the snapshot a read takes after looking.
pub(crate) struct Snapshot(RwLock<Arc<Frozen>>);

/// One snapshot of redb, and what was read of it: it never changes, so a
/// key or range read once answers the same until the next checkpoint (a
/// device's record read at every delivery, a professional's at every call,
/// the members' devices at every post).
pub(crate) struct Frozen {
    /// The table.
    pub(crate) table: ReadTable,
    /// Keys read, with their values (`None`: absent), and small ranges.
    read: Mutex<Kept>,
}

/// What a snapshot keeps read, and the bytes it holds.
#[derive(Default)]
struct Kept {
    values: HashMap<Vec<u8>, Option<Vec<u8>>>,
    ranges: HashMap<RangeRead, Range>,
    bytes: usize,
}

impl Kept {
    /// Makes room for `size` more bytes: everything goes once the budget
    /// is spent (what is read again comes back soon).
    fn room(&mut self, size: usize) {
        if self.bytes + size > CACHED_BYTES {
            *self = Kept::default();
        }
        self.bytes += size;
    }
}

/// A range read of redb, as [`Frozen::range`] takes it.
#[derive(Clone, PartialEq, Eq, Hash)]
struct RangeRead {
    /// From this key on, it included or not.
    start: Vec<u8>,
    start_included: bool,
    /// Keys starting with this.
    prefix: Vec<u8>,
    /// At most this many entries.
    limit: usize,
}

/// What a range read found: its entries, and whether it took every entry
/// of the range.
#[derive(Clone)]
struct Range {
    entries: Vec<crate::Entry>,
    done: bool,
}

impl Frozen {
    fn of(
        db: &redb::Database,
        table: redb::TableDefinition<'static, &'static [u8], &'static [u8]>,
    ) -> Result<Self, Error> {
        Ok(Frozen {
            table: db
                .begin_read()
                .map_err(failed)?
                .open_table(table)
                .map_err(failed)?,
            read: Mutex::default(),
        })
    }

    /// The value of `key` in this snapshot.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        if let Some(value) = self
            .read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values
            .get(key)
        {
            return Ok(value.clone());
        }
        let value = self
            .table
            .get(key)
            .map_err(failed)?
            .map(|v| v.value().to_vec());
        if value.as_ref().is_none_or(|v| v.len() <= CACHED_VALUE_MAX) {
            let size = key.len() + value.as_ref().map_or(0, Vec::len) + 64;
            let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
            read.room(size);
            read.values.insert(key.to_vec(), value.clone());
        }
        Ok(value)
    }

    /// At most `limit` entries of this snapshot whose keys start with
    /// `prefix`, from `start` on and up to `end` (included) when given, in
    /// key order; and whether that was every entry of the range. With
    /// `keep` (and no `end`), a small answer is kept for the next such read.
    fn range(
        &self,
        start: Bound<&[u8]>,
        prefix: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        keep: bool,
    ) -> Result<(Vec<crate::Entry>, bool), Error> {
        if !keep || end.is_some() {
            return self.walk(start, prefix, end, limit);
        }
        let (from, start_included) = match start {
            Bound::Included(key) => (key, true),
            Bound::Excluded(key) => (key, false),
            Bound::Unbounded => (prefix, true),
        };
        let asked = RangeRead {
            start: from.to_vec(),
            start_included,
            prefix: prefix.to_vec(),
            limit,
        };
        if let Some(kept) = self
            .read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ranges
            .get(&asked)
        {
            return Ok((kept.entries.clone(), kept.done));
        }
        let (entries, done) = self.walk(start, prefix, None, limit)?;
        let bytes: usize = entries.iter().map(|(k, v)| k.len() + v.len() + 64).sum();
        if bytes <= CACHED_RANGE_MAX {
            let size = bytes + asked.start.len() + asked.prefix.len() + 128;
            let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
            read.room(size);
            read.ranges.insert(
                asked,
                Range {
                    entries: entries.clone(),
                    done,
                },
            );
        }
        Ok((entries, done))
    }

    /// [`Frozen::range`] read from redb itself.
    fn walk(
        &self,
        start: Bound<&[u8]>,
        prefix: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<crate::Entry>, bool), Error> {
        let start = match start {
            Bound::Unbounded => Bound::Included(prefix),
            other => other,
        };
        let mut entries = Vec::new();
        for item in self
            .table
            .range::<&[u8]>((start, Bound::Unbounded))
            .map_err(failed)?
        {
            let (key, value) = item.map_err(failed)?;
            let key = key.value();
            if !key.starts_with(prefix) || end.is_some_and(|end| key > end) {
                break;
            }
            if entries.len() >= limit {
                return Ok((entries, false));
            }
            entries.push((key.to_vec(), value.value().to_vec()));
        }
        Ok((entries, true))
    }
}

impl Snapshot {
    pub(crate) fn of(
        db: &redb::Database,
        table: redb::TableDefinition<'static, &'static [u8], &'static [u8]>,
    ) -> Result<Self, Error> {
        Ok(Snapshot(RwLock::new(Arc::new(Frozen::of(db, table)?))))
    }

    /// The snapshot as now.
    pub(crate) fn current(&self) -> Arc<Frozen> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads redb anew (after a checkpoint committed).
    pub(crate) fn refresh(
        &self,
        db: &redb::Database,
        table: redb::TableDefinition<'static, &'static [u8], &'static [u8]>,
    ) -> Result<(), Error> {
        let fresh = Arc::new(Frozen::of(db, table)?);
        let old = std::mem::replace(
            &mut *self.0.write().unwrap_or_else(PoisonError::into_inner),
            fresh,
        );
        // The old read transaction ends once no read holds it.
        drop(old);
        Ok(())
    }
}

/// What readers and the writer share. Fields drop in order: the
/// snapshot's read transaction ends before the database closes.
pub(crate) struct Shared {
    /// The changes since the last checkpoint.
    pub(crate) tables: Tables,
    /// redb as the last checkpoint left it.
    pub(crate) snapshot: Snapshot,
    /// The database.
    pub(crate) db: redb::Database,
    /// The table's definition.
    pub(crate) table: redb::TableDefinition<'static, &'static [u8], &'static [u8]>,
    /// The redb file, for what errors say.
    pub(crate) path: std::path::PathBuf,
}

impl Shared {
    /// `err` of reading, saying which file.
    pub(crate) fn reading(&self, err: Error) -> Error {
        match err {
            Error::Failed(message) => {
                Error::Failed(format!("cannot read {}: {message}", self.path.display()))
            }
            other => other,
        }
    }
}

/// Reads of a journaled table, from any thread; clones share it. A read
/// sees every commit that returned, and nothing of one that did not.
#[derive(Clone)]
pub struct Reader {
    pub(crate) shared: Arc<Shared>,
}

impl Reader {
    /// The value of `key`.
    ///
    /// # Errors
    /// [`Error::Failed`] when redb cannot be read.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        if let Found::Here(value) = self.shared.tables.get(key) {
            return Ok(value);
        }
        self.shared
            .snapshot
            .current()
            .get(key)
            .map_err(|e| self.shared.reading(e))
    }

    /// At most `limit` entries whose keys start with `prefix`, from
    /// `start` on, in key order (`start` before the prefix starts at it).
    ///
    /// # Errors
    /// [`Error::Failed`] when redb cannot be read.
    pub fn scan(
        &self,
        prefix: &[u8],
        start: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<crate::Entry>, Error> {
        self.scan_unnamed(prefix, start, limit)
            .map_err(|e| self.shared.reading(e))
    }

    fn scan_unnamed(
        &self,
        prefix: &[u8],
        start: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<crate::Entry>, Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = match start {
            Bound::Included(key) | Bound::Excluded(key) if key < prefix => Bound::Included(prefix),
            Bound::Unbounded => Bound::Included(prefix),
            other => other,
        };
        // redb is read as it was when the tables were: a checkpoint that
        // commits meanwhile writes what the tables' entries already hold.
        let (tabled, tables_done, table) = self
            .shared
            .tables
            .range(start, prefix, limit, || self.shared.snapshot.current());
        // Enough of redb's entries for `limit` of them to show, however
        // many the tables hide; none past what the tables are sure of.
        let tables_end = (!tables_done)
            .then(|| tabled.last().map(|(k, _)| k.clone()))
            .flatten();
        let redb_limit = limit.saturating_add(tabled.len());
        // Only a range the tables hold nothing of is kept: its bounds are
        // then the caller's own, asked again alike, while one being written
        // to (a device's log) would be asked with new bounds at every commit.
        let keep = tables_done && tabled.is_empty();
        let (stored, redb_done) =
            table.range(start, prefix, tables_end.as_deref(), redb_limit, keep)?;
        Ok(tables::merge(tabled, tables_done, stored, redb_done, limit))
    }
}
