//! Load shapes and what a round of one measures: closed loop (N tasks, each
//! with one call in flight), open loop (calls started at a fixed rate,
//! latency counted from when each was meant to start, so a slow answer
//! delays no later measurement: no coordinated omission), and fixed work
//! (a given set of calls over N tasks); each with the CPU time the server
//! process and this process spent.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::sys;

/// One call of a load: given the task's number and the call's number
/// within the round.
pub(crate) type Call = Arc<
    dyn Fn(usize, u64) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync,
>;

/// Makes a [`Call`] of a closure returning a future.
pub(crate) fn call<F, Fut>(f: F) -> Call
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    Arc::new(move |task, n| Box::pin(f(task, n)))
}

/// What one round of one side measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Round {
    /// Calls answered.
    pub(crate) calls: u64,
    /// Seconds from the first call's start to the last answer.
    pub(crate) seconds: f64,
    /// Each call's latency in nanoseconds, sorted.
    pub(crate) latencies: Vec<u64>,
    /// CPU seconds the server process spent.
    pub(crate) server_cpu: f64,
    /// CPU seconds this process spent.
    pub(crate) client_cpu: f64,
    /// What the server's store did meanwhile, by its metrics.
    pub(crate) store: crate::network::StoreFigures,
    /// Seconds the server went on working after the last answer (see
    /// [`settle`]); its CPU meanwhile is in `server_cpu`.
    pub(crate) settle_seconds: f64,
}

impl Round {
    /// Calls per second.
    pub(crate) fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.calls as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The `q` quantile (0..=1) of latency, in microseconds.
    pub(crate) fn quantile_us(&self, q: f64) -> f64 {
        quantile(&self.latencies, q) / 1000.0
    }
}

/// The `q` quantile of sorted `values`, nearest rank.
pub(crate) fn quantile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

/// The median of `values` (not necessarily sorted).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Measures `work` (which answers how many calls it made and their
/// latencies): wall time, and the CPU time of `server` and of this process.
pub(crate) async fn measure<F>(server: Option<u32>, work: F) -> Result<Round, String>
where
    F: Future<Output = Result<(u64, Vec<u64>), String>>,
{
    let metrics = server.and_then(crate::network::metrics_of);
    measure_with(server, metrics, work).await
}

/// Like [`measure`], with the server's store figures from its metrics at
/// `metrics` (read before and after, outside the time and CPU measured).
pub(crate) async fn measure_with<F>(
    server: Option<u32>,
    metrics: Option<std::net::SocketAddr>,
    work: F,
) -> Result<Round, String>
where
    F: Future<Output = Result<(u64, Vec<u64>), String>>,
{
    let store_before = crate::network::scrape(metrics);
    let server_before = server.map_or(0.0, crate::network::cpu_of);
    let client_before = sys::cpu_seconds(None);
    let started = Instant::now();
    let (calls, mut latencies) = work.await?;
    let seconds = started.elapsed().as_secs_f64();
    let settle_seconds = match server {
        Some(pid) => settle(pid).await,
        None => 0.0,
    };
    let server_cpu = server.map_or(0.0, |pid| crate::network::cpu_of(pid) - server_before);
    let client_cpu = sys::cpu_seconds(None) - client_before;
    let store_after = crate::network::scrape(metrics);
    latencies.sort_unstable();
    Ok(Round {
        calls,
        seconds,
        latencies,
        server_cpu,
        client_cpu,
        store: crate::network::StoreFigures {
            syncs: store_after.syncs - store_before.syncs,
            commits: store_after.commits - store_before.commits,
            batches: store_after.batches - store_before.batches,
        },
        settle_seconds,
    })
}

/// The longest a round waits for its server to finish what the round left.
const SETTLE_MAX: Duration = Duration::from_secs(5);
/// How often the server's CPU time is read while waiting.
const SETTLE_WINDOW: Duration = Duration::from_millis(100);
/// CPU seconds in one window under which the server counts as done: a
/// clock tick (10 ms), what a process at rest still shows now and then.
const QUIET_CPU: f64 = 0.011;

/// Waits until the server `pid` (with its replicas and database) is at rest
/// after a round, and answers how long that took. What a round leaves
/// behind (the checkpoint of what it wrote into redb, a database's own
/// writing) is work for the round's calls: waiting for it keeps it out of
/// the next round, whichever side that is, and counts its CPU with the
/// calls that caused it. The round's rate is still its calls over the time
/// to the last answer.
pub(crate) async fn settle(pid: u32) -> f64 {
    let started = Instant::now();
    let mut before = crate::network::cpu_of(pid);
    loop {
        tokio::time::sleep(SETTLE_WINDOW).await;
        let now = crate::network::cpu_of(pid);
        if now - before < QUIET_CPU || started.elapsed() >= SETTLE_MAX {
            return started.elapsed().as_secs_f64();
        }
        before = now;
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `tasks` tasks, each making `call` one after the other until `duration`
/// is over.
pub(crate) async fn closed_loop(
    call: &Call,
    tasks: usize,
    duration: Duration,
) -> Result<(u64, Vec<u64>), String> {
    let deadline = Instant::now() + duration;
    let mut running = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let call = call.clone();
        running.spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                let started = Instant::now();
                call(task, n).await?;
                latencies.push(nanos(started.elapsed()));
                n += 1;
            }
            Ok::<_, String>(latencies)
        });
    }
    collect(running).await
}

/// `tasks` tasks sharing calls `0..total`, each taking the next one as
/// soon as its previous call is answered.
pub(crate) async fn fixed_work(
    call: &Call,
    tasks: usize,
    total: u64,
) -> Result<(u64, Vec<u64>), String> {
    let next = Arc::new(AtomicU64::new(0));
    let mut running = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let call = call.clone();
        let next = next.clone();
        running.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let started = Instant::now();
                call(task, n).await?;
                latencies.push(nanos(started.elapsed()));
            }
            Ok::<_, String>(latencies)
        });
    }
    collect(running).await
}

/// Calls started at `rate` per second for `duration`, each on its own task
/// whether or not the ones before were answered; each latency counted from
/// the moment the call was due.
pub(crate) async fn open_loop(
    call: &Call,
    rate: f64,
    duration: Duration,
) -> Result<(u64, Vec<u64>), String> {
    let start = tokio::time::Instant::now();
    let total = (rate * duration.as_secs_f64()) as u64;
    let mut running = tokio::task::JoinSet::new();
    for n in 0..total {
        let due = start + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(due).await;
        let call = call.clone();
        running.spawn(async move {
            call(0, n).await?;
            Ok::<_, String>(vec![nanos(due.elapsed())])
        });
    }
    collect(running).await
}

async fn collect(
    mut running: tokio::task::JoinSet<Result<Vec<u64>, String>>,
) -> Result<(u64, Vec<u64>), String> {
    let mut all = Vec::new();
    let mut failure = None;
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(Ok(latencies)) => all.extend(latencies),
            Ok(Err(err)) => failure = Some(err),
            Err(err) => failure = Some(format!("a load task failed: {err}")),
        }
    }
    match failure {
        Some(err) => Err(err),
        None => Ok((all.len() as u64, all)),
    }
}

/// The rounds of every side of one comparison, measured alternately: in
/// round r the sides run in their order when r is even and reversed when
/// it is odd (A B, B A, A B, …), so drift over the run (a warming cache, a
/// growing store, a neighbour) falls on every side alike.
pub(crate) async fn alternate<S, F, Fut>(
    rounds: usize,
    sides: &[S],
    mut run: F,
) -> Result<Vec<Vec<Round>>, String>
where
    F: FnMut(&S) -> Fut,
    Fut: Future<Output = Result<Round, String>>,
{
    let mut measured = vec![Vec::with_capacity(rounds); sides.len()];
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..sides.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            measured[i].push(run(&sides[i]).await?);
        }
    }
    Ok(measured)
}

/// A side's rounds summed up: medians over rounds, and the spread.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Summary {
    /// Median calls per second.
    pub(crate) rate: f64,
    /// Lowest and highest round's calls per second.
    pub(crate) rate_min: f64,
    /// See `rate_min`.
    pub(crate) rate_max: f64,
    /// Median over rounds of the median latency, µs.
    pub(crate) p50_us: f64,
    /// Median over rounds of the 99th percentile latency, µs.
    pub(crate) p99_us: f64,
    /// Server CPU per call over all rounds, µs.
    pub(crate) server_cpu_us: f64,
    /// This process's CPU per call over all rounds, µs.
    pub(crate) client_cpu_us: f64,
    /// Calls measured over all rounds.
    pub(crate) calls: u64,
    /// Median over rounds of how long the server went on working after a
    /// round's last answer, ms.
    pub(crate) settle_ms: f64,
    /// The server's durable store writes per call (0: not known).
    pub(crate) syncs_per_call: f64,
    /// Batches per write transaction of the server's store: its group
    /// commit's mean group size (0: not known).
    pub(crate) batches_per_commit: f64,
}

impl Summary {
    /// The summary of `rounds`.
    pub(crate) fn of(rounds: &[Round]) -> Summary {
        let rates: Vec<f64> = rounds.iter().map(Round::rate).collect();
        let calls: u64 = rounds.iter().map(|r| r.calls).sum();
        let per_call = |cpu: f64| {
            if calls == 0 {
                0.0
            } else {
                cpu / calls as f64 * 1e6
            }
        };
        Summary {
            rate: median(&rates),
            rate_min: rates.iter().copied().fold(f64::INFINITY, f64::min),
            rate_max: rates.iter().copied().fold(0.0, f64::max),
            p50_us: median(
                &rounds
                    .iter()
                    .map(|r| r.quantile_us(0.5))
                    .collect::<Vec<_>>(),
            ),
            p99_us: median(
                &rounds
                    .iter()
                    .map(|r| r.quantile_us(0.99))
                    .collect::<Vec<_>>(),
            ),
            server_cpu_us: per_call(rounds.iter().map(|r| r.server_cpu).sum()),
            client_cpu_us: per_call(rounds.iter().map(|r| r.client_cpu).sum()),
            calls,
            settle_ms: median(&rounds.iter().map(|r| r.settle_seconds).collect::<Vec<_>>())
                * 1000.0,
            syncs_per_call: if calls == 0 {
                0.0
            } else {
                rounds.iter().map(|r| r.store.syncs).sum::<f64>() / calls as f64
            },
            batches_per_commit: {
                let commits: f64 = rounds.iter().map(|r| r.store.commits).sum();
                if commits > 0.0 {
                    rounds.iter().map(|r| r.store.batches).sum::<f64>() / commits
                } else {
                    0.0
                }
            },
        }
    }

    /// The spread of the rate as a fraction of its median.
    pub(crate) fn spread(&self) -> f64 {
        if self.rate > 0.0 {
            (self.rate_max - self.rate_min) / self.rate
        } else {
            0.0
        }
    }
}

/// The median over rounds of the ratio of side `a`'s rate to side `b`'s in
/// the same round.
pub(crate) fn paired_ratio(a: &[Round], b: &[Round]) -> f64 {
    let ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .filter(|(_, b)| b.rate() > 0.0)
        .map(|(a, b)| a.rate() / b.rate())
        .collect();
    median(&ratios)
}
