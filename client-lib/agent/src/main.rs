//! The `samenop-agent` binary: `run` serves until SIGINT or SIGTERM;
//! `check` validates a configuration and says what it would do.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use samenop_agent::{FileConfig, Overrides};

/// The exit code for a configuration that cannot be used (EX_USAGE).
const EXIT_CONFIG: u8 = 64;
/// The exit code when another agent owns the data directory (EX_TEMPFAIL).
const EXIT_LOCKED: u8 = 75;

/// samenop-agent: end-to-end encrypted consult threads on a local socket,
/// for registration systems in any language.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. "info".
    #[arg(long, global = true, env = "SAMENOP_AGENT_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve, until SIGINT or SIGTERM.
    #[command(after_help = "Example:\n  samenop-agent run --config agent.toml")]
    Run(Args),
    /// Check a configuration: the files it names, the listener, the token.
    #[command(after_help = "Example:\n  samenop-agent check --config agent.toml")]
    Check(Args),
}

#[derive(clap::Args)]
struct Args {
    /// The TOML configuration file.
    #[arg(long, env = "SAMENOP_AGENT_CONFIG")]
    config: PathBuf,
    /// Where to listen (unix:PATH or a loopback HOST:PORT); overrides `listen`.
    #[arg(long, env = "SAMENOP_AGENT_LISTEN")]
    listen: Option<String>,
    /// The data directory; overrides `data_dir`.
    #[arg(long, env = "SAMENOP_AGENT_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

fn load(args: &Args) -> Result<samenop_agent::Config, samenop_agent::ConfigError> {
    let file = FileConfig::load(&args.config)?;
    let base = args
        .config
        .parent()
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    file.check(
        Overrides {
            listen: args.listen.clone(),
            data_dir: args.data_dir.clone(),
        },
        &base,
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let (Command::Run(args) | Command::Check(args)) = &cli.command;
    let config = match load(args) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("samenop-agent: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if matches!(cli.command, Command::Check(_)) {
        println!(
            "configuration ok: server {}, data directory {}, listening on {}{}",
            config.server,
            config.data_dir.display(),
            config.listen,
            if config.token.is_some() {
                " with a bearer token"
            } else {
                ""
            }
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("samenop-agent: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(samenop_agent::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(samenop_agent::AgentError::Lock(err @ samenop_agent::LockError::Held { .. })) => {
            eprintln!("samenop-agent: {err}");
            ExitCode::from(EXIT_LOCKED)
        }
        Err(err) => {
            eprintln!("samenop-agent: {err}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
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
