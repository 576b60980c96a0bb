//! The one writer of a journaled table: commits into the journal, and
//! checkpoints into redb on a thread of its own.
//!
//! When the changes held in memory pass [`Options::freeze_bytes`] (or the
//! caller says it is idle and some are held), the writer freezes them and
//! moves on to a new segment (made ahead by the checkpoint thread); the
//! checkpoint commits the frozen changes to redb durably
//! (`Durability::Immediate`), recording the last segment they cover in the
//! same transaction; then reads see redb anew, the frozen table is dropped
//! and the covered segments are removed.

use std::{
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use redb::{ReadableTable, TableDefinition};

use crate::{
    Error, Options,
    reader::{Frozen, Reader, Shared, Snapshot},
    segment::{self, AppendError, Changes, Journal},
    sync_dir,
    tables::{Found, Table, Tables},
};

/// The journal's bookkeeping: [`CHECKPOINTED`] → the last segment whose
/// records are all in the data table.
const BOOKKEEPING: TableDefinition<'_, &str, u64> = TableDefinition::new("samenop_journal");

/// The key of the last checkpointed segment in [`BOOKKEEPING`].
const CHECKPOINTED: &str = "checkpointed";

/// How long after a failed checkpoint (or a segment that could not be
/// made) it is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Changes held in memory, as a multiple of the freeze size, at which the
/// writer waits for the checkpoint in progress (the disk is slower than
/// the callers), or refuses commits while checkpoints fail.
const STALL_FACTOR: usize = 4;

fn failed(err: impl std::fmt::Display) -> Error {
    Error::Failed(err.to_string())
}

/// A checkpoint for the checkpoint thread: the frozen changes, the last
/// segment they cover, and the number of the spare segment to make next.
struct Job {
    table: Arc<Table>,
    upto: u64,
    spare: Option<u64>,
}

/// What the checkpoint thread is given.
enum Task {
    /// A checkpoint.
    Checkpoint(Job),
    /// A checkpointed table to free: a table of many changes takes a
    /// while to free, and the writer's thread may be a caller's.
    Free(Arc<Table>),
}

/// What the checkpoint thread answers.
struct Done {
    /// The checkpoint's outcome.
    checkpoint: Result<(), Error>,
    /// The spare segment it made, if it was asked to.
    spare: Option<Result<Journal, Error>>,
}

/// The one writer of a journaled table. Dropping it waits for the
/// checkpoint in progress, checkpoints everything else and removes the
/// journal's segments.
pub struct Writer {
    /// What readers share.
    shared: Arc<Shared>,
    /// The segment being written.
    journal: Journal,
    /// Whether it holds records not yet synced.
    unsynced: bool,
    /// Unsynced commits held in memory, not written yet (a deferring
    /// journal: [`Options::defer_unsynced`]), each key's latest change.
    deferred: Changes,
    /// The bytes of the keys and values it holds.
    deferred_bytes: usize,
    /// The next segment, made ahead (its space written and synced).
    spare: Option<Journal>,
    /// The journal's directory.
    dir: PathBuf,
    /// How it behaves.
    options: Options,
    /// Jobs for the checkpoint thread (`None` once it is told to end).
    jobs: Option<mpsc::Sender<Task>>,
    /// Its answers.
    done: mpsc::Receiver<Done>,
    /// The checkpoint thread, joined at the end.
    checkpointer: Option<std::thread::JoinHandle<()>>,
    /// The last segment of the checkpoint in progress, if one is.
    in_flight: Option<u64>,
    /// A committed checkpoint (the last segment it covers) whose table
    /// waits for the snapshot to be refreshed before it is dropped.
    settled: Option<u64>,
    /// When a checkpoint or a new segment was last tried.
    last_attempt: Instant,
    /// Why the journal can no longer be written, once it cannot.
    stopped: Option<String>,
}

impl Writer {
    /// Opens (or creates) the redb file `file` in `dir` (which must exist)
    /// with its data in `table`, and the journal beside it; replays the
    /// journal after a crash.
    ///
    /// # Errors
    /// [`Error::InUse`] when another handle holds the file,
    /// [`Error::Damaged`] when the journal is damaged before its end,
    /// [`Error::Failed`] when the files cannot be read or made.
    pub fn open(
        dir: &Path,
        file: &str,
        table: TableDefinition<'static, &'static [u8], &'static [u8]>,
        options: Options,
    ) -> Result<Writer, Error> {
        let path = dir.join(file);
        let created = !path.exists();
        let db = redb::Database::builder()
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    Error::InUse(format!("{} is open elsewhere", path.display()))
                }
                other => Error::Failed(format!("cannot open {}: {other}", path.display())),
            })?;
        let opening = |e: Error| match e {
            Error::Failed(message) => {
                Error::Failed(format!("cannot open {}: {message}", path.display()))
            }
            other => other,
        };
        let checkpointed = (|| {
            let tx = begin_write(&db)?;
            tx.open_table(table).map_err(failed)?;
            let checkpointed = tx
                .open_table(BOOKKEEPING)
                .map_err(failed)?
                .get(CHECKPOINTED)
                .map_err(failed)?
                .map_or(0, |v| v.value());
            tx.commit().map_err(failed)?;
            Ok::<u64, Error>(checkpointed)
        })()
        .map_err(opening)?;
        if created {
            // The new file's name is durable only once its directory is.
            sync_dir(dir)?;
        }
        let journal_dir = crate::journal_dir(dir);
        if !journal_dir.is_dir() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&journal_dir)
                .map_err(|e| {
                    Error::Failed(format!("cannot create {}: {e}", journal_dir.display()))
                })?;
        }
        // Every time, not only when it was made: a crash right after
        // making it would leave its name unsynced for good.
        sync_dir(dir)?;
        let recovered = segment::recover(&journal_dir, checkpointed, options.each_synced)?;
        if recovered.records > 0 {
            tracing::info!(
                records = recovered.records,
                file = %path.display(),
                "the journal was replayed after a crash"
            );
        }
        // What was replayed is checkpointed by the checkpoint thread, as
        // any frozen table: opening does not wait for redb to take it (a
        // journal's worth of changes, which after a crash in the middle of
        // retention's removals takes seconds). Its segments are synced
        // first (a record read back may not have waited for the disk, and
        // is served from now on) and stay until that checkpoint commits; a
        // crash before then replays them again, and a failed checkpoint is
        // tried again as any other. Not so when a segment ended in a record
        // cut short: read again with the records written after it, it
        // would be damage, so it is checkpointed and removed here, before
        // anything is written. With nothing to replay, a checkpoint here
        // moves past every segment there is, so none is read again.
        let covered = checkpointed.max(recovered.last_segment);
        let replayed = if recovered.changes.is_empty() || recovered.ended_early {
            if covered > checkpointed {
                checkpoint(&db, table, &Table::of(recovered.changes), covered).map_err(opening)?;
            }
            segment::remove_upto(&journal_dir, covered)?;
            None
        } else {
            segment::remove_upto(&journal_dir, checkpointed)?;
            segment::sync_after(&journal_dir, checkpointed)?;
            Some(recovered.changes)
        };
        // Direct writes where every record written is durable (see
        // `direct`).
        let direct = options.direct();
        let current = Journal::start(&journal_dir, covered + 1, direct)?;
        let spare = Journal::start(&journal_dir, covered + 2, direct)?;
        if direct && !current.is_direct() {
            tracing::info!(
                dir = %journal_dir.display(),
                "the journal's file system takes no direct writes: records go through the page \
                 cache and fdatasync"
            );
        }
        let shared = Arc::new(Shared {
            tables: Tables::default(),
            snapshot: Snapshot::of(&db, table).map_err(opening)?,
            db,
            table,
            path: path.clone(),
        });
        let (jobs, job_queue) = mpsc::channel();
        let (done_sender, done) = mpsc::channel();
        let checkpointer = {
            let shared = shared.clone();
            let dir = journal_dir.clone();
            let on_checkpoint = options.on_checkpoint.clone();
            std::thread::Builder::new()
                .name("journal-checkpoint".into())
                .spawn(move || {
                    checkpoint_loop(
                        &shared,
                        &dir,
                        direct,
                        &job_queue,
                        &done_sender,
                        on_checkpoint,
                    );
                })
                .map_err(|e| Error::Failed(format!("cannot start the checkpoints: {e}")))?
        };
        let frozen = replayed.and_then(|changes| {
            shared.tables.publish(changes);
            shared.tables.freeze()
        });
        let mut writer = Writer {
            shared,
            journal: current,
            unsynced: false,
            deferred: Changes::new(),
            deferred_bytes: 0,
            spare: Some(spare),
            dir: journal_dir,
            options,
            jobs: Some(jobs),
            done,
            checkpointer: Some(checkpointer),
            in_flight: None,
            settled: None,
            last_attempt: Instant::now(),
            stopped: None,
        };
        if let Some(frozen) = frozen {
            writer.hand_over(frozen, covered, None);
        }
        Ok(writer)
    }

    /// Reads of this table, for any thread.
    pub fn reader(&self) -> Reader {
        Reader {
            shared: self.shared.clone(),
        }
    }

    /// The store as a commit in the making sees it: `changes` first, then
    /// what is committed.
    pub fn view<'a>(&'a self, changes: &'a mut Changes) -> View<'a> {
        View {
            changes,
            tables: &self.shared.tables,
            redb: self.shared.snapshot.current(),
        }
    }

    /// Appends `changes` to the journal as one record (synced when `sync`)
    /// and makes them visible to reads; then hands a checkpoint over when
    /// one is due.
    ///
    /// # Errors
    /// [`Error::NotWritten`] when nothing was written (the record is too
    /// large, no space could be written ahead, or checkpoints keep failing
    /// and too much waits on them); [`Error::MayBeWritten`] when writing or
    /// syncing the record failed, and for every commit after that.
    pub fn commit(&mut self, changes: Changes, sync: bool) -> Result<(), Error> {
        if let Some(stopped) = &self.stopped {
            return Err(Error::MayBeWritten(format!(
                "the journal failed earlier ({stopped}); it must be opened again"
            )));
        }
        self.settle(false);
        let stall = self.options.freeze_bytes.saturating_mul(STALL_FACTOR);
        if self.in_flight.is_none()
            && self.shared.tables.frozen().is_some()
            && self.shared.tables.active_bytes() >= stall
        {
            // Checkpoints keep failing: memory is not to grow without end.
            return Err(Error::NotWritten(
                "the changes cannot be written into the database file (checkpoints fail, see \
                 the log); commits are refused until they can"
                    .into(),
            ));
        }
        if changes.is_empty() {
            // A durable commit of nothing still makes the earlier ones
            // durable.
            return if sync { self.sync() } else { Ok(()) };
        }
        if self.options.defer_unsynced && !sync {
            let size = |key: &[u8], value: Option<&Vec<u8>>| key.len() + value.map_or(0, Vec::len);
            // What is held then: a key held already counts once, at its
            // latest value.
            let held = changes
                .iter()
                .fold(self.deferred_bytes, |held, (key, value)| {
                    let replaced = self
                        .deferred
                        .get(key)
                        .map_or(0, |old| size(key, old.as_ref()));
                    held - replaced + size(key, value.as_ref())
                });
            if held <= crate::DEFERRED_BYTES {
                for (key, value) in &changes {
                    self.deferred.insert(key.clone(), value.clone());
                }
                self.deferred_bytes = held;
                self.shared.tables.publish(changes);
                self.checkpoint_when_due(false);
                return Ok(());
            }
            // Too much held: written now, with it, and synced.
        }
        // Every record of a deferring journal is synced. What it holds goes
        // first in the record; this commit's changes win where both change
        // a key.
        let sync = sync || self.options.defer_unsynced;
        let record = if self.deferred.is_empty() {
            segment::encode(&changes)
        } else {
            let mut all = self.deferred.clone();
            all.extend(changes.iter().map(|(k, v)| (k.clone(), v.clone())));
            segment::encode(&all)
        };
        self.append(&record, sync)?;
        self.shared.tables.publish(changes);
        self.checkpoint_when_due(false);
        Ok(())
    }

    /// Appends `record` (synced when `sync`); what a deferring journal held
    /// is in it. Stops the journal when the record may have been written.
    fn append(&mut self, record: &[u8], sync: bool) -> Result<(), Error> {
        match self.journal.append(record, sync) {
            Ok(()) => {
                self.unsynced = !sync;
                self.deferred.clear();
                self.deferred_bytes = 0;
                Ok(())
            }
            // Nothing written: this commit fails, the journal goes on.
            Err(AppendError::NotWritten(err)) => Err(Error::NotWritten(err.to_string())),
            Err(AppendError::Unknown(err)) => {
                self.stopped = Some(err.to_string());
                Err(Error::MayBeWritten(format!(
                    "{err}; the change may have been written, and every later one is refused \
                     until the journal is opened again"
                )))
            }
        }
    }

    /// Makes every commit so far durable (`fdatasync`), when one was not;
    /// a deferring journal writes what it holds, synced.
    ///
    /// # Errors
    /// [`Error::MayBeWritten`] when the sync fails (and for every commit
    /// after that, and when what a deferring journal holds cannot be
    /// written).
    pub fn sync(&mut self) -> Result<(), Error> {
        // A sync that failed is never tried again: the error it reported
        // is not reported twice, and a second sync would say all is well.
        if let Some(stopped) = &self.stopped {
            return Err(Error::MayBeWritten(format!(
                "the journal failed earlier ({stopped}); it must be opened again"
            )));
        }
        if !self.deferred.is_empty() {
            // What a deferring journal holds, written as one synced record
            // (after the records before it, which are synced already). The
            // caller may hand out what it holds once this returns, so a
            // failure stops the journal as a failed sync does: reopened,
            // the state is that of the last record written.
            let record = segment::encode(&self.deferred);
            return self.append(&record, true).map_err(|err| {
                if self.stopped.is_none() {
                    self.stopped = Some(err.to_string());
                }
                match err {
                    Error::NotWritten(err) => Error::MayBeWritten(format!(
                        "{err}; what was held in memory is not written, and every later \
                         change is refused until the journal is opened again"
                    )),
                    other => other,
                }
            });
        }
        if !self.unsynced {
            return Ok(());
        }
        if let Err(err) = self.journal.sync() {
            self.stopped = Some(err.to_string());
            return Err(Error::MayBeWritten(err.to_string()));
        }
        self.unsynced = false;
        Ok(())
    }

    /// Takes what the checkpoint thread answered and hands a checkpoint
    /// over when one is due; `idle` says the caller has been idle, so
    /// whatever is held is checkpointed now.
    pub fn tick(&mut self, idle: bool) {
        self.settle(false);
        self.checkpoint_when_due(idle);
    }

    /// Whether a checkpoint is running (its end is best looked for soon,
    /// with [`Writer::tick`]).
    pub fn checkpoint_running(&self) -> bool {
        self.in_flight.is_some() || self.settled.is_some()
    }

    /// Whether no frozen table waits to be checkpointed (for tests).
    #[cfg(test)]
    pub(crate) fn frozen_is_empty(&self) -> bool {
        self.shared.tables.frozen().is_none()
            && self.shared.tables.active_bytes() < self.options.freeze_bytes
    }

    /// Takes the checkpoint thread's answers (waiting for the one in
    /// progress when `wait`).
    fn settle(&mut self, wait: bool) {
        self.drop_settled();
        while self.in_flight.is_some() {
            let answer = if wait {
                self.done.recv().ok()
            } else {
                self.done.try_recv().ok()
            };
            let done = match answer {
                Some(done) => done,
                None if wait || self.checkpointer.as_ref().is_some_and(|t| t.is_finished()) => {
                    tracing::error!("the journal's checkpoint thread has stopped");
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
                Ok(()) => self.settled = Some(upto),
                Err(err) => tracing::error!(cause = %err, "a checkpoint failed; it is tried again"),
            }
        }
        self.drop_settled();
    }

    /// Once a checkpoint committed: reads see redb anew, then its table is
    /// dropped and its segments removed (tried again at the next settle if
    /// redb cannot be read now).
    fn drop_settled(&mut self) {
        let Some(upto) = self.settled else { return };
        if let Err(err) = self
            .shared
            .snapshot
            .refresh(&self.shared.db, self.shared.table)
        {
            tracing::warn!(cause = %err, "redb cannot be read after a checkpoint; tried again");
            return;
        }
        self.settled = None;
        if let Some(frozen) = self.shared.tables.take_frozen()
            && let Some(jobs) = &self.jobs
        {
            // (Freed here if the thread has gone.)
            let _ = jobs.send(Task::Free(frozen));
        }
        if let Err(err) = segment::remove_upto(&self.dir, upto) {
            tracing::warn!(cause = %err, "checkpointed journal segments stay");
        }
    }

    /// Hands a checkpoint over when the changes in memory are many (or the
    /// caller is `idle` and some are held), or retries a failed one; waits
    /// for the one in progress when the callers outrun the disk.
    fn checkpoint_when_due(&mut self, idle: bool) {
        if self.in_flight.is_some() {
            let stall = self.options.freeze_bytes.saturating_mul(STALL_FACTOR);
            if self.shared.tables.active_bytes() >= stall {
                self.settle(true);
            } else {
                return;
            }
        }
        if self.settled.is_some() {
            // Committed; its table goes once redb can be read again.
            return;
        }
        if let Some(frozen) = self.shared.tables.frozen() {
            // The last checkpoint failed: the same changes again.
            if self.last_attempt.elapsed() >= RETRY {
                let upto = self.journal.number() - 1;
                self.hand_over(frozen, upto, None);
            }
            return;
        }
        // Also when the segment grew large from keys written again and
        // again (each write is a record; the table holds the last value).
        let due = self.shared.tables.active_bytes() >= self.options.freeze_bytes
            || self.journal.len() >= self.options.freeze_bytes.saturating_mul(2) as u64
            || (idle && !self.shared.tables.active_is_empty());
        if !due || self.stopped.is_some() {
            return;
        }
        // The frozen changes' records are durable before the segment is
        // left: a later sync covers only the new one.
        if let Err(err) = self.sync() {
            tracing::error!(cause = %err, "the journal cannot be synced");
            return;
        }
        let next = match self.spare.take() {
            Some(spare) => Ok(spare),
            None if self.last_attempt.elapsed() < RETRY => return,
            None => {
                self.last_attempt = Instant::now();
                Journal::start(&self.dir, self.journal.number() + 1, self.options.direct())
            }
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
        if let Some(frozen) = self.shared.tables.freeze() {
            self.hand_over(frozen, upto, Some(spare));
        }
    }

    fn hand_over(&mut self, table: Arc<Table>, upto: u64, spare: Option<u64>) {
        self.last_attempt = Instant::now();
        let Some(jobs) = &self.jobs else { return };
        if jobs
            .send(Task::Checkpoint(Job { table, upto, spare }))
            .is_ok()
        {
            self.in_flight = Some(upto);
        }
    }
}

impl Drop for Writer {
    /// The checkpoint in progress, then everything else, so the redb file
    /// holds all and the journal's segments go.
    fn drop(&mut self) {
        self.settle(true);
        if self.stopped.is_none() {
            // What a deferring journal holds is written first, whatever
            // becomes of the checkpoints below.
            if !self.deferred.is_empty() {
                let _ = self.sync();
            }
            if let Some(frozen) = self.shared.tables.frozen() {
                let upto = self.journal.number() - 1;
                self.hand_over(frozen, upto, None);
                self.settle(true);
            }
            if self.shared.tables.frozen().is_none() && !self.shared.tables.active_is_empty() {
                let _ = self.sync();
                let upto = self.journal.number();
                if let Some(frozen) = self.shared.tables.freeze() {
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
        // An empty current segment goes too once checkpointed (not after
        // a failure: a record that may have been written stays to be read
        // at the next open).
        if self.stopped.is_none()
            && self.shared.tables.active_is_empty()
            && self.shared.tables.frozen().is_none()
        {
            let _ = segment::remove_upto(&self.dir, self.journal.number());
        }
    }
}

/// A write transaction that saves redb's allocator state with its commit
/// (redb's quick-repair, which also makes the commit two-phase): a file
/// left open by a crash then opens at once, without a walk of the whole
/// file to rebuild that state. Every commit must do so: a commit without it
/// drops the saved state. Its extra write and sync fall on the checkpoint
/// thread, except for the bookkeeping commit at open and those at close.
fn begin_write(db: &redb::Database) -> Result<redb::WriteTransaction, Error> {
    let mut tx = db.begin_write().map_err(failed)?;
    tx.set_quick_repair(true);
    Ok(tx)
}

/// Writes `table` into redb in one durable transaction that also records
/// `upto` as the last segment whose records are in redb.
fn checkpoint(
    db: &redb::Database,
    data: TableDefinition<'static, &'static [u8], &'static [u8]>,
    table: &Table,
    upto: u64,
) -> Result<(), Error> {
    let tx = begin_write(db)?;
    {
        let mut rows = tx.open_table(data).map_err(failed)?;
        for (key, value) in &table.map {
            match value {
                Some(value) => {
                    rows.insert(key.as_slice(), value.as_slice())
                        .map_err(failed)?;
                }
                None => {
                    rows.remove(key.as_slice()).map_err(failed)?;
                }
            }
        }
        tx.open_table(BOOKKEEPING)
            .map_err(failed)?
            .insert(CHECKPOINTED, upto)
            .map_err(failed)?;
    }
    tx.commit().map_err(failed)
}

/// The checkpoint thread: checkpoints and spare segments, one job at a
/// time, until the writer is gone.
fn checkpoint_loop(
    shared: &Shared,
    dir: &Path,
    direct: bool,
    jobs: &mpsc::Receiver<Task>,
    done: &mpsc::Sender<Done>,
    on_checkpoint: Option<Arc<dyn Fn(Duration) + Send + Sync>>,
) {
    while let Ok(task) = jobs.recv() {
        let job = match task {
            Task::Checkpoint(job) => job,
            Task::Free(table) => {
                drop(table);
                continue;
            }
        };
        let started = Instant::now();
        let outcome = checkpoint(&shared.db, shared.table, &job.table, job.upto).map_err(|e| {
            Error::Failed(format!(
                "cannot write a checkpoint into {}: {e}",
                shared.path.display()
            ))
        });
        if let Some(report) = &on_checkpoint {
            report(started.elapsed());
        }
        let spare = job.spare.map(|number| Journal::start(dir, number, direct));
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

/// The store as a commit in the making sees it (see [`Writer::view`]).
pub struct View<'a> {
    changes: &'a mut Changes,
    tables: &'a Tables,
    redb: Arc<Frozen>,
}

impl View<'_> {
    /// The value of `key`: this commit's, else the committed one.
    ///
    /// # Errors
    /// [`Error::Failed`] when redb cannot be read.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        if let Some(value) = self.changes.get(key) {
            return Ok(value.clone());
        }
        match self.tables.get(key) {
            Found::Here(value) => Ok(value),
            Found::InRedb => self.redb.get(key),
        }
    }

    /// Sets `key` in this commit.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.changes.insert(key, Some(value));
    }

    /// Removes `key` in this commit.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.changes.insert(key, None);
    }
}
