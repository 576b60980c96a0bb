//! The embedded default backend: one redb database file in the data
//! directory, with a write-ahead journal in front of it.
//!
//! Every keyspace is a one-byte prefix in a single table. Durability comes
//! from the journal ([`super::journal`]): a single writer thread takes every
//! batch waiting when it begins (group commit), applies them one after
//! another against what the store holds (each with its own preconditions,
//! checked against what the batches before it wrote: the same as one after
//! the other), appends what the group changed to the journal as one record,
//! `fdatasync`s it, makes the changes visible ([`super::memtable`]) and
//! answers each batch. One sequential write and one sync per group, where a
//! redb commit rewrites every page on the path to each changed key.
//!
//! A checkpoint thread writes the changes into redb many groups at a time:
//! when the changes held in memory pass [`FREEZE_BYTES`] (or the writer has
//! been idle for [`IDLE_CHECKPOINT`]), the writer freezes them and moves on
//! to a new journal segment (made ahead by the checkpoint thread); the checkpoint commits the frozen changes to
//! redb durably (`Durability::Immediate`), recording the last segment they
//! cover in the same transaction, and the covered segments are removed.
//! Opening the store replays the segments after the last checkpoint and
//! checkpoints them; closing it (the last clone dropped) checkpoints
//! everything and removes the journal's segments, so a stopped server's
//! data is all in the redb file.
//!
//! The database file, the journal's directory and each segment are synced
//! when they are created, so the files themselves survive a power cut.

use std::{
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use prometheus_client::{
    metrics::histogram::{Histogram, exponential_buckets},
    registry::Registry,
};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{
    Batch, CommitMetrics, Entry, Keyspace, Store, StoreError,
    apply::{View, apply},
    journal::{self, AppendError, Changes, Journal},
    memtable::{self, Found, Table, Tables},
};

/// The one table; keys are keyspace tag + key.
const TABLE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("samenop");

/// The journal's bookkeeping: [`CHECKPOINTED`] → the last journal segment
/// whose records are all in [`TABLE`].
const JOURNAL: TableDefinition<'_, &str, u64> = TableDefinition::new("samenop_journal");

/// The key of the last checkpointed segment in [`JOURNAL`].
const CHECKPOINTED: &str = "checkpointed";

/// The database file's name in the data directory.
pub const FILE: &str = "samenop.redb";

/// The most batches one group commit takes.
const GROUP_MAX: usize = 512;

/// The most bytes of writes one group commit takes (a batch larger than
/// this goes alone), so a journal record stays well within its limit.
const GROUP_BYTES: usize = 64 << 20;

/// Changes held in memory that start a checkpoint.
pub const FREEZE_BYTES: usize = 16 << 20;

/// Changes held in memory at which the writer waits for the checkpoint in
/// progress before taking more (the disk is slower than the callers).
const STALL_BYTES: usize = 4 * FREEZE_BYTES;

/// How long the writer is idle before it checkpoints what it holds.
pub const IDLE_CHECKPOINT: Duration = Duration::from_secs(30);

/// How long after a failed checkpoint it is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// A batch waiting for the writer, and where its outcome goes.
type Waiting = (
    Batch,
    tokio::sync::oneshot::Sender<Result<Vec<u64>, StoreError>>,
);

/// A [`Store`] on redb. Clones share one database; when the last is
/// dropped, the writer finishes what it was given, checkpoints it, and the
/// file is closed (and its lock released) before the drop returns.
#[derive(Clone)]
pub struct RedbStore {
    /// The writer thread (dropped first: see [`Writer`]).
    writer: Arc<Writer>,
    /// The database, for reads of what is checkpointed.
    db: Arc<redb::Database>,
    /// The changes since the last checkpoint, read before the database.
    tables: Arc<Tables>,
    /// What the writer measures.
    metrics: CommitMetrics,
    /// Time of each checkpoint.
    checkpoint_seconds: Histogram,
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
        // Closing the queue ends the thread after its last group and the
        // final checkpoint.
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
    /// exist; recovers it after a crash (the journal replayed into redb).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database cannot be opened (another
    /// process holds it, or the file is not a redb database);
    /// [`StoreError::Corrupt`] when the journal is damaged before its end.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, true)
    }

    /// Like [`RedbStore::open`]; with `durable` false, group commits are not
    /// synced (checkpoints still are): acknowledged writes survive a crash
    /// of the process but not a power cut. Only for measuring what
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
        let checkpointed = {
            let tx = db.begin_write().map_err(backend)?;
            tx.open_table(TABLE).map_err(backend)?;
            let checkpointed = tx
                .open_table(JOURNAL)
                .map_err(backend)?
                .get(CHECKPOINTED)
                .map_err(backend)?
                .map_or(0, |v| v.value());
            tx.commit().map_err(backend)?;
            checkpointed
        };
        if created {
            // The new file's name is durable only once its directory is.
            sync_dir(dir)?;
        }
        let db = Arc::new(db);
        let journal_dir = dir.join(journal::DIR);
        if !journal_dir.is_dir() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&journal_dir)
                .map_err(|e| {
                    StoreError::Backend(format!("cannot create {}: {e}", journal_dir.display()))
                })?;
        }
        // Every time, not only when it was made: a crash right after
        // making it would leave its name unsynced for good.
        sync_dir(dir)?;
        let recovered = journal::recover(&journal_dir, checkpointed)?;
        if recovered.records > 0 {
            tracing::info!(
                records = recovered.records,
                "the store's journal was replayed after a crash"
            );
        }
        // Even with nothing to replay, the checkpoint moves past every
        // segment there is, so none is read again.
        if recovered.last_segment > checkpointed {
            checkpoint(&db, &Table::of(recovered.changes), recovered.last_segment)?;
        }
        let covered = checkpointed.max(recovered.last_segment);
        journal::remove_upto(&journal_dir, covered)?;
        let current = Journal::start(&journal_dir, covered + 1)?;
        let spare = Journal::start(&journal_dir, covered + 2)?;

        let tables = Arc::new(Tables::default());
        let metrics = CommitMetrics::new();
        let checkpoint_seconds = Histogram::new(exponential_buckets(0.000_1, 2.0, 18));
        let (jobs, job_queue) = mpsc::channel();
        let (done_sender, done) = mpsc::channel();
        let checkpointer = {
            let db = db.clone();
            let dir = journal_dir.clone();
            let seconds = checkpoint_seconds.clone();
            std::thread::Builder::new()
                .name("samenop-store-checkpoint".into())
                .spawn(move || checkpoint_loop(&db, &dir, &job_queue, &done_sender, &seconds))
                .map_err(|e| StoreError::Backend(format!("cannot start the checkpoints: {e}")))?
        };
        let mut state = WriteLoop {
            db: db.clone(),
            tables: tables.clone(),
            journal: current,
            spare: Some(spare),
            dir: journal_dir,
            durable,
            metrics: metrics.clone(),
            jobs: Some(jobs),
            done,
            checkpointer: Some(checkpointer),
            in_flight: None,
            last_attempt: Instant::now(),
            failed: None,
        };
        let (sender, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("samenop-store-writer".into())
            .spawn(move || state.run(&queue))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer: {e}")))?;
        let writer = Arc::new(Writer {
            queue: Some(sender),
            thread: Some(thread),
        });
        Ok(RedbStore {
            writer,
            db,
            tables,
            metrics,
            checkpoint_seconds,
        })
    }

    /// The database file of the store in `dir`.
    pub fn file(dir: &Path) -> PathBuf {
        dir.join(FILE)
    }

    /// The journal's directory of the store in `dir`.
    pub fn journal_dir(dir: &Path) -> PathBuf {
        dir.join(journal::DIR)
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

/// Writes `table` into redb in one durable transaction that also records
/// `upto` as the last segment whose records are in redb.
fn checkpoint(db: &redb::Database, table: &Table, upto: u64) -> Result<(), StoreError> {
    let tx = db.begin_write().map_err(backend)?;
    {
        let mut data = tx.open_table(TABLE).map_err(backend)?;
        for (key, value) in &table.map {
            match value {
                Some(value) => {
                    data.insert(key.as_slice(), value.as_slice())
                        .map_err(backend)?;
                }
                None => {
                    data.remove(key.as_slice()).map_err(backend)?;
                }
            }
        }
        tx.open_table(JOURNAL)
            .map_err(backend)?
            .insert(CHECKPOINTED, upto)
            .map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

/// A checkpoint for the checkpoint thread: the frozen changes, the last
/// segment they cover, and the number of the spare segment to make next.
struct Job {
    table: Arc<Table>,
    upto: u64,
    spare: Option<u64>,
}

/// What the checkpoint thread answers.
struct Done {
    /// The checkpoint's outcome.
    checkpoint: Result<(), StoreError>,
    /// The spare segment it made, if it was asked to.
    spare: Option<Result<Journal, StoreError>>,
}

/// The checkpoint thread: checkpoints and spare segments, one job at a
/// time, until the writer is gone.
fn checkpoint_loop(
    db: &redb::Database,
    dir: &Path,
    jobs: &mpsc::Receiver<Job>,
    done: &mpsc::Sender<Done>,
    seconds: &Histogram,
) {
    while let Ok(job) = jobs.recv() {
        let started = Instant::now();
        let outcome = checkpoint(db, &job.table, job.upto);
        seconds.observe(started.elapsed().as_secs_f64());
        let spare = job.spare.map(|number| Journal::start(dir, number));
        if done
            .send(Done {
                checkpoint: outcome,
                spare,
            })
            .is_err()
        {
            return;
        }
    }
}

/// The writer thread's state.
struct WriteLoop {
    /// The database, for reads of what is checkpointed.
    db: Arc<redb::Database>,
    /// The changes in memory, published after each durable group.
    tables: Arc<Tables>,
    /// The segment being written.
    journal: Journal,
    /// The next segment, made ahead (its space written and synced).
    spare: Option<Journal>,
    /// The journal's directory.
    dir: PathBuf,
    /// Whether each group is synced.
    durable: bool,
    /// What is measured.
    metrics: CommitMetrics,
    /// Jobs for the checkpoint thread (`None` once it is told to end).
    jobs: Option<mpsc::Sender<Job>>,
    /// Its answers.
    done: mpsc::Receiver<Done>,
    /// The checkpoint thread, joined at the end.
    checkpointer: Option<std::thread::JoinHandle<()>>,
    /// The last segment of the checkpoint in progress, if one is.
    in_flight: Option<u64>,
    /// When a checkpoint was last handed over.
    last_attempt: Instant,
    /// Why the journal can no longer be written, once it cannot: every
    /// later batch is refused (a failed `fdatasync` leaves the file's state
    /// unknown; only a restart, which reads it again, may go on).
    failed: Option<String>,
}

impl WriteLoop {
    /// Takes groups until every sender is gone, then checkpoints all.
    fn run(&mut self, queue: &mpsc::Receiver<Waiting>) {
        loop {
            // While a checkpoint runs, its end is looked for often: its
            // table is dropped and its segments removed soon after.
            let wait = if self.in_flight.is_some() {
                Duration::from_millis(10)
            } else {
                IDLE_CHECKPOINT
            };
            let next = queue.recv_timeout(wait);
            let was_in_flight = self.in_flight.is_some();
            self.settle(false);
            match next {
                Ok(first) => {
                    let mut bytes = size_of(&first.0);
                    let mut group = vec![first];
                    while group.len() < GROUP_MAX && bytes < GROUP_BYTES {
                        match queue.try_recv() {
                            Ok(next) => {
                                bytes += size_of(&next.0);
                                group.push(next);
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit_group(group);
                    self.checkpoint_when_due(false);
                }
                // Idle: not when the wait was only for a checkpoint's end.
                Err(mpsc::RecvTimeoutError::Timeout) if !was_in_flight => {
                    self.checkpoint_when_due(true);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.finish();
    }

    /// Applies one group, makes it durable in the journal, publishes it and
    /// answers each batch.
    fn commit_group(&mut self, group: Vec<Waiting>) {
        let (batches, answers): (Vec<Batch>, Vec<_>) = group.into_iter().unzip();
        let started = Instant::now();
        let outcome = self.apply_group(&batches);
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.group_size.observe(batches.len() as f64);
        match outcome {
            Ok(outcomes) => {
                for (answer, outcome) in answers.into_iter().zip(outcomes) {
                    let _ = answer.send(outcome);
                }
            }
            Err(err) => {
                tracing::error!(cause = %err, "a group commit failed");
                let message = match &err {
                    StoreError::Backend(message) => message.clone(),
                    other => other.to_string(),
                };
                for answer in answers {
                    let _ = answer.send(Err(StoreError::Backend(message.clone())));
                }
            }
        }
    }

    fn apply_group(
        &mut self,
        batches: &[Batch],
    ) -> Result<Vec<Result<Vec<u64>, StoreError>>, StoreError> {
        if let Some(failed) = &self.failed {
            return Err(StoreError::Backend(format!(
                "the store's journal failed earlier ({failed}); restart the server"
            )));
        }
        if self.in_flight.is_none()
            && self.tables.frozen().is_some()
            && self.tables.active_bytes() >= STALL_BYTES
        {
            // Checkpoints keep failing: memory is not to grow without end.
            return Err(StoreError::Backend(
                "the store cannot write its checkpoints into its database file (see the log); \
                 changes are refused until it can"
                    .into(),
            ));
        }
        let read = self.db.begin_read().map_err(backend)?;
        let redb = read.open_table(TABLE).map_err(backend)?;
        let mut changes = Changes::new();
        let mut outcomes = Vec::with_capacity(batches.len());
        {
            let mut view = GroupView {
                changes: &mut changes,
                tables: &self.tables,
                redb: &redb,
            };
            for batch in batches {
                outcomes.push(apply(&mut view, batch)?);
            }
        }
        if changes.is_empty() {
            return Ok(outcomes);
        }
        let written = match self.journal.append(&journal::encode(&changes)) {
            Ok(()) if self.durable => self.journal.sync(),
            Ok(()) => Ok(()),
            // Nothing written: the group fails, the journal goes on.
            Err(AppendError::NotWritten(err)) => return Err(err),
            Err(AppendError::Unknown(err)) => Err(err),
        };
        if let Err(err) = written {
            // Whether the record reached the disk is unknown: the callers
            // are told it may have, and nothing more is written.
            self.failed = Some(err.to_string());
            return Err(StoreError::Backend(format!(
                "{err}; the change may have been written, and the store refuses every \
                 change until the server restarts"
            )));
        }
        if self.durable {
            self.metrics.syncs.inc();
        }
        self.tables.publish(changes);
        Ok(outcomes)
    }

    /// Takes the checkpoint thread's answers (waiting for the one in
    /// progress when `wait`): a committed checkpoint's table is dropped and
    /// its segments removed.
    fn settle(&mut self, wait: bool) {
        while self.in_flight.is_some() {
            let answer = if wait {
                self.done.recv().ok()
            } else {
                self.done.try_recv().ok()
            };
            let done = match answer {
                Some(done) => done,
                None if wait || self.checkpointer.as_ref().is_some_and(|t| t.is_finished()) => {
                    tracing::error!("the store's checkpoint thread has stopped");
                    self.in_flight = None;
                    return;
                }
                None => return,
            };
            let upto = self.in_flight.take().unwrap_or_default();
            match done.spare {
                Some(Ok(spare)) => self.spare = Some(spare),
                Some(Err(err)) => tracing::warn!(cause = %err, "no spare journal segment"),
                None => {}
            }
            match done.checkpoint {
                Ok(()) => {
                    self.tables.drop_frozen();
                    if let Err(err) = journal::remove_upto(&self.dir, upto) {
                        tracing::warn!(cause = %err, "checkpointed journal segments stay");
                    }
                }
                Err(err) => tracing::error!(cause = %err, "a checkpoint failed; it is tried again"),
            }
        }
    }

    /// Hands a checkpoint over when the changes in memory are many (or the
    /// writer is `idle` and holds some), or retries a failed one; waits for
    /// the one in progress when the callers outrun the disk.
    fn checkpoint_when_due(&mut self, idle: bool) {
        if self.in_flight.is_some() {
            if self.tables.active_bytes() >= STALL_BYTES {
                self.settle(true);
            } else {
                return;
            }
        }
        if let Some(frozen) = self.tables.frozen() {
            // The last checkpoint failed: the same changes again.
            if self.last_attempt.elapsed() >= RETRY {
                let upto = self.journal.number() - 1;
                self.hand_over(frozen, upto, None);
            }
            return;
        }
        let due =
            self.tables.active_bytes() >= FREEZE_BYTES || (idle && !self.tables.active_is_empty());
        if !due || self.failed.is_some() {
            return;
        }
        let next = match self.spare.take() {
            Some(spare) => Ok(spare),
            None => Journal::start(&self.dir, self.journal.number() + 1),
        };
        let next = match next {
            Ok(next) => next,
            Err(err) => {
                tracing::warn!(cause = %err, "no new journal segment; the checkpoint waits");
                return;
            }
        };
        let upto = self.journal.number();
        let spare = next.number() + 1;
        self.journal = next;
        if let Some(frozen) = self.tables.freeze() {
            self.hand_over(frozen, upto, Some(spare));
        }
    }

    fn hand_over(&mut self, table: Arc<Table>, upto: u64, spare: Option<u64>) {
        self.last_attempt = Instant::now();
        let Some(jobs) = &self.jobs else { return };
        if jobs.send(Job { table, upto, spare }).is_ok() {
            self.in_flight = Some(upto);
        }
    }

    /// At the end: the checkpoint in progress, then everything else, so the
    /// redb file holds all and the journal is empty.
    fn finish(&mut self) {
        self.settle(true);
        if self.failed.is_none() {
            if let Some(frozen) = self.tables.frozen() {
                let upto = self.journal.number() - 1;
                self.hand_over(frozen, upto, None);
                self.settle(true);
            }
            if self.tables.frozen().is_none() && !self.tables.active_is_empty() {
                let upto = self.journal.number();
                if let Some(frozen) = self.tables.freeze() {
                    self.hand_over(frozen, upto, None);
                    self.settle(true);
                }
            }
        }
        self.jobs = None;
        if let Some(thread) = self.checkpointer.take() {
            let _ = thread.join();
        }
        if let Some(spare) = self.spare.take()
            && let Err(err) = spare.discard()
        {
            tracing::warn!(cause = %err, "an unused journal segment stays");
        }
    }
}

/// About the bytes a batch writes.
fn size_of(batch: &Batch) -> usize {
    let writes: usize = batch
        .writes
        .iter()
        .map(|w| match w {
            super::Write::Put { key, value, .. } => key.len() + value.len(),
            super::Write::Delete { key, .. } => key.len(),
        })
        .sum();
    let logs: usize = batch
        .logs
        .iter()
        .flat_map(|a| &a.events)
        .map(Vec::len)
        .sum();
    writes + logs + 1024 * batch.audit.len()
}

/// The store as one group sees it: its own changes, then the tables, then
/// redb.
struct GroupView<'a> {
    changes: &'a mut Changes,
    tables: &'a Tables,
    redb: &'a redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl View for GroupView<'_> {
    fn get(&mut self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let key = full_key(space, key);
        if let Some(value) = self.changes.get(&key) {
            return Ok(value.clone());
        }
        match self.tables.get(&key) {
            Found::Here(value) => Ok(value),
            Found::InRedb => Ok(self
                .redb
                .get(key.as_slice())
                .map_err(backend)?
                .map(|v| v.value().to_vec())),
        }
    }

    fn put(&mut self, space: Keyspace, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.changes
            .insert(full_key(space, key), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, space: Keyspace, key: &[u8]) -> Result<(), StoreError> {
        self.changes.insert(full_key(space, key), None);
        Ok(())
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let key = full_key(space, key);
        if let Found::Here(value) = self.tables.get(&key) {
            return Ok(value);
        }
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(TABLE).map_err(backend)?;
        let value = table.get(key.as_slice()).map_err(backend)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    async fn scan(
        &self,
        space: Keyspace,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        use std::ops::Bound;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let full_prefix = full_key(space, prefix);
        // Past `after`, but never before the prefix.
        let after = after
            .map(|after| full_key(space, after))
            .filter(|after| *after >= full_prefix);
        let start = match &after {
            Some(after) => Bound::Excluded(after.as_slice()),
            None => Bound::Included(full_prefix.as_slice()),
        };
        // redb is read as it was when the tables were: a checkpoint that
        // commits meanwhile writes what the tables' entries already hold.
        let (tabled, tables_done, tx) = self
            .tables
            .range(start, &full_prefix, limit, || self.db.begin_read());
        let tx = tx.map_err(backend)?;
        // Enough of redb's entries for `limit` of them to show, however
        // many the tables hide; none past what the tables are sure of.
        let tables_end = (!tables_done)
            .then(|| tabled.last().map(|(k, _)| k.clone()))
            .flatten();
        let redb_limit = limit.saturating_add(tabled.len());
        let table = tx.open_table(TABLE).map_err(backend)?;
        let mut stored = Vec::new();
        let mut redb_done = true;
        for item in table
            .range::<&[u8]>((start, Bound::Unbounded))
            .map_err(backend)?
        {
            let (key, value) = item.map_err(backend)?;
            let key = key.value();
            if !key.starts_with(&full_prefix) || tables_end.as_deref().is_some_and(|end| key > end)
            {
                break;
            }
            if stored.len() >= redb_limit {
                redb_done = false;
                break;
            }
            stored.push((key.to_vec(), value.value().to_vec()));
        }
        Ok(
            memtable::merge(tabled, tables_done, stored, redb_done, limit)
                .into_iter()
                .map(|(mut key, value)| {
                    key.remove(0);
                    (key, value)
                })
                .collect(),
        )
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
        // Every commit is durable (in the journal) when it returns.
        Ok(())
    }

    fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
        registry.register(
            "samenop_store_checkpoint_seconds",
            "Time of one checkpoint of the embedded store: the journal's changes written into redb",
            self.checkpoint_seconds.clone(),
        );
    }
}

#[cfg(test)]
mod tests;
