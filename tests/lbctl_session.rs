//! A user's session with lbctl against a real lb, using the Go tool's command line.

mod common;

use common::{get, Lb, SampleWeb};

fn ok(out: std::process::Output) -> String {
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "lbctl failed: {}{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn failed(out: std::process::Output) -> String {
    assert!(!out.status.success(), "lbctl succeeded: {}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "want one line: {stderr:?}");
    assert!(stderr.starts_with("lbctl: error: "), "{stderr}");
    stderr
}

#[tokio::test]
async fn the_go_tools_command_line_works_end_to_end() {
    let lb = Lb::start();
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    let (pa, pb) = (format!("--port={}", a.port()), format!("--port={}", b.port()));

    assert_eq!(ok(lb.lbctl(&["--pattern=/", "addPool"])), "added pool / (mode proxy)\n");
    ok(lb.lbctl(&["--pattern=/", "--ip=127.0.0.1", &pa, "--url_path=/", "addBackend"]));
    ok(lb.lbctl(&["--pattern=/", "--ip=127.0.0.1", &pb, "addBackend"]));

    let want = format!(
        "Pool  Status\n/     PS_FULL\nBackend{pad}Status\n{a}  BS_HEALTHY\n{b}  BS_HEALTHY\n",
        pad = " ".repeat(a.addr.to_string().len() + 2 - "Backend".len()),
        a = a.addr,
        b = b.addr,
    );
    assert_eq!(ok(lb.lbctl(&["--pattern=/", "poolHealth"])), want);
    assert_eq!(get(&lb.url("/")).await.0, 200);

    ok(lb.lbctl(&["--pattern=/", "--ip=127.0.0.1", &pb, "removeBackend"]));
    let health = ok(lb.lbctl(&["--pattern=/", "poolHealth"]));
    assert!(!health.contains(&b.addr.to_string()), "{health}");

    assert_eq!(ok(lb.lbctl(&["--pattern=/", "--mode=redirect", "setMode"])), "pool / is now in redirect mode\n");
    assert_eq!(common::client().get(lb.url("/")).send().await.unwrap().status(), 307);

    let pools = ok(lb.lbctl(&["listPools"]));
    assert_eq!(
        pools,
        "Pattern  Mode      Strategy  Backends  Status   Options\n/        redirect  p2c       1         PS_FULL  -\n"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(lb.lbctl(&["--json", "listPools"]))).unwrap();
    assert_eq!(json[0]["pattern"], "/");

    ok(lb.lbctl(&["--pattern=/", "removePool"]));
    assert_eq!(get(&lb.url("/")).await.0, 404);
}

#[tokio::test]
async fn the_exact_pool_health_shape() {
    let lb = Lb::start();
    ok(lb.lbctl(&["--pattern=/", "addPool"]));
    assert_eq!(ok(lb.lbctl(&["--pattern=/", "poolHealth"])), "Pool  Status\n/     PS_EMPTY\nBackend  Status\n");
    // A backend on port 8082, as in the README, if that port is free here.
    if let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:8082") {
        drop(listener);
        let web = SampleWeb::start_on("a", 8082);
        ok(lb.lbctl(&["--pattern=/", "--ip=127.0.0.1", "--port=8082", "addBackend"]));
        assert_eq!(
            ok(lb.lbctl(&["--pattern=/", "poolHealth"])),
            "Pool  Status\n/     PS_FULL\nBackend         Status\n127.0.0.1:8082  BS_HEALTHY\n"
        );
        drop(web);
    }
}

#[tokio::test]
async fn errors_are_one_line_and_non_zero() {
    let lb = Lb::start();
    ok(lb.lbctl(&["--pattern=/", "addPool"]));
    assert!(failed(lb.lbctl(&["--pattern=/", "addPool"])).contains("already exists"));
    assert!(failed(lb.lbctl(&["--pattern=/nope/", "poolHealth"])).contains("no pool"));
    assert!(failed(lb.lbctl(&["--pattern=/", "--ip=127.0.0.1", "--port=1", "addBackend"])).contains("backend is sick"));
    assert!(failed(lb.lbctl(&["--pattern=api", "addPool"])).contains("invalid pattern"));
    assert!(failed(lb.lbctl(&["--pattern=/", "addBackend"])).contains("--ip"));
}

fn pool_json(lb: &Lb) -> serde_json::Value {
    serde_json::from_str(&ok(lb.lbctl(&["--json", "--pattern=/", "poolHealth"]))).unwrap()
}

#[tokio::test]
async fn health_draining_and_balancing_through_lbctl() {
    let lb = Lb::start();
    let a = SampleWeb::start("a");
    let port = format!("--port={}", a.port());
    ok(lb.lbctl(&["--pattern=/", "--interval=2s", "--fall=5", "--rise=1", "--evict_after=0", "addPool"]));
    let pool: serde_json::Value = lb.admin_json("/v1/pool?pattern=/").await;
    let h = &pool["health_check"];
    assert_eq!(
        (&h["interval_ms"], &h["fall"], &h["rise"], &h["evict_after"]),
        (&2000.into(), &5.into(), &1.into(), &0.into())
    );

    let said = ok(lb.lbctl(&["--pattern=/", "--interval=500ms", "--timeout=200ms", "setHealth"]));
    assert!(said.starts_with("pool / health check: GET /healthz every 500ms"), "{said}");
    assert!(failed(lb.lbctl(&["--pattern=/", "--interval=0s", "setHealth"])).contains("interval"));
    assert!(failed(lb.lbctl(&["--pattern=/", "--fall=0", "setHealth"])).contains("fall"));
    let unknown = lb.lbctl(&["--pattern=/", "--falls=3", "setHealth"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(failed(unknown).contains("--falls"));

    ok(lb.lbctl(&["--pattern=/", "--ip=127.0.0.1", &port, "addBackend"]));
    let drained = ok(lb.lbctl(&["--pattern=/", "--ip=127.0.0.1", &port, "drainBackend"]));
    assert_eq!(drained, format!("backend {} of pool / is draining\n", a.addr));
    assert!(ok(lb.lbctl(&["--pattern=/", "poolHealth"])).contains(&format!("{}  BS_DRAINING", a.addr)));
    assert_eq!(get(&lb.url("/")).await.0, 503, "the only backend is draining");
    ok(lb.lbctl(&["--pattern=/", "--ip=127.0.0.1", &port, "undrainBackend"]));
    assert_eq!(get(&lb.url("/")).await.0, 200);
    let backend = &pool_json(&lb)["backends"][0];
    assert_eq!(backend["status"], "BS_HEALTHY");
    assert!(backend["last_check_ms"].is_u64(), "{backend}");

    ok(lb.lbctl(&["--pattern=/", "--strategy=least_conn", "--retries=1", "--response_timeout=5s", "setPool"]));
    ok(lb.lbctl(&["--pattern=/", "--ip=127.0.0.1", &port, "--weight=3", "setWeight"]));
    let pool: serde_json::Value = lb.admin_json("/v1/pool?pattern=/").await;
    assert_eq!((&pool["strategy"], &pool["retries"]), (&"least_conn".into(), &1.into()));
    assert_eq!(pool["timeouts"]["response_ms"], 5000);
    assert_eq!(pool["backends"][0]["weight"], 3);
    assert_eq!(get(&lb.url("/")).await.0, 200, "reweighed backend still serves");
}
