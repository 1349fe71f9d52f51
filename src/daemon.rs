//! The `lb` daemon: flags, start-up, the two runtimes, and shutdown.
//!
//! The data plane runs `--threads` workers, each a thread with its own single-threaded runtime
//! (thread per core: no work stealing, no cross-thread wake-ups on the request path); the
//! first accepts and hands connections out to the least loaded. The admin API runs on its own thread and single-threaded
//! runtime, so admin work (store flushes, health checks) never takes a worker from traffic.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::sync::watch;

use crate::admin;
use crate::control::ControlPlane;
use crate::data_plane::{ClientLimits, DataPlane, Source, Workers};
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
}

/// A Go-style duration (`500ms`, `10s`, `1m30s`) other than zero.
fn parse_duration(s: &str) -> Result<Duration, String> {
    Some(lb_api::duration::parse(s)?).filter(|d| !d.is_zero()).ok_or_else(|| "duration must be more than 0".into())
}

/// Runs lb until SIGINT or SIGTERM. An error is one line, ready for the user.
pub fn run(config: Config) -> Result<(), String> {
    let bind = |addr: SocketAddr, what: &str| {
        let listener =
            std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))?;
        listener.set_nonblocking(true).map_err(|e| format!("cannot set up {what} listener: {e}"))?;
        Ok::<_, String>(listener)
    };
    raise_open_files_limit();
    let data_listener = bind(config.listen, "data port")?;
    let admin_listener = bind(config.admin, "admin API")?;

    let store = Store::open(&config.data_dir).map_err(|e| e.to_string())?;
    let control = Arc::new(ControlPlane::load(store).map_err(|e| e.to_string())?);
    let routes = control.routes();
    let failures = control.failure_reporter();
    tracing::info!("store {} opened", config.data_dir.display());

    let threads = config.threads.or_else(|| std::thread::available_parallelism().ok()).map_or(1, NonZeroUsize::get);
    let local = |l: &std::net::TcpListener| l.local_addr().map_err(|e| e.to_string());
    tracing::info!("data listener on {} ({threads} worker threads)", local(&data_listener)?);
    tracing::info!("admin listener on {}", local(&admin_listener)?);

    let (stop, stopped) = watch::channel(false);
    let admin_control = control.clone();
    let admin_stopped = stopped.clone();
    let admin_thread = std::thread::Builder::new()
        .name("lb-admin".into())
        .spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start admin runtime: {e}"))?;
            runtime.block_on(async move {
                tokio::spawn(admin_control.clone().run_health());
                let listener = tokio::net::TcpListener::from_std(admin_listener).map_err(|e| e.to_string())?;
                let serve = axum::serve(listener, admin::router(admin_control))
                    .with_graceful_shutdown(wait_for(admin_stopped.clone()));
                // Graceful, but bounded: an admin client that never finishes its request must
                // not keep lb from exiting.
                let deadline = async {
                    wait_for(admin_stopped).await;
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
        .map_err(|e| format!("cannot start admin thread: {e}"))?;

    // Thread per core: each worker is a thread with its own single-threaded runtime. Worker 0
    // accepts and hands each connection to the worker serving the fewest; a connection stays
    // on its worker, so nothing on the request path is shared across threads but the routing
    // snapshot.
    let limits = ClientLimits {
        header_read_timeout: config.header_read_timeout,
        max_header_bytes: config.max_header_bytes as usize,
    };
    let plane = Arc::new(DataPlane::new(routes, failures, limits));
    let worker_runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start data runtime: {e}"))
    };
    let (roster, inboxes) = Workers::new(threads);
    let mut workers = Vec::with_capacity(threads - 1);
    for (n, inbox) in (1..threads).zip(inboxes) {
        let (plane, roster, stopped) = (plane.clone(), roster.clone(), stopped.clone());
        let runtime = worker_runtime()?;
        let worker = std::thread::Builder::new()
            .name(format!("lb-worker-{n}"))
            .spawn(move || {
                runtime.block_on(plane.serve(n, Source::Inbox(inbox), roster, wait_for(stopped), SHUTDOWN_GRACE))
            })
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
        workers.push(worker);
    }
    let served = worker_runtime().and_then(|runtime| {
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::from_std(data_listener).map_err(|e| e.to_string())?;
            let signal = termination()?;
            let stop = &stop;
            let shutdown = async move {
                signal.await;
                let _ = stop.send(true);
            };
            plane.serve(0, Source::Listener(listener), roster, shutdown, SHUTDOWN_GRACE).await;
            Ok::<_, String>(())
        })
    });
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
fn termination() -> Result<impl std::future::Future<Output = ()>, String> {
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
