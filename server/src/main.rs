//! The `samenop-server` binary: parses the command line, sets up logging,
//! checks the configuration before anything binds, and runs the server until
//! SIGINT or SIGTERM; or verifies a stopped server's audit trail.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use samenop_server::{
    bootstrap,
    config::{ConfigError, FileConfig, Overrides},
    dev,
    store::{audit::Trail, directory::Directory, redb::RedbStore},
};

/// The allocator: mimalloc, whose speed holds up where glibc's slows down
/// once many streams have come and gone (ARCHITECTURE decision 48).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The exit code for a configuration that cannot be used (EX_USAGE).
const EXIT_CONFIG: u8 = 64;
/// The exit code of `audit verify` for a broken trail.
const EXIT_BROKEN: u8 = 2;

/// samenop: the consultation channel of child and family protection networks.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. "info" or "samenop_server=debug".
    #[arg(long, global = true, env = "SAMENOP_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service with a configuration file.
    Run {
        /// The TOML configuration file.
        #[arg(long, env = "SAMENOP_CONFIG")]
        config: PathBuf,
        /// Listen address; overrides `listen` in the file.
        #[arg(long, env = "SAMENOP_LISTEN")]
        listen: Option<String>,
        /// Data directory; overrides `data_dir` in the file.
        #[arg(long, env = "SAMENOP_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Where /metrics and /health are served over plain HTTP, or "off";
        /// overrides `admin_listen` in the file (default 127.0.0.1:9464).
        #[arg(long, env = "SAMENOP_ADMIN_LISTEN")]
        admin_listen: Option<String>,
        /// Keep the data in this PostgreSQL database (a connection string
        /// or URL); overrides `store` and `postgres.url` in the file.
        #[arg(long, env = "SAMENOP_POSTGRES_URL")]
        postgres: Option<String>,
    },
    /// Run on loopback with the development PKI and the demo network.
    Dev {
        /// Where the development PKI lives (created when missing).
        #[arg(long, default_value = "certs-dev/generated")]
        pki: PathBuf,
        /// The data directory.
        #[arg(long, env = "SAMENOP_DATA_DIR", default_value = "dev-data")]
        data_dir: PathBuf,
        /// Listen address (loopback only).
        #[arg(long, env = "SAMENOP_LISTEN", default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
        /// Where /metrics and /health are served over plain HTTP (a free
        /// loopback port unless given; printed at start), or "off".
        #[arg(long, env = "SAMENOP_ADMIN_LISTEN", default_value = "127.0.0.1:0")]
        admin_listen: String,
        /// Keep the data in this PostgreSQL database (a connection string
        /// or URL) instead of the embedded store in the data directory.
        #[arg(long, env = "SAMENOP_POSTGRES_URL")]
        postgres: Option<String>,
    },
    /// Move a stopped server's embedded store into an empty PostgreSQL
    /// database, then verify the audit chain there: the way from one server
    /// to replicas.
    MigrateStore {
        /// The data directory of the stopped server.
        #[arg(long)]
        data: PathBuf,
        /// The PostgreSQL database (a connection string or URL); its schema
        /// is made, and it must hold no samenop data yet.
        #[arg(long)]
        postgres: String,
        /// The CA of the database server's certificate: TLS to the database
        /// is then required and checked.
        #[arg(long)]
        postgres_ca_file: Option<PathBuf>,
        /// The server's audit key, whose public half every checkpoint must
        /// verify with (default: `audit-ed25519.pk8` in the data directory).
        #[arg(long)]
        audit_key: Option<PathBuf>,
    },
    /// Work on the audit trail of a stopped server's data directory.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain and its signed checkpoints, reporting the
    /// first broken event exactly. Exits 0 when the trail is intact, 2 when
    /// it is broken.
    Verify {
        /// The data directory of a stopped server.
        #[arg(long)]
        data: PathBuf,
        /// The server's audit key, whose public half every checkpoint must
        /// verify with (default: `audit-ed25519.pk8` in the data directory;
        /// without one, all checkpoints must share one key).
        #[arg(long)]
        audit_key: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|err| {
        eprintln!(
            "samenop-server: log filter {:?} is not valid ({err}); using \"info\"",
            cli.log
        );
        tracing_subscriber::EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("samenop-server: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Run {
                config,
                listen,
                data_dir,
                admin_listen,
                postgres,
            } => {
                // A relative --data-dir is relative to where the operator
                // stands, not to the configuration file.
                let data_dir = data_dir.map(|dir| std::path::absolute(&dir).unwrap_or(dir));
                let overrides = Overrides {
                    listen,
                    data_dir,
                    admin_listen,
                    postgres_url: postgres,
                };
                run(config, overrides).await
            }
            Command::Dev {
                pki,
                data_dir,
                listen,
                admin_listen,
                postgres,
            } => run_dev(pki, data_dir, listen, &admin_listen, postgres).await,
            Command::Audit {
                command: AuditCommand::Verify { data, audit_key },
            } => verify_audit(&data, audit_key).await,
            Command::MigrateStore {
                data,
                postgres,
                postgres_ca_file,
                audit_key,
            } => migrate_store(&data, &postgres, postgres_ca_file, audit_key).await,
        }
    })
}

fn config_failure(err: &ConfigError) -> ExitCode {
    eprintln!("samenop-server: {err}");
    ExitCode::from(EXIT_CONFIG)
}

async fn run(path: PathBuf, overrides: Overrides) -> ExitCode {
    let base = path.parent().map(PathBuf::from).unwrap_or_default();
    let config = match FileConfig::read(&path).and_then(|file| file.check(overrides, &base)) {
        Ok(config) => config,
        Err(err) => return config_failure(&err),
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("samenop-server: cannot listen on {}: {err}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    finish(samenop_server::run(config, listener, shutdown_signal()).await)
}

async fn run_dev(
    pki_dir: PathBuf,
    data_dir: PathBuf,
    listen: SocketAddr,
    admin_listen: &str,
    postgres: Option<String>,
) -> ExitCode {
    let admin_addr: Option<SocketAddr> = match admin_listen {
        "off" => None,
        text => match text.parse::<SocketAddr>() {
            Ok(addr) if addr.ip().is_loopback() => Some(addr),
            _ => {
                eprintln!(
                    "samenop-server: --admin-listen {text:?} is not a loopback address:port nor \"off\""
                );
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    let pki = samenop_certs_dev::PkiPaths::new(pki_dir);
    match dev::ensure_pki(&pki) {
        Ok(true) => tracing::info!(dir = %pki.dir.display(), "development PKI created"),
        Ok(false) => {}
        Err(err) => return config_failure(&err),
    }
    let on_postgres = postgres.is_some();
    let config = match dev::config_on(&pki, &data_dir, listen, postgres) {
        Ok(config) => config,
        Err(err) => return config_failure(&err),
    };
    let store = match samenop_server::open_store(&config).await {
        Ok(store) => store,
        Err(err) if on_postgres => {
            eprintln!("samenop-server: cannot use the PostgreSQL database: {err}");
            return ExitCode::FAILURE;
        }
        Err(err) => {
            eprintln!(
                "samenop-server: cannot open the data directory {}: {err}",
                data_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let directory = Directory::new(store.clone());
    let now = samenop_server::clock::now_ms(&samenop_server::clock::SystemClock);
    let people =
        match bootstrap::seed_demo_network(&directory, samenop_certs_dev::DEMO_ORGANISATIONS, now)
            .await
        {
            Ok(people) => people,
            Err(err) => {
                eprintln!("samenop-server: cannot register the demo network: {err}");
                return ExitCode::FAILURE;
            }
        };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("samenop-server: cannot listen on {listen}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let admin = match admin_addr {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(admin) => Some(admin),
            Err(err) => {
                eprintln!("samenop-server: cannot listen on {addr} for /metrics: {err}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let admin_addr = admin.as_ref().and_then(|a| a.local_addr().ok());
    if let Err(err) = dev::write_network(&pki, listen, admin_addr, &people) {
        eprintln!("samenop-server: {err}");
        return ExitCode::FAILURE;
    }
    println!(
        "{}",
        dev::welcome(&pki, &config, listen, admin_addr, &people)
    );
    let clock = std::sync::Arc::new(samenop_server::clock::SystemClock);
    finish(samenop_server::serve(config, store, clock, listener, admin, shutdown_signal()).await)
}

/// `audit verify`: checks the chain of a stopped server's store.
async fn verify_audit(data: &std::path::Path, audit_key: Option<PathBuf>) -> ExitCode {
    // Without its database file this is not a store, and opening it would
    // make an empty one.
    if !RedbStore::file(data).is_file() {
        eprintln!("samenop-server: {} is not a data directory", data.display());
        return ExitCode::FAILURE;
    }
    let store = match RedbStore::open(data) {
        Ok(store) => std::sync::Arc::new(store),
        Err(err) => {
            eprintln!(
                "samenop-server: cannot open {} (is the server still running?): {err}",
                data.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let key_path = audit_key.unwrap_or_else(|| data.join(samenop_server::audit_key::DEFAULT_FILE));
    verify_trail(store, &key_path).await
}

/// `migrate-store`: copies the embedded store of `data` into the empty
/// PostgreSQL database `url`, then verifies the audit chain there.
async fn migrate_store(
    data: &std::path::Path,
    url: &str,
    ca_file: Option<PathBuf>,
    audit_key: Option<PathBuf>,
) -> ExitCode {
    use samenop_server::store::postgres::{PostgresConfig, PostgresStore};
    if !RedbStore::file(data).is_file() {
        eprintln!("samenop-server: {} is not a data directory", data.display());
        return ExitCode::FAILURE;
    }
    let from = match RedbStore::open(data) {
        Ok(store) => store,
        Err(err) => {
            eprintln!(
                "samenop-server: cannot open {} (is the server still running?): {err}",
                data.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let config = PostgresConfig {
        url: url.to_owned(),
        pool_size: 4,
        statement_timeout: std::time::Duration::from_secs(300),
        ca_file,
    };
    let to = match PostgresStore::connect(&config).await {
        Ok(store) => std::sync::Arc::new(store),
        Err(err) => {
            eprintln!("samenop-server: cannot use the PostgreSQL database: {err}");
            return ExitCode::FAILURE;
        }
    };
    match samenop_server::store::copy_all(&from, to.as_ref()).await {
        Ok(counts) => {
            let total: u64 = counts.iter().map(|(_, n)| n).sum();
            let tables = counts.iter().filter(|(_, n)| *n > 0).count();
            println!("copied {total} entries into {tables} tables of the PostgreSQL database");
        }
        Err(err) => {
            eprintln!("samenop-server: the store was not moved: {err}");
            return ExitCode::FAILURE;
        }
    }
    let key_path = audit_key.unwrap_or_else(|| data.join(samenop_server::audit_key::DEFAULT_FILE));
    verify_trail(to, &key_path).await
}

/// Verifies the audit trail of `store` against the audit key at
/// `key_path` (when there is one): exit 0 when intact, 2 when broken.
async fn verify_trail(
    store: std::sync::Arc<dyn samenop_server::store::Store>,
    key_path: &std::path::Path,
) -> ExitCode {
    let public_key = if key_path.is_file() {
        match samenop_server::audit_key::AuditKey::load_or_create(key_path) {
            Ok(key) => Some(key.public_key().to_vec()),
            Err(err) => {
                eprintln!("samenop-server: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        eprintln!(
            "samenop-server: no audit key at {}: checking that every checkpoint has one key",
            key_path.display()
        );
        None
    };
    match Trail::new(store).verify(public_key.as_deref()).await {
        Ok(result) => {
            let answer = samenop_server::services::verification_to_proto(&result);
            if answer.ok {
                println!(
                    "audit trail intact: {} events verified, last sequence {}, checkpoints verified: {}",
                    answer.events_checked, answer.last_sequence, answer.checkpoints_checked
                );
                ExitCode::SUCCESS
            } else {
                println!(
                    "audit trail BROKEN: first broken event {} ({}): {}",
                    answer.first_broken_sequence,
                    answer.fault().as_str_name(),
                    answer.detail
                );
                ExitCode::from(EXIT_BROKEN)
            }
        }
        Err(err) => {
            eprintln!("samenop-server: cannot read the audit trail: {err}");
            ExitCode::FAILURE
        }
    }
}

fn finish(result: Result<(), samenop_server::RunError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(cause = %err, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {},
                    _ = terminate.recv() => {},
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
