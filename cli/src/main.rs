//! lbctl: the command-line client of lb's admin API.
//!
//! It replaces a Go tool whose command line scripts still use, so it keeps the Go shape: flags
//! before a camelCase command (`lbctl --pattern=/ addPool`), single-dash long flags
//! (`-pattern=/`). Flags may also follow the command.
//!
//! Every failure is one line on stderr starting `lbctl: error: `, with exit code 2 for a wrong
//! command line and 1 for anything the server or the network did.
//!
//! Layout:
//! - `args`: flags and commands, Go-style rewriting, and the flags each command cannot do without.
//! - `admin`: lb's admin API over HTTP; the JSON it sends and reads is lb-api's.
//! - `command`: runs one command and renders the answer for a person, or as JSON.
//! - `docs`: shell completions and the man page, generated from `args`.
//! - `stats`: `lbctl stats`, lb's `/metrics` read back into tables, once or `--watch`ed.
//! - `table`: the aligned text tables of `poolHealth` and `listPools`.
//! - `units`: durations (`2s`, `1m30s`) and sizes (`64KiB`) as flags take them and sentences
//!   print them.
//! - `error`: why lbctl failed, and the exit code that tells scripts which kind of failure.

mod admin;
mod args;
mod command;
mod docs;
mod error;
mod stats;
mod table;
mod units;

use std::{io::Write, process::ExitCode};

use error::Error;

fn main() -> ExitCode {
    let printed = run().and_then(|output| {
        // Whatever a sentence quotes (a pattern, lb's words) prints escaped; lines stay lines.
        let output: Vec<_> = output.split('\n').map(table::escape).collect();
        std::io::stdout()
            .write_all(output.join("\n").as_bytes())
            .map_err(|err| Error::Failed(format!("cannot write output: {err}")))
    });
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line whatever the message holds, so scripts can log it as one record.
            let message = err.to_string().replace(['\r', '\n'], " ");
            let message = table::escape(&message);
            eprintln!("lbctl: error: {message}");
            err.exit_code()
        }
    }
}

fn run() -> Result<String, Error> {
    let invocation = args::parse(std::env::args_os())?;
    if let Some(text) = docs::generate(&invocation.request) {
        // A script or a man page, printed as generated: no escaping, no lb asked.
        std::io::stdout().write_all(&text).map_err(|err| Error::Failed(format!("cannot write output: {err}")))?;
        return Ok(String::new());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| Error::Failed(format!("cannot start the async runtime: {err}")))?;
    runtime.block_on(command::run(invocation))
}
