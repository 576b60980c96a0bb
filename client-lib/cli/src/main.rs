//! `samenop`: the command line of samenop for contact persons, specialists
//! and privacy officers, built on `samenop-client`.
//!
//! # Layout
//! - `cli`: the command line's definition (clap), with each command's help
//!   and example; completions and the man page come from it too.
//! - `config`: profiles, one per acting professional, in a TOML file.
//! - `context`: what a command runs with: its profile's connection, the
//!   device (opened on first use) and the printer.
//! - `output`: one printer for people (aligned tables, relative times,
//!   colour on a terminal) and for scripts (`--json`).
//! - `error`: what went wrong in the words of the domain, what to do next,
//!   and the exit code of each class of failure.
//! - `ids`: short ids (a unique prefix of at least 6 characters).
//! - `text`: the user-facing words, in one place for a later translation.
//! - `cmd`: one file per group of commands; `cmd::run` dispatches.
//! - `web`: `samenop inbox --web`, the inbox in the browser, served on
//!   127.0.0.1 by this process, which holds the device.

mod cli;
mod cmd;
mod config;
mod context;
mod error;
mod ids;
mod output;
mod retry;
mod text;
mod time;
mod web;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let json = args.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("samenop: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            output::failure(&err, json);
            ExitCode::from(err.exit_code())
        }
    }
}
