//! Blame only the guilty: clients with broken, aborted or stalled uploads get `400`/`408` or a
//! closed connection and never count against a backend; backends that stall mid-body are cut
//! off and do count; failed requests may make a backend sick but only checks evict. And what
//! crosses the proxy: bodies of any method, transfer codings lb cannot decode, `426`'s
//! `Upgrade`, HTTP/1.0 keep-alive. Raw-socket clients against a real lb, real sample-web and
//! scripted raw backends.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw_backend::{Backend, Peer};
use common::{client, eventually, Fault, FaultyBackend, Lb, SampleWeb, DEADLINE};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Checks a day apart: only what requests do moves a backend's health; `fall: 1` makes one
/// counted failure enough to show.
fn strict_pool() -> Value {
    json!({"retries": 0, "health_check": {"interval_ms": 86_400_000, "fall": 1, "evict_after": 2}})
}

/// The status of every backend of pool `pattern`, by address.
async fn statuses(lb: &Lb, pattern: &str) -> Vec<(String, String, u64)> {
    let get = |path: &str| {
        let r = client().get(lb.admin_url(path)).query(&[("pattern", pattern)]).send();
        async { r.await.unwrap().json::<Value>().await.unwrap() }
    };
    let health = get("/v1/pool/health").await;
    let pool = get("/v1/pool").await;
    let failures = |addr: &str| {
        pool["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["address"] == addr)
            .map_or(0, |b| b["consecutive_failures"].as_u64().unwrap_or(0))
    };
    health["backends"]
        .as_array()
        .unwrap_or_else(|| panic!("no backends in {health}"))
        .iter()
        .map(|b| {
            let addr = b["address"].as_str().unwrap().to_owned();
            let n = failures(&addr);
            (addr, b["status"].as_str().unwrap().to_owned(), n)
        })
        .collect()
}

/// Waits until the requests in flight to pool `/`'s backends, in all, satisfy `done`.
async fn wait_inflight(lb: &Lb, done: impl Fn(u64) -> bool) {
    eventually("requests in flight", || async {
        let pool: Value = client().get(lb.admin_url("/v1/pool?pattern=/")).send().await.ok()?.json().await.ok()?;
        let n: u64 = pool["backends"].as_array()?.iter().filter_map(|b| b["inflight"].as_u64()).sum();
        done(n).then_some(())
    })
    .await;
}

/// A raw backend that passes health checks and answers every other request with `response`,
/// then closes the connection.
async fn scripted(response: &'static [u8]) -> Backend {
    Backend::start(move |mut peer: Peer| async move {
        while let Some(request) = peer.request().await {
            if common::raw_backend::request_line(&request).starts_with("GET /healthz ") {
                peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                continue;
            }
            peer.send(response).await;
            return;
        }
    })
    .await
}

/// A pool `/sentinel/` whose backend fails every request: once a failed request to it has made
/// it sick, every failure reported before has been applied too (one queue, in order).
struct Sentinel(#[allow(dead_code)] FaultyBackend);

impl Sentinel {
    async fn add(lb: &Lb) -> Sentinel {
        let backend = FaultyBackend::start(Fault::Reset).await;
        lb.add_pool("/sentinel/", strict_pool()).await;
        lb.add_backend("/sentinel/", &backend, json!({})).await;
        Sentinel(backend)
    }

    /// Waits until everything reported so far has been applied.
    async fn flush(&self, lb: &Lb) {
        let r = client().get(lb.url("/sentinel/")).send().await.unwrap();
        assert_eq!(r.status(), 502);
        eventually("the sentinel backend sick", || async {
            statuses(lb, "/sentinel/").await.iter().all(|(_, s, _)| s == "BS_SICK").then_some(())
        })
        .await;
    }
}

/// Sends `bytes` on a new connection, then reads until lb closes it (or `DEADLINE`).
async fn exchange(lb: &Lb, bytes: &[u8]) -> String {
    let mut conn = TcpStream::connect(lb.data).await.unwrap();
    conn.write_all(bytes).await.unwrap();
    read_all(&mut conn).await
}

async fn read_all(conn: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, conn.read_to_end(&mut out)).await;
    if closed.is_err() {
        out.extend_from_slice(b"\n(lb did not close the connection)");
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Malformed chunked bodies, each after a good first chunk, as hyper's decoder refuses them.
const MALFORMED: [&[u8]; 5] = [
    b"zz\r\nhello\r\n0\r\n\r\n",                                 // bad chunk size
    b"fffffffffffffffffffff\r\nx\r\n0\r\n\r\n",                  // chunk-size overflow
    b"5;ext\nbad\r\nhello\r\n0\r\n\r\n",                         // LF in a chunk extension
    b"5\r\nhelloXX5\r\nhello\r\n0\r\n\r\n",                      // no CRLF after the data
    b"5\r\nhello\r\n0\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n", // a request line as a trailer
];

fn malformed_request(i: usize) -> Vec<u8> {
    let mut request = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n".to_vec();
    request.extend_from_slice(MALFORMED[i % MALFORMED.len()]);
    request
}

#[tokio::test]
async fn malformed_chunks_and_aborted_uploads_leave_every_backend_healthy() {
    let lb = Lb::start();
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    lb.add_pool("/", strict_pool()).await;
    lb.add_backend("/", &a, json!({})).await;
    lb.add_backend("/", &b, json!({})).await;
    let sentinel = Sentinel::add(&lb).await;

    for i in 0..50 {
        let answer = exchange(&lb, &malformed_request(i)).await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "malformed body {i}: {answer:?}");
        assert!(!answer.contains(&a.addr.to_string()) && !answer.contains(&b.addr.to_string()), "{answer}");
    }
    for i in 0..50 {
        let mut conn = TcpStream::connect(lb.data).await.unwrap();
        // Streamed (chunked, or larger than retry_body_limit), cut off in the middle.
        let head: &[u8] = if i % 2 == 0 {
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100\r\npart of it"
        } else {
            b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\npart of it"
        };
        conn.write_all(head).await.unwrap();
        // Once lb has forwarded some of it (a backend has a request in flight), go away.
        wait_inflight(&lb, |n| n >= 1).await;
        drop(conn);
        wait_inflight(&lb, |n| n == 0).await;
    }
    sentinel.flush(&lb).await;
    let health = statuses(&lb, "/").await;
    assert_eq!(health.len(), 2, "{health:?}");
    for (addr, status, failures) in &health {
        assert_eq!((status.as_str(), *failures), ("BS_HEALTHY", 0), "backend {addr}");
    }
    // And the pool still serves.
    assert_eq!(client().get(lb.url("/")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_backend_connection_that_carried_a_malformed_body_is_not_reused() {
    let lb = Lb::start();
    // Reads the head (and what of the body comes), never answers, until lb closes.
    let backend = Backend::start(|mut peer: Peer| async move {
        while let Some(request) = peer.request().await {
            if common::raw_backend::request_line(&request).starts_with("GET /healthz ") {
                peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                continue;
            }
            peer.until_closed().await;
            return;
        }
    })
    .await;
    lb.add_pool("/", strict_pool()).await;
    lb.add_backend("/", &backend, json!({})).await;
    let posts = |s: &common::raw_backend::Seen| {
        s.requests.iter().filter(|(_, raw)| raw.starts_with(b"POST")).map(|(conn, _)| *conn).collect::<Vec<_>>()
    };
    for i in 0..5 {
        // The malformed part comes once the head is at the backend: lb's framing check refuses
        // a malformed body that arrives with its head before anything is forwarded, so this
        // is hyper's decoder finding it mid-stream.
        let request = malformed_request(i);
        let split = common::raw_backend::find(&request, b"\r\n\r\n").unwrap() + 4;
        let mut conn = TcpStream::connect(lb.data).await.unwrap();
        conn.write_all(&request[..split]).await.unwrap();
        backend.wait("the head at the backend", |s| posts(s).len() == i + 1).await;
        conn.write_all(&request[split..]).await.unwrap();
        let answer = read_all(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    }
    backend.wait("5 bodies, 5 connections, all closed", |s| posts(s).len() == 5 && s.ended >= 5).await;
    let conns = backend.seen(posts);
    let mut distinct = conns.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 5, "a connection carried two bodies: {conns:?}");
}

#[tokio::test]
async fn a_stalled_upload_is_cut_at_the_client_body_timeout() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let lb = Lb::start_with(dir, &["--client-body-timeout", "300ms"]);
    let a = SampleWeb::start("a");
    lb.add_pool("/", strict_pool()).await;
    lb.add_backend("/", &a, json!({})).await;
    let sentinel = Sentinel::add(&lb).await;
    for head in [
        &b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"[..],
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nhello",
    ] {
        let started = Instant::now();
        let mut conn = TcpStream::connect(lb.data).await.unwrap();
        conn.write_all(head).await.unwrap();
        let answer = read_all(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
        assert!(started.elapsed() >= Duration::from_millis(300), "cut before the timeout");
    }
    sentinel.flush(&lb).await;
    assert_eq!(statuses(&lb, "/").await[0].1, "BS_HEALTHY");
}

#[tokio::test]
async fn a_steady_upload_longer_than_response_ms_succeeds() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let lb = Lb::start_with(dir, &["--client-body-timeout", "2s"]);
    let a = SampleWeb::start("a");
    let mut pool = strict_pool();
    pool["timeouts"] = json!({"response_ms": 200});
    lb.add_pool("/", pool).await;
    lb.add_backend("/", &a, json!({})).await;
    let mut conn = TcpStream::connect(lb.data).await.unwrap();
    conn.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // Twenty pieces, one every 50 ms: a second in all, five times response_ms, never idle long.
    let started = Instant::now();
    for i in 0..20 {
        conn.write_all(format!("3\r\n{i:03}\r\n").as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    conn.write_all(b"0\r\n\r\n").await.unwrap();
    let answer = read_all(&mut conn).await;
    assert!(started.elapsed() > Duration::from_millis(600), "the upload was not slow");
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
    let all: String = (0..20).map(|i| format!("{i:03}")).collect();
    assert!(answer.contains(&all), "{answer}");
}

#[tokio::test]
async fn a_backend_stalling_mid_body_is_cut_at_the_backend_body_timeout_and_counted() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let lb = Lb::start_with(dir, &["--backend-body-timeout", "300ms"]);
    let backend = Backend::start(|mut peer: Peer| async move {
        while let Some(request) = peer.request().await {
            if common::raw_backend::request_line(&request).starts_with("GET /healthz ") {
                peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                continue;
            }
            peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nten bytes.").await;
            peer.until_closed().await;
            return;
        }
    })
    .await;
    lb.add_pool("/", strict_pool()).await;
    lb.add_backend("/", &backend, json!({})).await;
    let started = Instant::now();
    let answer = exchange(&lb, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200 ") && answer.ends_with("ten bytes."), "{answer:?}");
    assert!(started.elapsed() >= Duration::from_millis(300), "cut before the timeout");
    eventually("the stalling backend sick", || async { (statuses(&lb, "/").await[0].1 == "BS_SICK").then_some(()) })
        .await;
}

#[tokio::test]
async fn failed_requests_make_a_backend_sick_but_only_checks_evict() {
    let lb = Lb::start();
    // Checks pass (slowly bringing it back: rise 5), requests fail: `fall` of them make it sick,
    // which is as many as `evict_after`.
    let faulty = FaultyBackend::start(Fault::Reset).await;
    lb.add_pool(
        "/",
        json!({"retries": 0, "health_check": {"interval_ms": 200, "timeout_ms": 200, "fall": 3, "rise": 5, "evict_after": 3}}),
    )
    .await;
    lb.add_backend("/", &faulty, json!({})).await;
    for _ in 0..10 {
        let status = client().get(lb.url("/")).send().await.unwrap().status();
        assert!(status == 502 || status == 503, "{status}");
    }
    eventually("sick by failed requests", || async {
        (statuses(&lb, "/").await.first()?.1 == "BS_SICK").then_some(())
    })
    .await;
    eventually("healthy again by passing checks", || async {
        (statuses(&lb, "/").await.first()?.1 == "BS_HEALTHY").then_some(())
    })
    .await;
    assert!(faulty.requests() >= 3, "fewer failed requests than evict_after: {}", faulty.requests());
}

#[tokio::test]
async fn a_get_with_a_chunked_body_reaches_the_backend_with_it() {
    let lb = Lb::start();
    let a = SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &a, json!({})).await;
    let answer = exchange(
        &lb,
        b"GET /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
    let json: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json["method"], "GET");
    assert_eq!(json["body"], "hello world");
}

#[tokio::test]
async fn a_response_with_a_transfer_coding_lb_does_not_decode_is_a_502() {
    let lb = Lb::start();
    let backend = scripted(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n5\r\nFRAMING\r\n0\r\n\r\n").await;
    lb.add_pool("/", json!({"retries": 0})).await;
    lb.add_backend("/", &backend, json!({})).await;
    // lb's own client (no body) and hyper's (a streamed body).
    let r = client().get(lb.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(!r.text().await.unwrap().contains("FRAMING"));
    let answer = exchange(
        &lb,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 502 ") && !answer.contains("FRAMING"), "{answer:?}");
}

#[tokio::test]
async fn a_426_keeps_its_upgrade_header() {
    let lb = Lb::start();
    let backend = scripted(
        b"HTTP/1.1 426 Upgrade Required\r\nupgrade: TLS/1.3\r\nconnection: upgrade\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &backend, json!({})).await;
    let r = client().get(lb.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 426);
    assert_eq!(r.headers()["upgrade"], "TLS/1.3");
    assert!(!r.headers().contains_key("connection") || r.headers()["connection"] != "upgrade");
}

#[tokio::test]
async fn an_http_10_client_asking_for_keep_alive_keeps_its_connection() {
    let lb = Lb::start();
    let a = SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &a, json!({})).await;
    let mut conn = TcpStream::connect(lb.data).await.unwrap();
    for round in 0..3 {
        conn.write_all(b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n").await.unwrap();
        let head = read_response(&mut conn).await;
        assert!(head.contains(" 200 "), "round {round}: {head}");
        assert!(head.to_ascii_lowercase().contains("connection: keep-alive"), "round {round}: {head}");
    }
    // Without it, the connection closes after the response.
    conn.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await.unwrap();
    let rest = read_all(&mut conn).await;
    assert!(rest.contains(" 200 ") && rest.ends_with("node a"), "{rest}");
}

/// Reads one response with a `Content-Length` body off `conn`; returns its head and body.
async fn read_response(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(head_end) = common::raw_backend::find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= head_end + 4 + length {
                return String::from_utf8_lossy(&buf).into_owned();
            }
        }
        let mut chunk = [0u8; 4096];
        let left = end.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, conn.read(&mut chunk)).await.expect("a response in time").unwrap();
        assert!(n > 0, "connection closed: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn lb_answers_expect_100_continue_itself_and_never_forwards_expect() {
    let lb = Lb::start();
    let backend = Backend::answering("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &backend, json!({})).await;
    // Held (small) and streamed (larger than retry_body_limit) bodies.
    for length in [5usize, 100_000] {
        let mut conn = TcpStream::connect(lb.data).await.unwrap();
        let head = format!(
            "PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut interim = [0u8; 25];
        tokio::time::timeout(DEADLINE, conn.read_exact(&mut interim)).await.unwrap().unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n", "length {length}");
        conn.write_all(&vec![b'x'; length]).await.unwrap();
        let answer = read_all(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "length {length}: {answer:?}");
    }
    let requests = backend.raw_requests();
    let puts: Vec<_> = requests.iter().filter(|r| r.starts_with(b"PUT")).collect();
    assert_eq!(puts.len(), 2);
    for raw in puts {
        let head = String::from_utf8_lossy(&raw[..common::raw_backend::find(raw, b"\r\n\r\n").unwrap()]).to_lowercase();
        assert!(!head.contains("expect:"), "Expect forwarded: {head}");
    }
}

/// The requests that reach a backend through lb's own client (no body) and through hyper's (a
/// chunked body), each on a connection of its own.
const BOTH_CLIENTS: [(&str, &str); 2] = [
    ("lb's own client", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    (
        "hyper's client",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
    ),
];

#[tokio::test]
async fn an_invalid_response_head_counts_against_the_backend_on_both_clients() {
    let lb = Lb::start();
    let cases: [(&str, &'static [u8]); 3] = [
        (
            "a transfer coding lb does not decode",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n5\r\nFRAME\r\n0\r\n\r\n",
        ),
        ("a garbage status line", b"HTTP/1.1 abc OK\r\ncontent-length: 0\r\n\r\n"),
        ("not HTTP at all", b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
    ];
    for (n, (what, response)) in cases.into_iter().enumerate() {
        for (i, (client, request)) in BOTH_CLIENTS.into_iter().enumerate() {
            let pattern = format!("/{n}{i}/");
            let backend = scripted(response).await;
            lb.add_pool(&pattern, strict_pool()).await;
            lb.add_backend(&pattern, &backend, json!({})).await;
            let answer = exchange(
                &lb,
                request
                    .replace("POST / ", &format!("POST {pattern} "))
                    .replace("GET / ", &format!("GET {pattern} "))
                    .as_bytes(),
            )
            .await;
            assert!(answer.starts_with("HTTP/1.1 502 "), "{what}, {client}: {answer:?}");
            eventually(&format!("{what}, {client}: the backend sick"), || async {
                let health = statuses(&lb, &pattern).await;
                (health[0].1 == "BS_SICK" && health[0].2 >= 1).then_some(())
            })
            .await;
        }
    }
}

#[tokio::test]
async fn a_response_head_only_too_large_is_a_502_that_does_not_count() {
    let lb = Lb::start();
    let sentinel = Sentinel::add(&lb).await;
    // What a backend echoing a client's 500 KiB header would answer: past lb's and hyper's
    // 400 KiB.
    let mut huge = b"HTTP/1.1 200 OK\r\nx-echo: ".to_vec();
    huge.resize(huge.len() + 500 * 1024, b'a');
    huge.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
    let backend = scripted(Box::leak(huge.into_boxed_slice())).await;
    lb.add_pool("/", strict_pool()).await;
    lb.add_backend("/", &backend, json!({})).await;
    for (client, request) in BOTH_CLIENTS {
        let answer = exchange(&lb, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 502 "), "{client}: {answer:?}");
    }
    sentinel.flush(&lb).await;
    let health = statuses(&lb, "/").await;
    assert_eq!((health[0].1.as_str(), health[0].2), ("BS_HEALTHY", 0), "{health:?}");
}
