//! A database for tests and the benchmark: the one `SAMENOP_TEST_POSTGRES_URL`
//! names (each caller gets a fresh database of its own in it), or else a
//! private throwaway cluster of the PostgreSQL installed on this machine
//! (`initdb` and `pg_ctl` on PATH or under `/usr/lib/postgresql/*/bin`), in a
//! temporary directory, listening on a Unix socket there only, removed when
//! dropped. As root, the cluster runs as the `postgres` user, as PostgreSQL
//! refuses to run as root.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use super::PostgresConfig;

/// The environment variable naming an existing server to use instead.
pub const URL_VARIABLE: &str = "SAMENOP_TEST_POSTGRES_URL";

/// What makes a missing PostgreSQL a failure instead of a skip (CI).
pub const REQUIRE_VARIABLE: &str = "SAMENOP_REQUIRE_POSTGRES";

/// A database for one test: dropped, its cluster (if it made one) stops
/// and its files go.
pub struct Database {
    /// The connection string of the database.
    url: String,
    /// The cluster this made, if it made one.
    cluster: Option<Cluster>,
}

/// A throwaway cluster.
struct Cluster {
    /// The temporary directory: `data/`, the socket and the log.
    dir: tempfile::TempDir,
    /// `pg_ctl`.
    pg_ctl: PathBuf,
    /// Run as this user (`postgres` when we are root).
    user: Option<String>,
}

impl Database {
    /// The connection string.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A store configuration for it.
    pub fn config(&self) -> PostgresConfig {
        PostgresConfig {
            url: self.url.clone(),
            pool_size: 8,
            statement_timeout: Duration::from_secs(30),
            ca_file: None,
        }
    }

    /// The process id of the throwaway cluster's postmaster (its backends
    /// are its children), when this made one and it runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let cluster = self.cluster.as_ref()?;
        std::fs::read_to_string(cluster.data().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Stops the cluster at once, as a crash would (`pg_ctl stop -m
    /// immediate`), and starts it again: what was committed is there after.
    ///
    /// # Errors
    /// What `pg_ctl` said, or that this database is not a throwaway one.
    pub fn crash_and_restart(&self) -> Result<(), String> {
        let cluster = self
            .cluster
            .as_ref()
            .ok_or("only a throwaway cluster can be restarted")?;
        cluster.pg_ctl(&["stop", "-m", "immediate", "-w"])?;
        cluster.start()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(cluster) = &self.cluster {
            let _ = cluster.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        }
    }
}

impl Cluster {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs a PostgreSQL program, as the cluster's user.
    fn run(&self, program: &Path, args: &[&str]) -> Result<(), String> {
        let mut command = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        let out = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} {}: {}{}",
                program.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let data = self.data();
        let data = data.to_string_lossy();
        let mut all = vec!["-D", data.as_ref()];
        all.extend_from_slice(args);
        self.run(&self.pg_ctl, &all)
    }

    fn start(&self) -> Result<(), String> {
        let socket = self.dir.path().to_string_lossy().into_owned();
        let log = self.dir.path().join("postgres.log");
        let options = format!("-k {socket} -c listen_addresses='' -c max_connections=200");
        self.pg_ctl(&["-l", &log.to_string_lossy(), "-o", &options, "-w", "start"])
    }
}

/// The directory of a PostgreSQL program: PATH, else the newest of
/// `/usr/lib/postgresql/*/bin`.
fn find(program: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(program);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin").join(program))
        .filter(|p| p.is_file())
        .collect();
    versions.sort();
    versions.pop()
}

/// A fresh database, or `None` (with one line on stderr saying why and how
/// to enable it) when there is no PostgreSQL to use; with
/// `SAMENOP_REQUIRE_POSTGRES=1` that is a panic instead.
///
/// # Panics
/// When a PostgreSQL is there but will not start, or none is there and one
/// is required.
pub async fn for_tests(what: &str) -> Option<Database> {
    match open().await {
        Ok(Some(db)) => Some(db),
        Ok(None) => {
            assert!(
                std::env::var(REQUIRE_VARIABLE).as_deref() != Ok("1"),
                "{what} need PostgreSQL: none is installed (initdb and pg_ctl), and \
                 {URL_VARIABLE} is not set"
            );
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "{what} skipped: no PostgreSQL (apt-get install postgresql, or set {URL_VARIABLE})"
            );
            None
        }
        Err(err) => panic!("{what}: PostgreSQL would not start: {err}"),
    }
}

/// A fresh database: `Ok(None)` when there is no PostgreSQL to use.
///
/// # Errors
/// What went wrong starting the cluster or making the database.
pub async fn open() -> Result<Option<Database>, String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "samenop_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    if let Ok(base) = std::env::var(URL_VARIABLE) {
        create_database(&base, &name).await?;
        let mut config: tokio_postgres::Config = base.parse().map_err(|e| format!("{e}"))?;
        config.dbname(&name);
        return Ok(Some(Database {
            url: to_url(&config),
            cluster: None,
        }));
    }
    let (Some(initdb), Some(pg_ctl)) = (find("initdb"), find("pg_ctl")) else {
        return Ok(None);
    };
    let dir = tempfile::Builder::new()
        .prefix("samenop-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    // PostgreSQL refuses to run as root: as root, it runs as `postgres`.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let user = root.then(|| "postgres".to_owned());
    if let Some(user) = &user {
        let owned = Command::new("chown")
            .args([user.as_str(), &dir.path().to_string_lossy()])
            .status()
            .map_err(|e| e.to_string())?;
        if !owned.success() {
            return Err(format!("cannot give {} to {user}", dir.path().display()));
        }
    }
    let cluster = Cluster { dir, pg_ctl, user };
    let data = cluster.data().to_string_lossy().into_owned();
    cluster.run(
        &initdb,
        &[
            "-D",
            &data,
            "-U",
            "samenop",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-instructions",
        ],
    )?;
    cluster.start()?;
    let url = format!(
        "host={} port=5432 user=samenop dbname=postgres",
        cluster.dir.path().display()
    );
    create_database(&url, &name).await?;
    let url = format!(
        "host={} port=5432 user=samenop dbname={name}",
        cluster.dir.path().display()
    );
    Ok(Some(Database {
        url,
        cluster: Some(cluster),
    }))
}

/// A connection string for `config` (host, port, user, database).
fn to_url(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let mut parts = Vec::new();
    if let Some(host) = config.get_hosts().first() {
        match host {
            Host::Tcp(name) => parts.push(format!("host={name}")),
            Host::Unix(path) => parts.push(format!("host={}", path.display())),
        }
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(password) = config.get_password() {
        parts.push(format!("password={}", String::from_utf8_lossy(password)));
    }
    if let Some(db) = config.get_dbname() {
        parts.push(format!("dbname={db}"));
    }
    parts.join(" ")
}

/// Creates database `name` on the server `url` names.
async fn create_database(url: &str, name: &str) -> Result<(), String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
    drop(client);
    let _ = driver.await;
    Ok(())
}
