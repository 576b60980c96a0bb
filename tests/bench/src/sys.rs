//! What the machine says: CPU time of a process, how busy the machine is,
//! what it is, and what one `fdatasync` costs on the disk the server uses.

use std::{
    io::Write,
    os::unix::fs::FileExt,
    path::Path,
    time::{Duration, Instant},
};

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux
/// whatever the kernel's own tick rate).
const USER_HZ: f64 = 100.0;

/// CPU time (user + system, every thread, the ended ones included) of
/// process `pid`, or of this process for `None`, in seconds; 0 when it
/// cannot be read.
pub(crate) fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |p| format!("/proc/{p}/stat"),
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // The command name is in parentheses and may hold spaces: count from
    // the last ')'. Fields after it: state (3), …, utime (14), stime (15).
    let Some((_, rest)) = text.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / USER_HZ
}

/// CPU seconds of process `pid` with its children: those alive now (each
/// process's own time) and those ended and waited for (in its `cutime` and
/// `cstime`): a PostgreSQL postmaster and its backends.
pub(crate) fn cpu_seconds_with_children(pid: u32) -> f64 {
    let fields = |p: u32| -> Option<Vec<f64>> {
        let text = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let (_, rest) = text.rsplit_once(')')?;
        Some(
            rest.split_whitespace()
                .map(|f| f.parse::<f64>().unwrap_or(0.0))
                .collect(),
        )
    };
    let Some(own) = fields(pid) else {
        return 0.0;
    };
    let at = |f: &[f64], i: usize| f.get(i).copied().unwrap_or(0.0);
    // After the ')': state (0), ppid (1), …, utime (11), stime (12),
    // cutime (13), cstime (14).
    let mut ticks = at(&own, 11) + at(&own, 12) + at(&own, 13) + at(&own, 14);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(f) = fields(child).filter(|f| at(f, 1) as u32 == pid) {
                ticks += at(&f, 11) + at(&f, 12);
            }
        }
    }
    ticks / USER_HZ
}

/// Resident memory of process `pid` in bytes (`VmRSS`), 0 when unknown.
pub(crate) fn resident_bytes(pid: u32) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    text.lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// (busy, total) jiffies of all CPUs from `/proc/stat`.
fn cpu_jiffies() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    // idle (4th) and iowait (5th) are not busy.
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// The fraction of the machine's CPU time in use over `window`.
pub(crate) fn busy_fraction(window: Duration) -> f64 {
    let (busy0, total0) = cpu_jiffies();
    std::thread::sleep(window);
    let (busy1, total1) = cpu_jiffies();
    let total = total1.saturating_sub(total0);
    if total == 0 {
        return 0.0;
    }
    busy1.saturating_sub(busy0) as f64 / total as f64
}

/// The 1, 5 and 15 minute load averages.
pub(crate) fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut values = text.split_whitespace().filter_map(|v| v.parse().ok());
    [(); 3].map(|()| values.next().unwrap_or(0.0))
}

/// The machine's load when a benchmark started.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Load {
    /// The fraction of CPU time in use over one second, before timing.
    pub(crate) busy: f64,
    /// The load averages then.
    pub(crate) average: [f64; 3],
}

/// Above this fraction of the machine in use, timing does not start.
const BUSY_LIMIT: f64 = 0.25;
/// How long to wait for the machine to quieten before refusing.
const QUIET_WAIT: Duration = Duration::from_secs(90);

/// Waits (up to a minute and a half) until less than a quarter of the
/// machine is in use, and says so while waiting; the load it started at,
/// or why it refuses to time anything. With `ignore`, records the load
/// and goes on.
pub(crate) fn quiet_machine(what: &str, ignore: bool) -> Result<Load, String> {
    let started = Instant::now();
    let mut said = false;
    loop {
        let busy = busy_fraction(Duration::from_secs(1));
        let load = Load {
            busy,
            average: load_average(),
        };
        if busy <= BUSY_LIMIT || ignore {
            return Ok(load);
        }
        if started.elapsed() > QUIET_WAIT {
            return Err(format!(
                "the machine stays busy ({:.0}% of its CPU in use, load {:.2}): {what} is not \
                 timed, as its figures would measure whatever else runs. Stop what runs, or \
                 pass --ignore-load to time it anyway (the report records the load)",
                busy * 100.0,
                load.average[0]
            ));
        }
        if !said {
            eprintln!(
                "waiting: the machine is busy ({:.0}% of its CPU in use, load {:.2}); {what} \
                 starts once it is quiet",
                busy * 100.0,
                load.average[0]
            );
            said = true;
        }
    }
}

/// What the machine is, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Machine {
    /// The CPU model.
    pub(crate) cpu: String,
    /// Logical CPUs.
    pub(crate) cores: usize,
    /// Memory in GiB.
    pub(crate) memory_gib: f64,
    /// The kernel release.
    pub(crate) kernel: String,
}

impl Machine {
    /// This machine.
    pub(crate) fn this() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, m)| m.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kb = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory_gib: (memory_kb / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }
}

/// Durable writes of 4 KiB on one disk, in nanoseconds, sorted.
pub(crate) struct SyncLatencies {
    /// A buffered write followed by `fdatasync`: what one durable commit
    /// costs at the least on that disk, the usual way.
    pub(crate) fdatasync: Vec<u64>,
    /// The same block written as the journal writes its records, straight
    /// to the disk (`O_DIRECT`) and durable in the same call (`RWF_DSYNC`);
    /// `None` where the file system refuses direct writes.
    pub(crate) direct: Option<Vec<u64>>,
}

/// `count` durable writes of 4 KiB each way, to two files in `dir`, taken
/// in turn so that both see the disk alike.
pub(crate) fn sync_latencies(dir: &Path, count: usize) -> std::io::Result<SyncLatencies> {
    use rustix::{
        fs::{Mode, OFlags},
        io::ReadWriteFlags,
    };
    const BLOCK: usize = 4096;
    let buffered_path = dir.join("fdatasync-probe");
    let direct_path = dir.join("direct-probe");
    let mut buffered = std::fs::File::create(&buffered_path)?;
    buffered.write_all(&[0u8; 2 * BLOCK])?;
    buffered.sync_all()?;
    std::fs::write(&direct_path, [0u8; 2 * BLOCK])?;
    std::fs::File::open(&direct_path)?.sync_all()?;
    let mut direct = rustix::fs::open(
        &direct_path,
        OFlags::WRONLY | OFlags::DIRECT | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()
    .map(std::fs::File::from);
    // A block-aligned block in memory, as direct writes need.
    let memory = vec![7u8; 2 * BLOCK];
    let pad = memory.as_ptr().align_offset(BLOCK);
    let block = &memory[pad..pad + BLOCK];
    let mut out = SyncLatencies {
        fdatasync: Vec::with_capacity(count),
        direct: direct.as_ref().map(|_| Vec::with_capacity(count)),
    };
    let elapsed =
        |started: Instant| u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    for n in 0..count {
        // Alternate between two blocks, as a log appends.
        let at = (n % 2 * BLOCK) as u64;
        let started = Instant::now();
        buffered.write_all_at(block, at)?;
        buffered.sync_data()?;
        out.fdatasync.push(elapsed(started));
        if let (Some(file), Some(latencies)) = (&direct, &mut out.direct) {
            let started = Instant::now();
            match rustix::io::pwritev2(
                file,
                &[std::io::IoSlice::new(block)],
                at,
                ReadWriteFlags::DSYNC,
            ) {
                Ok(BLOCK) => latencies.push(elapsed(started)),
                Ok(_) => return Err(std::io::ErrorKind::WriteZero.into()),
                // Opened, yet refused (as the journal finds at its probe):
                // measured the usual way only.
                Err(_) => {
                    direct = None;
                    out.direct = None;
                }
            }
        }
    }
    drop((buffered, direct));
    std::fs::remove_file(&buffered_path)?;
    std::fs::remove_file(&direct_path)?;
    out.fdatasync.sort_unstable();
    if let Some(direct) = &mut out.direct {
        direct.sort_unstable();
    }
    Ok(out)
}
