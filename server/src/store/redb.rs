//! The embedded default backend: one redb database file in the data
//! directory.
//!
//! Every keyspace is a one-byte prefix in a single table, so a batch is one
//! redb write transaction, atomic across keyspaces. Durability: every write
//! transaction commits with `Durability::Immediate`, so it is on disk
//! (`fdatasync`: data and size) when `commit` returns; the database file
//! and the data directory are `fsync`ed when they are created, so the file
//! itself survives a power cut.
//!
//! Group commit: a single writer thread takes every batch waiting when it
//! begins, applies them one after another in one write transaction (each
//! with its own preconditions, checked against what the batches before it
//! wrote: the same as one after the other), commits once, and answers each.
//! So concurrent writers share one sync, and a writer under load waits for
//! at most the transaction in progress and its own.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, mpsc},
};

use async_trait::async_trait;
use prometheus_client::registry::Registry;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{
    Batch, CommitMetrics, Entry, Keyspace, Store, StoreError,
    apply::{View, apply},
};

/// The one table; keys are keyspace tag + key.
const TABLE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("samenop");

/// The database file's name in the data directory.
pub const FILE: &str = "samenop.redb";

/// The most batches one write transaction takes.
const GROUP_MAX: usize = 512;

/// A batch waiting for the writer, and where its outcome goes.
type Waiting = (
    Batch,
    tokio::sync::oneshot::Sender<Result<Vec<u64>, StoreError>>,
);

/// A [`Store`] on redb. Clones share one database; when the last is
/// dropped, the writer finishes what it was given and the file is closed
/// (and its lock released) before the drop returns.
#[derive(Clone)]
pub struct RedbStore {
    /// The writer thread (dropped first: see [`Writer`]).
    writer: Arc<Writer>,
    /// The database, for reads.
    db: Arc<redb::Database>,
    /// What the writer measures.
    metrics: CommitMetrics,
}

/// The writer thread and its queue.
struct Writer {
    /// The queue; `None` once closed.
    queue: Option<mpsc::Sender<Waiting>>,
    /// The thread, joined when the last store goes.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread after its last transaction.
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

fn full_key(space: Keyspace, key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(key.len() + 1);
    full.push(space.tag());
    full.extend_from_slice(key);
    full
}

impl RedbStore {
    /// Opens (or creates) the store in the directory `dir`, which must
    /// exist; recovers it after a crash.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database cannot be opened (another
    /// process holds it, or the file is not a redb database).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, true)
    }

    /// Like [`RedbStore::open`]; with `durable` false, commits are not
    /// synced (redb's `Durability::None`): acknowledged writes survive a
    /// crash of the process but not a power cut. Only for measuring what
    /// durability costs (`samenop-tests`' `durability_cost` example), never
    /// for data anyone needs.
    ///
    /// # Errors
    /// As [`RedbStore::open`].
    pub fn open_with(dir: &Path, durable: bool) -> Result<Self, StoreError> {
        let path = dir.join(FILE);
        let created = !path.exists();
        let db = redb::Database::builder()
            .create(&path)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        {
            let tx = db.begin_write().map_err(backend)?;
            tx.open_table(TABLE).map_err(backend)?;
            tx.commit().map_err(backend)?;
        }
        if created {
            // The new file's name is durable only once its directory is.
            sync_dir(dir)?;
        }
        let db = Arc::new(db);
        let (sender, queue) = mpsc::channel();
        let for_writer = db.clone();
        let metrics = CommitMetrics::new();
        let measured = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("samenop-store-writer".into())
            .spawn(move || write_loop(&for_writer, &queue, durable, &measured))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer: {e}")))?;
        let writer = Arc::new(Writer {
            queue: Some(sender),
            thread: Some(thread),
        });
        Ok(RedbStore {
            writer,
            db,
            metrics,
        })
    }

    /// The database file of the store in `dir`.
    pub fn file(dir: &Path) -> PathBuf {
        dir.join(FILE)
    }
}

/// `fsync` of directory `dir`: its entries (a created or renamed file)
/// become durable.
///
/// # Errors
/// [`StoreError::Backend`] when the directory cannot be synced.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::Backend(format!("cannot sync {}: {e}", dir.display())))
}

/// The writer thread: one write transaction per group of waiting batches,
/// until every sender is gone.
fn write_loop(
    db: &redb::Database,
    queue: &mpsc::Receiver<Waiting>,
    durable: bool,
    metrics: &CommitMetrics,
) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let (batches, answers): (Vec<Batch>, Vec<_>) = group.into_iter().unzip();
        let started = std::time::Instant::now();
        let applied = apply_group(db, &batches, durable);
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.group_size.observe(batches.len() as f64);
        if durable && applied.is_ok() {
            metrics.syncs.inc();
        }
        match applied {
            Ok(outcomes) => {
                for (answer, outcome) in answers.into_iter().zip(outcomes) {
                    let _ = answer.send(outcome);
                }
            }
            Err(err) => {
                tracing::error!(cause = %err, "a write transaction failed");
                for answer in answers {
                    let _ = answer.send(Err(backend(&err)));
                }
            }
        }
    }
}

/// Applies `batches` in order in one write transaction and commits it:
/// each batch's outcome, or the error that failed the whole transaction.
fn apply_group(
    db: &redb::Database,
    batches: &[Batch],
    durable: bool,
) -> Result<Vec<Result<Vec<u64>, StoreError>>, StoreError> {
    let mut tx = db.begin_write().map_err(backend)?;
    if !durable {
        tx.set_durability(redb::Durability::None).map_err(backend)?;
    }
    let mut outcomes = Vec::with_capacity(batches.len());
    {
        let mut table = tx.open_table(TABLE).map_err(backend)?;
        let mut view = TableView(&mut table);
        for batch in batches {
            outcomes.push(apply(&mut view, batch)?);
        }
    }
    tx.commit().map_err(backend)?;
    Ok(outcomes)
}

/// The redb table as a batch sees it.
struct TableView<'a, 't>(&'a mut redb::Table<'t, &'static [u8], &'static [u8]>);

impl View for TableView<'_, '_> {
    fn get(&mut self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .0
            .get(full_key(space, key).as_slice())
            .map_err(backend)?
            .map(|v| v.value().to_vec()))
    }

    fn put(&mut self, space: Keyspace, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.0
            .insert(full_key(space, key).as_slice(), value)
            .map_err(backend)?;
        Ok(())
    }

    fn delete(&mut self, space: Keyspace, key: &[u8]) -> Result<(), StoreError> {
        self.0
            .remove(full_key(space, key).as_slice())
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(TABLE).map_err(backend)?;
        let value = table
            .get(full_key(space, key).as_slice())
            .map_err(backend)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    async fn scan(
        &self,
        space: Keyspace,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(TABLE).map_err(backend)?;
        let full_prefix = full_key(space, prefix);
        let range = match after {
            Some(after) => {
                let start = full_key(space, after);
                table.range::<&[u8]>((
                    std::ops::Bound::Excluded(start.as_slice()),
                    std::ops::Bound::Unbounded,
                ))
            }
            None => table.range::<&[u8]>(full_prefix.as_slice()..),
        }
        .map_err(backend)?;
        let mut entries = Vec::new();
        for item in range {
            if entries.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(backend)?;
            let key = key.value();
            if !key.starts_with(&full_prefix) {
                break;
            }
            entries.push((key[1..].to_vec(), value.value().to_vec()));
        }
        Ok(entries)
    }

    async fn commit_logged(&self, batch: Batch) -> Result<Vec<u64>, StoreError> {
        let (answer, outcome) = tokio::sync::oneshot::channel();
        let stopped = || StoreError::Backend("the store's writer has stopped".into());
        self.writer
            .queue
            .as_ref()
            .ok_or_else(stopped)?
            .send((batch, answer))
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every commit is durable when it returns.
        Ok(())
    }

    fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redb_store_meets_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        super::super::contract::run_all(Arc::new(store)).await;
    }
}
