//! sample-web: a tiny HTTP backend for lb demos and tests.
//!
//! Every answer names the node that produced it (in the body of `/` and in an `X-Node` header on
//! every response), so a test standing several nodes behind lb can see where each request went.
//! A few knobs let tests script a backend's behaviour:
//!
//! - `GET /healthz`: `ok`, or 503 `sick` after `POST /control/sick` (undone by
//!   `POST /control/healthy`), to drive lb's health checks.
//! - `GET /slow?ms=N`: answers after N ms, for timeouts and in-flight requests during shutdown.
//! - `/echo`: the request as it arrived, as JSON, to check what lb forwards.
//! - `/status/{code}`: any status code, for error handling.
//! - anything else: `Hello web from node NAME`.
//!
//! With `--port 0` it binds a free port; the one line it prints on stdout names the real address.

use std::{
    collections::BTreeMap,
    future::Future,
    io::Write,
    net::{IpAddr, SocketAddr},
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri},
    middleware,
    response::{IntoResponse, Response},
    routing::{any, get, post},
    Json, Router,
};
use clap::Parser;
use serde::Deserialize;
use serde_json::json;

/// Flags, with env fallbacks so a container or harness can name nodes without a command line.
#[derive(Parser)]
#[command(version, about = "A tiny HTTP backend for lb demos and tests")]
struct Args {
    /// Port to listen on; 0 picks a free one (read it from the "listening on" line).
    #[arg(long, env = "SAMPLE_WEB_PORT", default_value_t = 8082)]
    port: u16,
    /// Node name, reported in bodies and in the X-Node header.
    #[arg(long, env = "SAMPLE_WEB_NODE", default_value = "sample-web")]
    node: String,
    /// Address to bind.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
}

/// What the handlers share: who we are, and whether /healthz should pretend we are sick.
#[derive(Clone)]
struct Node {
    name: Arc<str>,
    /// The name again, checked once at startup to be a valid header value.
    header: HeaderValue,
    sick: Arc<AtomicBool>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let Ok(header) = HeaderValue::from_str(&args.node) else {
        eprintln!("sample-web: --node must be printable ASCII, got {:?}", args.node);
        return ExitCode::from(2);
    };
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("sample-web: cannot listen on {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    let shutdown = shutdown_signal();
    // The line is for whoever spawned us; if they stopped reading, serving still makes sense.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "sample-web node {} listening on {local}", args.node);
    let _ = stdout.flush();
    drop(stdout);

    let node = Node { name: args.node.into(), header, sick: Arc::default() };
    let served = axum::serve(listener, router(node)).with_graceful_shutdown(shutdown).await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sample-web: {err}");
            ExitCode::FAILURE
        }
    }
}

fn router(node: Node) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/control/sick", post(make_sick))
        .route("/control/healthy", post(make_healthy))
        .route("/slow", get(slow))
        .route("/echo", any(echo))
        .route("/echo/{*rest}", any(echo))
        .route("/status/{code}", any(status))
        .fallback(hello)
        .layer(middleware::map_response_with_state(node.clone(), tag_node))
        .with_state(node)
}

/// Stamps X-Node on every response, errors and 404s included, so tests can always attribute it.
async fn tag_node(State(node): State<Node>, mut response: Response) -> Response {
    response.headers_mut().insert("x-node", node.header);
    response
}

async fn hello(State(node): State<Node>) -> String {
    format!("Hello web from node {}", node.name)
}

async fn healthz(State(node): State<Node>) -> (StatusCode, &'static str) {
    if node.sick.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "sick")
    } else {
        (StatusCode::OK, "ok")
    }
}

async fn make_sick(State(node): State<Node>) -> &'static str {
    node.sick.store(true, Ordering::Relaxed);
    "sick"
}

async fn make_healthy(State(node): State<Node>) -> &'static str {
    node.sick.store(false, Ordering::Relaxed);
    "healthy"
}

#[derive(Deserialize)]
struct SlowQuery {
    #[serde(default)]
    ms: u64,
}

async fn slow(State(node): State<Node>, Query(query): Query<SlowQuery>) -> String {
    tokio::time::sleep(Duration::from_millis(query.ms)).await;
    format!("slow {}", node.name)
}

/// Reflects the request as received; headers keep repeats in order because forwarding headers
/// like X-Forwarded-For may legitimately arrive more than once.
async fn echo(
    State(node): State<Node>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Json<serde_json::Value> {
    let mut by_name: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        by_name.entry(name.as_str()).or_default().push(value);
    }
    Json(json!({
        "node": &*node.name,
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": by_name,
        "body": String::from_utf8_lossy(&body),
    }))
}

async fn status(Path(code): Path<u16>) -> Response {
    match StatusCode::from_u16(code) {
        Ok(status) => (status, format!("status {code}")).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, format!("no such status {code}")).into_response(),
    }
}

/// Registers for SIGINT and SIGTERM now, before the listening line goes out, so a signal sent
/// right after it is still graceful. The future resolves on either; `axum::serve` then finishes
/// in-flight requests and we exit 0.
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        let (Ok(mut interrupt), Ok(mut terminate)) = (interrupt, terminate) else {
            // Without our handlers the default action still stops the process; serve until then.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }
}
