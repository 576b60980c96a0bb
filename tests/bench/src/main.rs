//! samenop-bench: samenop measured against the bare stack it is built on.
//!
//! Each comparison runs the real `samenop-server` binary (its own data
//! directory and port, durable store) and a bare tonic echo server on the
//! same TLS configuration, payload size and machine, in one run,
//! alternately (A B, B A, …, at least 5 rounds), and prints one line per
//! figure: `name ratio=… target=…`, with the medians, spread and CPU time
//! per call of both sides. `all` runs everything and writes
//! `report.json` and `report.md`.
//!
//! ```sh
//! cargo run --release -p samenop-bench -- all
//! ```

mod b0;
mod b1;
mod b2;
mod b3;
mod b4;
mod b5;
mod b6;
mod b7;
mod b8;
mod echo;
mod network;
mod report;
mod run;
mod sys;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    network::{Backend, Network},
    report::Report,
};

#[derive(Parser)]
#[command(
    name = "samenop-bench",
    about = "samenop measured against the bare stack it is built on"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every benchmark; writes report.json and report.md.
    All(Options),
    /// B0: read calls (GetProfessional, GetConsult, ListConsults) vs echo.
    B0(Options),
    /// B1: the server's append throughput, with messages encrypted before timing.
    B1(Options),
    /// B2: one encrypted send at a time through samenop-client.
    B2(Options),
    /// B3: the store on disk: a million messages, bytes per payload byte, restart.
    B3(Options),
    /// B4: fan-out to 10, 100 and 608 subscribed devices vs a bare broadcast.
    B4(Options),
    /// B5: catch-up of a 10,000-message backlog, server and device.
    B5(Options),
    /// B6: a new mutual-TLS connection and one call.
    B6(Options),
    /// B7: 10,000 idle subscriptions: server memory per stream, and delivery to a sample.
    B7(Options),
    /// B8: MLS in the client vs the raw primitives of its ciphersuite.
    B8(Options),
    /// B0, B1 and B4 on the embedded store, then on PostgreSQL with one
    /// replica and with two (`.pg1`, `.pg2`); writes postgres.json and
    /// postgres.md.
    Postgres(Options),
    /// The bare echo server (started by the benchmarks themselves).
    #[command(hide = true)]
    EchoServer {
        /// The development PKI to serve with.
        #[arg(long)]
        pki: PathBuf,
    },
}

/// What every benchmark takes.
#[derive(Args, Clone)]
pub(crate) struct Options {
    /// Rounds per comparison (each side once per round).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(5..))]
    rounds: u16,
    /// Seconds each side runs per round.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Messages B3 stores.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Calls per second of the open-loop runs.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// The samenop-server binary (default: the one beside this binary).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Where `all` writes its report.
    #[arg(long, default_value = "target/samenop-bench")]
    out: PathBuf,
    /// Time even when the machine is busy (the report records the load).
    #[arg(long)]
    ignore_load: bool,
}

impl Options {
    /// Rounds per comparison.
    pub(crate) fn rounds(&self) -> usize {
        usize::from(self.rounds)
    }

    /// How long each side runs per round.
    pub(crate) fn round(&self) -> Duration {
        Duration::from_secs_f64(self.seconds.max(0.1))
    }
}

/// What the benchmarks share in one run: the servers, and figures of the
/// machine measured once.
pub(crate) struct Bench {
    /// The servers.
    pub(crate) network: Network,
    /// The options.
    pub(crate) options: Options,
    /// Median `fdatasync` latency on the server's disk, µs.
    pub(crate) fdatasync_p50_us: f64,
    /// 99th percentile of the same, µs.
    pub(crate) fdatasync_p99_us: f64,
    /// Median MLS encryption of one message in a group of two, µs (B8, or
    /// measured when B2 runs first).
    pub(crate) mls_encrypt_us: Option<f64>,
    /// The report.
    pub(crate) report: Report,
}

impl Bench {
    /// Waits for a quiet machine before `what` and records its load.
    pub(crate) fn quiet(&mut self, what: &str) -> Result<(), String> {
        let load = sys::quiet_machine(what, self.options.ignore_load)?;
        eprintln!(
            "{what}: machine {:.0}% busy, load {:.2} {:.2} {:.2}",
            load.busy * 100.0,
            load.average[0],
            load.average[1],
            load.average[2]
        );
        self.report.load.push((what.to_owned(), load));
        Ok(())
    }
}

/// The server's allocator (decision 48), so that the echo server (this
/// binary) and samenop-server differ in samenop's own work, not in how
/// they allocate.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("samenop-bench: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::EchoServer { pki } => echo::serve(pki).await,
            Command::All(options) => {
                let every = ["B0", "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8"];
                benchmark(options, &every, &[Backend::Embedded], Some("report")).await
            }
            Command::Postgres(options) => {
                let backends = [
                    Backend::Embedded,
                    Backend::Postgres(1),
                    Backend::Postgres(2),
                ];
                benchmark(options, &["B0", "B1", "B4"], &backends, Some("postgres")).await
            }
            Command::B0(options) => one(options, "B0").await,
            Command::B1(options) => one(options, "B1").await,
            Command::B2(options) => one(options, "B2").await,
            Command::B3(options) => one(options, "B3").await,
            Command::B4(options) => one(options, "B4").await,
            Command::B5(options) => one(options, "B5").await,
            Command::B6(options) => one(options, "B6").await,
            Command::B7(options) => one(options, "B7").await,
            Command::B8(options) => one(options, "B8").await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("samenop-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one benchmark on the embedded store, writing no report.
async fn one(options: Options, name: &str) -> Result<(), String> {
    benchmark(options, &[name], &[Backend::Embedded], None).await
}

/// Runs the benchmarks `which` on a network of each of `backends` in turn;
/// with `stem`, writes the report (`<stem>.json`, `<stem>.md`) and, after
/// a run on the embedded store alone, the server's metrics.
async fn benchmark(
    options: Options,
    which: &[&str],
    backends: &[Backend],
    stem: Option<&str>,
) -> Result<(), String> {
    let server = network::server_binary(options.server.as_deref())?;
    let mut report = Report::new(options.rounds(), options.seconds);
    let mut failed = Vec::new();
    let mut metrics = None;
    for &backend in backends {
        sys::quiet_machine("starting", options.ignore_load)?;
        let network = Network::start(&server, backend).await?;
        report.suffix = backend.suffix();
        let syncs = sys::sync_latencies(&network.data_dir, 1000)
            .map_err(|e| format!("cannot measure fdatasync: {e}"))?;
        let mut bench = Bench {
            fdatasync_p50_us: run::quantile(&syncs.fdatasync, 0.5) / 1000.0,
            fdatasync_p99_us: run::quantile(&syncs.fdatasync, 0.99) / 1000.0,
            mls_encrypt_us: None,
            report,
            options: options.clone(),
            network,
        };
        let on = match backend {
            Backend::Embedded => "the embedded store".to_owned(),
            Backend::Postgres(n) => format!("PostgreSQL with {n} replica(s) (names end .pg{n})"),
        };
        let direct = syncs.direct.as_ref().map_or_else(
            || "; direct writes are refused there".to_owned(),
            |direct| {
                format!(
                    "; the same block written as the journal writes (O_DIRECT, RWF_DSYNC): p50 \
                     {:.0} µs, p99 {:.0} µs",
                    run::quantile(direct, 0.5) / 1000.0,
                    run::quantile(direct, 0.99) / 1000.0
                )
            },
        );
        eprintln!(
            "{on}: fdatasync on the server's disk: p50 {:.0} µs, p99 {:.0} µs{direct}",
            bench.fdatasync_p50_us, bench.fdatasync_p99_us
        );
        bench.report.notes.push(format!(
            "On {on}: a write of 4 KiB and fdatasync on the server's disk: p50 {:.0} µs, p99 \
             {:.0} µs{direct}. Targets count in fdatasync.",
            bench.fdatasync_p50_us, bench.fdatasync_p99_us
        ));
        // B8 first: B2's target needs its encryption cost. B7 next, on a
        // fresh server: memory freed by the others' loads would be reused
        // by its streams and hide what they cost.
        for name in ["B8", "B7", "B0", "B1", "B2", "B4", "B5", "B6", "B3"] {
            if !which.contains(&name) {
                continue;
            }
            bench.quiet(name)?;
            let outcome = match name {
                "B0" => b0::run(&mut bench).await,
                "B1" => b1::run(&mut bench).await,
                "B2" => b2::run(&mut bench).await,
                "B3" => b3::run(&mut bench).await,
                "B4" => b4::run(&mut bench).await,
                "B5" => b5::run(&mut bench).await,
                "B6" => b6::run(&mut bench).await,
                "B7" => b7::run(&mut bench).await,
                _ => b8::run(&mut bench),
            };
            // A benchmark that fails is reported, and the others still run.
            if let Err(err) = outcome {
                eprintln!("samenop-bench: {name} failed on {on}: {err}");
                bench
                    .report
                    .notes
                    .push(format!("{name} failed on {on}: {err}"));
                failed.push(format!("{name}{}", backend.suffix()));
            }
        }
        bench.report.notes.push(format!(
            "Server resident memory at the end on {on}: {:.1} MiB (its first replica).",
            sys::resident_bytes(bench.network.server.pid) as f64 / 1024.0 / 1024.0
        ));
        if let Some(addr) = bench.network.server.metrics {
            metrics = Some(network::metrics_text(addr)?);
        }
        report = bench.report;
    }
    if let Some(stem) = stem {
        let out = options.out.clone();
        if let (Some(text), [Backend::Embedded]) = (&metrics, backends) {
            std::fs::create_dir_all(&out)
                .and_then(|()| std::fs::write(out.join("metrics.txt"), text))
                .map_err(|e| format!("cannot write the metrics scrape: {e}"))?;
        }
        report
            .write(&out, stem)
            .map_err(|e| format!("cannot write the report to {}: {e}", out.display()))?;
        eprintln!("report: {}/{stem}.md and {stem}.json", out.display());
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{} failed (see above)", failed.join(", ")))
    }
}
