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
        let app = Router::new().fallback(record).with_state((seen.clone(), answer));
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
    let run = Command::new(env!("CARGO_BIN_EXE_lbctl")).args(args).env_remove("LB_ADMIN").kill_on_drop(true).output();
    timeout(DEADLINE, run).await.expect("lbctl did not finish in time").expect("spawn lbctl")
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
           "status": "BS_HEALTHY", "weight": 1, "draining": false, "inflight": 0,
           "consecutive_failures": 0, "consecutive_passes": 1,
           "last_check_ms": 1763766000000u64, "last_error": null})
}

/// `backend_json()` with some fields changed, as lb answers after a PATCH.
fn backend_with(changes: Value) -> Value {
    let mut backend = backend_json();
    for (key, value) in changes.as_object().unwrap() {
        backend[key] = value.clone();
    }
    backend
}

fn pool_json(pattern: &str, mode: &str) -> Value {
    json!({"pattern": pattern, "mode": mode, "strategy": "p2c", "hash_key": "client_ip",
           "retries": 2, "retry_on_5xx": false, "retry_body_limit": 65536,
           "timeouts": {"connect_ms": 3000, "response_ms": 60000, "idle_ms": 90000},
           "health_check": {"path": "/healthz", "healthy_values": ["ok", "OK"],
                            "expected_status": null, "interval_ms": 10000, "timeout_ms": 1000,
                            "fall": 3, "rise": 2, "evict_after": 30},
           "expose_backend": false, "allow_trace": false,
           "status": "PS_FULL", "backends": [backend_json()]})
}

/// `pool_json(pattern, "proxy")` with some fields changed, as lb answers after a PATCH.
fn pool_with(pattern: &str, changes: Value) -> Value {
    let mut pool = pool_json(pattern, "proxy");
    for (key, value) in changes.as_object().unwrap() {
        match (&mut pool[key], value) {
            (Value::Object(fields), Value::Object(changed)) => fields.extend(changed.clone()),
            (field, value) => *field = value.clone(),
        }
    }
    pool
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
        "setPool",
        "setHealth",
        "poolHealth",
        "addBackend",
        "removeBackend",
        "drainBackend",
        "undrainBackend",
        "setWeight",
    ] {
        assert!(help.contains(&format!("\n  {command} ")), "{command} missing");
        assert!(help.contains(&format!(" {command}\n")), "no example for {command}");
    }
    for flag in [
        "--lb",
        "--pattern",
        "--ip",
        "--port",
        "--url_path",
        "--weight",
        "--mode",
        "--strategy",
        "--hash_key",
        "--retries",
        "--retry_on",
        "--retry_body_limit",
        "--connect_timeout",
        "--response_timeout",
        "--idle_timeout",
        "--health_path",
        "--healthy_values",
        "--expected_status",
        "--interval",
        "--timeout",
        "--fall",
        "--rise",
        "--evict_after",
        "--json",
    ] {
        assert!(help.contains(&format!("      {flag} ")), "{flag} missing");
    }
    for switch in ["--expose_backend", "--allow_trace"] {
        assert!(help.contains(&format!("      {switch}[=<BOOL>] ")), "{switch} missing");
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
    assert_eq!(stderr, "lbctl: error: cannot reach lb admin at 127.0.0.1:1: connection refused\n");
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
    let admin = StubAdmin::start(200, json!({"pattern": "/", "status": "PS_UNAVAILABLE", "backends": []})).await;
    let output = lbctl(&[&admin.lb(), "--pattern=/", "poolHealth"]).await;
    assert_eq!(stdout(&output), "Pool  Status\n/     PS_UNAVAILABLE\nBackend  Status\n");
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
        json!([pool_with("/", json!({"expose_backend": true})), {"pattern": "/static/", "mode": "redirect",
               "strategy": "round_robin", "status": "PS_UNAVAILABLE", "backends": []}]),
    )
    .await;
    let lb = format!("--lb=http://{}", admin.addr);
    let output = lbctl(&[&lb, "listPools"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "Pattern   Mode      Strategy     Backends  Status          Options\n\
         /         proxy     p2c          1         PS_FULL         expose_backend\n\
         /static/  redirect  round_robin  0         PS_UNAVAILABLE  -\n"
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
    assert_eq!(stdout(&output), "Pattern  Mode  Strategy  Backends  Status  Options\n");
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
            args: &["--pattern=/", "--mode=redirect", "--strategy=round_robin", "addPool"],
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
            args: &["--pattern=/", "--ip=127.0.0.1", "--port=8082", "--url_path=/", "addBackend"],
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
            args: &["--pattern=/", "--ip=127.0.0.1", "--port=8082", "removeBackend"],
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
        Case {
            args: &[
                "--pattern=/api/",
                "--mode=proxy",
                "--strategy=consistent_hash",
                "--hash_key=header:X-User",
                "--retries=3",
                "--retry_on=5xx",
                "--retry_body_limit=1MiB",
                "--connect_timeout=500ms",
                "--response_timeout=1m30s",
                "--idle_timeout=0s",
                "--health_path=/ready",
                "--healthy_values=ok,ready",
                "--expected_status=204",
                "--interval=2s",
                "--timeout=1s",
                "--fall=4",
                "--rise=1",
                "--evict_after=0",
                "addPool",
            ],
            status: 201,
            reply: pool_json("/api/", "proxy"),
            sent: Seen {
                method: Method::POST,
                path: "/v1/pools".into(),
                query: None,
                body: Some(json!({
                    "pattern": "/api/", "mode": "proxy", "strategy": "consistent_hash",
                    "hash_key": "header:X-User", "retries": 3, "retry_on_5xx": true,
                    "retry_body_limit": 1048576,
                    "timeouts": {"connect_ms": 500, "response_ms": 90000, "idle_ms": 0},
                    "health_check": {"path": "/ready", "healthy_values": ["ok", "ready"],
                                     "expected_status": 204, "interval_ms": 2000,
                                     "timeout_ms": 1000, "fall": 4, "rise": 1, "evict_after": 0},
                })),
            },
            printed: "added pool /api/ (mode proxy)\n",
        },
        Case {
            // Go-style flags after the command, as scripts write them.
            args: &["addPool", "-pattern=/", "-interval=1m", "-retry_on=none"],
            status: 201,
            reply: pool_json("/", "proxy"),
            sent: Seen {
                method: Method::POST,
                path: "/v1/pools".into(),
                query: None,
                body: Some(json!({"pattern": "/", "retry_on_5xx": false,
                                  "health_check": {"interval_ms": 60000}})),
            },
            printed: "added pool / (mode proxy)\n",
        },
        Case {
            args: &["--pattern=/", "--interval=2s", "--fall=3", "--rise=2", "setHealth"],
            status: 200,
            reply: pool_with("/", json!({"health_check": {"interval_ms": 2000}})),
            sent: Seen {
                method: Method::PATCH,
                path: "/v1/pool".into(),
                query: Some("pattern=%2F".into()),
                body: Some(json!({"health_check": {"interval_ms": 2000, "fall": 3, "rise": 2}})),
            },
            printed: "pool / health check: GET /healthz every 2s, timeout 1s, fall 3, rise 2, \
                      evict after 30\n",
        },
        Case {
            args: &[
                "--pattern=/",
                "--health_path=/status",
                "--healthy_values=up",
                "--expected_status=204",
                "--timeout=250ms",
                "--evict_after=0",
                "setHealth",
            ],
            status: 200,
            reply: pool_with(
                "/",
                json!({"health_check": {"path": "/status", "healthy_values": ["up"],
                                        "expected_status": 204, "timeout_ms": 250,
                                        "evict_after": 0}}),
            ),
            sent: Seen {
                method: Method::PATCH,
                path: "/v1/pool".into(),
                query: Some("pattern=%2F".into()),
                body: Some(json!({"health_check": {"path": "/status", "healthy_values": ["up"],
                                                   "expected_status": 204, "timeout_ms": 250,
                                                   "evict_after": 0}})),
            },
            printed: "pool / health check: GET /status expecting 204 every 10s, timeout 250ms, \
                      fall 3, rise 2, never evicted\n",
        },
        Case {
            args: &["--pattern=/", "--mode=proxy", "--strategy=least_conn", "--retries=2", "setPool"],
            status: 200,
            reply: pool_with("/", json!({"strategy": "least_conn"})),
            sent: Seen {
                method: Method::PATCH,
                path: "/v1/pool".into(),
                query: Some("pattern=%2F".into()),
                body: Some(json!({"mode": "proxy", "strategy": "least_conn", "retries": 2})),
            },
            printed: "pool / updated: mode proxy, strategy least_conn, retries 2\n",
        },
        Case {
            args: &["--pattern=/", "--expose_backend=true", "setPool", "-allow_trace=false"],
            status: 200,
            reply: pool_with("/", json!({"expose_backend": true})),
            sent: Seen {
                method: Method::PATCH,
                path: "/v1/pool".into(),
                query: Some("pattern=%2F".into()),
                body: Some(json!({"expose_backend": true, "allow_trace": false})),
            },
            printed: "pool / updated: mode proxy, strategy p2c, backend exposed in X-Forwarded-Server, \
                      TRACE refused\n",
        },
        Case {
            args: &["--pattern=/", "--allow_trace", "setPool"],
            status: 200,
            reply: pool_with("/", json!({"allow_trace": true})),
            sent: Seen {
                method: Method::PATCH,
                path: "/v1/pool".into(),
                query: Some("pattern=%2F".into()),
                body: Some(json!({"allow_trace": true})),
            },
            printed: "pool / updated: mode proxy, strategy p2c, TRACE allowed\n",
        },
        Case {
            args: &["--pattern=/", "--strategy=consistent_hash", "--hash_key=header:X-User", "setPool"],
            status: 200,
            reply: pool_with("/", json!({"strategy": "consistent_hash", "hash_key": "header:X-User"})),
            sent: Seen {
                method: Method::PATCH,
                path: "/v1/pool".into(),
                query: Some("pattern=%2F".into()),
                body: Some(json!({"strategy": "consistent_hash", "hash_key": "header:X-User"})),
            },
            printed: "pool / updated: mode proxy, strategy consistent_hash, \
                      hash key header:X-User\n",
        },
        Case {
            args: &[
                "--pattern=/",
                "--retry_on=5xx",
                "--retry_body_limit=128KiB",
                "--connect_timeout=1s",
                "--response_timeout=30s",
                "--idle_timeout=1h",
                "setPool",
            ],
            status: 200,
            reply: pool_with(
                "/",
                json!({"retry_on_5xx": true, "retry_body_limit": 131072,
                       "timeouts": {"connect_ms": 1000, "response_ms": 30000,
                                    "idle_ms": 3600000}}),
            ),
            sent: Seen {
                method: Method::PATCH,
                path: "/v1/pool".into(),
                query: Some("pattern=%2F".into()),
                body: Some(json!({"retry_on_5xx": true, "retry_body_limit": 131072,
                                  "timeouts": {"connect_ms": 1000, "response_ms": 30000,
                                               "idle_ms": 3600000}})),
            },
            printed: "pool / updated: mode proxy, strategy p2c, retry on 5xx, \
                      retry body limit 128KiB, connect timeout 1s, response timeout 30s, \
                      idle timeout 1h\n",
        },
        Case {
            args: &["--pattern=/", "--ip=127.0.0.1", "--port=8082", "--weight=3", "addBackend"],
            status: 201,
            reply: backend_with(json!({"weight": 3})),
            sent: Seen {
                method: Method::POST,
                path: "/v1/pool/backends".into(),
                query: Some("pattern=%2F".into()),
                body: Some(json!({"ip": "127.0.0.1", "port": 8082, "url_path": "/",
                                  "weight": 3})),
            },
            printed: "added backend 127.0.0.1:8082 to pool /\n",
        },
        Case {
            args: &["--pattern=/api/", "--ip=127.0.0.1", "--port=8082", "drainBackend"],
            status: 200,
            reply: backend_with(json!({"draining": true, "status": "BS_DRAINING"})),
            sent: Seen {
                method: Method::PATCH,
                path: "/v1/pool/backends".into(),
                query: Some("pattern=%2Fapi%2F&ip=127.0.0.1&port=8082".into()),
                body: Some(json!({"draining": true})),
            },
            printed: "backend 127.0.0.1:8082 of pool /api/ is draining\n",
        },
        Case {
            args: &["--pattern=/", "--ip=127.0.0.1", "--port=8082", "undrainBackend"],
            status: 200,
            reply: backend_json(),
            sent: Seen {
                method: Method::PATCH,
                path: "/v1/pool/backends".into(),
                query: Some("pattern=%2F&ip=127.0.0.1&port=8082".into()),
                body: Some(json!({"draining": false})),
            },
            printed: "backend 127.0.0.1:8082 of pool / is back in rotation\n",
        },
        Case {
            args: &["setWeight", "--pattern=/", "--ip=127.0.0.1", "--port=8082", "--weight=5"],
            status: 200,
            reply: backend_with(json!({"weight": 5})),
            sent: Seen {
                method: Method::PATCH,
                path: "/v1/pool/backends".into(),
                query: Some("pattern=%2F&ip=127.0.0.1&port=8082".into()),
                body: Some(json!({"weight": 5})),
            },
            printed: "backend 127.0.0.1:8082 of pool / now has weight 5\n",
        },
    ];
    for case in cases {
        let admin = StubAdmin::start(case.status, case.reply).await;
        let lb = admin.lb();
        let args: Vec<&str> = std::iter::once(lb.as_str()).chain(case.args.iter().copied()).collect();
        let output = lbctl(&args).await;
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr(&output));
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

#[tokio::test]
async fn lbs_refusal_of_a_bad_setting_is_printed() {
    let admin =
        StubAdmin::start(400, json!({"error": "health check interval must be more than 0 and at most a day"})).await;
    let output = lbctl(&[&admin.lb(), "--pattern=/", "--interval=0s", "setHealth"]).await;
    let stderr = assert_one_error_line(&output, 1);
    assert_eq!(stderr, "lbctl: error: health check interval must be more than 0 and at most a day (400)\n");
    // 0s is lb's to judge, so it was sent.
    assert_eq!(admin.seen()[0].body, Some(json!({"health_check": {"interval_ms": 0}})));
}

#[tokio::test]
async fn usage_errors_are_one_line_exit_2_and_send_nothing() {
    let admin = StubAdmin::start(200, pool_json("/", "proxy")).await;
    let lb = admin.lb();
    for (args, expected) in [
        (
            &["--pattern=/", "--interval=2x", "setHealth"][..],
            Some(r#"--interval: invalid duration "2x" (use e.g. 500ms, 2s, 1m)"#),
        ),
        (
            &["--pattern=/", "--connect_timeout=-1s", "setPool"],
            Some(r#"--connect_timeout: invalid duration "-1s" (use e.g. 500ms, 2s, 1m)"#),
        ),
        (
            &["--pattern=/", "--retry_body_limit=64KB", "setPool"],
            Some(r#"--retry_body_limit: invalid size "64KB" (use e.g. 65536, 64KiB, 1MiB)"#),
        ),
        (
            &["--pattern=/", "setHealth"],
            Some(
                "setHealth needs at least one of --health_path, --healthy_values, \
                 --expected_status, --interval, --timeout, --fall, --rise, --evict_after",
            ),
        ),
        (
            &["--pattern=/", "--fall=3", "setPool"],
            Some(
                "setPool needs at least one of --mode, --strategy, --hash_key, --retries, \
                 --retry_on, --retry_body_limit, --connect_timeout, --response_timeout, \
                 --idle_timeout, --expose_backend, --allow_trace",
            ),
        ),
        (&["--pattern=/", "--ip=127.0.0.1", "drainBackend"], Some("drainBackend needs --port")),
        (&["--pattern=/", "--ip=127.0.0.1", "--port=8082", "setWeight"], Some("setWeight needs --weight")),
        (&["--pattern=/", "--fall=three", "setHealth"], None),
        (&["--pattern=/", "--intervall=2s", "setHealth"], None),
        (&["--pattern=/", "--retry_on=4xx", "setPool"], None),
        (&["--pattern=/", "--strategy=fastest", "setPool"], None),
        (&["--pattern=/", "--expose_backend=yes", "setPool"], None),
        (&["--pattern=/", "--allow_trace", "on", "setPool"], None),
    ] {
        let args: Vec<&str> = std::iter::once(lb.as_str()).chain(args.iter().copied()).collect();
        let output = lbctl(&args).await;
        let stderr = assert_one_error_line(&output, 2);
        match expected {
            Some(message) => assert_eq!(stderr, format!("lbctl: error: {message}\n")),
            None => assert!(stderr.ends_with(" (see lbctl --help)\n"), "{stderr:?}"),
        }
    }
    assert_eq!(admin.seen(), []);
}

#[tokio::test]
async fn pool_health_tables_keep_their_shape_with_the_new_fields() {
    let reply = json!({"pattern": "/", "status": "PS_DEGRADED", "backends": [
        backend_with(json!({"draining": true, "status": "BS_DRAINING", "inflight": 4})),
        backend_with(json!({"address": "127.0.0.1:8083", "port": 8083, "status": "BS_SICK",
                            "consecutive_failures": 5, "consecutive_passes": 0,
                            "last_error": "GET http://127.0.0.1:8083/healthz answered 500"})),
    ]});
    let admin = StubAdmin::start(200, reply.clone()).await;
    let output = lbctl(&[&admin.lb(), "--pattern=/", "poolHealth"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "Pool  Status\n\
         /     PS_DEGRADED\n\
         Backend         Status\n\
         127.0.0.1:8082  BS_DRAINING\n\
         127.0.0.1:8083  BS_SICK\n"
    );
    let output = lbctl(&[&admin.lb(), "--pattern=/", "--json", "poolHealth"]).await;
    assert_eq!(serde_json::from_slice::<Value>(&output.stdout).unwrap(), reply);
}

#[tokio::test]
async fn new_commands_print_lbs_json_with_json() {
    let reply = backend_with(json!({"draining": true, "status": "BS_DRAINING"}));
    let admin = StubAdmin::start(200, reply.clone()).await;
    let output = lbctl(&[&admin.lb(), "--json", "--pattern=/", "--ip=127.0.0.1", "--port=8082", "drainBackend"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(serde_json::from_slice::<Value>(&output.stdout).unwrap(), reply);
}

#[tokio::test]
async fn a_200_that_is_not_lbs_answer_is_an_error() {
    for (reply, args) in [
        (json!({"ok": true}), &["listPools"][..]),
        (json!([{"name": "x"}]), &["listPools"]),
        (json!({}), &["--pattern=/", "addPool"]),
        (json!({"status": "ok"}), &["--pattern=/", "poolHealth"]),
        (json!({"result": "done"}), &["--pattern=/", "--ip=127.0.0.1", "--port=8082", "removeBackend"]),
    ] {
        let admin = StubAdmin::start(200, reply.clone()).await;
        for json in [false, true] {
            let mut all = vec![admin.lb()];
            all.extend(args.iter().map(|a| a.to_string()));
            if json {
                all.push("--json".into());
            }
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            let stderr = assert_one_error_line(&lbctl(&all).await, 1);
            assert!(stderr.starts_with("lbctl: error: the answer is not lb's"), "{reply} {args:?}: {stderr}");
        }
    }
}

#[tokio::test]
async fn tables_and_errors_escape_control_characters() {
    let reply = json!([{"pattern": "/a\u{1b}[31m", "mode": "proxy", "strategy": "p2c", "status": "PS_EMPTY",
                        "backends": []}]);
    let admin = StubAdmin::start(200, reply).await;
    let output = lbctl(&[&admin.lb(), "listPools"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "Pattern     Mode   Strategy  Backends  Status    Options\n\
         /a\\x1b[31m  proxy  p2c       0         PS_EMPTY  -\n"
    );
    let admin = StubAdmin::start(409, json!({"error": "pool \"/\u{1b}[2J\" already exists"})).await;
    let stderr = assert_one_error_line(&lbctl(&[&admin.lb(), "--pattern=/x", "addPool"]).await, 1);
    assert_eq!(stderr, "lbctl: error: pool \"/\\x1b[2J\" already exists (409)\n");
}

#[tokio::test]
async fn lb_without_a_port_and_flags_without_values_are_usage_errors() {
    for (args, says) in [
        (&["--lb=127.0.0.1", "listPools"][..], "--lb \"127.0.0.1\" has no port"),
        (&["--lb=http://localhost/", "listPools"], "--lb \"http://localhost/\" has no port"),
        (&["--lb=127.0.0.1:8081", "--pattern", "addPool"], "--pattern needs a value: addPool is a command"),
        (&["-lb=127.0.0.1:8081", "-pattern", "addPool"], "--pattern needs a value: addPool is a command"),
        (&["--lb", "listPools"], "--lb needs a value: listPools is a command"),
    ] {
        let stderr = assert_one_error_line(&lbctl(args).await, 2);
        assert!(stderr.starts_with(&format!("lbctl: error: {says}")), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn help_shows_the_token_flags() {
    let output = lbctl(&["--help"]).await;
    let help = stdout(&output);
    for flag in ["--token <TOKEN>", "LB_TOKEN", "--token-file <FILE>"] {
        assert!(help.contains(flag), "no {flag} in\n{help}");
    }
}
