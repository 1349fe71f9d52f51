//! Retries, timeouts and balancing strategies through a running lb.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{client, Fault, FaultyBackend, Lb, SampleWeb};
use serde_json::json;

#[tokio::test]
async fn killing_one_of_three_backends_under_a_stream_of_gets_loses_no_request() {
    let lb = Lb::start();
    let mut webs: Vec<SampleWeb> = ["a", "b", "c"].iter().map(|n| SampleWeb::start(n)).collect();
    // No active checks to help: retries alone must absorb the failure.
    lb.add_pool("/", json!({"health_check": {"interval_ms": 3_600_000}})).await;
    for w in &webs {
        lb.add_backend("/", w, json!({})).await;
    }
    let url = lb.url("/");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let progress = done.clone();
    let stream = tokio::spawn(async move {
        let http = client();
        let mut statuses: HashMap<u16, usize> = HashMap::new();
        for _ in 0..600 {
            let status = http.get(&url).send().await.unwrap().status().as_u16();
            *statuses.entry(status).or_default() += 1;
            progress.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        statuses
    });
    // Kill a backend while the stream runs: well under way, long before it ends.
    common::eventually("stream under way", || async {
        (done.load(std::sync::atomic::Ordering::SeqCst) >= 100).then_some(())
    })
    .await;
    webs[1].kill();
    let killed_at = done.load(std::sync::atomic::Ordering::SeqCst);
    assert!(killed_at < 500, "the stream was nearly over ({killed_at}) when the backend died");
    let statuses = stream.await.unwrap();
    assert_eq!(statuses, HashMap::from([(200, 600)]), "every request must succeed");
}

#[tokio::test]
async fn a_post_whose_backend_resets_after_reading_it_is_not_retried() {
    let lb = Lb::start();
    let (r1, r2) = (FaultyBackend::start(Fault::Reset).await, FaultyBackend::start(Fault::Reset).await);
    lb.add_pool("/", json!({"retries": 2})).await;
    lb.add_backend("/", &r1, json!({})).await;
    lb.add_backend("/", &r2, json!({})).await;
    let r = client().post(lb.url("/orders")).body("make one order").send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r1.requests() + r2.requests(), 1, "a POST was sent twice");
    // The same as a GET (idempotent, body held) is retried on the other backend.
    let r = client().get(lb.url("/orders")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r1.requests() + r2.requests(), 3, "the GET was tried once on each backend");
    assert_eq!((r1.requests().min(r2.requests()), r1.requests().max(r2.requests())), (1, 2));
    // A PUT with a small body too.
    let r = client().put(lb.url("/orders/1")).body("replace").send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r1.requests() + r2.requests(), 5);
}

/// lb with a round-robin pool of a backend that died (unnoticed by checks) and a live one.
async fn dead_and_live() -> (Lb, SampleWeb, SampleWeb) {
    let lb = Lb::start();
    let (dead, live) = common::dead_and_live(&lb).await;
    (lb, dead, live)
}

#[tokio::test]
async fn a_post_to_a_refused_backend_is_retried() {
    let (lb, _dead, _live) = dead_and_live().await;
    for _ in 0..10 {
        let r = client().post(lb.url("/echo")).body("exactly once").send().await.unwrap();
        assert_eq!(r.status(), 200);
        let echo: serde_json::Value = r.json().await.unwrap();
        assert_eq!((echo["node"].as_str(), echo["body"].as_str()), (Some("live"), Some("exactly once")));
    }
}

#[tokio::test]
async fn a_streamed_post_to_a_refused_backend_is_retried_with_its_body() {
    let (lb, _dead, _live) = dead_and_live().await;
    // Round robin alternates: half of these meet the dead backend first.
    for _ in 0..4 {
        let response = lb.post_chunked_echo().await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains(r#""body":"hello world""#), "{response}");
    }
}

#[tokio::test]
async fn retry_on_5xx_tries_another_backend_for_idempotent_requests_only() {
    let lb = Lb::start();
    let failing = FaultyBackend::start(Fault::Status(503)).await;
    let web = SampleWeb::start("ok");
    lb.add_pool("/", json!({"retry_on_5xx": true, "strategy": "round_robin"})).await;
    lb.add_backend("/", &failing, json!({})).await;
    lb.add_backend("/", &web, json!({})).await;
    for _ in 0..6 {
        assert_eq!(client().get(lb.url("/")).send().await.unwrap().status(), 200);
    }
    // Round robin: each GET takes two turns (the 503, then the retry), so each meets the 503.
    assert_eq!(failing.requests(), 6);
    let mut posts = HashMap::<u16, usize>::new();
    for _ in 0..6 {
        *posts.entry(client().post(lb.url("/")).body("x").send().await.unwrap().status().as_u16()).or_default() += 1;
    }
    assert_eq!(posts, HashMap::from([(200, 3), (503, 3)]), "POSTs are not retried");

    // Without retry_on_5xx, the backend's 503 reaches the client.
    let r = client().patch(lb.admin_url("/v1/pool?pattern=/")).json(&json!({"retry_on_5xx": false})).send().await;
    assert_eq!(r.unwrap().status(), 200);
    let mut gets = HashMap::<u16, usize>::new();
    for _ in 0..6 {
        *gets.entry(client().get(lb.url("/")).send().await.unwrap().status().as_u16()).or_default() += 1;
    }
    assert_eq!(gets, HashMap::from([(200, 3), (503, 3)]));

    // With nowhere else to go, the client gets the backend's own answer, not a 502.
    lb.add_pool("/only/", json!({"retry_on_5xx": true})).await;
    lb.add_backend("/only/", &failing, json!({})).await;
    let r = client().get(lb.url("/only/x")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (503, "fault".to_owned()));
}

#[tokio::test]
async fn retries_stop_at_the_configured_count() {
    let lb = Lb::start();
    let backends = [
        FaultyBackend::start(Fault::Reset).await,
        FaultyBackend::start(Fault::Reset).await,
        FaultyBackend::start(Fault::Reset).await,
        FaultyBackend::start(Fault::Reset).await,
    ];
    lb.add_pool("/", json!({"retries": 1, "health_check": {"fall": 100, "evict_after": 0}})).await;
    for b in &backends {
        lb.add_backend("/", b, json!({})).await;
    }
    assert_eq!(client().get(lb.url("/")).send().await.unwrap().status(), 502);
    assert_eq!(backends.iter().map(FaultyBackend::requests).sum::<usize>(), 2, "1 try + 1 retry");
}

#[tokio::test]
async fn a_slow_backend_is_a_504_after_the_response_timeout() {
    let lb = Lb::start();
    let web = SampleWeb::start("slow");
    lb.add_pool("/", json!({"timeouts": {"response_ms": 200}})).await;
    lb.add_backend("/", &web, json!({})).await;
    let r = client().get(lb.url("/slow?ms=3000")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(r.text().await.unwrap().contains("gateway timeout"));
    assert_eq!(client().get(lb.url("/slow?ms=10")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn weighted_round_robin_and_sticky_redirects() {
    let lb = Lb::start();
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    lb.add_pool("/", json!({"strategy": "round_robin"})).await;
    lb.add_backend("/", &a, json!({"weight": 3})).await;
    lb.add_backend("/", &b, json!({})).await;
    let mut counts = HashMap::<String, usize>::new();
    for _ in 0..40 {
        *counts.entry(common::get(&lb.url("/")).await.1).or_default() += 1;
    }
    assert_eq!(counts, HashMap::from([("Hello web from node a".into(), 30), ("Hello web from node b".into(), 10)]));

    lb.add_pool("/sticky/", json!({"mode": "redirect", "strategy": "consistent_hash", "hash_key": "header:X-User"}))
        .await;
    let webs: Vec<SampleWeb> = (0..4).map(|i| SampleWeb::start(&format!("s{i}"))).collect();
    for w in &webs {
        lb.add_backend("/sticky/", w, json!({})).await;
    }
    let mut targets = std::collections::HashSet::new();
    for user in 0..20 {
        let location = |r: reqwest::Response| r.headers()["location"].to_str().unwrap().to_owned();
        let first =
            location(client().get(lb.url("/sticky/x")).header("X-User", user.to_string()).send().await.unwrap());
        for _ in 0..5 {
            let again = client().get(lb.url("/sticky/x")).header("X-User", user.to_string()).send().await.unwrap();
            assert_eq!(location(again), first, "user {user} moved");
        }
        targets.insert(first);
    }
    assert!(targets.len() >= 3, "20 users landed on only {} backends", targets.len());
}

#[tokio::test]
async fn bad_balancing_settings_are_refused() {
    let lb = Lb::start();
    for (settings, says) in [
        (json!({"strategy": "fastest"}), "unknown strategy"),
        (json!({"hash_key": "ip"}), "hash_key"),
        (json!({"retries": 11}), "retries"),
        (json!({"timeouts": {"connect_ms": 0}}), "connect_ms"),
        (json!({"retry_body_limit": 1u64 << 40}), "retry_body_limit"),
    ] {
        let mut body = settings.clone();
        body["pattern"] = json!("/");
        let r = client().post(lb.admin_url("/v1/pools")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{settings}");
        let msg = r.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap().to_owned();
        assert!(msg.contains(says), "{settings}: {msg}");
    }
    lb.add_pool("/", json!({})).await;
    let web = SampleWeb::start("a");
    let r = client()
        .post(lb.admin_url("/v1/pool/backends?pattern=/"))
        .json(&json!({"ip": web.ip(), "port": web.port(), "weight": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_connect_timeout_is_retried_on_another_backend() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A backend that answers health checks, then stops accepting with its accept queue full:
    // the kernel drops new SYNs, so connecting to it hangs until lb's connect timeout.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = Arc::new(socket.listen(1).unwrap());
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let accepting = listener.clone();
    let server = tokio::spawn(async move {
        loop {
            let mut conn = tokio::select! {
                accepted = accepting.accept() => accepted.unwrap().0,
                _ = stopped.changed() => return,
            };
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
        }
    });
    let lb = Lb::start();
    let live = SampleWeb::start("live");
    lb.add_pool("/", json!({"expose_backend": true, "strategy": "round_robin", "timeouts": {"connect_ms": 300}})).await;
    lb.add_backend("/", addr, json!({})).await;
    lb.add_backend("/", &live, json!({})).await;
    stop.send(true).unwrap();
    server.await.unwrap();
    let mut queued = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(conn)) => queued.push(conn),
            _ => break,
        }
    }
    assert!(queued.len() < 16, "the accept queue never filled");

    // Round robin tries the hanging backend first for every other request.
    for _ in 0..4 {
        let r = client().get(lb.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-forwarded-server"], live.addr.to_string().as_str());
    }
    drop(listener);
}
