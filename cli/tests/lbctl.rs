//! Runs the real lbctl binary: its command line and errors on their own, and its requests and
//! output against a stub admin API that answers canned JSON and remembers what it was asked.

use std::{
    net::SocketAddr,
    process::Output,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{Method, StatusCode, Uri},
    Json, Router,
};
use serde_json::{json, Value};
use tokio::{net::TcpListener, process::Command, task::JoinHandle, time::timeout};

/// lbctl's own request timeout is 10s; give it room to report that before we give up.
const DEADLINE: Duration = Duration::from_secs(20);

/// What the stub admin API saw of one request.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: Method,
    path: String,
    query: Option<String>,
    body: Option<Value>,
}

/// A stand-in for lb's admin API: every request gets the same canned answer.
struct StubAdmin {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: JoinHandle<()>,
}

impl StubAdmin {
    async fn start(status: u16, reply: Value) -> StubAdmin {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer = (StatusCode::from_u16(status).unwrap(), reply);
        let app = Router::new()
            .fallback(record)
            .with_state((seen.clone(), answer));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        StubAdmin { addr, seen, server }
    }

    fn lb(&self) -> String {
        format!("--lb={}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for StubAdmin {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type Stub = (Arc<Mutex<Vec<Seen>>>, (StatusCode, Value));

async fn record(
    State((seen, (status, reply))): State<Stub>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    seen.lock().unwrap().push(Seen {
        method,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        body: (!body.is_empty()).then(|| serde_json::from_slice(&body).unwrap()),
    });
    (status, Json(reply))
}

/// Runs lbctl to completion, with LB_ADMIN cleared so the caller's environment cannot leak in.
async fn lbctl(args: &[&str]) -> Output {
    let run = Command::new(env!("CARGO_BIN_EXE_lbctl"))
        .args(args)
        .env_remove("LB_ADMIN")
        .kill_on_drop(true)
        .output();
    timeout(DEADLINE, run)
        .await
        .expect("lbctl did not finish in time")
        .expect("spawn lbctl")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Asserts the failure contract: one `lbctl: error: ` line on stderr, nothing on stdout.
fn assert_one_error_line(output: &Output, exit_code: i32) -> String {
    let stderr = stderr(output);
    assert_eq!(output.status.code(), Some(exit_code), "stderr: {stderr:?}");
    assert!(output.stdout.is_empty(), "stdout: {:?}", stdout(output));
    assert!(stderr.starts_with("lbctl: error: "), "{stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    stderr
}

fn backend_json() -> Value {
    json!({"ip": "127.0.0.1", "port": 8082, "url_path": "/", "address": "127.0.0.1:8082",
           "status": "BS_HEALTHY"})
}

fn pool_json(pattern: &str, mode: &str) -> Value {
    json!({"pattern": pattern, "mode": mode, "strategy": "p2c",
           "health_check": {"path": "/healthz", "healthy_values": ["ok", "OK"], "interval_ms": 10000},
           "status": "PS_FULL", "backends": [backend_json()]})
}

#[tokio::test]
async fn help_describes_every_command_and_flag() {
    let output = lbctl(&["--help"]).await;
    assert_eq!(output.status.code(), Some(0));
    let help = stdout(&output);
    for command in [
        "listPools",
        "addPool",
        "removePool",
        "setMode",
        "poolHealth",
        "addBackend",
        "removeBackend",
    ] {
        assert!(
            help.contains(&format!("\n  {command} ")),
            "{command} missing"
        );
        assert!(
            help.contains(&format!(" {command}\n")),
            "no example for {command}"
        );
    }
    for flag in [
        "--lb",
        "--pattern",
        "--ip",
        "--port",
        "--url_path",
        "--mode",
        "--strategy",
        "--json",
    ] {
        assert!(help.contains(&format!("      {flag} ")), "{flag} missing");
    }
}

#[tokio::test]
async fn add_backend_without_ip_is_a_usage_error() {
    let output = lbctl(&["--pattern=/", "--port=8082", "addBackend"]).await;
    let stderr = assert_one_error_line(&output, 2);
    assert_eq!(stderr, "lbctl: error: addBackend needs --ip\n");
}

#[tokio::test]
async fn an_unknown_command_is_a_usage_error() {
    let output = lbctl(&["--pattern=/", "addPools"]).await;
    let stderr = assert_one_error_line(&output, 2);
    assert!(stderr.contains("'addPools'"), "{stderr:?}");
}

#[tokio::test]
async fn an_unreachable_admin_is_one_line_and_exit_1() {
    let output = lbctl(&["--lb=127.0.0.1:1", "listPools"]).await;
    let stderr = assert_one_error_line(&output, 1);
    assert_eq!(
        stderr,
        "lbctl: error: cannot reach lb admin at 127.0.0.1:1: connection refused\n"
    );
}

#[tokio::test]
async fn pool_health_prints_two_tables() {
    let admin = StubAdmin::start(
        200,
        json!({"pattern": "/api/", "status": "PS_FULL",
               "backends": [{"address": "127.0.0.1:8082", "status": "BS_HEALTHY"}]}),
    )
    .await;
    // The Go tool's spelling: single-dash flags before the command.
    let lb = format!("-lb={}", admin.addr);
    let output = lbctl(&[&lb, "-pattern=/api/", "poolHealth"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "Pool   Status\n\
         /api/  PS_FULL\n\
         Backend         Status\n\
         127.0.0.1:8082  BS_HEALTHY\n"
    );
    assert_eq!(
        admin.seen(),
        [Seen {
            method: Method::GET,
            path: "/v1/pool/health".into(),
            query: Some("pattern=%2Fapi%2F".into()),
            body: None,
        }]
    );
}

#[tokio::test]
async fn pool_health_without_backends_prints_only_the_backend_header() {
    let admin = StubAdmin::start(
        200,
        json!({"pattern": "/", "status": "PS_UNAVAILABLE", "backends": []}),
    )
    .await;
    let output = lbctl(&[&admin.lb(), "--pattern=/", "poolHealth"]).await;
    assert_eq!(
        stdout(&output),
        "Pool  Status\n/     PS_UNAVAILABLE\nBackend  Status\n"
    );
}

#[tokio::test]
async fn json_prints_the_admin_answer() {
    let reply = json!({"pattern": "/", "status": "PS_FULL", "backends": [], "later_field": 1});
    let admin = StubAdmin::start(200, reply.clone()).await;
    let output = lbctl(&["poolHealth", &admin.lb(), "--pattern=/", "--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let printed = stdout(&output);
    assert!(printed.starts_with("{\n  \""), "not pretty: {printed:?}");
    assert_eq!(serde_json::from_str::<Value>(&printed).unwrap(), reply);
}

#[tokio::test]
async fn list_pools_prints_a_table() {
    let admin = StubAdmin::start(
        200,
        json!([pool_json("/", "proxy"), {"pattern": "/static/", "mode": "redirect",
               "strategy": "round_robin", "status": "PS_UNAVAILABLE", "backends": []}]),
    )
    .await;
    let lb = format!("--lb=http://{}", admin.addr);
    let output = lbctl(&[&lb, "listPools"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "Pattern   Mode      Strategy     Backends  Status\n\
         /         proxy     p2c          1         PS_FULL\n\
         /static/  redirect  round_robin  0         PS_UNAVAILABLE\n"
    );
    assert_eq!(admin.seen()[0].method, Method::GET);
    assert_eq!(admin.seen()[0].path, "/v1/pools");
    assert_eq!(admin.seen()[0].query, None);
}

#[tokio::test]
async fn the_admin_address_can_come_from_lb_admin() {
    let admin = StubAdmin::start(200, json!([])).await;
    let run = Command::new(env!("CARGO_BIN_EXE_lbctl"))
        .arg("listPools")
        .env("LB_ADMIN", admin.addr.to_string())
        .kill_on_drop(true)
        .output();
    let output = timeout(DEADLINE, run).await.unwrap().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "Pattern  Mode  Strategy  Backends  Status\n"
    );
    assert_eq!(admin.seen().len(), 1);
}

/// Each command against a stub answering what lb would: the request lbctl sends and the
/// sentence it prints.
#[tokio::test]
async fn commands_send_the_right_request_and_say_what_happened() {
    struct Case {
        args: &'static [&'static str],
        status: u16,
        reply: Value,
        sent: Seen,
        printed: &'static str,
    }
    let cases = [
        Case {
            args: &["--pattern=/", "addPool"],
            status: 201,
            reply: pool_json("/", "proxy"),
            sent: Seen {
                method: Method::POST,
                path: "/v1/pools".into(),
                query: None,
                body: Some(json!({"pattern": "/"})),
            },
            printed: "added pool / (mode proxy)\n",
        },
        Case {
            args: &[
                "--pattern=/",
                "--mode=redirect",
                "--strategy=round_robin",
                "addPool",
            ],
            status: 201,
            reply: pool_json("/", "redirect"),
            sent: Seen {
                method: Method::POST,
                path: "/v1/pools".into(),
                query: None,
                body: Some(json!({"pattern": "/", "mode": "redirect", "strategy": "round_robin"})),
            },
            printed: "added pool / (mode redirect)\n",
        },
        Case {
            args: &["--pattern=/", "removePool"],
            status: 200,
            reply: pool_json("/", "proxy"),
            sent: Seen {
                method: Method::DELETE,
                path: "/v1/pool".into(),
                query: Some("pattern=%2F".into()),
                body: None,
            },
            printed: "removed pool /\n",
        },
        Case {
            args: &["--pattern=/", "--mode=redirect", "setMode"],
            status: 200,
            reply: pool_json("/", "redirect"),
            sent: Seen {
                method: Method::PATCH,
                path: "/v1/pool".into(),
                query: Some("pattern=%2F".into()),
                body: Some(json!({"mode": "redirect"})),
            },
            printed: "pool / is now in redirect mode\n",
        },
        Case {
            args: &[
                "--pattern=/",
                "--ip=127.0.0.1",
                "--port=8082",
                "--url_path=/",
                "addBackend",
            ],
            status: 201,
            reply: backend_json(),
            sent: Seen {
                method: Method::POST,
                path: "/v1/pool/backends".into(),
                query: Some("pattern=%2F".into()),
                body: Some(json!({"ip": "127.0.0.1", "port": 8082, "url_path": "/"})),
            },
            printed: "added backend 127.0.0.1:8082 to pool /\n",
        },
        Case {
            args: &[
                "--pattern=/",
                "--ip=127.0.0.1",
                "--port=8082",
                "removeBackend",
            ],
            status: 200,
            reply: backend_json(),
            sent: Seen {
                method: Method::DELETE,
                path: "/v1/pool/backends".into(),
                query: Some("pattern=%2F&ip=127.0.0.1&port=8082".into()),
                body: None,
            },
            printed: "removed backend 127.0.0.1:8082 from pool /\n",
        },
    ];
    for case in cases {
        let admin = StubAdmin::start(case.status, case.reply).await;
        let lb = admin.lb();
        let args: Vec<&str> = std::iter::once(lb.as_str())
            .chain(case.args.iter().copied())
            .collect();
        let output = lbctl(&args).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(stdout(&output), case.printed, "{args:?}");
        assert_eq!(admin.seen(), [case.sent], "{args:?}");
    }
}

#[tokio::test]
async fn server_errors_print_lbs_message_and_exit_1() {
    let admin = StubAdmin::start(409, json!({"error": "pool \"/\" already exists"})).await;
    let output = lbctl(&[&admin.lb(), "--pattern=/", "addPool"]).await;
    let stderr = assert_one_error_line(&output, 1);
    assert_eq!(stderr, "lbctl: error: pool \"/\" already exists (409)\n");
}
