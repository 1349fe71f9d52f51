//! The `lb` daemon: flags, start-up, the two runtimes, and shutdown.
//!
//! The data plane runs `--threads` workers, each a thread with its own single-threaded runtime
//! (thread per core: no work stealing, no cross-thread wake-ups on the request path); the
//! first accepts and hands connections out to the least loaded. The admin API runs on its own
//! thread and single-threaded runtime, so admin work (store flushes, health checks) never takes
//! a worker from traffic.
//!
//! Start-up is two steps, as in mini-redis: [`bind`] takes the ports and opens the store,
//! [`serve`] runs what was bound until a shutdown future resolves. [`run`] is both, until
//! SIGINT or SIGTERM; a test binds port 0 and stops lb with a future of its own, in-process.

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::sync::watch;

use crate::access_log::{self, AccessLog};
use crate::admin;
use crate::control::ControlPlane;
use crate::data_plane::{ClientLimits, DataPlane, Source, Worker, Workers};
use crate::proxy::BodyTimeouts;
use crate::request_id::{self, RequestIds};
use crate::store::Store;

/// Connections the kernel queues on the data port while lb is not accepting them (a burst, or
/// lb at `--max-connections`); the kernel caps it at `net.core.somaxconn`. The standard
/// library's 128 overflows with a burst of a few hundred connects, whose clients then wait for
/// SYN-ACK retransmissions (seconds) before lb even sees them.
const DATA_BACKLOG: i32 = 4096;

/// How long in-flight requests may take to finish after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// lb: an L7 HTTP load balancer.
#[derive(Debug, Clone, Parser)]
#[command(name = "lb", version, about, long_about = None, args_override_self = true)]
pub struct Config {
    /// Address of the data port, where clients send requests.
    #[arg(long, env = "LB_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Address of the admin API: ip:port, or unix:PATH for a socket only lb's user may use
    /// (mode 0600). Without a token only a loopback address or a unix socket is allowed.
    #[arg(long, env = "LB_ADMIN", default_value = "127.0.0.1:8081", value_name = "ADDR")]
    pub admin: admin::AdminAddr,
    /// File holding the admin API's bearer token (at least 16 visible ASCII characters);
    /// LB_ADMIN_TOKEN may hold the token itself instead. Required for a non-loopback --admin.
    #[arg(long, env = "LB_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// A host name the admin API also answers to (Host and Origin), e.g. behind a proxy;
    /// NAME or NAME:PORT, repeatable. It always answers to its own ip:port (and localhost:port
    /// on loopback).
    #[arg(long = "admin-host", value_name = "NAME", value_parser = parse_host_name)]
    pub admin_hosts: Vec<String>,
    /// Directory of the sled store holding pools and backends; created if missing.
    #[arg(long, env = "LB_DATA_DIR", default_value = "./lb-data")]
    pub data_dir: PathBuf,
    /// Worker threads of the data plane [default: number of CPUs].
    #[arg(long, env = "LB_THREADS")]
    pub threads: Option<NonZeroUsize>,
    /// How long a client may take to send a request head (e.g. 500ms, 10s, 1m): the first one
    /// counted from accept (nothing sent at all, or part of an HTTP/2 preface, is closed then),
    /// each later one from its first byte.
    #[arg(long, env = "LB_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// How long an HTTP/1 connection may stay idle between requests before lb closes it.
    #[arg(long, env = "LB_KEEP_ALIVE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub keep_alive_timeout: Duration,
    /// How long an HTTP/2 connection may have no open stream before lb closes it (GOAWAY).
    #[arg(long, env = "LB_H2_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub h2_idle_timeout: Duration,
    /// How long a write to a client may make no progress (a client that stopped reading)
    /// before lb closes the connection.
    #[arg(long, env = "LB_SEND_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub send_timeout: Duration,
    /// Most client connections lb holds; at the limit it stops accepting and closes idle
    /// keep-alive connections first [default: (open-files limit - 128) / 2].
    #[arg(long, env = "LB_MAX_CONNECTIONS")]
    pub max_connections: Option<NonZeroUsize>,
    /// Largest request head (request line and headers) a client may send, in bytes.
    #[arg(long, env = "LB_MAX_HEADER_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u32).range(8192..=16 << 20))]
    pub max_header_bytes: u32,
    /// How long a client may pause while sending a request body before lb closes the
    /// connection (408); a body that keeps coming may take as long as it needs.
    #[arg(long, env = "LB_CLIENT_BODY_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub client_body_timeout: Duration,
    /// How long a backend may pause while sending a response body before lb closes the client's
    /// connection (and counts it against the backend).
    #[arg(long, env = "LB_BACKEND_BODY_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub backend_body_timeout: Duration,
    /// Loads this state (from `lbctl export`, or the data dir's last-good.json) into an empty
    /// store at start; a store that holds pools is refused.
    #[arg(long, value_name = "FILE")]
    pub import: Option<PathBuf>,
    /// Print lb's man page (roff, generated from these flags) on stdout and exit:
    /// `lb --man > /usr/local/share/man/man1/lb.1`.
    #[arg(long, hide = true)]
    pub man: bool,
    /// Record metrics for GET /metrics on the admin API: on or off (off costs the request
    /// path one branch, for measuring what metrics cost; a scrape then shows only gauges).
    #[arg(long, env = "LB_METRICS", default_value = "on", value_name = "on|off",
          action = clap::ArgAction::Set, value_parser = parse_on_off)]
    pub metrics: bool,
    /// Writes one line per request to this file (appending; `-` for stdout); SIGHUP reopens
    /// it, for logrotate. Off by default.
    #[arg(long, env = "LB_ACCESS_LOG", value_name = "PATH")]
    pub access_log: Option<PathBuf>,
    /// The access log's lines: Apache's `combined` with lb's fields appended, or one JSON
    /// object per line.
    #[arg(long, env = "LB_ACCESS_LOG_FORMAT", value_enum, default_value = "combined", value_name = "FORMAT")]
    pub access_log_format: access_log::Format,
    /// Request IDs: `on` (a client's valid one is kept, any other replaced by lb's own; it goes
    /// to the backend, the access log and lb's log lines), `off`, or `auto`: on when the
    /// access log is.
    #[arg(long, env = "LB_REQUEST_ID", value_enum, default_value = "auto", value_name = "auto|on|off")]
    pub request_id: RequestIdMode,
    /// The header that carries each request's ID.
    #[arg(long, env = "LB_REQUEST_ID_HEADER", default_value = request_id::DEFAULT_HEADER, value_name = "NAME",
          value_parser = request_id::parse_header)]
    pub request_id_header: http::HeaderName,
}

/// `--request-id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RequestIdMode {
    /// On when the access log is.
    Auto,
    On,
    Off,
}

/// `on` or `off`.
fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{s:?} is neither on nor off")),
    }
}

/// A Go-style duration (`500ms`, `10s`, `1m30s`) other than zero.
fn parse_duration(s: &str) -> Result<Duration, String> {
    Some(lb_api::duration::parse(s)?).filter(|d| !d.is_zero()).ok_or_else(|| "duration must be more than 0".into())
}

/// A name for `--admin-host`: what a `Host` header could carry.
fn parse_host_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'));
    ok.then(|| s.to_owned()).ok_or_else(|| format!("{s:?} is not a host name (letters, digits, . - _ and :PORT)"))
}

/// The admin token from `--admin-token-file` or `LB_ADMIN_TOKEN`, if any: never both.
fn admin_token(config: &Config) -> Result<Option<admin::Token>, String> {
    let from_env = std::env::var("LB_ADMIN_TOKEN").ok();
    match (&config.admin_token_file, from_env) {
        (Some(_), Some(_)) => {
            Err("give the admin token either in --admin-token-file or in LB_ADMIN_TOKEN, not both".into())
        }
        (Some(file), None) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read admin token file {}: {e}", file.display()))?;
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "admin token file {} is readable by others (mode {mode:o}): chmod 600 it",
                    file.display()
                );
            }
            admin::Token::parse(&text).map(Some).map_err(|e| format!("{e} (in {})", file.display()))
        }
        (None, Some(text)) => admin::Token::parse(&text).map(Some).map_err(|e| format!("{e} (in LB_ADMIN_TOKEN)")),
        (None, None) => Ok(None),
    }
}

/// Runs lb until SIGINT or SIGTERM: [`bind`], then [`serve`]. Once the signals are watched,
/// the bound addresses go to stdout, one line each (`data listening on ADDR`, `admin listening
/// on ADDR`), so whoever started lb on port 0 learns them and may stop it from then on. An
/// error is one line, ready for the user.
pub fn run(config: Config) -> Result<(), String> {
    raise_open_files_limit();
    let bound = bind(&config)?;
    let (data, admin) = (bound.data_addr(), bound.admin_endpoint().clone());
    let access_log = bound.access_log.clone();
    let mut unwatched = None;
    let served = serve(bound, async {
        match termination(access_log) {
            Ok(signal) => {
                announce(data, admin);
                signal.await;
            }
            Err(e) => unwatched = Some(e),
        }
    });
    served.and(unwatched.map_or(Ok(()), Err))
}

/// lb's listening sockets and open store, not serving yet: what [`bind`] makes of a [`Config`]
/// and [`serve`] runs.
pub struct Bound {
    data: std::net::TcpListener,
    admin: admin::AdminListener,
    data_addr: SocketAddr,
    admin_addr: admin::AdminAddr,
    access: admin::Access,
    control: Arc<ControlPlane>,
    threads: usize,
    limits: ClientLimits,
    access_log: AccessLog,
    /// The access log's writer thread, closed at shutdown.
    log_writer: Option<access_log::Writer>,
    request_ids: RequestIds,
}

impl Bound {
    /// The data port's address (with the real port when `--listen` asked for port 0).
    pub fn data_addr(&self) -> SocketAddr {
        self.data_addr
    }

    /// The admin API's TCP address (with the real port when `--admin` asked for port 0), or
    /// `None` on a unix socket.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        match self.admin_addr {
            admin::AdminAddr::Tcp(addr) => Some(addr),
            admin::AdminAddr::Unix(_) => None,
        }
    }

    /// Where the admin API listens, as `--admin` takes it (`ip:port` or `unix:PATH`).
    pub fn admin_endpoint(&self) -> &admin::AdminAddr {
        &self.admin_addr
    }
}

/// Binds the data port and the admin API and opens the store (running pending migrations).
/// Nothing is served until [`serve`]; connections wait in the listeners' queues.
pub fn bind(config: &Config) -> Result<Bound, String> {
    // Before anything is bound: an admin API open to the network without a token is refused.
    let token = admin_token(config)?;
    let open = match &config.admin {
        admin::AdminAddr::Tcp(addr) => admin::open_to(addr.ip()),
        admin::AdminAddr::Unix(_) => true,
    };
    if token.is_none() && !open {
        return Err(format!(
            "--admin {} is not a loopback address: give the admin API a token (--admin-token-file FILE or \
             LB_ADMIN_TOKEN), or keep it on 127.0.0.1",
            config.admin
        ));
    }
    let bind = |addr: SocketAddr, what: &str| {
        let listener =
            std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))?;
        listener.set_nonblocking(true).map_err(|e| format!("cannot set up {what} listener: {e}"))?;
        Ok::<_, String>(listener)
    };
    let data = bind(config.listen, "data port")?;
    // A deeper backlog than the standard library's 128: a burst of connects must not overflow
    // it, or the kernel drops handshakes and clients wait seconds for its retry.
    socket2::SockRef::from(&data)
        .listen(DATA_BACKLOG)
        .map_err(|e| format!("cannot listen on {} (data port): {e}", config.listen))?;
    let admin = admin::AdminListener::bind(&config.admin)?;

    let data_addr = data.local_addr().map_err(|e| e.to_string())?;
    let admin_addr = admin.endpoint()?;
    let mut listeners = vec![(data_addr, "data port")];
    listeners.extend(admin.local_addr()?.map(|addr| (addr, "admin API")));

    let store = Store::open(&config.data_dir).map_err(|e| e.to_string())?;
    let metrics = Arc::new(crate::metrics::Metrics::new(config.metrics));
    let control = ControlPlane::load(store, metrics).map_err(|e| e.to_string())?;
    let control = Arc::new(control.with_listeners(listeners));
    tracing::info!("store {} opened", config.data_dir.display());
    if let Some(file) = &config.import {
        import(&control, file, &config.data_dir)?;
    }

    let threads = config.threads.or_else(|| std::thread::available_parallelism().ok()).map_or(1, NonZeroUsize::get);
    tracing::info!("data listener on {data_addr} ({threads} worker threads)");
    let access = match &admin_addr {
        admin::AdminAddr::Tcp(addr) => admin::Access::new(*addr, token, &config.admin_hosts),
        admin::AdminAddr::Unix(_) => admin::Access::unix(token),
    };
    let auth = match (access.has_token(), &admin_addr) {
        (true, _) => "bearer token required",
        (false, admin::AdminAddr::Unix(_)) => "no token: mode 0600",
        (false, admin::AdminAddr::Tcp(_)) => "no token: loopback only",
    };
    tracing::info!("admin listener on {admin_addr} ({auth})");
    let max_connections = config.max_connections.map_or_else(default_max_connections, NonZeroUsize::get);
    tracing::info!("at most {max_connections} client connections");
    let limits = ClientLimits {
        header_read_timeout: config.header_read_timeout,
        max_header_bytes: config.max_header_bytes as usize,
        keep_alive_timeout: config.keep_alive_timeout,
        h2_idle_timeout: config.h2_idle_timeout,
        send_timeout: config.send_timeout,
        max_connections,
        body_timeouts: BodyTimeouts { client: config.client_body_timeout, backend: config.backend_body_timeout },
    };
    let (access_log, log_writer) = match &config.access_log {
        Some(path) => {
            let (log, writer) = AccessLog::open(path, config.access_log_format)?;
            tracing::info!("access log to {} ({:?})", path.display(), config.access_log_format);
            (log, Some(writer))
        }
        None => (AccessLog::default(), None),
    };
    let ids = match config.request_id {
        RequestIdMode::On => true,
        RequestIdMode::Off => false,
        RequestIdMode::Auto => config.access_log.is_some(),
    };
    let request_ids = RequestIds::new(ids.then(|| config.request_id_header.clone()));
    Ok(Bound {
        data,
        admin,
        data_addr,
        admin_addr,
        access,
        control,
        threads,
        limits,
        access_log,
        log_writer,
        request_ids,
    })
}

/// `--import FILE`: the state in `file` into the empty store of `dir`, atomically. Its check
/// tasks die with this runtime; the health loop starts them anew when lb serves.
fn import(control: &ControlPlane, file: &std::path::Path, dir: &std::path::Path) -> Result<(), String> {
    let failed = |e: &dyn std::fmt::Display| format!("cannot import {}: {e}", file.display());
    let bytes = std::fs::read(file).map_err(|e| failed(&e))?;
    let state: lb_api::StateJson = serde_json::from_slice(&bytes).map_err(|e| failed(&e))?;
    let change = crate::control::state::import(state).map_err(|e| failed(&e))?;
    let runtime = worker_runtime()?;
    runtime.block_on(async {
        let held = control.pools().await.len();
        if held > 0 {
            return Err(failed(&format_args!(
                "the store in {} already holds {held} pools (--import only fills an empty store)",
                dir.display()
            )));
        }
        control.apply(change).await.map_err(|e| failed(&e))
    })?;
    Ok(())
}

/// Serves `bound` until `shutdown` resolves, then stops taking connections, gives in-flight
/// requests up to 10 s to finish, and flushes the store.
///
/// Thread per core: the calling thread becomes data-plane worker 0, which accepts and hands
/// each connection to the worker serving the fewest; workers 1.. and the admin API (with the
/// health checks) get threads of their own, each with its own current-thread runtime. A
/// connection stays on its worker, so nothing on the request path is shared across threads but
/// the routing snapshot. `shutdown` is polled on worker 0, which tells the other threads when
/// it resolves; it need not be `Send`, and may set itself up when first polled.
pub fn serve(bound: Bound, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    let Bound { data, admin, access, control, threads, limits, access_log, log_writer, request_ids, .. } = bound;
    let (stop, stopped) = watch::channel(false);
    let admin_thread = spawn_admin(admin, access, control.clone(), stopped.clone())?;

    let metrics = control.metrics().clone();
    let plane = DataPlane::new(control.routes(), control.failure_reporter(), limits, metrics);
    let plane = Arc::new(plane.observed(access_log, request_ids));
    let (roster, inboxes) = Workers::new(threads);
    let mut workers = Vec::with_capacity(threads - 1);
    let mut served = Ok(());
    for (n, inbox) in (1..threads).zip(inboxes) {
        let (plane, roster, stopped) = (plane.clone(), roster.clone(), stopped.clone());
        let spawned = worker_runtime().and_then(|runtime| {
            std::thread::Builder::new()
                .name(format!("lb-worker-{n}"))
                .spawn(move || {
                    let worker = Worker::new(n, runtime);
                    worker.serve(plane, Source::Inbox(inbox), roster, wait_for(stopped), SHUTDOWN_GRACE)
                })
                .map_err(|e| format!("cannot start worker thread: {e}"))
        });
        match spawned {
            Ok(worker) => workers.push(worker),
            Err(e) => {
                served = Err(e);
                break;
            }
        }
    }
    if served.is_ok() {
        served = worker_runtime().and_then(|runtime| {
            let stop = &stop;
            let shutdown = async move {
                shutdown.await;
                let _ = stop.send(true);
            };
            let worker = Worker::new(0, runtime);
            worker.serve(plane, Source::Listener(data), roster, shutdown, SHUTDOWN_GRACE).map_err(|e| e.to_string())
        });
    }
    let _ = stop.send(true);
    for worker in workers {
        let _ = worker.join();
    }
    if let Some(writer) = log_writer {
        writer.close();
    }
    let admin_result = admin_thread.join().unwrap_or_else(|_| Err("admin thread panicked".into()));
    control.flush().map_err(|e| format!("cannot flush store at shutdown: {e}"))?;
    served?;
    admin_result?;
    tracing::info!("stopped");
    Ok(())
}

/// Starts the admin API and the health checks on a thread and runtime of their own, so admin
/// work (store flushes, health checks) never takes a worker from traffic.
fn spawn_admin(
    listener: admin::AdminListener,
    access: admin::Access,
    control: Arc<ControlPlane>,
    stopped: watch::Receiver<bool>,
) -> Result<std::thread::JoinHandle<Result<(), String>>, String> {
    std::thread::Builder::new()
        .name("lb-admin".into())
        .spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start admin runtime: {e}"))?;
            runtime.block_on(async move {
                tokio::spawn(control.clone().run_health());
                tokio::spawn(control.clone().run_backup());
                let metrics = control.metrics().clone();
                let serve = listener.serve(admin::router(control, access), wait_for(stopped.clone()), metrics);
                // Graceful, but bounded: an admin client that never finishes its request must
                // not keep lb from exiting.
                let deadline = async {
                    wait_for(stopped).await;
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                };
                tokio::select! {
                    served = serve => served,
                    () = deadline => {
                        tracing::warn!("admin requests still open after {SHUTDOWN_GRACE:?}; closing them");
                        Ok(())
                    }
                }
            })
        })
        .map_err(|e| format!("cannot start admin thread: {e}"))
}

/// A data-plane worker's event loop.
fn worker_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start data runtime: {e}"))
}

/// Prints the bound addresses on stdout, for whoever started lb (as sample-web does). A reader
/// that went away is no reason to stop serving.
fn announce(data: SocketAddr, admin: admin::AdminAddr) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "data listening on {data}");
    let _ = writeln!(stdout, "admin listening on {admin}");
    let _ = stdout.flush();
}

/// Files lb keeps for itself besides client and backend connections: the store, listeners,
/// admin connections, health checks.
const RESERVED_FILES: u64 = 128;

/// `(open-files limit - 128) / 2`, at least 1: each client connection may need a backend
/// connection too.
fn default_max_connections() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit with a valid pointer to an rlimit we own.
    let files = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 { limit.rlim_cur } else { 1024 };
    let connections = files.saturating_sub(RESERVED_FILES) / 2;
    usize::try_from(connections).unwrap_or(usize::MAX).max(1)
}

/// Raises the soft limit on open files to the hard one, as Go programs do: each client and each
/// backend connection is a file, and the usual soft limit (1024) is far below what a load
/// balancer holds.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!("cannot raise the open files limit: {}", std::io::Error::last_os_error());
            }
        }
    }
}

async fn wait_for(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|&s| s).await;
}

/// Resolves on the first SIGINT or SIGTERM; on SIGHUP, reopens the access log and goes on.
fn termination(access_log: AccessLog) -> Result<impl Future<Output = ()>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("cannot watch SIGHUP: {e}"))?;
    Ok(async move {
        loop {
            tokio::select! {
                _ = term.recv() => return tracing::info!("SIGTERM: draining"),
                _ = int.recv() => return tracing::info!("SIGINT: draining"),
                _ = hup.recv() => {
                    if access_log.reopen() {
                        tracing::info!("SIGHUP: reopening the access log");
                    } else {
                        tracing::info!("SIGHUP: no access log file to reopen");
                    }
                }
            }
        }
    })
}
