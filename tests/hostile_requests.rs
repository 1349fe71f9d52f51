//! What lb refuses before routing, and the `Location`s it builds, sent as raw bytes to a real lb
//! (in-process) with a scripted raw backend behind it that records what reaches it.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::raw_backend::{Backend, Wire};
use common::{Lb, DEADLINE};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// An lb with one proxy pool `/` in front of a raw backend answering `200 ok` to everything.
async fn lb_with_backend() -> (Lb, Backend) {
    let lb = Lb::in_process();
    let backend = Backend::answering(OK).await;
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &backend, json!({})).await;
    (lb, backend)
}

/// lb's answer to `request` (sent whole on a new connection): the status and the raw head.
async fn send(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
            if let Some(end) = common::raw_backend::find(&got, b"\r\n\r\n") {
                // The requests sent here close the connection after their answer; stop at
                // the head when the answer is lb's own (a short body) to need no EOF.
                let head = String::from_utf8_lossy(&got[..end]).into_owned();
                let length = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse::<usize>().ok());
                if length.is_some_and(|n| got.len() >= end + 4 + n) {
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, text)
    };
    tokio::time::timeout(DEADLINE, exchange).await.expect("lb answers within the deadline")
}

/// The value of header `name` in a raw response.
fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Requests the backend got, but its health checks.
fn forwarded(backend: &Backend) -> Vec<Wire> {
    backend.raw_requests().iter().map(|r| Wire::parse(r)).filter(|w| !w.line.starts_with("GET /healthz ")).collect()
}

#[tokio::test]
async fn bad_hosts_are_400_and_never_forwarded() {
    let (lb, backend) = lb_with_backend().await;
    for (what, head) in [
        ("missing", "GET /s HTTP/1.1\r\n"),
        ("twice, equal", "GET /s HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n"),
        ("twice, different", "GET /s HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n"),
        ("with userinfo", "GET /s HTTP/1.1\r\nHost: a@b.example\r\n"),
        ("with a path", "GET /s HTTP/1.1\r\nHost: a/b\r\n"),
        ("with a space", "GET /s HTTP/1.1\r\nHost: a b\r\n"),
        ("empty", "GET /s HTTP/1.1\r\nHost:\r\n"),
        ("a list", "GET /s HTTP/1.1\r\nHost: a.example, b.example\r\n"),
        ("a port not digits", "GET /s HTTP/1.1\r\nHost: a.example:abc\r\n"),
        ("other than the absolute target's", "GET http://a.example/s HTTP/1.1\r\nHost: b.example\r\n"),
        ("missing with an absolute target", "GET http://a.example/s HTTP/1.1\r\n"),
    ] {
        let (status, response) = send(lb.data, format!("{head}Connection: close\r\n\r\n").as_bytes()).await;
        assert_eq!(status, 400, "Host {what}: {response}");
        assert!(response.contains("400 bad request"), "Host {what}: {response}");
    }
    assert_eq!(forwarded(&backend).len(), 0);

    // HTTP/1.0 needs no Host.
    let (status, response) = send(lb.data, b"GET /s HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200, "{response}");
}

#[tokio::test]
async fn an_absolute_target_reaches_the_backend_in_origin_form_with_its_host() {
    let (lb, backend) = lb_with_backend().await;
    for (target, host, want) in [
        ("http://a.example?x=1", "a.example", "GET /?x=1 HTTP/1.1"),
        ("http://a.example/p?x=1", "A.example", "GET /p?x=1 HTTP/1.1"),
        ("http://a.example:8080", "a.example:8080", "GET / HTTP/1.1"),
    ] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let (status, response) = send(lb.data, request.as_bytes()).await;
        assert_eq!(status, 200, "{target}: {response}");
        let seen = forwarded(&backend).pop().unwrap();
        assert_eq!(seen.line, want, "{target}");
        let authority = target.trim_start_matches("http://").split(['/', '?']).next().unwrap();
        assert_eq!(seen.values("host"), [authority], "{target}");
    }
}

#[tokio::test]
async fn transfer_codings_but_chunked_are_refused() {
    let (lb, backend) = lb_with_backend().await;
    let body = "5\r\nhello\r\n0\r\n\r\n";
    for (codings, want) in [
        (&["identity, chunked"][..], 501),
        (&["gzip, chunked"], 501),
        // Two Transfer-Encoding fields are refused before their codings are read.
        (&["gzip", "chunked"], 400),
        (&["chunked, chunked"], 400),
        (&["chunked", "chunked"], 400),
        // Refused by hyper already: not ending in chunked.
        (&["chunked, identity"], 400),
        (&["xchunked"], 400),
    ] {
        let te: String = codings.iter().map(|c| format!("Transfer-Encoding: {c}\r\n")).collect();
        let request = format!("POST /s HTTP/1.1\r\nHost: a.example\r\n{te}Connection: close\r\n\r\n{body}");
        let (status, response) = send(lb.data, request.as_bytes()).await;
        assert_eq!(status, want, "{codings:?}: {response}");
    }
    assert_eq!(forwarded(&backend).len(), 0);

    // One chunked coding is fine (any case).
    let request =
        format!("POST /s HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n{body}");
    assert_eq!(send(lb.data, request.as_bytes()).await.0, 200);
}

#[tokio::test]
async fn framing_hyper_refuses_is_400() {
    let (lb, backend) = lb_with_backend().await;
    for (what, request) in [
        (
            "differing Content-Lengths",
            "POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        ("a Content-Length list", "POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello"),
        ("Transfer-Encoding in HTTP/1.0", "POST /s HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("obs-fold", "GET /s HTTP/1.1\r\nHost: a\r\nX-Fold: a\r\n b\r\n\r\n"),
        ("a method that is no token", "G(T /s HTTP/1.1\r\nHost: a\r\n\r\n"),
    ] {
        let (status, response) = send(lb.data, request.as_bytes()).await;
        assert_eq!(status, 400, "{what}: {response}");
    }
    assert_eq!(forwarded(&backend).len(), 0);
}

#[tokio::test]
async fn methods_lb_answers_itself() {
    let (lb, backend) = lb_with_backend().await;
    let (status, response) = send(lb.data, b"OPTIONS * HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 200, "{response}");
    assert!(header(&response, "allow").is_some_and(|a| a.contains("GET")), "{response}");
    assert_eq!(header(&response, "location"), None);
    for (request, want) in [
        ("TRACE /s HTTP/1.1\r\nHost: a.example\r\n", 405),
        ("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n", 405),
        ("get /s HTTP/1.1\r\nHost: a.example\r\n", 400),
        ("Get /s HTTP/1.1\r\nHost: a.example\r\n", 400),
    ] {
        let (status, response) = send(lb.data, format!("{request}Connection: close\r\n\r\n").as_bytes()).await;
        assert_eq!(status, want, "{request}: {response}");
    }
    assert_eq!(forwarded(&backend).len(), 0);
    // Methods lb does not know are forwarded.
    let (status, _) = send(lb.data, b"PROPFIND /s HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 200);
}

/// A `Location` a browser reads as a path on lb's own host.
fn same_host(location: &str) -> bool {
    location.starts_with('/')
        && !location.starts_with("//")
        && !location.starts_with("/\\")
        && !location.contains("://")
}

#[tokio::test]
async fn redirects_are_307_and_never_to_another_host() {
    let (lb, backend) = lb_with_backend().await;
    lb.add_pool("/tree/", json!({})).await;
    lb.add_backend("/tree/", &backend, json!({})).await;
    for (target, want) in [
        ("/./\\evil.example/", "/%5Cevil.example/"),
        ("/.//evil.example", "/evil.example"),
        ("//evil.example/", "/evil.example/"),
        ("///evil.example", "/evil.example"),
        ("/..//evil.example/", "/evil.example/"),
        ("/a/..//\\evil.example", "/%5Cevil.example"),
        ("/\\/evil.example/./", "/%5C/evil.example/"),
        ("/./\\\\evil.example", "/%5C%5Cevil.example"),
        ("/.//%2Fevil.example", "/%2Fevil.example"),
        ("/a//b?x=1&y", "/a/b?x=1&y"),
        ("/tree?x=1", "/tree/?x=1"),
        ("/a/./{x}\"", "/a/%7Bx%7D%22"),
    ] {
        for method in ["GET", "POST"] {
            let request = format!(
                "{method} {target} HTTP/1.1\r\nHost: a.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let (status, response) = send(lb.data, request.as_bytes()).await;
            assert_eq!(status, 307, "{method} {target}: {response}");
            let location = header(&response, "location").unwrap_or_else(|| panic!("{target}: {response}"));
            assert!(same_host(location), "{target}: {location}");
            assert_eq!(location, want, "{target}");
        }
    }
    assert_eq!(forwarded(&backend).len(), 0);
}

#[tokio::test]
async fn a_request_that_looped_back_is_508() {
    let (lb, backend) = lb_with_backend().await;
    let (status, _) =
        send(lb.data, b"GET /s HTTP/1.1\r\nHost: a.example\r\nVia: 1.1 other\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 200, "another proxy's Via is forwarded");
    let seen = forwarded(&backend).pop().unwrap();
    let vias = seen.values("via");
    assert_eq!(vias.len(), 2, "{vias:?}");
    assert_eq!(vias[0], "1.1 other");
    let token = vias[1].strip_prefix("1.1 ").unwrap();
    assert!(token.starts_with("lb-") && token.len() == 11, "{token}");

    for via in [format!("1.1 {token}"), format!("1.0 a, 1.1 {token} (x)"), format!("2 {token}")] {
        let request = format!("GET /s HTTP/1.1\r\nHost: a.example\r\nVia: {via}\r\nConnection: close\r\n\r\n");
        let (status, response) = send(lb.data, request.as_bytes()).await;
        assert_eq!(status, 508, "{via}: {response}");
    }
    assert_eq!(forwarded(&backend).len(), 1, "nothing more forwarded");

    // Another lb instance has another token.
    let other = Lb::in_process();
    other.add_pool("/", json!({})).await;
    other.add_backend("/", &backend, json!({})).await;
    let request = format!("GET /s HTTP/1.1\r\nHost: a.example\r\nVia: 1.1 {token}\r\nConnection: close\r\n\r\n");
    assert_eq!(send(other.data, request.as_bytes()).await.0, 200);
}

#[tokio::test]
async fn two_lbs_pointing_at_each_other_answer_508() {
    let health = Backend::answering(OK).await;
    let (a, b) = (Lb::in_process(), Lb::in_process());
    // b passes health checks on to a real backend, so a's check of b and b's of a succeed.
    b.add_pool("/healthz", json!({})).await;
    b.add_backend("/healthz", &health, json!({})).await;
    a.add_pool("/", json!({})).await;
    a.add_backend("/", b.data, json!({})).await;
    b.add_pool("/", json!({})).await;
    b.add_backend("/", a.data, json!({})).await;

    let (status, response) = tokio::time::timeout(
        Duration::from_secs(10),
        send(a.data, b"GET /loop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await
    .expect("a loop ends");
    assert_eq!(status, 508, "{response}");
    assert!(response.contains("loop detected"), "{response}");
}

#[tokio::test]
async fn http2_authority_and_host_must_agree() {
    let (lb, backend) = lb_with_backend().await;
    let stream = TcpStream::connect(lb.data).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for (host, want) in [(Some("b.example"), 400), (Some("a.example"), 200), (None, 200)] {
        let mut req = http::Request::get("http://a.example/s");
        if let Some(host) = host {
            req = req.header("host", host);
        }
        let req = req.body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
        let response = tokio::time::timeout(DEADLINE, sender.send_request(req)).await.unwrap().unwrap();
        assert_eq!(response.status(), want, "Host {host:?}");
    }
    assert_eq!(forwarded(&backend).len(), 2);
}

/// Writes `pieces` on one connection, one after another, then reads until lb closes it.
/// Between pieces it pauses a moment so that lb likely reads them apart: only the coverage
/// depends on it, the answers must be the same however the bytes arrive.
async fn conversation(addr: SocketAddr, pieces: &[&[u8]]) -> String {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        for piece in pieces {
            if stream.write_all(piece).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got).await;
        String::from_utf8_lossy(&got).into_owned()
    };
    tokio::time::timeout(DEADLINE, exchange).await.expect("lb answers and closes within the deadline")
}

/// The statuses of the responses in `text`, in order.
fn statuses(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.1 ").filter_map(|(i, _)| text[i + 9..].get(..3)?.parse().ok()).collect()
}

/// Bytes cut one after another.
fn bytewise(request: &[u8]) -> Vec<&[u8]> {
    request.chunks(1).collect()
}

/// Requests whose framing hyper would hide from lb's handler, and lb's reason in its `400`.
const HIDDEN: &[(&str, &str)] = &[
    (
        "POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "both Content-Length and Transfer-Encoding",
    ),
    (
        "POST /s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        "both Content-Length and Transfer-Encoding",
    ),
    (
        "POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding:   chunked\r\n\r\n0\r\n\r\n",
        "both Content-Length and Transfer-Encoding",
    ),
    (
        "POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked \r\n\r\n0\r\n\r\n",
        "both Content-Length and Transfer-Encoding",
    ),
    (
        "POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n",
        "both Content-Length and Transfer-Encoding",
    ),
    ("POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "Content-Length twice"),
    (
        "POST /s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        "Transfer-Encoding twice",
    ),
    ("GET /s#frag HTTP/1.1\r\nHost: a\r\n\r\n", "a #fragment in the request-target"),
];

#[tokio::test]
async fn framing_hyper_would_hide_is_400_before_hyper_or_a_backend_sees_it() {
    let (lb, backend) = lb_with_backend().await;
    for &(request, why) in HIDDEN {
        for (how, pieces) in [("whole", vec![request.as_bytes()]), ("byte by byte", bytewise(request.as_bytes()))] {
            let answer = conversation(lb.data, &pieces).await;
            assert_eq!(statuses(&answer), [400], "{request:?} {how}: {answer}");
            assert!(answer.contains(&format!("\r\n\r\n400 bad request: {why}\n")), "{request:?} {how}: {answer}");
            assert_eq!(header(&answer, "connection"), Some("close"), "{answer}");
        }
    }
    // A malformed chunked body that arrives with its head is refused the same way. (When the
    // head went to hyper in an earlier read, hyper's decoder refuses the body: see
    // tests/hostile_blame.rs.)
    let request = b"POST /s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello0\r\n\r\n";
    let answer = conversation(lb.data, &[request]).await;
    assert_eq!(statuses(&answer), [400], "{answer}");
    assert!(answer.contains("\r\n\r\n400 bad request: malformed chunked body\n"), "{answer}");
    assert_eq!(forwarded(&backend).len(), 0, "nothing reached the backend");
    // The connection-level check is not in the way of the same bytes done right.
    let (status, response) =
        send(lb.data, b"POST /s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n\r\n0\r\n\r\n").await;
    assert_eq!(status, 200, "{response}");
}

#[tokio::test]
async fn a_refused_request_is_answered_after_the_pipelined_requests_before_it() {
    let lb = Lb::in_process();
    let web = common::SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &web, json!({})).await;
    let pipeline = "GET /echo?n=1 HTTP/1.1\r\nHost: a\r\n\r\n\
        POST /echo?n=2 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\nGET /#x HTTP\
        \r\nPUT /echo?n=3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
        6;ext=1\r\nchunky\r\n10\r\nGET /#y HTTP/1.1\r\n0\r\nX-Trailer: t\r\n\r\n";
    for (how, bad) in [
        ("then a fragment", "GET /#frag HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("then two lengths", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"),
    ] {
        let all = format!("{pipeline}{bad}");
        for (cut, pieces) in [("whole", vec![all.as_bytes()]), ("byte by byte", bytewise(all.as_bytes()))] {
            let answer = conversation(lb.data, &pieces).await;
            assert_eq!(statuses(&answer), [200, 200, 200, 400], "{how}, {cut}: {answer}");
            for body in ["n=1", "GET /#x HTTP", "chunkyGET /#y HTTP/1.1"] {
                assert!(answer.contains(body), "{how}, {cut}: {body} not echoed in {answer}");
            }
        }
    }
}

#[tokio::test]
async fn a_head_cut_just_before_its_evidence_is_still_refused() {
    let (lb, backend) = lb_with_backend().await;
    for (first, rest) in [
        ("POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length", ": 5\r\n\r\nhello"),
        ("POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Lengt", "h: 5\r\n\r\nhello"),
        ("GET /a", "#b HTTP/1.1\r\nHost: a\r\n\r\n"),
    ] {
        // The first part arrives with a good request lb answers before the rest is sent.
        let mut conn = TcpStream::connect(lb.data).await.unwrap();
        conn.write_all(format!("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n{first}").as_bytes()).await.unwrap();
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).ends_with("\r\n\r\nok") {
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(DEADLINE, conn.read(&mut chunk)).await.unwrap().unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
        conn.write_all(rest.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(DEADLINE, conn.read_to_string(&mut answer)).await.unwrap().unwrap();
        assert_eq!(statuses(&answer), [400], "{first:?} + {rest:?}: {answer}");
    }
    assert_eq!(forwarded(&backend).len(), 3, "only the three good requests");
}
