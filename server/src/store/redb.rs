//! The embedded default backend: one redb database file in the data
//! directory, with a write-ahead journal in front of it
//! ([`samenop_journal`]).
//!
//! Every keyspace is a one-byte prefix in a single table. A single writer
//! thread takes every batch waiting when it begins (group commit), applies
//! them one after another against what the store holds (each with its own
//! preconditions, checked against what the batches before it wrote: the
//! same as one after the other), appends what the group changed to the
//! journal as one record, `fdatasync`s it, makes the changes visible and
//! answers each batch. One sequential write and one sync per group, where a
//! redb commit rewrites every page on the path to each changed key; the
//! journal's checkpoints write the changes into redb in bulk (decision 40).
//! While calls come one at a time (the last groups committed were of one),
//! a batch that finds nothing else waiting or being written is written by
//! its caller's own thread instead (a lone commit): it would be a group of
//! one anyway, and two thread hand-offs (a futex wake each way) are a
//! sizeable part of a lone call's latency (decision 42).
//!
//! Opening replays the journal after a crash; closing (the last clone
//! dropped) checkpoints everything and removes the journal's segments, so a
//! stopped server's data is all in the redb file. The database file, the
//! journal's directory and each segment are synced when they are created,
//! so the files themselves survive a power cut.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use prometheus_client::{
    metrics::histogram::{Histogram, exponential_buckets},
    registry::Registry,
};
use redb::TableDefinition;
use samenop_journal::{Changes, Reader, Writer};

use super::{
    Batch, CommitMetrics, Entry, Keyspace, Store, StoreError,
    apply::{View, apply},
};

/// The one table; keys are keyspace tag + key.
pub const TABLE: TableDefinition<'static, &'static [u8], &'static [u8]> =
    TableDefinition::new("samenop");

/// The database file's name in the data directory.
pub const FILE: &str = "samenop.redb";

/// The most batches one group commit takes.
const GROUP_MAX: usize = 512;

/// The most bytes of writes one group commit takes (a batch larger than
/// this goes alone), so a journal record stays well within its limit.
const GROUP_BYTES: usize = 64 << 20;

/// Changes held in memory that start a checkpoint.
pub const FREEZE_BYTES: usize = 16 << 20;

/// Groups of one committed in a row before a lone batch is written by its
/// caller's thread: under load a group of one now and then is chance, and
/// a worker blocked on a sync then stalls the calls it would serve.
const SINGLES_BEFORE_LONE: usize = 8;

/// How long the writer is idle before it checkpoints what it holds.
pub const IDLE_CHECKPOINT: Duration = Duration::from_secs(30);

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
    /// The writer thread (dropped first: see [`WriterThread`]).
    writer: Arc<WriterThread>,
    /// Reads: the journal's changes, then redb.
    reader: Reader,
    /// What the writer measures.
    metrics: CommitMetrics,
    /// Time of each checkpoint.
    checkpoint_seconds: Histogram,
}

/// The writer thread, its queue, and the writing state it shares with lone
/// commits.
struct WriterThread {
    /// The queue; `None` once closed.
    queue: Option<mpsc::Sender<Waiting>>,
    /// The thread, joined when the last store goes.
    thread: Option<std::thread::JoinHandle<()>>,
    /// The journal and what is measured, for whoever writes: the thread,
    /// or a lone commit's caller.
    state: Arc<Shared>,
}

/// What the writer thread and lone commits share.
struct Shared {
    /// The journal; one writer at a time.
    writing: Mutex<WriteLoop>,
    /// Batches given to the store and not answered yet (queued, or being
    /// written by the thread or by a lone commit's caller).
    pending: AtomicUsize,
    /// Batches written by their caller's thread.
    lone: prometheus_client::metrics::counter::Counter,
    /// How many groups of one were committed in a row: many while calls
    /// come one at a time; reset by a group of more, under load, when a
    /// caller's worker is better left to the other calls than blocked on a
    /// sync.
    singles: AtomicUsize,
}

impl Shared {
    /// Counts a group of `size` committed.
    fn counted(&self, size: usize) {
        if size == 1 {
            self.singles.fetch_add(1, Ordering::AcqRel);
        } else {
            self.singles.store(0, Ordering::Release);
        }
    }

    fn writing(&self) -> std::sync::MutexGuard<'_, WriteLoop> {
        self.writing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        // Closing the queue ends the thread after its last group; the
        // journal's writer is dropped with the last reference to the state,
        // this one, which checkpoints everything before the drop returns.
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
    /// process holds it, the file is not a redb database, or the journal is
    /// damaged before its end).
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
        Self::open_tuned(dir, durable, FREEZE_BYTES)
    }

    /// Like [`RedbStore::open_with`], checkpointing once `checkpoint_bytes`
    /// of changes are held in memory (the configuration's
    /// `checkpoint_kib`; [`FREEZE_BYTES`] by default).
    ///
    /// # Errors
    /// As [`RedbStore::open`].
    pub fn open_tuned(
        dir: &Path,
        durable: bool,
        checkpoint_bytes: usize,
    ) -> Result<Self, StoreError> {
        let checkpoint_seconds = Histogram::new(exponential_buckets(0.000_1, 2.0, 18));
        let observed = checkpoint_seconds.clone();
        let options = samenop_journal::Options {
            each_synced: durable,
            // Every commit is synced, or none is.
            defer_unsynced: false,
            freeze_bytes: checkpoint_bytes,
            on_checkpoint: Some(Arc::new(move |took: Duration| {
                observed.observe(took.as_secs_f64());
            })),
        };
        let journal = Writer::open(dir, FILE, TABLE, options).map_err(backend)?;
        let reader = journal.reader();
        let metrics = CommitMetrics::new();
        let state = Arc::new(Shared {
            writing: Mutex::new(WriteLoop {
                journal,
                durable,
                metrics: metrics.clone(),
            }),
            pending: AtomicUsize::new(0),
            singles: AtomicUsize::new(0),
            lone: prometheus_client::metrics::counter::Counter::default(),
        });
        let (sender, queue) = mpsc::channel();
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("samenop-store-writer".into())
            .spawn(move || run(&shared, &queue))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer: {e}")))?;
        Ok(RedbStore {
            writer: Arc::new(WriterThread {
                queue: Some(sender),
                thread: Some(thread),
                state,
            }),
            reader,
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
        samenop_journal::journal_dir(dir)
    }
}

/// `fsync` of directory `dir`: its entries (a created or renamed file)
/// become durable.
///
/// # Errors
/// [`StoreError::Backend`] when the directory cannot be synced.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    samenop_journal::sync_dir(dir).map_err(backend)
}

/// The writer thread's state.
struct WriteLoop {
    /// The journal and its checkpoints.
    journal: Writer,
    /// Whether each group is synced.
    durable: bool,
    /// What is measured.
    metrics: CommitMetrics,
}

/// The writer thread: takes groups until every sender is gone.
fn run(state: &Shared, queue: &mpsc::Receiver<Waiting>) {
    loop {
        // While a checkpoint runs, its end is looked for often: its table
        // is dropped and its segments removed soon after.
        let running = state.writing().journal.checkpoint_running();
        let wait = if running {
            Duration::from_millis(10)
        } else {
            IDLE_CHECKPOINT
        };
        match queue.recv_timeout(wait) {
            Ok(first) => {
                let mut bytes = size_of(&first.0);
                let mut group = vec![first];
                // A lone commit being written holds the journal: what
                // arrives meanwhile joins this group.
                let mut writing = state.writing();
                while group.len() < GROUP_MAX && bytes < GROUP_BYTES {
                    match queue.try_recv() {
                        Ok(next) => {
                            bytes += size_of(&next.0);
                            group.push(next);
                        }
                        Err(_) => break,
                    }
                }
                let taken = group.len();
                writing.commit_group(group);
                drop(writing);
                state.counted(taken);
                state.pending.fetch_sub(taken, Ordering::AcqRel);
            }
            // Idle (nothing queued; lone commits may have been written
            // meanwhile): not when the wait was only for a checkpoint's end.
            Err(mpsc::RecvTimeoutError::Timeout) => state.writing().journal.tick(!running),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
}

impl WriteLoop {
    /// Applies one group, makes it durable in the journal, publishes it and
    /// answers each batch.
    fn commit_group(&mut self, group: Vec<Waiting>) {
        let (batches, answers): (Vec<Batch>, Vec<_>) = group.into_iter().unzip();
        for (answer, outcome) in answers.into_iter().zip(self.commit_batches(&batches)) {
            let _ = answer.send(outcome);
        }
    }

    /// Commits `batches` as one group; the outcome of each, in order.
    fn commit_batches(&mut self, batches: &[Batch]) -> Vec<Result<Vec<u64>, StoreError>> {
        let started = Instant::now();
        let outcome = self.apply_group(batches);
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.group_size.observe(batches.len() as f64);
        match outcome {
            Ok(outcomes) => outcomes,
            Err(err) => {
                tracing::error!(cause = %err, "a group commit failed");
                let message = match &err {
                    StoreError::Backend(message) => message.clone(),
                    other => other.to_string(),
                };
                batches
                    .iter()
                    .map(|_| Err(StoreError::Backend(message.clone())))
                    .collect()
            }
        }
    }

    fn apply_group(
        &mut self,
        batches: &[Batch],
    ) -> Result<Vec<Result<Vec<u64>, StoreError>>, StoreError> {
        let mut changes = Changes::new();
        let mut outcomes = Vec::with_capacity(batches.len());
        {
            let mut view = GroupView(self.journal.view(&mut changes));
            for batch in batches {
                outcomes.push(apply(&mut view, batch)?);
            }
        }
        if changes.is_empty() {
            return Ok(outcomes);
        }
        self.journal
            .commit(changes, self.durable)
            .map_err(backend)?;
        if self.durable {
            self.metrics.syncs.inc();
        }
        Ok(outcomes)
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

/// The store as one group sees it: its own changes, then what is
/// committed.
struct GroupView<'a>(samenop_journal::View<'a>);

impl View for GroupView<'_> {
    fn get(&mut self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(&full_key(space, key)).map_err(backend)
    }

    fn put(&mut self, space: Keyspace, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.0.put(full_key(space, key), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, space: Keyspace, key: &[u8]) -> Result<(), StoreError> {
        self.0.delete(full_key(space, key));
        Ok(())
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.reader.get(&full_key(space, key)).map_err(backend)
    }

    async fn scan(
        &self,
        space: Keyspace,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        use std::ops::Bound;
        let full_prefix = full_key(space, prefix);
        let after = after.map(|after| full_key(space, after));
        let start = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .reader
            .scan(&full_prefix, start, limit)
            .map_err(backend)?
            .into_iter()
            .map(|(mut key, value)| {
                key.remove(0);
                (key, value)
            })
            .collect())
    }

    async fn commit_logged(&self, batch: Batch) -> Result<Vec<u64>, StoreError> {
        let shared = &self.writer.state;
        // Nothing else given to the store and not answered, and calls
        // coming one at a time (the last groups were of one): this batch
        // would be a group of one, so this thread writes it (one
        // `fdatasync` with this task's worker blocked, instead of a wake of
        // the writer thread and one back). Batches arriving meanwhile queue
        // for the thread, which takes them as one group once this is done;
        // under load (groups of more) the thread writes every group, and
        // the workers stay free for the calls.
        let alone = shared.singles.load(Ordering::Acquire) >= SINGLES_BEFORE_LONE
            && shared
                .pending
                .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        if !alone {
            shared.pending.fetch_add(1, Ordering::AcqRel);
        } else if let Ok(mut writing) = shared.writing.try_lock() {
            let outcome = writing
                .commit_batches(std::slice::from_ref(&batch))
                .pop()
                .unwrap_or_else(|| Err(StoreError::Backend("no outcome".into())));
            drop(writing);
            shared.counted(1);
            shared.lone.inc();
            shared.pending.fetch_sub(1, Ordering::AcqRel);
            return outcome;
        }
        // (A lone batch whose journal the thread holds, for a checkpoint's
        // end, queues like any other: the count it took stays until the
        // thread answers it.)
        let (answer, outcome) = tokio::sync::oneshot::channel();
        let stopped = || StoreError::Backend("the store's writer has stopped".into());
        let sent = self
            .writer
            .queue
            .as_ref()
            .ok_or_else(stopped)
            .and_then(|queue| queue.send((batch, answer)).map_err(|_| stopped()));
        if let Err(err) = sent {
            // Never given to the thread: not waiting any more.
            shared.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(err);
        }
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
        registry.register(
            "samenop_store_lone_commits",
            "Commits of the embedded store written by their caller's thread (calls coming one at a time), not the writer thread",
            self.writer.state.lone.clone(),
        );
    }
}

#[cfg(test)]
mod tests;
