//! The command line: the flags and commands of the Go tool lbctl replaces, and the check that a
//! command got the flags it cannot do without, turning it into a [`Request`] before any network
//! traffic.

use std::ffi::OsString;

use clap::{error::ErrorKind, CommandFactory, Parser, Subcommand, ValueEnum};
use lb_api::{HealthCheckChange, Mode, Strategy, TimeoutsChange};

use crate::{admin::PoolSettings, error::Error, units};

/// One example per command; `--help` ends with it because examples are what people copy.
const EXAMPLES: &str = "\
Examples:
  lbctl --lb=127.0.0.1:8081 listPools
  lbctl --lb=127.0.0.1:8081 --pattern=/ addPool
  lbctl --lb=127.0.0.1:8081 --pattern=/api/ --mode=redirect --strategy=round_robin addPool
  lbctl --lb=127.0.0.1:8081 --pattern=/api/ --strategy=least_conn --retries=2 --retry_on=5xx --health_path=/ready --interval=2s addPool
  lbctl --lb=127.0.0.1:8081 --pattern=/ --mode=redirect setMode
  lbctl --lb=127.0.0.1:8081 --pattern=/ --strategy=consistent_hash --hash_key=header:X-User setPool
  lbctl --lb=127.0.0.1:8081 --pattern=/ --connect_timeout=1s --response_timeout=30s --retry_body_limit=1MiB setPool
  lbctl --lb=127.0.0.1:8081 --pattern=/ --expose_backend=true --allow_trace=false setPool
  lbctl --lb=127.0.0.1:8081 --pattern=/ --interval=2s --fall=3 --rise=2 setHealth
  lbctl --lb=127.0.0.1:8081 --pattern=/ --health_path=/healthz --expected_status=204 --evict_after=0 setHealth
  lbctl --lb=127.0.0.1:8081 --pattern=/ poolHealth
  lbctl --lb=127.0.0.1:8081 --pattern=/ --ip=127.0.0.1 --port=8082 --url_path=/ addBackend
  lbctl --lb=127.0.0.1:8081 --pattern=/ --ip=127.0.0.1 --port=8083 --weight=3 addBackend
  lbctl --lb=127.0.0.1:8081 --pattern=/ --ip=127.0.0.1 --port=8082 drainBackend
  lbctl --lb=127.0.0.1:8081 --pattern=/ --ip=127.0.0.1 --port=8082 undrainBackend
  lbctl --lb=127.0.0.1:8081 --pattern=/ --ip=127.0.0.1 --port=8083 --weight=1 setWeight
  lbctl --lb=127.0.0.1:8081 --pattern=/ --ip=127.0.0.1 --port=8082 removeBackend
  lbctl --lb=127.0.0.1:8081 --pattern=/ removePool
  lbctl --lb=127.0.0.1:8081 stats
  lbctl --lb=127.0.0.1:8081 --pattern=/api/ --watch --interval=2s stats
  lbctl --json --pattern=/ poolHealth
  lbctl --token-file=/etc/lb/admin-token listPools          # an lb started with --admin-token-file
  lbctl --lb=127.0.0.1:8081 export > state.json
  lbctl --lb=127.0.0.1:8081 import state.json

Durations are Go-style (500ms, 2s, 1m30s, 1h); sizes are bytes, KiB or MiB (65536, 64KiB, 1MiB);
switches are Go-style too (--expose_backend alone is --expose_backend=true; also 1, t, 0, f).

Flags may come before or after the command, and Go-style single-dash flags work too:
  lbctl -lb=127.0.0.1:8081 -pattern=/ addPool";

/// `--help` groups the flags by the commands that read them; setPool and setHealth also name
/// the flags of their group when given none.
const BACKEND: &str = "Backend";
const POOL: &str = "Pool settings (addPool, setPool)";
const HEALTH: &str = "Health check (addPool, setHealth)";

/// Every flag is global so it may come before the command (the Go tool's order) or after it.
/// A repeated flag takes its last value, as with Go's flag package. Durations and sizes are
/// taken as text and parsed in [`Cli::into_invocation`], so their errors name the flag and show
/// the accepted spelling.
#[derive(Parser, Debug)]
#[command(
    name = "lbctl",
    version,
    args_override_self = true,
    about = "Manage lb's pools and backends through its admin API",
    after_help = EXAMPLES
)]
struct Cli {
    /// Admin address of lb, HOST:PORT, http:// optional, or unix:PATH (e.g. --lb=127.0.0.1:8081)
    #[arg(long, global = true, env = "LB_ADMIN", default_value = "127.0.0.1:8081", value_name = "HOST:PORT")]
    lb: String,
    /// Pool pattern, ServeMux-style (e.g. --pattern=/ or --pattern=/api/)
    #[arg(long, global = true)]
    pattern: Option<String>,
    /// Print the admin API's JSON answer instead of the human summary (e.g. --json listPools)
    #[arg(long, global = true)]
    json: bool,
    /// Bearer token of an lb started with an admin token (visible in ps: prefer --token-file
    /// or LB_TOKEN)
    #[arg(long, global = true, env = "LB_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: Option<String>,
    /// File holding the bearer token, as lb's --admin-token-file; wins over --token and LB_TOKEN
    /// (e.g. --token-file=/etc/lb/token)
    #[arg(long = "token-file", global = true, value_name = "FILE")]
    token_file: Option<std::path::PathBuf>,

    /// Redraw stats every --interval (default 1s, at least 100ms) until Ctrl-C, with requests/s
    #[arg(long, global = true, value_parser = go_bool, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    watch: Option<bool>,
    /// Frames stats --watch draws before it ends (for tests and scripts)
    #[arg(long, global = true, hide = true, value_name = "N")]
    count: Option<u64>,

    /// Backend IP, for the backend commands (e.g. --ip=127.0.0.1)
    #[arg(long, global = true, help_heading = BACKEND)]
    ip: Option<String>,
    /// Backend port, for the backend commands (e.g. --port=8082)
    #[arg(long, global = true, help_heading = BACKEND)]
    port: Option<u16>,
    /// Path prefix requests get on the backend, for addBackend (e.g. --url_path=/v2/)
    #[arg(
        long = "url_path",
        global = true,
        default_value = "/",
        value_name = "PATH",
        help_heading = BACKEND
    )]
    url_path: String,
    /// Share of requests relative to the pool's other backends, for addBackend (default: lb's)
    /// and setWeight (e.g. --weight=3)
    #[arg(long, global = true, value_name = "N", help_heading = BACKEND)]
    weight: Option<u32>,

    /// Pool mode, also for setMode (e.g. --mode=redirect)
    #[arg(long, global = true, help_heading = POOL)]
    mode: Option<Mode>,
    /// Backend selection (e.g. --strategy=least_conn)
    #[arg(long, global = true, help_heading = POOL)]
    strategy: Option<Strategy>,
    /// What consistent_hash hashes: client_ip, header:NAME or cookie:NAME
    /// (e.g. --hash_key=header:X-User)
    #[arg(long = "hash_key", global = true, value_name = "KEY", help_heading = POOL)]
    hash_key: Option<String>,
    /// Extra attempts on another backend after a failed one (e.g. --retries=2)
    #[arg(long, global = true, value_name = "N", help_heading = POOL)]
    retries: Option<u32>,
    /// Also retry idempotent requests a backend answered 502, 503 or 504 (5xx), or not (none)
    #[arg(long = "retry_on", global = true, value_name = "WHEN", help_heading = POOL)]
    retry_on: Option<RetryOn>,
    /// Largest request body kept to replay on a retry (e.g. --retry_body_limit=64KiB)
    #[arg(long = "retry_body_limit", global = true, value_name = "SIZE", help_heading = POOL)]
    retry_body_limit: Option<String>,
    /// Time to connect to a backend (e.g. --connect_timeout=3s)
    #[arg(long = "connect_timeout", global = true, value_name = "DURATION", help_heading = POOL)]
    connect_timeout: Option<String>,
    /// Time a backend has to answer (e.g. --response_timeout=60s)
    #[arg(long = "response_timeout", global = true, value_name = "DURATION", help_heading = POOL)]
    response_timeout: Option<String>,
    /// Time an unused connection to a backend is kept open (e.g. --idle_timeout=90s)
    #[arg(long = "idle_timeout", global = true, value_name = "DURATION", help_heading = POOL)]
    idle_timeout: Option<String>,
    /// Name the backend that served each response in X-Forwarded-Server (e.g. --expose_backend=true)
    #[arg(long = "expose_backend", value_name = "BOOL", help_heading = POOL, value_parser = go_bool,
          global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    expose_backend: Option<bool>,
    /// Pass TRACE requests on to the pool's backends (or redirect them) instead of a 405 (e.g. --allow_trace=true)
    #[arg(long = "allow_trace", value_name = "BOOL", help_heading = POOL, value_parser = go_bool,
          global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    allow_trace: Option<bool>,

    /// Path lb GETs on each backend (e.g. --health_path=/healthz)
    #[arg(long = "health_path", global = true, value_name = "PATH", help_heading = HEALTH)]
    health_path: Option<String>,
    /// Trimmed answer bodies that mean healthy, comma-separated (e.g. --healthy_values=ok,OK)
    #[arg(long = "healthy_values", global = true, value_name = "LIST", help_heading = HEALTH)]
    healthy_values: Option<String>,
    /// Status a healthy backend answers, instead of any 2xx (e.g. --expected_status=204)
    #[arg(
        long = "expected_status",
        global = true,
        value_name = "CODE",
        value_parser = clap::value_parser!(u16).range(100..=599),
        help_heading = HEALTH
    )]
    expected_status: Option<u16>,
    /// Time between checks (e.g. --interval=2s); with stats --watch, between frames (default 1s)
    #[arg(long, global = true, value_name = "DURATION", help_heading = HEALTH)]
    interval: Option<String>,
    /// Time one check may take (e.g. --timeout=1s)
    #[arg(long, global = true, value_name = "DURATION", help_heading = HEALTH)]
    timeout: Option<String>,
    /// Failures in a row that make a backend sick (e.g. --fall=3)
    #[arg(long, global = true, value_name = "N", help_heading = HEALTH)]
    fall: Option<u32>,
    /// Passed checks in a row that make a sick backend healthy again (e.g. --rise=2)
    #[arg(long, global = true, value_name = "N", help_heading = HEALTH)]
    rise: Option<u32>,
    /// Failures in a row after which lb removes the backend, 0 = never (e.g. --evict_after=30)
    #[arg(long = "evict_after", global = true, value_name = "N", help_heading = HEALTH)]
    evict_after: Option<u32>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug, Clone)]
enum Command {
    /// List all pools with their mode, strategy, backend count and status
    #[command(name = "listPools")]
    ListPools,
    /// Create the pool --pattern with any pool settings and health check flags given
    #[command(name = "addPool")]
    AddPool,
    /// Delete the pool --pattern and its backends
    #[command(name = "removePool")]
    RemovePool,
    /// Switch the pool --pattern to --mode
    #[command(name = "setMode")]
    SetMode,
    /// Change the pool settings given (--mode, --strategy, --retries, ...) of the pool --pattern
    #[command(name = "setPool")]
    SetPool,
    /// Change the health check flags given (--interval, --fall, ...) of the pool --pattern
    #[command(name = "setHealth")]
    SetHealth,
    /// Show the health of the pool --pattern and of each of its backends
    #[command(name = "poolHealth")]
    PoolHealth,
    /// Add --ip:--port (serving under --url_path, with --weight) to the pool --pattern
    #[command(name = "addBackend")]
    AddBackend,
    /// Remove --ip:--port from the pool --pattern
    #[command(name = "removeBackend")]
    RemoveBackend,
    /// Stop sending new requests to --ip:--port of the pool --pattern; it stays in the pool
    #[command(name = "drainBackend")]
    DrainBackend,
    /// Send requests to the drained --ip:--port of the pool --pattern again
    #[command(name = "undrainBackend")]
    UndrainBackend,
    /// Give --ip:--port of the pool --pattern the weight --weight
    #[command(name = "setWeight")]
    SetWeight,
    /// Per pool and backend: status, in flight, weight, requests, 5xx share, p50/p99, from
    /// lb's /metrics (--pattern for one pool; --watch to redraw every --interval)
    Stats,
    /// Print every pool, backend and setting as JSON, a state for import (lbctl export > state.json)
    Export,
    /// Replace every pool and backend with the state in FILE, all or nothing (lbctl import state.json)
    Import {
        /// A state from lbctl export, or a data dir's last-good.json
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
    },
    /// Print a completion script for SHELL (lbctl completions bash > /etc/bash_completion.d/lbctl)
    Completions {
        /// The shell: bash, zsh, fish (or elvish, powershell)
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print lbctl's man page (lbctl man > /usr/local/share/man/man1/lbctl.1)
    Man,
}

impl Command {
    /// The name users type, for error messages.
    fn name(&self) -> &'static str {
        match self {
            Command::ListPools => "listPools",
            Command::AddPool => "addPool",
            Command::RemovePool => "removePool",
            Command::SetMode => "setMode",
            Command::SetPool => "setPool",
            Command::SetHealth => "setHealth",
            Command::PoolHealth => "poolHealth",
            Command::AddBackend => "addBackend",
            Command::RemoveBackend => "removeBackend",
            Command::DrainBackend => "drainBackend",
            Command::UndrainBackend => "undrainBackend",
            Command::SetWeight => "setWeight",
            Command::Stats => "stats",
            Command::Export => "export",
            Command::Import { .. } => "import",
            Command::Completions { .. } => "completions",
            Command::Man => "man",
        }
    }
}

/// `--retry_on`: which backend answers, besides failures to get one, are worth another attempt.
/// The API has a flag for the one choice there is today (`retry_on_5xx`).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum RetryOn {
    #[value(name = "5xx")]
    ServerErrors,
    #[value(name = "none")]
    Nothing,
}

/// A checked command line: where lb is, how to print, and what to ask.
#[derive(Debug, PartialEq, Eq)]
pub struct Invocation {
    pub lb: String,
    pub json: bool,
    /// The admin token, if given.
    pub token: Option<String>,
    pub request: Request,
}

/// One admin request, with exactly the flags it needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    ListPools,
    AddPool {
        pattern: String,
        settings: PoolSettings,
    },
    RemovePool {
        pattern: String,
    },
    SetMode {
        pattern: String,
        mode: Mode,
    },
    /// Never empty: at least one setting, and no health check (that is `SetHealth`).
    SetPool {
        pattern: String,
        settings: PoolSettings,
    },
    /// Never empty: at least one health check field.
    SetHealth {
        pattern: String,
        health_check: HealthCheckChange,
    },
    PoolHealth {
        pattern: String,
    },
    AddBackend {
        pattern: String,
        ip: String,
        port: u16,
        url_path: String,
        weight: Option<u32>,
    },
    RemoveBackend {
        pattern: String,
        ip: String,
        port: u16,
    },
    /// drainBackend (`true`) and undrainBackend (`false`).
    SetDraining {
        pattern: String,
        ip: String,
        port: u16,
        draining: bool,
    },
    SetWeight {
        pattern: String,
        ip: String,
        port: u16,
        weight: u32,
    },
    /// `lbctl stats`: the whole lb or one pool, once or watched.
    Stats {
        pattern: Option<String>,
        watch: Option<Watch>,
    },
    Export,
    Import {
        file: std::path::PathBuf,
    },
    /// Answered by lbctl itself ([`crate::docs`]), without asking lb.
    Completions {
        shell: clap_complete::Shell,
    },
    Man,
}

/// `stats --watch`: how often, and how many frames (`None`: until Ctrl-C).
#[derive(Debug, PartialEq, Eq)]
pub struct Watch {
    pub interval_ms: u64,
    pub count: Option<u64>,
}

/// lbctl's command line as clap defines it, for the completions and the man page.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Parses the process arguments. `--help` and `--version` print and exit 0 here, as clap does;
/// every other problem comes back as a one-line [`Error::Usage`].
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, Error> {
    let args = go_style(args);
    missing_value(&args)?;
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => err.exit(),
        // Bare `lbctl`: name the commands instead of printing the whole help as an error.
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand
            ) =>
        {
            let command = Cli::command();
            let names: Vec<&str> = command.get_subcommands().map(|sub| sub.get_name()).collect();
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
/// Refuses a flag whose value would be a command: `lbctl --pattern addPool` means a
/// forgotten value, not the pattern `addPool` (patterns hold a `/`, addresses and numbers are
/// no command names either), and clap would only say that no command was given.
fn missing_value(args: &[OsString]) -> Result<(), Error> {
    let command = Cli::command();
    let commands: Vec<&str> = command.get_subcommands().map(|sub| sub.get_name()).collect();
    // A switch (`--expose_backend`) takes its value only after `=`, as Go's bool flags do.
    let takes_value = |long: &str| {
        command
            .get_arguments()
            .any(|arg| arg.get_long() == Some(long) && arg.get_action().takes_values() && !arg.is_require_equals_set())
    };
    let texts: Vec<Option<&str>> = args.iter().map(|arg| arg.to_str()).collect();
    for pair in texts.windows(2) {
        let (Some(flag), Some(next)) = (pair[0], pair[1]) else { continue };
        if flag == "--" {
            break;
        }
        let Some(long) = flag.strip_prefix("--").filter(|long| !long.contains('=')) else { continue };
        if takes_value(long) && commands.contains(&next) {
            return Err(Error::Usage(format!(
                "--{long} needs a value: {next} is a command (write --{long}=VALUE {next}; see lbctl --help)"
            )));
        }
    }
    Ok(())
}

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
        // Malformed values are refused whatever the command, as clap refuses a bad --port.
        let settings = self.pool_settings()?;
        let health_check = self.health_check()?;
        let command = &self.command;
        let needs = |flag: &str| Error::Usage(format!("{} needs {flag}", command.name()));
        let pattern = || self.pattern.clone().ok_or_else(|| needs("--pattern"));
        let ip = || self.ip.clone().ok_or_else(|| needs("--ip"));
        let port = || self.port.ok_or_else(|| needs("--port"));
        let request = match command {
            Command::ListPools => Request::ListPools,
            Command::AddPool => {
                Request::AddPool { pattern: pattern()?, settings: PoolSettings { health_check, ..settings } }
            }
            Command::RemovePool => Request::RemovePool { pattern: pattern()? },
            Command::SetMode => {
                Request::SetMode { pattern: pattern()?, mode: self.mode.ok_or_else(|| needs("--mode"))? }
            }
            Command::SetPool => {
                let pattern = pattern()?;
                if settings == PoolSettings::default() {
                    return Err(needs(&format!("at least one of {}", flags_under(POOL))));
                }
                Request::SetPool { pattern, settings }
            }
            Command::SetHealth => Request::SetHealth {
                pattern: pattern()?,
                health_check: health_check.ok_or_else(|| needs(&format!("at least one of {}", flags_under(HEALTH))))?,
            },
            Command::PoolHealth => Request::PoolHealth { pattern: pattern()? },
            Command::AddBackend => Request::AddBackend {
                pattern: pattern()?,
                ip: ip()?,
                port: port()?,
                url_path: self.url_path.clone(),
                weight: self.weight,
            },
            Command::RemoveBackend => Request::RemoveBackend { pattern: pattern()?, ip: ip()?, port: port()? },
            Command::DrainBackend | Command::UndrainBackend => Request::SetDraining {
                pattern: pattern()?,
                ip: ip()?,
                port: port()?,
                draining: matches!(command, Command::DrainBackend),
            },
            Command::SetWeight => Request::SetWeight {
                pattern: pattern()?,
                ip: ip()?,
                port: port()?,
                weight: self.weight.ok_or_else(|| needs("--weight"))?,
            },
            Command::Stats => {
                let watch = match self.watch {
                    Some(true) => {
                        let interval_ms = millis("interval", &self.interval)?.unwrap_or(1000);
                        if interval_ms < 100 {
                            return Err(Error::Usage("stats --watch: --interval must be at least 100ms".into()));
                        }
                        Some(Watch { interval_ms, count: self.count })
                    }
                    _ => None,
                };
                Request::Stats { pattern: self.pattern.clone(), watch }
            }
            Command::Export => Request::Export,
            Command::Import { file } => Request::Import { file: file.clone() },
            Command::Completions { shell } => Request::Completions { shell: *shell },
            Command::Man => Request::Man,
        };
        let token = match (self.token, &self.token_file) {
            (_, Some(file)) => Some(read_token(file)?),
            (token, None) => token,
        };
        Ok(Invocation { lb: self.lb, json: self.json, token, request })
    }

    /// The pool settings flags given, health check aside.
    fn pool_settings(&self) -> Result<PoolSettings, Error> {
        let timeouts = TimeoutsChange {
            connect_ms: millis("connect_timeout", &self.connect_timeout)?,
            response_ms: millis("response_timeout", &self.response_timeout)?,
            idle_ms: millis("idle_timeout", &self.idle_timeout)?,
        };
        let retry_body_limit = self
            .retry_body_limit
            .as_deref()
            .map(|text| {
                units::parse_bytes(text).ok_or_else(|| {
                    Error::Usage(format!("--retry_body_limit: invalid size {text:?} (use e.g. 65536, 64KiB, 1MiB)"))
                })
            })
            .transpose()?;
        Ok(PoolSettings {
            mode: self.mode,
            strategy: self.strategy,
            hash_key: self.hash_key.as_deref().map(hash_key).transpose()?,
            retries: self.retries,
            retry_on_5xx: self.retry_on.map(|on| on == RetryOn::ServerErrors),
            retry_body_limit,
            timeouts: (timeouts != TimeoutsChange::default()).then_some(timeouts),
            health_check: None,
            expose_backend: self.expose_backend,
            allow_trace: self.allow_trace,
        })
    }

    /// The health check flags given, `None` if there were none.
    fn health_check(&self) -> Result<Option<HealthCheckChange>, Error> {
        let health_check = HealthCheckChange {
            path: self.health_path.clone(),
            // lb compares trimmed bodies, so spaces after commas are the user's formatting.
            healthy_values: self.healthy_values.as_deref().map(|list| {
                list.split(',').map(str::trim).filter(|value| !value.is_empty()).map(String::from).collect()
            }),
            // lbctl has no flag for "back to any 2xx" (JSON null).
            expected_status: self.expected_status.map(Some),
            interval_ms: millis("interval", &self.interval)?,
            timeout_ms: millis("timeout", &self.timeout)?,
            fall: self.fall,
            rise: self.rise,
            evict_after: self.evict_after,
        };
        Ok((health_check != HealthCheckChange::default()).then_some(health_check))
    }
}

/// `--a, --b, ...`: the flags under a `--help` heading, in the order `--help` lists them.
/// The token in `file`, surrounding whitespace (a final newline) dropped, as lb reads it.
fn read_token(file: &std::path::Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(file)
        .map_err(|err| Error::Usage(format!("--token-file: cannot read {}: {err}", file.display())))?;
    let token = text.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Usage(format!(
            "--token-file: {} holds no token (visible ASCII, no spaces)",
            file.display()
        )));
    }
    Ok(token.to_owned())
}

fn flags_under(heading: &str) -> String {
    let flags: Vec<String> = Cli::command()
        .get_arguments()
        .filter(|arg| arg.get_help_heading() == Some(heading))
        .filter_map(|arg| arg.get_long().map(|long| format!("--{long}")))
        .collect();
    flags.join(", ")
}

/// Parses the duration flag `--{flag}` into milliseconds. `0s` passes: where zero makes no
/// sense lb says so, and where it does (no idle keep-alive) lbctl should not be in the way.
fn millis(flag: &str, value: &Option<String>) -> Result<Option<u64>, Error> {
    value
        .as_deref()
        .map(|text| {
            units::parse_millis(text)
                .ok_or_else(|| Error::Usage(format!("--{flag}: invalid duration {text:?} (use e.g. 500ms, 2s, 1m)")))
        })
        .transpose()
}

/// A switch's value as Go's `strconv.ParseBool` reads it, so the Go tool's scripts keep working.
fn go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{text:?} is not a boolean (use true or false)")),
    }
}

/// Checks the shape of `--hash_key`; whether lb knows the header or cookie is its business.
fn hash_key(key: &str) -> Result<String, Error> {
    let named = |prefix: &str| {
        key.strip_prefix(prefix).is_some_and(|name| !name.is_empty() && !name.contains(char::is_whitespace))
    };
    if key == "client_ip" || named("header:") || named("cookie:") {
        Ok(key.to_owned())
    } else {
        Err(Error::Usage(format!("--hash_key: invalid key {key:?} (use client_ip, header:NAME or cookie:NAME)")))
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
        let args = ["lbctl", "-lb=x:1", "-pattern", "/", "-h", "-1", "--json", "addPool"];
        let rewritten = go_style(args.map(OsString::from));
        assert_eq!(strings(&rewritten), ["lbctl", "--lb=x:1", "--pattern", "/", "-h", "-1", "--json", "addPool"]);
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
                token: None,
                request: Request::AddBackend {
                    pattern: "/api/".into(),
                    ip: "127.0.0.1".into(),
                    port: 8082,
                    url_path: "/v2/".into(),
                    weight: None,
                },
            }
        );
    }

    #[test]
    fn a_flag_without_its_value_is_named() {
        for (args, flag) in [
            (&["lbctl", "--pattern", "addPool"][..], "--pattern needs a value: addPool is a command"),
            (&["lbctl", "-pattern", "addPool"], "--pattern needs a value: addPool is a command"),
            (&["lbctl", "--pattern=/", "--ip", "removeBackend", "--port=1"], "--ip needs a value"),
        ] {
            match parse_strs(args) {
                Err(Error::Usage(message)) => assert!(message.starts_with(flag), "{args:?}: {message}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
        assert!(parse_strs(&["lbctl", "--json", "listPools"]).is_ok(), "a switch takes no value");
        assert!(parse_strs(&["lbctl", "--pattern", "/", "addPool"]).is_ok());
    }

    #[test]
    fn switches_read_as_go_reads_bool_flags() {
        let settings = |args: &[&str]| match parse_strs(args).map(|i| i.request) {
            Ok(Request::SetPool { settings, .. }) => Ok((settings.expose_backend, settings.allow_trace)),
            Ok(other) => panic!("{args:?}: {other:?}"),
            Err(e) => Err(e),
        };
        let set = |flag: &str| settings(&["lbctl", "--pattern=/", flag, "setPool"]);
        assert_eq!(set("--expose_backend=true"), Ok((Some(true), None)));
        assert_eq!(set("-expose_backend=false"), Ok((Some(false), None)));
        assert_eq!(set("--allow_trace=1"), Ok((None, Some(true))));
        assert_eq!(set("--allow_trace=F"), Ok((None, Some(false))));
        // Alone, before the command (Go's order), it is `true` and the command stays a command.
        assert_eq!(set("--expose_backend"), Ok((Some(true), None)));
        assert_eq!(settings(&["lbctl", "setPool", "--pattern=/", "--allow_trace"]), Ok((None, Some(true))));
        for bad in ["--expose_backend=yes", "--allow_trace="] {
            match set(bad) {
                Err(Error::Usage(message)) => assert!(message.contains("boolean"), "{bad}: {message}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let Err(Error::Usage(message)) = parse_strs(&["lbctl", "--pattern=/", "setPool"]) else { panic!() };
        assert!(message.contains("--expose_backend, --allow_trace"), "{message}");
    }

    #[test]
    fn flags_may_follow_the_command() {
        let invocation = parse_strs(&["lbctl", "addPool", "--pattern=/", "--mode=redirect", "--json"]).unwrap();
        assert!(invocation.json);
        assert_eq!(
            invocation.request,
            Request::AddPool {
                pattern: "/".into(),
                settings: PoolSettings { mode: Some(Mode::Redirect), ..PoolSettings::default() },
            }
        );
    }

    #[test]
    fn url_path_defaults_to_root() {
        let invocation = parse_strs(&["lbctl", "--pattern=/", "--ip=127.0.0.1", "--port=8082", "addBackend"]).unwrap();
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
        let invocation = parse_strs(&["lbctl", "--pattern=/", "--strategy=round_robin", "addPool"]).unwrap();
        let Request::AddPool { settings, .. } = invocation.request else {
            panic!("wrong request {:?}", invocation.request);
        };
        assert_eq!(settings.strategy, Some(Strategy::RoundRobin));
        for (strategy, spelled) in [
            (Strategy::P2c, "p2c"),
            (Strategy::RoundRobin, "round_robin"),
            (Strategy::Random, "random"),
            (Strategy::LeastConn, "least_conn"),
            (Strategy::ConsistentHash, "consistent_hash"),
        ] {
            assert_eq!(serde_json::to_string(&strategy).unwrap(), format!("{spelled:?}"));
            let flag = format!("--strategy={spelled}");
            let invocation = parse_strs(&["lbctl", "--pattern=/", &flag, "setPool"]).unwrap();
            let Request::SetPool { settings, .. } = invocation.request else {
                panic!("wrong request {:?}", invocation.request);
            };
            assert_eq!(settings.strategy, Some(strategy));
        }
        assert_eq!(serde_json::to_string(&Mode::Proxy).unwrap(), r#""proxy""#);
    }

    #[test]
    fn import_takes_a_file_and_export_nothing() {
        let invocation = parse_strs(&["lbctl", "import", "state.json"]).unwrap();
        assert_eq!(invocation.request, Request::Import { file: "state.json".into() });
        assert_eq!(parse_strs(&["lbctl", "export"]).unwrap().request, Request::Export);
        assert!(matches!(parse_strs(&["lbctl", "import"]), Err(Error::Usage(_))));
    }

    #[test]
    fn stats_takes_a_pattern_and_a_watch_interval_of_at_least_100ms() {
        let request = |args: &[&str]| parse_strs(args).map(|invocation| invocation.request);
        assert_eq!(request(&["lbctl", "stats"]), Ok(Request::Stats { pattern: None, watch: None }));
        assert_eq!(
            request(&["lbctl", "-pattern=/api/", "-watch", "stats"]),
            Ok(Request::Stats { pattern: Some("/api/".into()), watch: Some(Watch { interval_ms: 1000, count: None }) })
        );
        assert_eq!(
            request(&["lbctl", "stats", "--watch=true", "--interval=250ms", "--count=2"]),
            Ok(Request::Stats { pattern: None, watch: Some(Watch { interval_ms: 250, count: Some(2) }) })
        );
        assert_eq!(request(&["lbctl", "--watch=false", "stats"]), Ok(Request::Stats { pattern: None, watch: None }));
        for bad in ["--interval=99ms", "--interval=0s", "--interval=soon"] {
            assert!(matches!(request(&["lbctl", "--watch", bad, "stats"]), Err(Error::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn no_command_lists_the_commands() {
        let err = parse_strs(&["lbctl", "--lb=x:1"]).unwrap_err();
        assert_eq!(
            err,
            Error::Usage(
                "no command given, try one of listPools, addPool, removePool, setMode, \
                 setPool, setHealth, poolHealth, addBackend, removeBackend, drainBackend, \
                 undrainBackend, setWeight, stats, export, import, completions, man (see lbctl --help)"
                    .into()
            )
        );
    }

    #[test]
    fn a_repeated_flag_takes_the_last_value() {
        let invocation = parse_strs(&["lbctl", "-lb=a:1", "--json", "-lb=b:2", "--json", "listPools"]);
        assert_eq!(invocation.unwrap().lb, "b:2");
    }

    #[test]
    fn clap_errors_become_one_line() {
        let Err(Error::Usage(message)) = parse_strs(&["lbctl", "addpool"]) else {
            panic!("expected a usage error");
        };
        assert!(!message.contains('\n'), "{message:?}");
        assert!(message.starts_with("unrecognized subcommand 'addpool'"), "{message:?}");
        assert!(message.ends_with("(see lbctl --help)"), "{message:?}");
    }

    #[test]
    fn add_pool_takes_every_pool_and_health_flag() {
        let invocation = parse_strs(&[
            "lbctl",
            "-pattern=/api/",
            "-mode=proxy",
            "-strategy=consistent_hash",
            "-hash_key=cookie:session",
            "-retries=2",
            "-retry_on=5xx",
            "-retry_body_limit=64KiB",
            "-connect_timeout=3s",
            "-response_timeout=1m",
            "-idle_timeout=1m30s",
            "-health_path=/ready",
            "-healthy_values=ok, OK,,up",
            "-expected_status=204",
            "-interval=500ms",
            "-timeout=1s",
            "-fall=3",
            "-rise=2",
            "-evict_after=0",
            "-expose_backend=true",
            "-allow_trace",
            "addPool",
        ])
        .unwrap();
        assert_eq!(
            invocation.request,
            Request::AddPool {
                pattern: "/api/".into(),
                settings: PoolSettings {
                    mode: Some(Mode::Proxy),
                    strategy: Some(Strategy::ConsistentHash),
                    hash_key: Some("cookie:session".into()),
                    retries: Some(2),
                    retry_on_5xx: Some(true),
                    retry_body_limit: Some(65_536),
                    timeouts: Some(TimeoutsChange {
                        connect_ms: Some(3_000),
                        response_ms: Some(60_000),
                        idle_ms: Some(90_000),
                    }),
                    health_check: Some(HealthCheckChange {
                        path: Some("/ready".into()),
                        healthy_values: Some(vec!["ok".into(), "OK".into(), "up".into()]),
                        expected_status: Some(Some(204)),
                        interval_ms: Some(500),
                        timeout_ms: Some(1_000),
                        fall: Some(3),
                        rise: Some(2),
                        evict_after: Some(0),
                    }),
                    expose_backend: Some(true),
                    allow_trace: Some(true),
                },
            }
        );
    }

    #[test]
    fn set_pool_leaves_out_health_flags_and_set_health_pool_flags() {
        let args = ["lbctl", "--pattern=/", "--retry_on=none", "--fall=2"];
        let set_pool = parse_strs(&[&args[..], &["setPool"]].concat()).unwrap();
        assert_eq!(
            set_pool.request,
            Request::SetPool {
                pattern: "/".into(),
                settings: PoolSettings { retry_on_5xx: Some(false), ..PoolSettings::default() },
            }
        );
        let set_health = parse_strs(&[&args[..], &["setHealth"]].concat()).unwrap();
        assert_eq!(
            set_health.request,
            Request::SetHealth {
                pattern: "/".into(),
                health_check: HealthCheckChange { fall: Some(2), ..HealthCheckChange::default() },
            }
        );
    }

    #[test]
    fn backend_commands_name_the_backend() {
        let backend = ["lbctl", "--pattern=/", "--ip=127.0.0.1", "--port=8082"];
        for (command, draining) in [("drainBackend", true), ("undrainBackend", false)] {
            let invocation = parse_strs(&[&backend[..], &[command]].concat()).unwrap();
            assert_eq!(
                invocation.request,
                Request::SetDraining { pattern: "/".into(), ip: "127.0.0.1".into(), port: 8082, draining }
            );
        }
        let invocation = parse_strs(&[&backend[..], &["--weight=5", "setWeight"]].concat());
        assert_eq!(
            invocation.unwrap().request,
            Request::SetWeight { pattern: "/".into(), ip: "127.0.0.1".into(), port: 8082, weight: 5 }
        );
        let err = parse_strs(&[&backend[..], &["setWeight"]].concat()).unwrap_err();
        assert_eq!(err, Error::Usage("setWeight needs --weight".into()));
        let err = parse_strs(&["lbctl", "--pattern=/", "--ip=::1", "drainBackend"]).unwrap_err();
        assert_eq!(err, Error::Usage("drainBackend needs --port".into()));
    }

    #[test]
    fn set_pool_and_set_health_need_something_to_set() {
        let err = parse_strs(&["lbctl", "--pattern=/", "--interval=2s", "setPool"]).unwrap_err();
        assert_eq!(
            err,
            Error::Usage(
                "setPool needs at least one of --mode, --strategy, --hash_key, --retries, \
                 --retry_on, --retry_body_limit, --connect_timeout, --response_timeout, \
                 --idle_timeout, --expose_backend, --allow_trace"
                    .into()
            )
        );
        let err = parse_strs(&["lbctl", "--pattern=/", "--retries=1", "setHealth"]).unwrap_err();
        assert_eq!(
            err,
            Error::Usage(
                "setHealth needs at least one of --health_path, --healthy_values, \
                 --expected_status, --interval, --timeout, --fall, --rise, --evict_after"
                    .into()
            )
        );
        let err = parse_strs(&["lbctl", "--fall=2", "setHealth"]).unwrap_err();
        assert_eq!(err, Error::Usage("setHealth needs --pattern".into()));
    }

    #[test]
    fn bad_durations_sizes_and_keys_name_the_flag() {
        for (arg, message) in [
            ("--interval=2x", r#"--interval: invalid duration "2x" (use e.g. 500ms, 2s, 1m)"#),
            ("--timeout=-1s", r#"--timeout: invalid duration "-1s" (use e.g. 500ms, 2s, 1m)"#),
            ("--idle_timeout=90", r#"--idle_timeout: invalid duration "90" (use e.g. 500ms, 2s, 1m)"#),
            ("--retry_body_limit=64kb", r#"--retry_body_limit: invalid size "64kb" (use e.g. 65536, 64KiB, 1MiB)"#),
            ("--hash_key=header:", r#"--hash_key: invalid key "header:" (use client_ip, header:NAME or cookie:NAME)"#),
            ("--hash_key=ip", r#"--hash_key: invalid key "ip" (use client_ip, header:NAME or cookie:NAME)"#),
        ] {
            // Refused whatever the command, like any malformed flag.
            for command in ["addPool", "listPools"] {
                let err = parse_strs(&["lbctl", "--pattern=/", arg, command]).unwrap_err();
                assert_eq!(err, Error::Usage(message.into()), "{arg} {command}");
            }
        }
    }

    #[test]
    fn zero_durations_reach_lb() {
        let invocation = parse_strs(&["lbctl", "--pattern=/", "--interval=0s", "setHealth"]).unwrap();
        let Request::SetHealth { health_check, .. } = invocation.request else {
            panic!("wrong request {:?}", invocation.request);
        };
        assert_eq!(health_check.interval_ms, Some(0));
    }

    #[test]
    fn numbers_and_choices_are_checked_by_clap() {
        for arg in [
            "--fall=x",
            "--rise=-1",
            "--retries=1.5",
            "--weight=",
            "--expected_status=99",
            "--expected_status=600",
            "--retry_on=4xx",
            "--strategy=least_connections",
        ] {
            let Err(Error::Usage(message)) = parse_strs(&["lbctl", "--pattern=/", arg, "addPool"]) else {
                panic!("{arg} accepted");
            };
            assert!(message.ends_with("(see lbctl --help)"), "{message:?}");
            assert!(!message.contains('\n'), "{message:?}");
        }
    }
}
