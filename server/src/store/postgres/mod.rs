//! The PostgreSQL backend, for several server replicas on one database.
//!
//! Every keyspace is a table of its own (`key bytea PRIMARY KEY, value
//! bytea`), made by the versioned migrations in `server/migrations/`,
//! applied at start-up under an advisory lock held on a dedicated
//! connection, so replicas starting at once apply each exactly once.
//!
//! Commits are one serial order across every replica, as the embedded
//! store's are within its one process: the audit chain is one order anyway,
//! and nearly every batch carries audit events. Each replica has one writer
//! task that takes every batch waiting (group commit) and runs them in one
//! transaction: it takes the transaction-level advisory lock
//! `samenop_commit`, reads in one round every row the batches' preconditions,
//! log heads and audit head name, applies the batches one after another to
//! an overlay of those rows with the same code as the embedded store
//! (`apply`), writes the overlay's changes in one pipelined round, and
//! commits. So a batch's preconditions are checked against the latest
//! committed state of every replica and the ones before it in the group,
//! with nothing else in between; log numbers and the audit chain stay
//! gapless. The cost is visible: the lock is held from the group's first
//! statement to its durable commit (`samenop_store_commit_seconds`).
//!
//! Reads use the pool at READ COMMITTED: each sees what was committed when
//! it ran. A connection lost before COMMIT leaves nothing done, and the
//! group is retried; one lost during COMMIT is resolved by asking the
//! database for the transaction's status (`txid_status`), so an answer is
//! never a guess.

mod schema;
pub mod throwaway;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use tokio_postgres::{config::SslMode, error::SqlState};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    Batch, CommitMetrics, Entry, Keyspace, Store, StoreError,
    apply::{self, View, apply},
};

/// How a server reaches its PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// A libpq connection string or URL
    /// (`postgresql://samenop@db.example:5432/samenop`).
    pub url: String,
    /// Connections in the pool (the writer takes one at a time).
    pub pool_size: usize,
    /// How long one statement may run before the database cancels it.
    pub statement_timeout: Duration,
    /// The CA certificate(s) that sign the database server's certificate:
    /// when set, TLS (rustls, ring) is required and the server's name and
    /// certificate are checked; when not, the connection string's host is
    /// trusted as it is (a Unix socket, a private network).
    pub ca_file: Option<PathBuf>,
}

/// The advisory lock of the commit order (`samenop_commit`).
const COMMIT_LOCK: i64 = 0x7361_6d65_6e6f_7001;

/// The most batches one transaction takes.
const GROUP_MAX: usize = 512;

/// How often a group is tried when the database is unreachable or
/// restarting, and how long between tries at first.
const TRIES: u32 = 8;
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// A batch waiting for the writer, and where its outcome goes.
type Waiting = (
    Batch,
    tokio::sync::oneshot::Sender<Result<Vec<u64>, StoreError>>,
);

/// A [`Store`] on PostgreSQL. Clones share the pool and the writer.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    queue: tokio::sync::mpsc::UnboundedSender<Waiting>,
    metrics: Metrics,
    /// Who holds a lease this replica takes.
    holder: Arc<str>,
    /// Bumped when another replica appended to device logs.
    appended: tokio::sync::watch::Receiver<u64>,
}

/// The channel of the payload-free wake-up a replica sends after it
/// appended to device logs.
const CHANNEL: &str = "samenop_logs";

/// How often replicas look for what others appended without a wake-up:
/// the most a lost one delays a delivery.
const LOOK_EVERY: Duration = Duration::from_secs(2);

/// What the writer measures: the series every backend has, and how often
/// it tried a transaction again.
#[derive(Clone)]
struct Metrics {
    commit: CommitMetrics,
    retries: Counter,
}

fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("the database: {err}"))
}

/// A database error as the store says it: passing ones (the connection,
/// the database shutting down or starting) are [`StoreError::Unavailable`].
fn database(err: tokio_postgres::Error) -> StoreError {
    match err.code() {
        None => unavailable(err),
        Some(code) if passing(code) => unavailable(err),
        Some(_) => StoreError::Backend(format!("the database: {err}")),
    }
}

/// Whether a failure with `code` is over when tried again.
fn passing(code: &SqlState) -> bool {
    [
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::CONNECTION_FAILURE,
        SqlState::CONNECTION_EXCEPTION,
        SqlState::QUERY_CANCELED,
    ]
    .contains(code)
}

impl PostgresStore {
    /// Connects, applies the migrations this version has and the database
    /// lacks, and starts the writer.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached,
    /// [`StoreError::Backend`] when the configuration is unusable or the
    /// schema is of a newer samenop.
    pub async fn connect(config: &PostgresConfig) -> Result<Self, StoreError> {
        let mut pg = tokio_postgres::Config::from_str(&config.url).map_err(|e| {
            StoreError::Backend(format!("postgres.url is not a connection string: {e}"))
        })?;
        let timeout_ms = config.statement_timeout.as_millis();
        // A replica that vanishes in a transaction must not hold the commit
        // lock for long: the database ends such a session after 10 s idle,
        // and keepalives find a dead peer.
        pg.application_name("samenop-server")
            .options(format!(
                "-c statement_timeout={timeout_ms} -c idle_in_transaction_session_timeout=10000"
            ))
            .connect_timeout(Duration::from_secs(10))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10));
        if config.ca_file.is_some() {
            pg.ssl_mode(SslMode::Require);
        } else if pg.get_ssl_mode() == SslMode::Require {
            return Err(StoreError::Backend(
                "the connection string requires TLS (sslmode=require): give the CA of the \
                 database server's certificate (postgres.ca_file, or --postgres-ca-file) so \
                 that it is checked"
                    .into(),
            ));
        } else {
            pg.ssl_mode(SslMode::Disable);
        }
        let tls = tls(config.ca_file.as_deref())?;
        schema::migrate(&pg, tls.clone()).await?;
        let (pg_config, tls_config) = (pg.clone(), tls.clone());
        let manager = Manager::from_config(
            pg,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(2))
            .build()
            .map_err(|e| StoreError::Backend(format!("the connection pool: {e}")))?;
        let metrics = Metrics {
            commit: CommitMetrics::new(),
            retries: Counter::default(),
        };
        let (queue, waiting) = tokio::sync::mpsc::unbounded_channel();
        // One pending wake-up at most: more while one is pending are one.
        let (wake, woken) = tokio::sync::mpsc::channel(1);
        let own = Arc::new(std::sync::atomic::AtomicI32::new(0));
        let (appended_tx, appended) = tokio::sync::watch::channel(0);
        tokio::spawn(write_loop(pool.clone(), waiting, metrics.clone(), wake));
        tokio::spawn(wake_others(
            pg_config.clone(),
            tls_config.clone(),
            woken,
            Arc::clone(&own),
        ));
        tokio::spawn(hear_others(pg_config, tls_config, appended_tx, own));
        Ok(PostgresStore {
            pool,
            queue,
            metrics,
            holder: holder().into(),
            appended,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(unavailable)
    }
}

/// The TLS connector: rustls with ring, trusting `ca_file` (none: no
/// certificate is trusted, and the connection is not made with TLS).
fn tls(ca_file: Option<&std::path::Path>) -> Result<MakeRustlsConnect, StoreError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = ca_file {
        let unreadable = |e: &dyn std::fmt::Display| {
            StoreError::Backend(format!("postgres.ca_file {}: {e}", path.display()))
        };
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
            roots
                .add(cert.map_err(|e| unreadable(&e))?)
                .map_err(|e| unreadable(&e))?;
        }
        if roots.is_empty() {
            return Err(unreadable(&"no certificate in the file"));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Backend(format!("TLS to the database: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The writer: one transaction per group of waiting batches, until every
/// store is gone.
async fn write_loop(
    pool: Pool,
    mut waiting: tokio::sync::mpsc::UnboundedReceiver<Waiting>,
    metrics: Metrics,
    wake: tokio::sync::mpsc::Sender<()>,
) {
    while let Some(first) = waiting.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match waiting.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let (batches, answers): (Vec<Batch>, Vec<_>) = group.into_iter().unzip();
        let started = std::time::Instant::now();
        let outcome = commit_with_retries(&pool, &batches, &metrics).await;
        metrics
            .commit
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.commit.group_size.observe(batches.len() as f64);
        match outcome {
            Ok(outcomes) => {
                metrics.commit.syncs.inc();
                // Other replicas' subscriptions read what is new for them.
                if batches.iter().any(|b| !b.logs.is_empty()) {
                    // Full: a wake-up is pending already.
                    let _ = wake.try_send(());
                }
                for (answer, outcome) in answers.into_iter().zip(outcomes) {
                    let _ = answer.send(outcome);
                }
            }
            Err(err) => {
                tracing::error!(cause = %err, "a write transaction failed");
                for answer in answers {
                    let _ = answer.send(Err(match &err {
                        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
                        other => StoreError::Backend(other.to_string()),
                    }));
                }
            }
        }
    }
}

/// How one try of a group ended.
enum Tried {
    /// Committed (or every batch refused): the outcomes.
    Done(Vec<Result<Vec<u64>, StoreError>>),
    /// Nothing was done; try again.
    Again(StoreError),
}

/// Commits `batches` as one group, trying again while the database is
/// unreachable or restarting (nothing was done then), for a bounded time.
async fn commit_with_retries(
    pool: &Pool,
    batches: &[Batch],
    metrics: &Metrics,
) -> Result<Vec<Result<Vec<u64>, StoreError>>, StoreError> {
    let mut pause = FIRST_PAUSE;
    let mut last = StoreError::Unavailable("the database was not tried".into());
    for _ in 0..TRIES {
        match commit_group(pool, batches).await? {
            Tried::Done(outcomes) => return Ok(outcomes),
            Tried::Again(err) => {
                metrics.retries.inc();
                tracing::warn!(cause = %err, "a write transaction is tried again");
                last = err;
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    Err(last)
}

/// The rows a group reads and the changes it makes, in memory: what the
/// batches see while they apply.
struct Overlay {
    /// Every row read, as it was (`None`: absent).
    read: HashMap<(Keyspace, Vec<u8>), Option<Vec<u8>>>,
    /// Every row changed, as it is now (`None`: removed).
    changed: BTreeMap<(Keyspace, Vec<u8>), Option<Vec<u8>>>,
}

impl View for Overlay {
    fn get(&mut self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let wanted = (space, key.to_vec());
        if let Some(now) = self.changed.get(&wanted) {
            return Ok(now.clone());
        }
        self.read.get(&wanted).cloned().ok_or_else(|| {
            StoreError::Backend(format!("a batch read {space:?} that was not read ahead"))
        })
    }

    fn put(&mut self, space: Keyspace, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.changed
            .insert((space, key.to_vec()), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, space: Keyspace, key: &[u8]) -> Result<(), StoreError> {
        self.changed.insert((space, key.to_vec()), None);
        Ok(())
    }
}

/// The keys and values of the rows put into one table.
type Columns = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// One try of a group: `Err` when it failed for good (nothing written),
/// [`Tried::Again`] when nothing was done and it may be tried again.
async fn commit_group(pool: &Pool, batches: &[Batch]) -> Result<Tried, StoreError> {
    // What fails before COMMIT leaves nothing done.
    let before_commit = |err: tokio_postgres::Error| match database(err) {
        StoreError::Unavailable(m) => Ok(Tried::Again(StoreError::Unavailable(m))),
        other => Err(other),
    };
    let mut client = match pool.get().await {
        Ok(client) => client,
        Err(err) => return Ok(Tried::Again(unavailable(err))),
    };
    let tx = match client.transaction().await {
        Ok(tx) => tx,
        Err(err) => return before_commit(err),
    };
    let lock = tx.query_one(
        "SELECT pg_advisory_xact_lock($1), txid_current(), pg_backend_pid()",
        &[&COMMIT_LOCK],
    );
    let (txid, backend): (i64, i32) = match lock.await {
        Ok(row) => (row.get(1), row.get(2)),
        Err(err) => return before_commit(err),
    };
    // Everything the batches read, in one pipelined round.
    let mut wanted: BTreeMap<Keyspace, Vec<Vec<u8>>> = BTreeMap::new();
    for batch in batches {
        for (space, key) in apply::reads(batch) {
            wanted.entry(space).or_default().push(key);
        }
    }
    let reads = wanted.iter().map(|(space, keys)| {
        let tx = &tx;
        async move {
            let sql = format!(
                "SELECT key, value FROM {} WHERE key = ANY($1)",
                space.name()
            );
            let statement = tx.prepare_cached(&sql).await?;
            let rows = tx.query(&statement, &[keys]).await?;
            Ok::<_, tokio_postgres::Error>((*space, rows))
        }
    });
    let fetched = match futures_util::future::try_join_all(reads).await {
        Ok(fetched) => fetched,
        Err(err) => return before_commit(err),
    };
    let mut overlay = Overlay {
        read: HashMap::new(),
        changed: BTreeMap::new(),
    };
    for (space, keys) in wanted {
        for key in keys {
            overlay.read.insert((space, key), None);
        }
    }
    for (space, rows) in fetched {
        for row in rows {
            overlay.read.insert((space, row.get(0)), Some(row.get(1)));
        }
    }
    let mut outcomes = Vec::with_capacity(batches.len());
    for batch in batches {
        // A refused batch changed nothing: apply checks before it writes.
        outcomes.push(apply(&mut overlay, batch)?);
    }
    // The changes, per table: puts in one statement, removals in another,
    // all pipelined.
    let mut puts: BTreeMap<Keyspace, Columns> = BTreeMap::new();
    let mut deletes: BTreeMap<Keyspace, Vec<Vec<u8>>> = BTreeMap::new();
    for ((space, key), value) in overlay.changed {
        match value {
            Some(value) => {
                let (keys, values) = puts.entry(space).or_default();
                keys.push(key);
                values.push(value);
            }
            None => deletes.entry(space).or_default().push(key),
        }
    }
    let tx_ref = &tx;
    let put_all = puts.iter().map(|(space, (keys, values))| async move {
        let sql = format!(
            "INSERT INTO {} (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            space.name()
        );
        let statement = tx_ref.prepare_cached(&sql).await?;
        tx_ref.execute(&statement, &[keys, values]).await
    });
    let delete_all = deletes.iter().map(|(space, keys)| async move {
        let sql = format!("DELETE FROM {} WHERE key = ANY($1)", space.name());
        let statement = tx_ref.prepare_cached(&sql).await?;
        tx_ref.execute(&statement, &[keys]).await
    });
    let written = futures_util::future::try_join(
        futures_util::future::try_join_all(put_all),
        futures_util::future::try_join_all(delete_all),
    )
    .await;
    if let Err(err) = written {
        return before_commit(err);
    }
    match tx.commit().await {
        Ok(()) => Ok(Tried::Done(outcomes)),
        // Refused before it committed: nothing happened.
        Err(err) if err.code().is_some_and(refused_before_commit) => before_commit(err),
        // The connection went during COMMIT, or the database failed in it:
        // the database says whether it happened.
        Err(err) => {
            drop(client);
            match status_of(pool, txid, backend).await {
                Some(true) => Ok(Tried::Done(outcomes)),
                Some(false) => Ok(Tried::Again(unavailable(err))),
                // Never "unavailable" (which says nothing was written): it
                // may have been.
                None => Err(StoreError::Backend(format!(
                    "the database failed during a commit whose outcome it could not tell \
                     (transaction {txid}); the change may have been made: {err}"
                ))),
            }
        }
    }
}

/// Whether a COMMIT that failed with `code` certainly did not commit.
fn refused_before_commit(code: &SqlState) -> bool {
    *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || code.code().starts_with("23")
}

/// Whether transaction `txid` committed (`Some(false)`: it aborted), asked
/// on a new connection for a few seconds; `None` when no answer came. A
/// transaction still in progress (its session has not noticed the lost
/// connection) has its session, `backend`, ended, so that it settles.
async fn status_of(pool: &Pool, txid: i64, backend: i32) -> Option<bool> {
    let mut pause = FIRST_PAUSE;
    for _ in 0..TRIES {
        if let Ok(client) = pool.get().await
            && let Ok(row) = client.query_one("SELECT txid_status($1)", &[&txid]).await
        {
            match row.get::<_, Option<String>>(0).as_deref() {
                Some("committed") => return Some(true),
                Some("aborted") => return Some(false),
                _ => {
                    let _ = client
                        .query_one("SELECT pg_terminate_backend($1)", &[&backend])
                        .await;
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    None
}

/// This replica as a lease holder: host, process and a random id of this
/// start.
fn holder() -> String {
    use ring::rand::SecureRandom;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".into());
    let mut random = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut random);
    format!(
        "{host}:{}:{}",
        std::process::id(),
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// Sends the payload-free wake-up after this replica's appends, on a
/// connection of its own and outside every data transaction (a transaction
/// that notifies takes a database-wide lock at commit). Wake-ups that come
/// while one is sent become one more. Ends with the writer.
async fn wake_others(
    pg: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    mut woken: tokio::sync::mpsc::Receiver<()>,
    own: Arc<std::sync::atomic::AtomicI32>,
) {
    let mut pause = FIRST_PAUSE;
    // A wake-up that could not be sent yet.
    let mut owed = false;
    loop {
        if let Ok((client, connection)) = pg.connect(tls.clone()).await {
            let driver = tokio::spawn(connection);
            if let Ok(row) = client.query_one("SELECT pg_backend_pid()", &[]).await {
                own.store(row.get(0), std::sync::atomic::Ordering::Relaxed);
                pause = FIRST_PAUSE;
                loop {
                    if !owed && woken.recv().await.is_none() {
                        driver.abort();
                        return;
                    }
                    owed = true;
                    if let Err(err) = client.batch_execute(&format!("NOTIFY {CHANNEL}")).await {
                        // Sent on the next connection; the other replicas'
                        // own look at the logs bounds the delay meanwhile.
                        tracing::warn!(cause = %err, "cannot wake the other replicas");
                        break;
                    }
                    owed = false;
                }
            }
            driver.abort();
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Listens for the other replicas' wake-ups on a connection of its own, and
/// bumps `appended` for each (its own aside), on every (re)connection, and
/// every [`LOOK_EVERY`] regardless, until no one watches `appended`.
async fn hear_others(
    pg: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    appended: tokio::sync::watch::Sender<u64>,
    own: Arc<std::sync::atomic::AtomicI32>,
) {
    let bump = || appended.send_modify(|n| *n = n.wrapping_add(1));
    let mut pause = FIRST_PAUSE;
    while !appended.is_closed() {
        if let Ok((client, mut connection)) = pg.connect(tls.clone()).await {
            let (heard, mut hearing) = tokio::sync::mpsc::unbounded_channel();
            let driver = tokio::spawn(async move {
                while let Some(Ok(message)) =
                    std::future::poll_fn(|cx| connection.poll_message(cx)).await
                {
                    if let tokio_postgres::AsyncMessage::Notification(n) = message
                        && heard.send(n.process_id()).is_err()
                    {
                        return;
                    }
                }
            });
            if client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .await
                .is_ok()
            {
                pause = FIRST_PAUSE;
                // What came while no one listened.
                bump();
                let mut look = tokio::time::interval(LOOK_EVERY);
                loop {
                    tokio::select! {
                        pid = hearing.recv() => match pid {
                            Some(pid) if pid == own.load(std::sync::atomic::Ordering::Relaxed) => {}
                            Some(_) => bump(),
                            None => break,
                        },
                        _ = look.tick() => bump(),
                        () = appended.closed() => break,
                    }
                }
            }
            driver.abort();
        }
        bump();
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// The key just after every key that starts with `prefix`, if any.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[async_trait]
impl Store for PostgresStore {
    async fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT value FROM {} WHERE key = $1", space.name());
        let statement = client.prepare_cached(&sql).await.map_err(database)?;
        let row = client
            .query_opt(&statement, &[&key])
            .await
            .map_err(database)?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn scan(
        &self,
        space: Keyspace,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let client = self.client().await?;
        // From the prefix (or after `after`) to the first key past it.
        let (start, op) = match after {
            Some(after) if after >= prefix => (after, ">"),
            _ => (prefix, ">="),
        };
        let end = prefix_end(prefix);
        let bound = if end.is_some() { " AND key < $2" } else { "" };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT key, value FROM {} WHERE key {op} $1{bound} ORDER BY key LIMIT {}",
            space.name(),
            if end.is_some() { "$3" } else { "$2" },
        );
        let statement = client.prepare_cached(&sql).await.map_err(database)?;
        let rows = match &end {
            Some(end) => client.query(&statement, &[&start, end, &limit]).await,
            None => client.query(&statement, &[&start, &limit]).await,
        }
        .map_err(database)?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .filter(|(key, _): &Entry| key.starts_with(prefix))
            .collect())
    }

    async fn get_many(
        &self,
        space: Keyspace,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT key, value FROM {} WHERE key = ANY($1)",
            space.name()
        );
        let statement = client.prepare_cached(&sql).await.map_err(database)?;
        let rows = client.query(&statement, &[&keys]).await.map_err(database)?;
        let found: HashMap<Vec<u8>, Vec<u8>> = rows
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        Ok(keys.iter().map(|key| found.get(key).cloned()).collect())
    }

    async fn lease(&self, name: &str, period: Duration) -> Result<bool, StoreError> {
        let client = self.client().await?;
        // A little short of the period, so the next period's turn finds
        // it free.
        let seconds = period.as_secs_f64() * 0.9;
        let statement = client
            .prepare_cached(
                "INSERT INTO samenop_leases (name, holder, until) \
                 VALUES ($1, $2, now() + make_interval(secs => $3)) \
                 ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until \
                 WHERE samenop_leases.until <= now() RETURNING holder",
            )
            .await
            .map_err(database)?;
        let taken = client
            .query_opt(&statement, &[&name, &&*self.holder, &seconds])
            .await
            .map_err(database)?;
        Ok(taken.is_some())
    }

    fn others_appended(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.appended.clone())
    }

    async fn commit_logged(&self, batch: Batch) -> Result<Vec<u64>, StoreError> {
        let (answer, outcome) = tokio::sync::oneshot::channel();
        let stopped = || StoreError::Backend("the store's writer has stopped".into());
        self.queue.send((batch, answer)).map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every commit is durable when it returns.
        Ok(())
    }

    fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.commit.register(registry);
        registry.register(
            "samenop_store_retries",
            "Write transactions tried again because the database was unreachable or restarting",
            self.metrics.retries.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_at_the_next_key() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[tokio::test]
    async fn tls_asked_for_without_a_ca_is_refused_before_connecting() {
        let config = PostgresConfig {
            url: "host=db.invalid user=samenop sslmode=require".into(),
            pool_size: 2,
            statement_timeout: Duration::from_secs(1),
            ca_file: None,
        };
        let Err(StoreError::Backend(said)) = PostgresStore::connect(&config).await else {
            panic!("refused");
        };
        assert!(said.contains("ca_file"), "{said}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_store_meets_the_contract() {
        let Some(db) = throwaway::for_tests("the PostgreSQL store's contract tests").await else {
            return;
        };
        let store = PostgresStore::connect(&db.config()).await.unwrap();
        for space in Keyspace::ALL {
            assert_eq!(store.get(space, b"none").await.unwrap(), None, "{space:?}");
        }
        super::super::contract::run_all(Arc::new(store)).await;
    }

    /// Two replicas on one database: every call goes to the one or the
    /// other in turn, so concurrent commits meet only in the database.
    struct Replicas {
        both: [PostgresStore; 2],
        next: std::sync::atomic::AtomicUsize,
    }

    impl Replicas {
        fn one(&self) -> &PostgresStore {
            let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            &self.both[n % 2]
        }
    }

    #[async_trait]
    impl Store for Replicas {
        async fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.one().get(space, key).await
        }

        async fn scan(
            &self,
            space: Keyspace,
            prefix: &[u8],
            after: Option<&[u8]>,
            limit: usize,
        ) -> Result<Vec<Entry>, StoreError> {
            self.one().scan(space, prefix, after, limit).await
        }

        async fn commit_logged(&self, batch: Batch) -> Result<Vec<u64>, StoreError> {
            self.one().commit_logged(batch).await
        }

        async fn flush(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_on_one_database_meet_the_contract_together() {
        let Some(db) =
            throwaway::for_tests("the PostgreSQL store's two-replica contract tests").await
        else {
            return;
        };
        // Both start at once: the migrations are applied exactly once.
        let config = db.config();
        let (a, b) = tokio::join!(
            PostgresStore::connect(&config),
            PostgresStore::connect(&config)
        );
        let replicas = Replicas {
            both: [a.unwrap(), b.unwrap()],
            next: std::sync::atomic::AtomicUsize::new(0),
        };
        let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let applied: i64 = client
            .query_one("SELECT count(*) FROM samenop_migrations", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(applied, schema::MIGRATIONS.len() as i64);
        // Periodic work: one replica's turn per period.
        let period = Duration::from_millis(600);
        let (first, second) = tokio::join!(
            replicas.both[0].lease("sweep", period),
            replicas.both[1].lease("sweep", period)
        );
        assert_eq!(
            usize::from(first.unwrap()) + usize::from(second.unwrap()),
            1,
            "one turn per period"
        );
        assert!(!replicas.both[0].lease("sweep", period).await.unwrap());
        assert!(
            replicas.both[0].lease("retention", period).await.unwrap(),
            "a task of its own"
        );
        tokio::time::sleep(period).await;
        assert!(
            replicas.both[1].lease("sweep", period).await.unwrap(),
            "the next period's turn"
        );
        super::super::contract::run_all(Arc::new(replicas)).await;
    }
}
