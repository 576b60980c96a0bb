//! The report: a line per figure (`name ratio=… target=…`) as it is
//! measured, then one JSON and one Markdown file for the run.

use std::path::Path;

use serde::Serialize;

use crate::{run::Summary, sys};

/// What a ratio should be.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) enum Target {
    /// At least this.
    AtLeast(f64),
    /// At most this.
    AtMost(f64),
    /// A figure to know, with no target.
    None,
}

impl Target {
    fn met(self, ratio: f64) -> Option<bool> {
        match self {
            Target::AtLeast(t) => Some(ratio >= t),
            Target::AtMost(t) => Some(ratio <= t),
            Target::None => None,
        }
    }

    fn text(self) -> String {
        match self {
            Target::AtLeast(t) => format!(">={t}"),
            Target::AtMost(t) => format!("<={t}"),
            Target::None => "none".to_owned(),
        }
    }
}

/// One figure of the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Line {
    /// `B0.GetProfessional.2x32`, …
    pub(crate) name: String,
    /// The figure.
    pub(crate) ratio: f64,
    /// Its target.
    pub(crate) target: Target,
    /// Whether the target is met (none without a target).
    pub(crate) met: Option<bool>,
    /// What the ratio divides by what.
    pub(crate) meaning: String,
    /// The bare stack's side, when there is one.
    pub(crate) bare: Option<Summary>,
    /// samenop's side, when there is one.
    pub(crate) samenop: Option<Summary>,
    /// Other figures of this line (absolute values, their units in the key).
    pub(crate) figures: serde_json::Map<String, serde_json::Value>,
}

impl Line {
    /// A line of `ratio` against `target`.
    pub(crate) fn new(
        name: impl Into<String>,
        ratio: f64,
        target: Target,
        meaning: impl Into<String>,
    ) -> Line {
        Line {
            name: name.into(),
            ratio,
            target,
            met: target.met(ratio),
            meaning: meaning.into(),
            bare: None,
            samenop: None,
            figures: serde_json::Map::new(),
        }
    }

    /// With the two sides compared.
    pub(crate) fn sides(mut self, bare: Option<Summary>, samenop: Option<Summary>) -> Line {
        self.bare = bare;
        self.samenop = samenop;
        self
    }

    /// With a figure.
    pub(crate) fn figure(mut self, key: &str, value: f64) -> Line {
        let rounded = (value * 100.0).round() / 100.0;
        self.figures
            .insert(key.to_owned(), serde_json::json!(rounded));
        self
    }
}

/// The whole run.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// When it ran (UTC).
    pub(crate) date: String,
    /// On what.
    pub(crate) machine: sys::Machine,
    /// Rounds per comparison, and seconds per round.
    pub(crate) rounds: usize,
    /// See `rounds`.
    pub(crate) seconds_per_round: f64,
    /// The machine's load as each benchmark began.
    pub(crate) load: Vec<(String, sys::Load)>,
    /// Every figure.
    pub(crate) lines: Vec<Line>,
    /// What was measured beside the figures (the server's own metrics …).
    pub(crate) notes: Vec<String>,
    /// Appended to the name of every line added (`.pg1`: on PostgreSQL
    /// with one replica), so one report holds a figure on several stores.
    #[serde(skip)]
    pub(crate) suffix: String,
}

impl Report {
    /// An empty report of a run with `rounds` rounds of `seconds`.
    pub(crate) fn new(rounds: usize, seconds: f64) -> Report {
        let now = time::OffsetDateTime::now_utc();
        Report {
            date: format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                now.year(),
                u8::from(now.month()),
                now.day(),
                now.hour(),
                now.minute()
            ),
            machine: sys::Machine::this(),
            rounds,
            seconds_per_round: seconds,
            load: Vec::new(),
            lines: Vec::new(),
            notes: Vec::new(),
            suffix: String::new(),
        }
    }

    /// Prints `line` (`name ratio=… target=…`) and keeps it.
    pub(crate) fn add(&mut self, mut line: Line) {
        line.name.push_str(&self.suffix);
        let verdict = match line.met {
            Some(true) => " met",
            Some(false) => " MISSED",
            None => "",
        };
        let mut figures = String::new();
        if let (Some(bare), Some(ours)) = (&line.bare, &line.samenop) {
            figures.push_str(&format!(
                " bare={:.0}/s samenop={:.0}/s p50={:.0}µs/{:.0}µs p99={:.0}µs/{:.0}µs server_cpu={:.0}µs/{:.0}µs client_cpu={:.0}µs/{:.0}µs spread={:.0}%/{:.0}%",
                bare.rate,
                ours.rate,
                bare.p50_us,
                ours.p50_us,
                bare.p99_us,
                ours.p99_us,
                bare.server_cpu_us,
                ours.server_cpu_us,
                bare.client_cpu_us,
                ours.client_cpu_us,
                bare.spread() * 100.0,
                ours.spread() * 100.0,
            ));
        }
        if let Some(ours) = line.samenop.as_ref().filter(|s| s.settle_ms > 0.0) {
            figures.push_str(&format!(" settle_ms={:.0}", ours.settle_ms));
        }
        if let Some(ours) = line.samenop.as_ref().filter(|s| s.syncs_per_call > 0.0) {
            figures.push_str(&format!(
                " server_syncs_per_call={:.2} batches_per_commit={:.1}",
                ours.syncs_per_call, ours.batches_per_commit
            ));
        }
        for (key, value) in &line.figures {
            figures.push_str(&format!(" {key}={value}"));
        }
        println!(
            "{} ratio={:.3} target={}{verdict}{figures}",
            line.name,
            line.ratio,
            line.target.text()
        );
        self.lines.push(line);
    }

    /// Writes `<stem>.json` and `<stem>.md` into `dir`.
    pub(crate) fn write(&self, dir: &Path, stem: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(format!("{stem}.json")), json)?;
        std::fs::write(dir.join(format!("{stem}.md")), self.markdown())?;
        Ok(())
    }

    /// The report as Markdown: the machine, then a table of every figure.
    pub(crate) fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = format!(
            "samenop-bench, {}, on {} ({} logical CPUs, {} GiB, Linux {}); {} rounds of {} s per comparison, alternating.\n\n",
            self.date, m.cpu, m.cores, m.memory_gib, m.kernel, self.rounds, self.seconds_per_round
        );
        out.push_str("| figure | ratio | target | | bare | samenop | server CPU/call (bare, samenop) | what the ratio is |\n");
        out.push_str("|---|---|---|---|---|---|---|---|\n");
        for line in &self.lines {
            let verdict = match line.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "",
            };
            let side = |s: &Option<Summary>| {
                s.as_ref().map_or_else(String::new, |s| {
                    format!(
                        "{:.0}/s, p50 {:.0} µs, p99 {:.0} µs",
                        s.rate, s.p50_us, s.p99_us
                    )
                })
            };
            let cpu = match (&line.bare, &line.samenop) {
                (Some(b), Some(s)) => {
                    format!("{:.0} µs, {:.0} µs", b.server_cpu_us, s.server_cpu_us)
                }
                (None, Some(s)) => format!("{:.0} µs", s.server_cpu_us),
                _ => String::new(),
            };
            let mut meaning = line.meaning.clone();
            if !line.figures.is_empty() {
                let figures: Vec<String> = line
                    .figures
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect();
                meaning.push_str(&format!(" ({})", figures.join(", ")));
            }
            out.push_str(&format!(
                "| {} | {:.3} | {} | {verdict} | {} | {} | {cpu} | {meaning} |\n",
                line.name,
                line.ratio,
                line.target.text().replace("<=", "≤").replace(">=", "≥"),
                side(&line.bare),
                side(&line.samenop),
            ));
        }
        for note in &self.notes {
            out.push_str(&format!("\n{note}\n"));
        }
        out
    }
}
