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

use crate::admin;
use crate::control::ControlPlane;
use crate::data_plane::{ClientLimits, DataPlane, Source, Worker, Workers};
use crate::store::Store;

/// How long in-flight requests may take to finish after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// lb: an L7 HTTP load balancer.
#[derive(Debug, Clone, Parser)]
#[command(name = "lb", version, about, long_about = None, args_override_self = true)]
pub struct Config {
    /// Address of the data port, where clients send requests.
    #[arg(long, env = "LB_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Address of the admin API (keep it on loopback or a private network).
    #[arg(long, env = "LB_ADMIN", default_value = "127.0.0.1:8081")]
    pub admin: SocketAddr,
    /// Directory of the sled store holding pools and backends; created if missing.
    #[arg(long, env = "LB_DATA_DIR", default_value = "./lb-data")]
    pub data_dir: PathBuf,
    /// Worker threads of the data plane [default: number of CPUs].
    #[arg(long, env = "LB_THREADS")]
    pub threads: Option<NonZeroUsize>,
    /// How long a client may take to send a request's headers (e.g. 500ms, 10s, 1m).
    #[arg(long, env = "LB_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) a client may send, in bytes.
    #[arg(long, env = "LB_MAX_HEADER_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u32).range(8192..=16 << 20))]
    pub max_header_bytes: u32,
    /// Loads this state (from `lbctl export`, or the data dir's last-good.json) into an empty
    /// store at start; a store that holds pools is refused.
    #[arg(long, value_name = "FILE")]
    pub import: Option<PathBuf>,
}

/// A Go-style duration (`500ms`, `10s`, `1m30s`) other than zero.
fn parse_duration(s: &str) -> Result<Duration, String> {
    Some(lb_api::duration::parse(s)?).filter(|d| !d.is_zero()).ok_or_else(|| "duration must be more than 0".into())
}

/// Runs lb until SIGINT or SIGTERM: [`bind`], then [`serve`]. Once the signals are watched,
/// the bound addresses go to stdout, one line each (`data listening on ADDR`, `admin listening
/// on ADDR`), so whoever started lb on port 0 learns them and may stop it from then on. An
/// error is one line, ready for the user.
pub fn run(config: Config) -> Result<(), String> {
    raise_open_files_limit();
    let bound = bind(&config)?;
    let (data, admin) = (bound.data_addr(), bound.admin_addr());
    let mut unwatched = None;
    let served = serve(bound, async {
        match termination() {
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
    admin: std::net::TcpListener,
    data_addr: SocketAddr,
    admin_addr: SocketAddr,
    control: Arc<ControlPlane>,
    threads: usize,
    limits: ClientLimits,
}

impl Bound {
    /// The data port's address (with the real port when `--listen` asked for port 0).
    pub fn data_addr(&self) -> SocketAddr {
        self.data_addr
    }

    /// The admin API's address (with the real port when `--admin` asked for port 0).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }
}

/// Binds the data port and the admin API and opens the store (running pending migrations).
/// Nothing is served until [`serve`]; connections wait in the listeners' queues.
pub fn bind(config: &Config) -> Result<Bound, String> {
    let bind = |addr: SocketAddr, what: &str| {
        let listener =
            std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))?;
        listener.set_nonblocking(true).map_err(|e| format!("cannot set up {what} listener: {e}"))?;
        Ok::<_, String>(listener)
    };
    let data = bind(config.listen, "data port")?;
    let admin = bind(config.admin, "admin API")?;

    let store = Store::open(&config.data_dir).map_err(|e| e.to_string())?;
    let control = Arc::new(ControlPlane::load(store).map_err(|e| e.to_string())?);
    tracing::info!("store {} opened", config.data_dir.display());
    if let Some(file) = &config.import {
        import(&control, file, &config.data_dir)?;
    }

    let threads = config.threads.or_else(|| std::thread::available_parallelism().ok()).map_or(1, NonZeroUsize::get);
    let local = |l: &std::net::TcpListener| l.local_addr().map_err(|e| e.to_string());
    let (data_addr, admin_addr) = (local(&data)?, local(&admin)?);
    tracing::info!("data listener on {data_addr} ({threads} worker threads)");
    tracing::info!("admin listener on {admin_addr}");
    let limits = ClientLimits {
        header_read_timeout: config.header_read_timeout,
        max_header_bytes: config.max_header_bytes as usize,
    };
    Ok(Bound { data, admin, data_addr, admin_addr, control, threads, limits })
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
    let Bound { data, admin, control, threads, limits, .. } = bound;
    let (stop, stopped) = watch::channel(false);
    let admin_thread = spawn_admin(admin, control.clone(), stopped.clone())?;

    let plane = Arc::new(DataPlane::new(control.routes(), control.failure_reporter(), limits));
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
    listener: std::net::TcpListener,
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
                let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                let serve =
                    axum::serve(listener, admin::router(control)).with_graceful_shutdown(wait_for(stopped.clone()));
                // Graceful, but bounded: an admin client that never finishes its request must
                // not keep lb from exiting.
                let deadline = async {
                    wait_for(stopped).await;
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                };
                tokio::select! {
                    served = serve => served.map_err(|e| format!("admin API failed: {e}")),
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
fn announce(data: SocketAddr, admin: SocketAddr) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "data listening on {data}");
    let _ = writeln!(stdout, "admin listening on {admin}");
    let _ = stdout.flush();
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

/// Resolves on the first SIGINT or SIGTERM.
fn termination() -> Result<impl Future<Output = ()>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
        }
    })
}
