//! The command line: the flags and commands of the Go tool lbctl replaces, and the check that a
//! command got the flags it cannot do without, turning it into a [`Request`] before any network
//! traffic.

use std::ffi::OsString;

use clap::{error::ErrorKind, CommandFactory, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::error::Error;

/// One example per command; `--help` ends with it because examples are what people copy.
const EXAMPLES: &str = "\
Examples:
  lbctl --lb=127.0.0.1:8081 listPools
  lbctl --lb=127.0.0.1:8081 --pattern=/ addPool
  lbctl --lb=127.0.0.1:8081 --pattern=/api/ --mode=redirect --strategy=round_robin addPool
  lbctl --lb=127.0.0.1:8081 --pattern=/ --mode=redirect setMode
  lbctl --lb=127.0.0.1:8081 --pattern=/ poolHealth
  lbctl --lb=127.0.0.1:8081 --pattern=/ --ip=127.0.0.1 --port=8082 --url_path=/ addBackend
  lbctl --lb=127.0.0.1:8081 --pattern=/ --ip=127.0.0.1 --port=8082 removeBackend
  lbctl --lb=127.0.0.1:8081 --pattern=/ removePool
  lbctl --json --pattern=/ poolHealth

Flags may come before or after the command, and Go-style single-dash flags work too:
  lbctl -lb=127.0.0.1:8081 -pattern=/ addPool";

/// Every flag is global so it may come before the command (the Go tool's order) or after it.
/// A repeated flag takes its last value, as with Go's flag package.
#[derive(Parser, Debug)]
#[command(
    name = "lbctl",
    version,
    args_override_self = true,
    about = "Manage lb's pools and backends through its admin API",
    after_help = EXAMPLES
)]
struct Cli {
    /// Admin address of lb, HOST:PORT, http:// optional (e.g. --lb=127.0.0.1:8081)
    #[arg(
        long,
        global = true,
        env = "LB_ADMIN",
        default_value = "127.0.0.1:8081",
        value_name = "HOST:PORT"
    )]
    lb: String,
    /// Pool pattern, ServeMux-style (e.g. --pattern=/ or --pattern=/api/)
    #[arg(long, global = true)]
    pattern: Option<String>,
    /// Backend IP, for addBackend and removeBackend (e.g. --ip=127.0.0.1)
    #[arg(long, global = true)]
    ip: Option<String>,
    /// Backend port, for addBackend and removeBackend (e.g. --port=8082)
    #[arg(long, global = true)]
    port: Option<u16>,
    /// Path prefix requests get on the backend, for addBackend (e.g. --url_path=/v2/)
    #[arg(
        long = "url_path",
        global = true,
        default_value = "/",
        value_name = "PATH"
    )]
    url_path: String,
    /// Pool mode, for addPool (default: lb's) and setMode (e.g. --mode=redirect)
    #[arg(long, global = true)]
    mode: Option<Mode>,
    /// Backend selection, for addPool (default: lb's) (e.g. --strategy=round_robin)
    #[arg(long, global = true)]
    strategy: Option<Strategy>,
    /// Print the admin API's JSON answer instead of the human summary (e.g. --json listPools)
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug, Clone, Copy)]
enum Command {
    /// List all pools with their mode, strategy, backend count and status
    #[command(name = "listPools")]
    ListPools,
    /// Create the pool --pattern, optionally with --mode and --strategy
    #[command(name = "addPool")]
    AddPool,
    /// Delete the pool --pattern and its backends
    #[command(name = "removePool")]
    RemovePool,
    /// Switch the pool --pattern to --mode
    #[command(name = "setMode")]
    SetMode,
    /// Show the health of the pool --pattern and of each of its backends
    #[command(name = "poolHealth")]
    PoolHealth,
    /// Add --ip:--port (serving under --url_path) to the pool --pattern
    #[command(name = "addBackend")]
    AddBackend,
    /// Remove --ip:--port from the pool --pattern
    #[command(name = "removeBackend")]
    RemoveBackend,
}

impl Command {
    /// The name users type, for error messages.
    fn name(self) -> &'static str {
        match self {
            Command::ListPools => "listPools",
            Command::AddPool => "addPool",
            Command::RemovePool => "removePool",
            Command::SetMode => "setMode",
            Command::PoolHealth => "poolHealth",
            Command::AddBackend => "addBackend",
            Command::RemoveBackend => "removeBackend",
        }
    }
}

/// How a pool answers requests; serialized as the admin API spells it.
#[derive(ValueEnum, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Proxy,
    Redirect,
}

/// How a pool picks a backend; serialized as the admin API spells it.
#[derive(ValueEnum, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    P2c,
    #[value(name = "round_robin")]
    RoundRobin,
}

/// A checked command line: where lb is, how to print, and what to ask.
#[derive(Debug, PartialEq, Eq)]
pub struct Invocation {
    pub lb: String,
    pub json: bool,
    pub request: Request,
}

/// One admin request, with exactly the flags it needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    ListPools,
    AddPool {
        pattern: String,
        mode: Option<Mode>,
        strategy: Option<Strategy>,
    },
    RemovePool {
        pattern: String,
    },
    SetMode {
        pattern: String,
        mode: Mode,
    },
    PoolHealth {
        pattern: String,
    },
    AddBackend {
        pattern: String,
        ip: String,
        port: u16,
        url_path: String,
    },
    RemoveBackend {
        pattern: String,
        ip: String,
        port: u16,
    },
}

/// Parses the process arguments. `--help` and `--version` print and exit 0 here, as clap does;
/// every other problem comes back as a one-line [`Error::Usage`].
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, Error> {
    let cli = match Cli::try_parse_from(go_style(args)) {
        Ok(cli) => cli,
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            err.exit()
        }
        // Bare `lbctl`: name the commands instead of printing the whole help as an error.
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand
            ) =>
        {
            let command = Cli::command();
            let names: Vec<&str> = command
                .get_subcommands()
                .map(|sub| sub.get_name())
                .collect();
            let message = format!("no command given, try one of {}", names.join(", "));
            return Err(Error::Usage(format!("{message} (see lbctl --help)")));
        }
        Err(err) => return Err(Error::Usage(one_line(&err))),
    };
    cli.into_invocation()
}

/// Rewrites Go-style long flags (`-lb=x`, `-pattern /`) to `--lb=x`, `--pattern /` so existing
/// scripts keep working. Only a single dash followed by a letter and at least one more character
/// is rewritten: `-h` stays clap's short help, values like `-1` stay values, and nothing after a
/// `--` separator is touched.
fn go_style(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut past_separator = false;
    args.into_iter()
        .map(|arg| {
            let Some(text) = arg.to_str() else {
                return arg;
            };
            past_separator |= text == "--";
            let mut chars = text.chars();
            let go_flag = chars.next() == Some('-')
                && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.next().is_some();
            if go_flag && !past_separator {
                format!("-{text}").into()
            } else {
                arg
            }
        })
        .collect()
}

/// Clap explains a usage error over several lines (message, tip, usage); keep the message and
/// any tip, and point at `--help` for the rest.
fn one_line(err: &clap::Error) -> String {
    let rendered = err.to_string();
    let mut parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("Usage:"))
        .filter(|line| !line.is_empty() && !line.starts_with("For more information"))
        .collect();
    if let Some(first) = parts.first_mut() {
        *first = first.strip_prefix("error: ").unwrap_or(first);
    }
    format!("{} (see lbctl --help)", parts.join("; "))
}

impl Cli {
    fn into_invocation(self) -> Result<Invocation, Error> {
        let command = self.command;
        let needs = |flag: &str| Error::Usage(format!("{} needs {flag}", command.name()));
        let pattern = || self.pattern.clone().ok_or_else(|| needs("--pattern"));
        let request = match command {
            Command::ListPools => Request::ListPools,
            Command::AddPool => Request::AddPool {
                pattern: pattern()?,
                mode: self.mode,
                strategy: self.strategy,
            },
            Command::RemovePool => Request::RemovePool {
                pattern: pattern()?,
            },
            Command::SetMode => Request::SetMode {
                pattern: pattern()?,
                mode: self.mode.ok_or_else(|| needs("--mode"))?,
            },
            Command::PoolHealth => Request::PoolHealth {
                pattern: pattern()?,
            },
            Command::AddBackend => Request::AddBackend {
                pattern: pattern()?,
                ip: self.ip.clone().ok_or_else(|| needs("--ip"))?,
                port: self.port.ok_or_else(|| needs("--port"))?,
                url_path: self.url_path.clone(),
            },
            Command::RemoveBackend => Request::RemoveBackend {
                pattern: pattern()?,
                ip: self.ip.clone().ok_or_else(|| needs("--ip"))?,
                port: self.port.ok_or_else(|| needs("--port"))?,
            },
        };
        Ok(Invocation {
            lb: self.lb,
            json: self.json,
            request,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Invocation, Error> {
        parse(args.iter().map(OsString::from))
    }

    fn strings(args: &[OsString]) -> Vec<&str> {
        args.iter().map(|a| a.to_str().unwrap()).collect()
    }

    #[test]
    fn go_style_rewrites_single_dash_long_flags_only() {
        let args = [
            "lbctl", "-lb=x:1", "-pattern", "/", "-h", "-1", "--json", "addPool",
        ];
        let rewritten = go_style(args.map(OsString::from));
        assert_eq!(
            strings(&rewritten),
            [
                "lbctl",
                "--lb=x:1",
                "--pattern",
                "/",
                "-h",
                "-1",
                "--json",
                "addPool"
            ]
        );
    }

    #[test]
    fn go_style_leaves_everything_after_a_separator() {
        let rewritten = go_style(["lbctl", "--", "-pattern"].map(OsString::from));
        assert_eq!(strings(&rewritten), ["lbctl", "--", "-pattern"]);
    }

    #[test]
    fn the_go_command_line_parses() {
        let invocation = parse_strs(&[
            "lbctl",
            "-lb=10.0.0.1:9000",
            "-pattern=/api/",
            "-ip=127.0.0.1",
            "-port=8082",
            "-url_path=/v2/",
            "addBackend",
        ])
        .unwrap();
        assert_eq!(
            invocation,
            Invocation {
                lb: "10.0.0.1:9000".into(),
                json: false,
                request: Request::AddBackend {
                    pattern: "/api/".into(),
                    ip: "127.0.0.1".into(),
                    port: 8082,
                    url_path: "/v2/".into(),
                },
            }
        );
    }

    #[test]
    fn flags_may_follow_the_command() {
        let invocation = parse_strs(&[
            "lbctl",
            "addPool",
            "--pattern=/",
            "--mode=redirect",
            "--json",
        ])
        .unwrap();
        assert!(invocation.json);
        assert_eq!(
            invocation.request,
            Request::AddPool {
                pattern: "/".into(),
                mode: Some(Mode::Redirect),
                strategy: None,
            }
        );
    }

    #[test]
    fn url_path_defaults_to_root() {
        let invocation = parse_strs(&[
            "lbctl",
            "--pattern=/",
            "--ip=127.0.0.1",
            "--port=8082",
            "addBackend",
        ])
        .unwrap();
        let Request::AddBackend { url_path, .. } = invocation.request else {
            panic!("wrong request {:?}", invocation.request);
        };
        assert_eq!(url_path, "/");
    }

    #[test]
    fn a_missing_flag_names_the_command_and_the_flag() {
        let err = parse_strs(&["lbctl", "--pattern=/", "--port=8082", "addBackend"]).unwrap_err();
        assert_eq!(err, Error::Usage("addBackend needs --ip".into()));
        let err = parse_strs(&["lbctl", "--pattern=/", "setMode"]).unwrap_err();
        assert_eq!(err, Error::Usage("setMode needs --mode".into()));
        let err = parse_strs(&["lbctl", "poolHealth"]).unwrap_err();
        assert_eq!(err, Error::Usage("poolHealth needs --pattern".into()));
    }

    #[test]
    fn strategies_are_spelled_as_the_admin_api_spells_them() {
        let invocation =
            parse_strs(&["lbctl", "--pattern=/", "--strategy=round_robin", "addPool"]).unwrap();
        let Request::AddPool { strategy, .. } = invocation.request else {
            panic!("wrong request {:?}", invocation.request);
        };
        assert_eq!(strategy, Some(Strategy::RoundRobin));
        assert_eq!(
            serde_json::to_string(&Strategy::RoundRobin).unwrap(),
            r#""round_robin""#
        );
        assert_eq!(serde_json::to_string(&Mode::Proxy).unwrap(), r#""proxy""#);
    }

    #[test]
    fn no_command_lists_the_commands() {
        let err = parse_strs(&["lbctl", "--lb=x:1"]).unwrap_err();
        assert_eq!(
            err,
            Error::Usage(
                "no command given, try one of listPools, addPool, removePool, setMode, \
                 poolHealth, addBackend, removeBackend (see lbctl --help)"
                    .into()
            )
        );
    }

    #[test]
    fn a_repeated_flag_takes_the_last_value() {
        let invocation = parse_strs(&[
            "lbctl",
            "-lb=a:1",
            "--json",
            "-lb=b:2",
            "--json",
            "listPools",
        ]);
        assert_eq!(invocation.unwrap().lb, "b:2");
    }

    #[test]
    fn clap_errors_become_one_line() {
        let Err(Error::Usage(message)) = parse_strs(&["lbctl", "addpool"]) else {
            panic!("expected a usage error");
        };
        assert!(!message.contains('\n'), "{message:?}");
        assert!(
            message.starts_with("unrecognized subcommand 'addpool'"),
            "{message:?}"
        );
        assert!(message.ends_with("(see lbctl --help)"), "{message:?}");
    }
}
