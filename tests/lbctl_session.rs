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
        "Pattern  Mode      Strategy  Backends  Status\n/        redirect  p2c       1         PS_FULL\n"
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
