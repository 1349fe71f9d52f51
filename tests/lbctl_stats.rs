//! `lbctl stats` against a real lb and real sample-web backends: exact counts after traffic,
//! one pool, a sick backend, two `--watch` frames, and a refusal of what is not lb's metrics.

mod common;

use std::process::Output;

use common::wait::eventually;
use common::{client, Lb, SampleWeb};
use serde_json::json;

fn stdout_ok(out: Output) -> String {
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "lbctl: {}{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The row of `backend` in the table, split on whitespace.
fn row(table: &str, backend: &SampleWeb) -> Vec<String> {
    let addr = backend.addr.to_string();
    let line = table.lines().find(|line| line.starts_with(&format!("{addr} "))).unwrap_or_else(|| panic!("{table}"));
    line.split_whitespace().map(String::from).collect()
}

async fn send(lb: &Lb, path: &str, n: usize) {
    for _ in 0..n {
        assert_eq!(client().get(lb.url(path)).send().await.unwrap().status(), 200);
    }
}

// lbctl runs as a blocking child process: lb in process needs another thread meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_every_request_per_pool_and_backend() {
    let lb = Lb::in_process();
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    lb.add_pool("/", json!({"strategy": "round_robin"})).await;
    lb.add_pool("/api/", json!({})).await;
    lb.add_backend("/", &a, json!({"weight": 3})).await;
    lb.add_backend("/api/", &b, json!({})).await;
    send(&lb, "/", 7).await;
    send(&lb, "/api/x", 4).await;

    let all = stdout_ok(lb.lbctl(&["stats"]));
    assert!(all.starts_with("Totals since lb started\n"), "{all}");
    assert!(all.contains("\nPool /  mode proxy  requests 7 (2xx=7)  503 no backend 0  retries 0\n"), "{all}");
    assert!(all.contains("\nPool /api/  mode proxy  requests 4 (2xx=4)  503 no backend 0  retries 0\n"), "{all}");
    // Backend, Status, Inflight, Weight, Requests, 5xx, p50, p99.
    assert_eq!(row(&all, &a)[1..6], ["BS_HEALTHY", "0", "3", "7", "0.0%"]);
    assert_eq!(row(&all, &b)[1..6], ["BS_HEALTHY", "0", "1", "4", "0.0%"]);
    assert!(row(&all, &a)[6].ends_with('s') && row(&all, &a)[7].ends_with('s'), "{all}");

    let api = stdout_ok(lb.lbctl(&["--pattern=/api/", "stats"]));
    assert!(!api.contains("Pool /  ") && !api.contains(&a.addr.to_string()), "{api}");
    assert_eq!(row(&api, &b)[4], "4");

    let out = lb.lbctl(&["--pattern=/nope/", "stats"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "lbctl: error: lb has no pool \"/nope/\"\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sick_backend_shows_its_status() {
    let lb = Lb::in_process();
    let (mut a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    let check =
        json!({"health_check": {"interval_ms": 100, "timeout_ms": 100, "fall": 1, "rise": 1, "evict_after": 0}});
    lb.add_pool("/", check).await;
    lb.add_backend("/", &a, json!({})).await;
    lb.add_backend("/", &b, json!({})).await;
    a.kill();
    let table = eventually("a shows as sick", || async {
        let table = stdout_ok(lb.lbctl(&["stats"]));
        (row(&table, &a)[1] == "BS_SICK").then_some(table)
    })
    .await;
    assert_eq!(row(&table, &b)[1], "BS_HEALTHY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_draws_frames_with_requests_per_second() {
    let lb = Lb::in_process();
    let a = SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &a, json!({})).await;
    send(&lb, "/", 3).await;
    let out = stdout_ok(lb.lbctl(&["--pattern=/", "--watch", "--interval=100ms", "--count=2", "stats"]));
    let frames: Vec<&str> = out.split("\nTotals since lb started\n").collect();
    assert_eq!(frames.len(), 2, "{out}");
    // The first frame has nothing to compare with; the second has a rate for the pool and a.
    assert!(frames[0].contains("requests 3 (2xx=3)  503 no backend 0  retries 0  req/s -\n"), "{out}");
    assert!(frames[1].contains("requests 3 (2xx=3)  503 no backend 0  retries 0  req/s 0.0\n"), "{out}");
    assert_eq!(row(frames[1], &a).last().unwrap(), "0.0");

    let out = lb.lbctl(&["--watch", "--interval=50ms", "stats"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 100ms"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_is_not_lbs_metrics_is_one_line_and_exit_1() {
    let web = SampleWeb::start("a");
    let out = std::process::Command::new(common::process::bin("lbctl"))
        .args([format!("--lb={}", web.addr), "stats".into()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("lbctl: error: "), "{stderr}");
    assert!(out.stdout.is_empty());
}
