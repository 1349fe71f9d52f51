//! lb's life: restart and crash keep every acknowledged change, bad start-up conditions fail with
//! one line, and SIGTERM lets in-flight requests finish.

mod common;

use std::process::Stdio;
use std::sync::Arc;

use common::{client, get, lb_command, Lb, SampleWeb};
use serde_json::json;

async fn pool_with_two_backends(lb: &Lb, a: &SampleWeb, b: &SampleWeb) {
    lb.add_pool("/", json!({})).await;
    lb.add_pool("/r/", json!({"mode": "redirect"})).await;
    lb.add_backend("/", a, json!({})).await;
    lb.add_backend("/", b, json!({})).await;
    lb.add_backend("/r/", a, json!({})).await;
}

async fn assert_serves(lb: &Lb, a: &SampleWeb) {
    // The very first request after start is served: no warm-up, no waiting for a health check.
    let (status, body) = get(&lb.url("/")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("Hello web from node"), "{body}");
    let r = client().get(lb.url("/r/x")).send().await.unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["location"], format!("http://{}/r/x", a.addr).as_str());
}

#[tokio::test]
async fn pools_and_backends_survive_a_restart_and_serve_at_once() {
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    let lb = Lb::start();
    pool_with_two_backends(&lb, &a, &b).await;
    let lb = lb.restart();
    assert_serves(&lb, &a).await;
    let pools: serde_json::Value = client().get(lb.admin_url("/v1/pools")).send().await.unwrap().json().await.unwrap();
    assert_eq!(pools.as_array().unwrap().len(), 2, "{pools}");
    assert_eq!(pools[0]["pattern"], "/");
    assert_eq!(pools[0]["backends"].as_array().unwrap().len(), 2);
    assert_eq!(pools[1]["mode"], "redirect");
    // The last known health (checked when added) until the first new check.
    assert_eq!(pools[0]["backends"][0]["status"], "BS_HEALTHY");
}

#[tokio::test]
async fn acknowledged_changes_survive_a_crash() {
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    let mut lb = Lb::start();
    pool_with_two_backends(&lb, &a, &b).await;
    lb.remove_backend("/", b.addr).await;
    lb.crash();
    let lb = Lb::start_in(lb.dir.clone());
    assert_serves(&lb, &a).await;
    let pool: serde_json::Value =
        client().get(lb.admin_url("/v1/pool")).query(&[("pattern", "/")]).send().await.unwrap().json().await.unwrap();
    let backends = pool["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 1, "{pool}");
    assert_eq!(backends[0]["address"], a.addr.to_string());
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_exits_0() {
    let a = SampleWeb::start("a");
    let mut lb = Lb::start();
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &a, json!({})).await;
    let url = lb.url("/slow?ms=1000");
    let slow = tokio::spawn(async move { get(&url).await });
    lb.wait_inflight(1).await;
    lb.stop();
    assert_eq!(slow.await.unwrap(), (200, "slow a".to_owned()));
}

#[tokio::test]
async fn sigterm_exits_even_while_an_admin_client_never_finishes_its_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut lb = Lb::start();
    // A request whose body never comes: graceful shutdown would wait for it forever. (A
    // connection still sending its head is closed at once: no request is lost with it.)
    let mut stuck = tokio::net::TcpStream::connect(lb.admin).await.unwrap();
    let head = format!(
        "POST /v1/pools HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\
         Expect: 100-continue\r\n\r\n",
        lb.admin
    );
    stuck.write_all(head.as_bytes()).await.unwrap();
    // hyper says 100 Continue once the handler reads the body: the request is in.
    let mut answer = [0; 64];
    let n = tokio::time::timeout(common::DEADLINE, stuck.read(&mut answer)).await.unwrap().unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 100"), "{}", String::from_utf8_lossy(&answer[..n]));
    lb.stop();
    // The thread reading lb's stderr may be a line behind lb's exit.
    let stderr = lb.stderr.clone();
    common::eventually("the warning about the admin request still open", || {
        let text = stderr.text();
        async move { text.contains("admin requests still open").then_some(()) }
    })
    .await;
}

/// Runs lb to completion (it must fail) and returns its stderr.
fn failed_start(cmd: &mut std::process::Command) -> String {
    let out = cmd.stderr(Stdio::piped()).output().unwrap();
    assert!(!out.status.success(), "lb started but should not have");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("lb: error:")).collect();
    assert_eq!(errors.len(), 1, "want one error line:\n{stderr}");
    errors[0].to_owned()
}

#[test]
fn a_port_in_use_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = lb_command(dir.path());
    cmd.arg("--listen").arg(taken.local_addr().unwrap().to_string());
    let line = failed_start(&mut cmd);
    assert!(line.contains("cannot listen on") && line.contains("data port"), "{line}");
}

#[test]
fn a_store_from_a_newer_lb_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = unlocked_on_drop(dir.path());
        db.open_tree("meta").unwrap().insert("schema_version", &999u32.to_be_bytes()).unwrap();
        db.open_tree("pools").unwrap().insert("/", &b"future record"[..]).unwrap();
        db.flush().unwrap();
    }
    // sled lets go of the directory lock from a background thread a moment after the handle
    // drops: until then lb fails to take the lock, which is not what this test is about.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let line = loop {
        let line = failed_start(&mut lb_command(dir.path()));
        if !line.contains("lock") || std::time::Instant::now() > deadline {
            break line;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(line.contains("schema version 999"), "{line}");
    let db = unlocked_on_drop(dir.path());
    assert_eq!(db.open_tree("meta").unwrap().get("schema_version").unwrap().unwrap().as_ref(), 999u32.to_be_bytes());
    assert_eq!(db.open_tree("pools").unwrap().get("/").unwrap().unwrap().as_ref(), b"future record");
}

#[test]
fn an_unreadable_record_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = unlocked_on_drop(dir.path());
        lb_migrations::run(&db).unwrap();
        db.open_tree("pools").unwrap().insert("/", &[1u8, 0xff, 0xff, 0xff][..]).unwrap();
        db.flush().unwrap();
    }
    let line = failed_start(&mut lb_command(dir.path()));
    assert!(line.contains("pools//") && line.contains("cannot be read"), "{line}");
    let db = unlocked_on_drop(dir.path());
    assert_eq!(db.open_tree("pools").unwrap().get("/").unwrap().unwrap().as_ref(), [1u8, 0xff, 0xff, 0xff]);
}

#[test]
fn a_data_dir_that_is_a_file_is_one_clear_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let line = failed_start(&mut lb_command(file.path()));
    assert!(line.contains("cannot open store"), "{line}");
}

#[test]
fn a_store_locked_by_another_lb_is_refused() {
    let lb = Lb::start_in(Arc::new(tempfile::tempdir().unwrap()));
    let line = failed_start(&mut lb_command(lb.dir.path()));
    assert!(line.contains("another lb (pid "), "{line}");
}

#[tokio::test]
async fn a_store_written_by_the_previous_schema_is_migrated_and_served() {
    use lb_migrations::records::v1;
    let a = SampleWeb::start("a");
    let dir = Arc::new(tempfile::tempdir().unwrap());
    {
        let db = unlocked_on_drop(dir.path());
        lb_migrations::run_migrations(&db, &lb_migrations::MIGRATIONS[..1]).unwrap();
        let pool = v1::Pool {
            mode: "proxy".into(),
            strategy: "round_robin".into(),
            health_path: "/healthz".into(),
            healthy_values: vec!["ok".into()],
            interval_ms: 5_000,
        };
        let backend = v1::Backend { ip: a.addr.ip(), port: a.port(), url_path: "/".into() };
        db.open_tree("pools").unwrap().insert("/", v1::encode_pool(&pool)).unwrap();
        let key = format!("/\0{}", a.addr);
        db.open_tree("backends").unwrap().insert(key.as_bytes(), v1::encode_backend(&backend)).unwrap();
        db.flush().unwrap();
    }
    let lb = Lb::start_in(dir);
    assert_eq!(get(&lb.url("/")).await, (200, "Hello web from node a".to_owned()));
    let pool: serde_json::Value = lb.admin_json("/v1/pool?pattern=/").await;
    assert_eq!(pool["strategy"], "round_robin");
    assert_eq!(pool["health_check"]["interval_ms"], 5_000);
    assert_eq!(pool["health_check"]["fall"], 3);
}

/// Opens a store that another process (lb) opens next. Without a flusher thread sled lets go
/// of its directory lock as soon as the handle drops, not a moment later.
fn unlocked_on_drop(dir: &std::path::Path) -> sled::Db {
    sled::Config::new().path(dir).flush_every_ms(None).open().unwrap()
}
