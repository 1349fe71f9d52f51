//! `lbctl stats` against a stand-in admin API, for what a real lb never does: answer more than
//! lbctl reads. And `--watch` ending on Ctrl-C (SIGINT). The counts, the filter, health and
//! frames are tested against a real lb in the root package's tests/lbctl_stats.rs.

use std::{process::Stdio, time::Duration};

use axum::{routing::get, Router};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpListener,
    process::Command,
    time::timeout,
};

const DEADLINE: Duration = Duration::from_secs(20);

const METRICS: &str =
    "lb_build_info{version=\"0\"} 1\nlb_requests_total{pool=\"/\",mode=\"proxy\",code_class=\"2xx\"} 5\n";

/// Serves `app` on a loopback port; answers its address.
async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr.to_string()
}

#[tokio::test]
async fn metrics_past_the_limit_are_refused() {
    let app = Router::new().route("/metrics", get(|| async { format!("# {}\n", "x".repeat(64 << 20)) }));
    let addr = serve(app).await;
    let run = Command::new(env!("CARGO_BIN_EXE_lbctl"))
        .args([format!("--lb={addr}"), "stats".into()])
        .kill_on_drop(true)
        .output();
    let out = timeout(DEADLINE, run).await.expect("lbctl ends").unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("lbctl: error: lb admin at {addr} answered more than 64MiB of metrics\n")
    );
}

#[tokio::test]
async fn watch_ends_on_ctrl_c() {
    let addr = serve(Router::new().route("/metrics", get(|| async { METRICS }))).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lbctl"))
        .args([format!("--lb={addr}"), "--watch".into(), "--interval=100ms".into(), "stats".into()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Two frames drawn: the second has a rate, so lbctl is inside its loop.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let second = timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.ends_with("req/s 0.0") {
                return line;
            }
        }
        panic!("lbctl ended without a second frame");
    })
    .await
    .expect("a second frame");
    assert_eq!(second, "Pool /  mode proxy  requests 5 (2xx=5)  503 no backend 0  retries 0  req/s 0.0");
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let status = timeout(DEADLINE, child.wait()).await.expect("lbctl ends on SIGINT").unwrap();
    assert!(status.success(), "{status:?}");
}
