//! Health checks end to end: sick backends leave rotation and come back, dead ones are evicted,
//! draining lets in-flight requests finish, and what lb learned survives a restart.

mod common;

use std::collections::HashMap;

use common::{client, eventually, Lb, SampleWeb};
use serde_json::{json, Value};

/// Each backend's status in pool `/`, by address.
async fn statuses(lb: &Lb) -> HashMap<String, String> {
    let health: Value = lb.admin_json("/v1/pool/health?pattern=/").await;
    health["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["address"].as_str().unwrap().to_owned(), b["status"].as_str().unwrap().to_owned()))
        .collect()
}

async fn wait_status(lb: &Lb, backend: &SampleWeb, want: &str) {
    let addr = backend.addr.to_string();
    eventually(&format!("{addr} becomes {want}"), || async {
        (statuses(lb).await.get(&addr).map(String::as_str) == Some(want)).then_some(())
    })
    .await;
}

/// Sends `n` requests and counts them by the backend that answered (status, server).
async fn spread(lb: &Lb, n: usize) -> HashMap<(u16, String), usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = client().get(lb.url("/")).send().await.unwrap();
        let server = r.headers().get("x-forwarded-server").map_or("", |v| v.to_str().unwrap()).to_owned();
        *counts.entry((r.status().as_u16(), server)).or_default() += 1;
    }
    counts
}

/// `a`'s consecutive failures in pool `/`.
async fn failures_of(lb: &Lb, a: &SampleWeb) -> u64 {
    let health: Value = lb.admin_json("/v1/pool/health?pattern=/").await;
    let backends = health["backends"].as_array().unwrap();
    let a_json = backends.iter().find(|b| b["address"] == a.addr.to_string()).unwrap();
    a_json["consecutive_failures"].as_u64().unwrap()
}

#[tokio::test]
async fn a_backend_killed_under_traffic_goes_sick_after_fall_failed_requests() {
    let lb = Lb::start();
    let (mut a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    // Checks are a day apart (a backend just added is next checked at a random point of that
    // day): only failed requests (passive detection) can make `a` sick.
    lb.add_pool(
        "/",
        json!({"expose_backend": true, "health_check": {"interval_ms": 86_400_000, "fall": 3, "rise": 2}}),
    )
    .await;
    lb.add_backend("/", &a, json!({})).await;
    lb.add_backend("/", &b, json!({})).await;
    a.kill();

    // Retries absorb the failures: every request is answered by b.
    for _ in 0..200 {
        let r = client().get(lb.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-forwarded-server"], b.addr.to_string().as_str());
        if statuses(&lb).await[&a.addr.to_string()] == "BS_SICK" {
            break;
        }
    }
    wait_status(&lb, &a, "BS_SICK").await;
    let failures = failures_of(&lb, &a).await;
    assert!(failures >= 3, "sick after {failures} failures");
    // Sick: no request is even tried on a any more, so its failure count stands still.
    assert_eq!(spread(&lb, 50).await, HashMap::from([((200, b.addr.to_string()), 50)]));
    assert_eq!(failures_of(&lb, &a).await, failures);
    let health: Value = lb.admin_json("/v1/pool/health?pattern=/").await;
    assert_eq!(health["status"], "PS_DEGRADED");
}

#[tokio::test]
async fn a_sick_backend_returns_after_rise_passing_checks() {
    let lb = Lb::start();
    let (mut a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    lb.add_pool(
        "/",
        json!({"expose_backend": true, "health_check": {"interval_ms": 100, "timeout_ms": 100, "fall": 2, "rise": 3, "evict_after": 0}}),
    )
    .await;
    lb.add_backend("/", &a, json!({})).await;
    lb.add_backend("/", &b, json!({})).await;
    let port = a.port();
    a.kill();
    wait_status(&lb, &a, "BS_SICK").await;
    assert!(spread(&lb, 20).await.keys().all(|(status, server)| *status == 200 && *server == b.addr.to_string()));

    let a = SampleWeb::start_on("a", port);
    wait_status(&lb, &a, "BS_HEALTHY").await;
    let pool: Value = lb.admin_json("/v1/pool?pattern=/").await;
    let a_json = pool["backends"].as_array().unwrap().iter().find(|x| x["port"] == port).unwrap().clone();
    assert!(a_json["consecutive_passes"].as_u64().unwrap() >= 3, "{a_json}");
    eventually("a serves again", || async {
        spread(&lb, 10).await.contains_key(&(200, a.addr.to_string())).then_some(())
    })
    .await;
}

#[tokio::test]
async fn every_backend_sick_is_503_saying_so() {
    let lb = Lb::start();
    let a = SampleWeb::start("a");
    lb.add_pool("/", json!({"health_check": {"interval_ms": 100, "timeout_ms": 100, "fall": 1, "evict_after": 0}}))
        .await;
    lb.add_backend("/", &a, json!({})).await;
    client().post(format!("http://{}/control/sick", a.addr)).send().await.unwrap();
    wait_status(&lb, &a, "BS_SICK").await;
    let r = client().get(lb.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap().contains("no healthy backend"));
}

#[tokio::test]
async fn a_backend_down_for_evict_after_checks_is_evicted_for_good() {
    let lb = Lb::start();
    let (mut a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    lb.add_pool("/", json!({"health_check": {"interval_ms": 100, "timeout_ms": 100, "fall": 1, "evict_after": 4}}))
        .await;
    lb.add_backend("/", &a, json!({})).await;
    lb.add_backend("/", &b, json!({})).await;
    a.kill();
    eventually("a evicted", || async { (!statuses(&lb).await.contains_key(&a.addr.to_string())).then_some(()) }).await;
    // The line is written just after the new snapshot is published.
    eventually("eviction logged", || async { lb.stderr.text().contains("-> evicted").then_some(()) }).await;
    let lb = lb.restart();
    let left = statuses(&lb).await;
    assert_eq!(left.keys().collect::<Vec<_>>(), [&b.addr.to_string()]);
}

async fn set_draining(lb: &Lb, port: &str, draining: bool) {
    let r = client()
        .patch(lb.admin_url("/v1/pool/backends"))
        .query(&[("pattern", "/"), ("ip", "127.0.0.1"), ("port", port)])
        .json(&json!({ "draining": draining }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn draining_sends_no_new_requests_and_lets_in_flight_ones_finish() {
    let lb = Lb::start();
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    lb.add_pool("/", json!({"expose_backend": true})).await;
    lb.add_backend("/", &a, json!({})).await;
    let slow_url = lb.url("/slow?ms=1000");
    let slow = tokio::spawn(async move { common::get(&slow_url).await });
    lb.wait_inflight(1).await;
    lb.add_backend("/", &b, json!({})).await;
    let port = a.port().to_string();
    set_draining(&lb, &port, true).await;
    assert_eq!(statuses(&lb).await[&a.addr.to_string()], "BS_DRAINING");

    assert_eq!(spread(&lb, 30).await, HashMap::from([((200, b.addr.to_string()), 30)]));
    assert_eq!(slow.await.unwrap(), (200, "slow a".to_owned()));

    // Draining survives a restart, and undraining puts a back.
    let lb = lb.restart();
    assert_eq!(statuses(&lb).await[&a.addr.to_string()], "BS_DRAINING");
    set_draining(&lb, &port, false).await;
    eventually("a serves again", || async {
        spread(&lb, 10).await.contains_key(&(200, a.addr.to_string())).then_some(())
    })
    .await;
}

#[tokio::test]
async fn removing_a_backend_lets_its_in_flight_request_finish() {
    let lb = Lb::start();
    let a = SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &a, json!({})).await;
    let slow_url = lb.url("/slow?ms=800");
    let slow = tokio::spawn(async move { common::get(&slow_url).await });
    lb.wait_inflight(1).await;
    lb.remove_backend("/", a.addr).await;
    assert_eq!(slow.await.unwrap(), (200, "slow a".to_owned()));
}

#[tokio::test]
async fn statuses_survive_a_restart() {
    let lb = Lb::start();
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    lb.add_pool(
        "/",
        json!({"expose_backend": true, "health_check": {"interval_ms": 100, "timeout_ms": 100, "fall": 1, "rise": 1, "evict_after": 0}}),
    )
    .await;
    lb.add_backend("/", &a, json!({})).await;
    lb.add_backend("/", &b, json!({})).await;
    client().post(format!("http://{}/control/sick", a.addr)).send().await.unwrap();
    wait_status(&lb, &a, "BS_SICK").await;
    let lb = lb.restart();
    // Known at once, before any new check could have run... and a stays out of rotation.
    let now = statuses(&lb).await;
    assert_eq!((now[&a.addr.to_string()].as_str(), now[&b.addr.to_string()].as_str()), ("BS_SICK", "BS_HEALTHY"));
    assert!(spread(&lb, 20).await.keys().all(|(_, server)| *server == b.addr.to_string()));
    // Checks resume: healed, a comes back.
    client().post(format!("http://{}/control/healthy", a.addr)).send().await.unwrap();
    wait_status(&lb, &a, "BS_HEALTHY").await;
}

#[tokio::test]
async fn bad_health_settings_are_refused() {
    let lb = Lb::start();
    for (settings, says) in [
        (json!({"interval_ms": 0}), "interval"),
        (json!({"fall": 0}), "fall"),
        (json!({"rise": 0}), "rise"),
        (json!({"timeout_ms": 0}), "timeout"),
        (json!({"path": "healthz"}), "path"),
        (json!({"healthy_values": []}), "healthy value"),
        (json!({"expected_status": 999}), "expected_status"),
        (json!({"colour": "red"}), "unknown field"),
    ] {
        let r = client()
            .post(lb.admin_url("/v1/pools"))
            .json(&json!({ "pattern": "/", "health_check": settings }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{settings}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains(says), "{settings}: {body}");
    }
    lb.add_pool("/", json!({})).await;
    let r = client()
        .patch(lb.admin_url("/v1/pool?pattern=/"))
        .json(&json!({ "health_check": {"fall": 0} }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Refused changes leave the pool as it was.
    let pool: Value = lb.admin_json("/v1/pool?pattern=/").await;
    assert_eq!(pool["health_check"]["fall"], 3);
    let r = client()
        .patch(lb.admin_url("/v1/pool?pattern=/"))
        .json(&json!({ "health_check": {"fall": 5, "interval_ms": 2000} }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pool: Value = r.json().await.unwrap();
    assert_eq!((&pool["health_check"]["fall"], &pool["health_check"]["interval_ms"]), (&json!(5), &json!(2000)));
}

#[tokio::test]
async fn a_client_too_slow_to_send_its_body_is_not_held_against_the_backend() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let lb = Lb::start_with(std::sync::Arc::new(tempfile::tempdir().unwrap()), &["--client-body-timeout", "300ms"]);
    let a = SampleWeb::start("a");
    // Only failed requests can make `a` sick, and one would.
    lb.add_pool("/", json!({"health_check": {"interval_ms": 86_400_000, "fall": 1}})).await;
    lb.add_backend("/", &a, json!({})).await;

    // A chunked upload that stops after its first chunk: sample-web waits for the rest, and so
    // does lb, until the client body timeout.
    let mut conn = tokio::net::TcpStream::connect(lb.data).await.unwrap();
    conn.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .await
        .unwrap();
    let mut response = vec![0; 4096];
    let n = tokio::time::timeout(common::DEADLINE, conn.read(&mut response)).await.unwrap().unwrap();
    let response = String::from_utf8_lossy(&response[..n]);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");

    assert_eq!(failures_of(&lb, &a).await, 0);
    assert_eq!(statuses(&lb).await[&a.addr.to_string()], "BS_HEALTHY");
    assert_eq!(client().get(lb.url("/")).send().await.unwrap().status(), 200);
}
