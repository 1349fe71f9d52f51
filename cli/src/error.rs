//! Why lbctl failed. Two kinds are enough: scripts only need to tell "I called it wrong" from
//! "lb or the network failed", and the message says the rest.

use std::{fmt, process::ExitCode};

/// A failure, already worded for the user; `main` prints it after `lbctl: error: `.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// The command line is wrong: unknown command or flag, missing or malformed flag. Exit 2,
    /// like clap and Go's flag package.
    Usage(String),
    /// Everything else, nearly always the admin API: it refused the request, answered something
    /// unexpected, or could not be reached. Exit 1.
    Failed(String),
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::from(2),
            Error::Failed(_) => ExitCode::from(1),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(message) | Error::Failed(message) => f.write_str(message),
        }
    }
}
