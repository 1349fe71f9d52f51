//! lb started inside the test process (`daemon::bind` on port 0, then `daemon::serve` with the
//! test's own shutdown future), as mini-redis tests its server: the same lb as the process,
//! with no binary and no signals in between.

mod common;

use std::net::SocketAddr;

use common::{client, get, Fault, FaultyBackend, Lb, SampleWeb};
use serde_json::json;

/// Whether anything still listens on `addr`.
fn listening(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect(addr).is_ok()
}

#[tokio::test]
async fn lb_in_process_proxies_and_redirects_then_stops_cleanly() {
    let a = SampleWeb::start("a");
    let mut lb = Lb::in_process();
    assert_ne!(lb.data.port(), 0, "the bound port, not the one asked for");
    lb.add_pool("/", json!({})).await;
    lb.add_pool("/r/", json!({"mode": "redirect"})).await;
    lb.add_backend("/", &a, json!({})).await;
    lb.add_backend("/r/", &a, json!({})).await;

    assert_eq!(get(&lb.url("/")).await, (200, "Hello web from node a".to_owned()));
    let r = client().get(lb.url("/r/x")).send().await.unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["location"], format!("http://{}/r/x", a.addr).as_str());

    lb.stop();
    assert!(!listening(lb.data) && !listening(lb.admin), "lb still listens after it stopped");
}

#[tokio::test]
async fn stopping_lb_in_process_lets_in_flight_requests_finish() {
    let a = SampleWeb::start("a");
    let mut lb = Lb::in_process();
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &a, json!({})).await;
    let url = lb.url("/slow?ms=500");
    let slow = tokio::spawn(async move { get(&url).await });
    lb.wait_inflight(1).await;
    lb.stop();
    assert_eq!(slow.await.unwrap(), (200, "slow a".to_owned()));
}

#[tokio::test]
async fn two_lbs_in_one_process_keep_their_own_routes_workers_and_connections() {
    let backend = FaultyBackend::start(Fault::Status(200)).await;
    let slow = SampleWeb::start("slow");
    let (mut first, mut second) = (Lb::in_process(), Lb::in_process());
    first.add_pool("/first/", json!({})).await;
    first.add_backend("/first/", &backend, json!({})).await;
    second.add_pool("/second/", json!({})).await;
    second.add_backend("/second/", &backend, json!({})).await;
    second.add_pool("/slow", json!({"timeouts": {"response_ms": 300}})).await;
    second.add_backend("/slow", &slow, json!({})).await;

    // Each answers from its own routing table.
    assert_eq!(get(&first.url("/second/x")).await.0, 404);
    assert_eq!(get(&second.url("/first/x")).await.0, 404);

    // One keep-alive client connection to each: each lb's worker reuses its own backend
    // connection, two at most in all.
    let (to_first, to_second) = (client(), client());
    for _ in 0..10 {
        assert_eq!(to_first.get(first.url("/first/x")).send().await.unwrap().status(), 200);
        assert_eq!(to_second.get(second.url("/second/x")).send().await.unwrap().status(), 200);
    }
    assert_eq!(backend.requests(), 20);
    let connections = backend.connections();
    assert!(connections <= 2, "20 requests took {connections} backend connections");

    // The first stopping takes nothing of the second's: its idle backend connection and its
    // workers' deadlines are still there.
    first.stop();
    for _ in 0..10 {
        assert_eq!(to_second.get(second.url("/second/x")).send().await.unwrap().status(), 200);
    }
    assert_eq!(backend.requests(), 30);
    assert_eq!(backend.connections(), connections, "the second lb lost its idle backend connection");
    let r = client().get(second.url("/slow?ms=3000")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    second.stop();
}

#[test]
fn a_port_in_use_is_an_error_from_bind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let args = ["lb", "--listen", &addr, "--admin", "127.0.0.1:0", "--data-dir"].map(std::ffi::OsString::from);
    let args = args.into_iter().chain([dir.path().into()]);
    let config = <lb::daemon::Config as clap::Parser>::parse_from(args);
    let Err(e) = lb::daemon::bind(&config) else { panic!("bound a port in use") };
    assert!(e.contains("cannot listen on") && e.contains("data port"), "{e}");
}
