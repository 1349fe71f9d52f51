//! Proxy mode, end to end: real lb, real sample-web backends, real HTTP over loopback.

mod common;

use std::collections::HashSet;

use common::{client, get, Fault, FaultyBackend, Lb, SampleWeb};
use serde_json::json;

#[tokio::test]
async fn both_backends_of_a_pool_answer() {
    let lb = Lb::start();
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    lb.add_pool("/", json!({"expose_backend": true})).await;
    lb.add_backend("/", &a, json!({})).await;
    lb.add_backend("/", &b, json!({})).await;

    let mut seen = HashSet::new();
    let mut servers = HashSet::new();
    for _ in 0..40 {
        let r = client().get(lb.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        servers.insert(r.headers()["x-forwarded-server"].to_str().unwrap().to_owned());
        seen.insert(r.text().await.unwrap());
    }
    let want: HashSet<String> = ["Hello web from node a", "Hello web from node b"].map(String::from).into();
    assert_eq!(seen, want);
    assert_eq!(servers, [a.addr.to_string(), b.addr.to_string()].into());
}

#[tokio::test]
async fn requests_reuse_kept_alive_backend_connections() {
    let lb = Lb::start();
    let backend = FaultyBackend::start(Fault::Status(200)).await;
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &backend, json!({})).await;
    let client = client();
    for _ in 0..20 {
        let r = client.get(lb.url("/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    assert_eq!(backend.requests(), 20);
    // Each of lb's two workers keeps its own idle connections: at most one each here.
    assert!(backend.connections() <= 2, "20 requests took {} backend connections", backend.connections());
}

#[tokio::test]
async fn round_robin_alternates() {
    let lb = Lb::start();
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    lb.add_pool("/", json!({"strategy": "round_robin"})).await;
    lb.add_backend("/", &a, json!({})).await;
    lb.add_backend("/", &b, json!({})).await;
    let mut bodies = Vec::new();
    for _ in 0..4 {
        bodies.push(get(&lb.url("/")).await.1);
    }
    assert_ne!(bodies[0], bodies[1]);
    assert_eq!(bodies[0], bodies[2]);
    assert_eq!(bodies[1], bodies[3]);
}

#[tokio::test]
async fn empty_pool_answers_503_with_retry_after() {
    let lb = Lb::start();
    lb.add_pool("/", json!({})).await;
    let r = client().get(lb.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap().contains("no backends"));
}

#[tokio::test]
async fn dead_backend_answers_502() {
    let lb = Lb::start();
    let mut a = SampleWeb::start("a");
    lb.add_pool("/", json!({"expose_backend": true})).await;
    lb.add_backend("/", &a, json!({})).await;
    assert_eq!(get(&lb.url("/")).await.0, 200);
    a.kill();
    let r = client().get(lb.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-forwarded-server"], a.addr.to_string().as_str());
    // Neither the backend nor what failed: the log says that.
    assert_eq!(r.text().await.unwrap(), "502 bad gateway\n");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_and_forwarded_headers_set() {
    let lb = Lb::start();
    let a = SampleWeb::start("a");
    lb.add_pool("/", json!({"expose_backend": true})).await;
    lb.add_backend("/", &a, json!({})).await;

    let r = client()
        .get(lb.url("/echo?q=1"))
        .header("Host", "shop.example")
        .header("Connection", "keep-alive, X-Private")
        .header("X-Private", "secret")
        .header("Keep-Alive", "timeout=5")
        .header("Proxy-Authorization", "Basic eA==")
        .header("TE", "gzip")
        .header("X-Forwarded-For", "203.0.113.7")
        .header("X-Kept", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["via"], "1.1 lb");
    assert_eq!(r.headers()["x-forwarded-server"], a.addr.to_string().as_str());
    let echo: serde_json::Value = r.json().await.unwrap();
    let h = &echo["headers"];
    for gone in ["connection", "x-private", "keep-alive", "proxy-authorization", "te"] {
        assert!(h.get(gone).is_none(), "{gone} reached the backend: {h}");
    }
    assert_eq!(h["x-kept"], json!(["yes"]));
    assert_eq!(h["host"], json!(["shop.example"]));
    assert_eq!(h["x-forwarded-for"], json!(["203.0.113.7, 127.0.0.1"]));
    assert_eq!(h["x-forwarded-proto"], json!(["http"]));
    assert_eq!(h["x-forwarded-host"], json!(["shop.example"]));
    // lb's own pseudonym, drawn at start: `lb-` and 8 hex digits.
    let via = h["via"][0].as_str().unwrap();
    let pseudonym = via.strip_prefix("1.1 lb-").unwrap_or_else(|| panic!("via {via}"));
    assert!(pseudonym.len() == 8 && pseudonym.bytes().all(|b| b.is_ascii_hexdigit()), "via {via}");
    assert_eq!(echo["path"], "/echo");
    assert_eq!(echo["query"], "q=1");
}

#[tokio::test]
async fn url_path_is_joined_in_front_of_the_request_path() {
    let lb = Lb::start();
    let a = SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &a, json!({"url_path": "/echo/"})).await;
    let echo: serde_json::Value = client().get(lb.url("/a?b=1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["path"], "/echo/a");
    assert_eq!(echo["query"], "b=1");
}

#[tokio::test]
async fn large_bodies_pass_through_intact() {
    let lb = Lb::start();
    let a = SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &a, json!({})).await;
    let body: String = (0..300_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let r = client().put(lb.url("/echo")).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["body"], body.as_str());
}

#[tokio::test]
async fn chunked_request_body_is_forwarded() {
    let lb = Lb::start();
    let a = SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &a, json!({})).await;
    let response = lb.post_chunked_echo().await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""body":"hello world""#), "{response}");
}

#[tokio::test]
async fn a_client_trickling_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let lb = Lb::start_with(std::sync::Arc::new(tempfile::tempdir().unwrap()), &["--header-read-timeout", "300ms"]);
    let mut conn = tokio::net::TcpStream::connect(lb.data).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // lb closes the connection (maybe after a 408) instead of waiting for the rest; the
    // default timeout (10 s) would be far past this wait.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), conn.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "connection still open");
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let lb = Lb::start_with(std::sync::Arc::new(tempfile::tempdir().unwrap()), &["--max-header-bytes", "16384"]);
    let a = SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &a, json!({})).await;
    let r = client().get(lb.url("/")).header("X-Big", "b".repeat(8_000)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client().get(lb.url("/")).header("X-Big", "b".repeat(40_000)).send().await;
    // hyper answers 431, or closes the connection before reading it all.
    if let Ok(r) = r {
        assert_eq!(r.status(), 431);
    }
}

#[tokio::test]
async fn bad_flags_are_one_line_errors() {
    for args in [["--header-read-timeout", "soon"], ["--max-header-bytes", "10"], ["--threads", "0"]] {
        let dir = tempfile::tempdir().unwrap();
        let out = common::lb_command(dir.path()).args(args).stderr(std::process::Stdio::piped()).output().unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains("error:") && stderr.contains(args[0]), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn an_absolute_form_target_without_a_path_reaches_the_backend_as_slash() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let lb = Lb::start();
    let a = SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &a, json!({})).await;
    let mut conn = tokio::net::TcpStream::connect(lb.data).await.unwrap();
    let request = format!("GET http://{}?x=1 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", lb.data, lb.data);
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read_to_string(&mut response)).await;
    read.expect("lb answers").unwrap();
    // The backend got `GET /?x=1`, not the invalid `GET ?x=1`.
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("Hello web from node a"), "{response}");
}
