//! One printer for people and for scripts, so no command formats twice:
//! a command gives the printer its result as JSON (stable field names, the
//! `--json` output) and, for people, the words and tables to show. Colour
//! only on a terminal, and never with `NO_COLOR`.

use std::io::{IsTerminal, Write};

use crate::error::CliError;

/// How results are shown.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Printer {
    /// JSON for scripts instead of text for people.
    json: bool,
    /// ANSI colour (text on a terminal only).
    color: bool,
}

impl Printer {
    pub(crate) fn new(json: bool) -> Self {
        let color = !json
            && std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Printer { json, color }
    }

    pub(crate) fn json(&self) -> bool {
        self.json
    }

    /// Shows a result: `value` as one JSON document with `--json`, else
    /// what `human` writes.
    pub(crate) fn show(&self, value: &serde_json::Value, human: impl FnOnce(&Printer) -> String) {
        let text = if self.json {
            value.to_string()
        } else {
            human(self)
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", text.trim_end_matches('\n'));
    }

    /// Shows one event of a stream: a JSON line with `--json`.
    pub(crate) fn event(&self, value: &serde_json::Value, human: impl FnOnce(&Printer) -> String) {
        self.show(value, human);
        let _ = std::io::stdout().flush();
    }

    /// Rows under headers, in aligned columns.
    pub(crate) fn table(&self, headers: &[&str], rows: &[Vec<String>]) -> String {
        let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
        for row in rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let line = |cells: Vec<String>| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let width = widths.get(i).copied().unwrap_or(0);
                let pad = width.saturating_sub(cell.chars().count());
                text.push_str(cell);
                if i + 1 < cells.len() {
                    text.push_str(&" ".repeat(pad + 2));
                }
            }
            text.trim_end().to_owned()
        };
        let mut out = self.bold(&line(headers.iter().map(|h| (*h).to_owned()).collect()));
        out.push('\n');
        for row in rows {
            out.push_str(&line(row.clone()));
            out.push('\n');
        }
        out
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub(crate) fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    pub(crate) fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    /// Something the reader must notice: overdue, refused, suspended.
    pub(crate) fn warn(&self, text: &str) -> String {
        self.paint("31", text)
    }

    /// Progress on stderr (a terminal only, never with `--json`).
    pub(crate) fn progress(&self, text: &str) {
        if !self.json && std::io::stderr().is_terminal() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{text}\x1b[K");
            let _ = err.flush();
        }
    }

    /// A remark on stderr for a person (never with `--json`, whose stderr
    /// holds only the failure object).
    pub(crate) fn note(&self, text: &str) {
        if !self.json {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }

    /// Ends a progress line.
    pub(crate) fn progress_done(&self) {
        if !self.json && std::io::stderr().is_terminal() {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// Tells the caller why a command failed: on stderr, in words with what to
/// do next, or as one JSON object with `--json`.
pub(crate) fn failure(err: &CliError, json: bool) {
    let mut out = std::io::stderr().lock();
    if json {
        let value = serde_json::json!({
            "error": {
                "class": err.class.name(),
                "message": err.message,
                "hint": err.hint,
                "exit_code": err.exit_code(),
            }
        });
        let _ = writeln!(out, "{value}");
    } else {
        let _ = writeln!(out, "samenop: {}", err.message);
        if let Some(hint) = &err.hint {
            let _ = writeln!(out, "  {hint}");
        }
    }
}
