//! No bad input gets in through the admin API: each validation rule, and the store left as it
//! was by every refusal.

mod common;

use common::{client, Lb, SampleWeb};
use reqwest::Method;
use serde_json::{json, Value};

async fn call(lb: &Lb, method: Method, path: &str, query: &[(&str, &str)], body: Option<Value>) -> (u16, Value) {
    let write = method != Method::GET;
    let mut req = client().request(method, lb.admin_url(path)).query(query);
    if let Some(body) = body {
        req = req.body(body.to_string());
    }
    if write {
        req = req.header("content-type", "application/json");
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}")))
}

/// Asserts an error answer: the status and a JSON `error` message containing `says`, with no
/// Rust `Debug` print in it.
#[track_caller]
fn assert_error((status, body): (u16, Value), want: u16, says: &str) {
    assert_eq!(status, want, "{body}");
    let msg = body["error"].as_str().unwrap_or_else(|| panic!("no error message in {body}"));
    assert!(msg.contains(says), "{msg:?} does not say {says:?}");
    for debug in ["Invalid(", "Error {", "Some(", "kind:"] {
        assert!(!msg.contains(debug), "a Debug dump in {msg:?}");
    }
}

async fn add_pool(lb: &Lb, body: Value) -> (u16, Value) {
    call(lb, Method::POST, "/v1/pools", &[], Some(body)).await
}

#[tokio::test]
async fn patterns_with_nul_crlf_or_control_characters_are_400() {
    let lb = Lb::in_process();
    for (pattern, says) in [
        ("/d\0z", "control character U+0000"),
        ("/a\r\nX-Injected: 1", "control character U+000D"),
        ("/a\n", "control character U+000A"),
        ("/a\x1b[31m", "control character U+001B"),
        ("GET /a\tb", "control character U+0009"),
    ] {
        assert_error(add_pool(&lb, json!({ "pattern": pattern })).await, 400, says);
    }
    assert_eq!(lb.admin_json("/v1/pools").await, json!([]));
    // A tab after the method is Go's grammar, and stays allowed.
    assert_eq!(add_pool(&lb, json!({"pattern": "GET\t/a"})).await.1["pattern"], "GET /a");
}

#[tokio::test]
async fn wrong_json_shapes_are_400() {
    let lb = Lb::in_process();
    lb.add_pool("/", json!({})).await;
    let q = [("pattern", "/")];
    for (body, says) in [
        (json!({"pattern": "/x", "timeouts": [1, 2, 3]}), "invalid type: sequence, expected a JSON object"),
        (json!({"pattern": "/x", "health_check": ["/h", ["ok"]]}), "invalid type: sequence, expected a JSON object"),
        (json!({"pattern": "/x", "retries": {"n": 1}}), "invalid type: map, expected u32"),
        (json!({"pattern": "/x", "timeouts": {"idle_ms": {"ms": 1}}}), "invalid type: map, expected u64"),
        (json!({"pattern": "/x", "health_check": {"fall": [1]}}), "invalid type: sequence, expected u32"),
        (json!(["/x"]), "expected a JSON object"),
    ] {
        assert_error(add_pool(&lb, body.clone()).await, 400, says);
    }
    assert_error(call(&lb, Method::PATCH, "/v1/pool", &q, Some(json!([2]))).await, 400, "expected a JSON object");
    assert_error(
        call(&lb, Method::PATCH, "/v1/pool", &q, Some(json!({"timeouts": [1, 2, 3]}))).await,
        400,
        "expected a JSON object",
    );
    let backends = "/v1/pool/backends";
    assert_error(
        call(&lb, Method::POST, backends, &q, Some(json!(["127.0.0.1", 80]))).await,
        400,
        "expected a JSON object",
    );
    let one = [("pattern", "/"), ("ip", "127.0.0.1"), ("port", "1")];
    assert_error(call(&lb, Method::PATCH, backends, &one, Some(json!([true]))).await, 400, "expected a JSON object");
    let pools = lb.admin_json("/v1/pools").await;
    assert_eq!(pools.as_array().unwrap().len(), 1);
    assert_eq!(pools[0]["timeouts"], json!({"connect_ms": 3000, "response_ms": 60000, "idle_ms": 90000}));
}

#[tokio::test]
async fn health_settings_keep_their_bounds() {
    let lb = Lb::in_process();
    for (check, says) in [
        (json!({"interval_ms": 1}), "interval_ms must be at least 100, not 1"),
        (json!({"interval_ms": 99, "timeout_ms": 50}), "interval_ms must be at least 100"),
        (json!({"interval_ms": 500}), "timeout_ms (1000) must not be above interval_ms (500)"),
        (json!({"timeout_ms": 10001}), "timeout_ms (10001) must not be above interval_ms (10000)"),
        (json!({"fall": 5, "evict_after": 4}), "evict_after must be 0 (never) or at least fall (5), not 4"),
    ] {
        let says_it = add_pool(&lb, json!({"pattern": "/", "health_check": check})).await;
        assert_error(says_it, 400, says);
    }
    for check in [
        json!({"interval_ms": 100, "timeout_ms": 100}),
        json!({"fall": 5, "evict_after": 5}),
        json!({"fall": 5, "evict_after": 0}),
    ] {
        let (status, pool) = add_pool(&lb, json!({"pattern": "/", "health_check": check})).await;
        assert_eq!(status, 201, "{check}: {pool}");
        call(&lb, Method::DELETE, "/v1/pool", &[("pattern", "/")], None).await;
    }
    // A change is held to them as the check ends up.
    lb.add_pool("/", json!({"health_check": {"interval_ms": 2000, "timeout_ms": 1000}})).await;
    let q = [("pattern", "/")];
    let change = json!({"health_check": {"interval_ms": 500}});
    assert_error(call(&lb, Method::PATCH, "/v1/pool", &q, Some(change)).await, 400, "timeout_ms (1000)");
    let change = json!({"health_check": {"evict_after": 1}});
    assert_error(call(&lb, Method::PATCH, "/v1/pool", &q, Some(change)).await, 400, "at least fall (3)");
    assert_eq!(lb.admin_json("/v1/pool?pattern=/").await["health_check"]["interval_ms"], 2000);
}

#[tokio::test]
async fn url_paths_must_be_absolute_clean_and_encoded() {
    let lb = Lb::in_process();
    let web = SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    let q = [("pattern", "/")];
    for (url_path, says) in [
        ("/../../secret/", "no . or .. segment"),
        ("/a/./b", "no . or .. segment"),
        ("/a/%2e%2E/b", "no . or .. segment"),
        ("/a//b", "empty segment"),
        ("/caf\u{e9}/", "percent-encoded ASCII"),
        ("/a b", "no spaces"),
        ("/a\"b", "percent-encoded ASCII"),
        ("/a%4", "two hex digits"),
        ("v2/", "must start with /"),
    ] {
        let body = json!({"ip": web.ip(), "port": web.port(), "url_path": url_path});
        assert_error(call(&lb, Method::POST, "/v1/pool/backends", &q, Some(body)).await, 400, says);
    }
    let body = json!({"ip": web.ip(), "port": web.port(), "url_path": "/v2/a%20b/"});
    assert_eq!(call(&lb, Method::POST, "/v1/pool/backends", &q, Some(body)).await.0, 201);
}

#[tokio::test]
async fn an_ipv4_mapped_address_is_its_ipv4_address() {
    let lb = Lb::in_process();
    let web = SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    let q = [("pattern", "/")];
    let mapped = json!({"ip": "::ffff:127.0.0.1", "port": web.port()});
    let (status, backend) = call(&lb, Method::POST, "/v1/pool/backends", &q, Some(mapped.clone())).await;
    assert_eq!((status, &backend["address"]), (201, &json!(format!("127.0.0.1:{}", web.port()))));
    let plain = json!({"ip": "127.0.0.1", "port": web.port()});
    assert_error(call(&lb, Method::POST, "/v1/pool/backends", &q, Some(plain)).await, 409, "already has backend");
    let port = web.port().to_string();
    let by_mapped = [("pattern", "/"), ("ip", "::ffff:127.0.0.1"), ("port", &port)];
    assert_eq!(call(&lb, Method::DELETE, "/v1/pool/backends", &by_mapped, None).await.0, 200);
    assert_eq!(lb.admin_json("/v1/pool?pattern=/").await["backends"], json!([]));
    // `[::1]`, as lb prints it in an address, names the same IP as `::1`.
    let bracketed = [("pattern", "/"), ("ip", "[::1]"), ("port", "1")];
    assert_error(call(&lb, Method::DELETE, "/v1/pool/backends", &bracketed, None).await, 404, "no backend [::1]:1");
}

#[tokio::test]
async fn lbs_own_listeners_are_refused_as_backends() {
    let lb = Lb::in_process();
    lb.add_pool("/", json!({})).await;
    let q = [("pattern", "/")];
    let add = |ip: String, port: u16| {
        let lb = &lb;
        async move { call(lb, Method::POST, "/v1/pool/backends", &q, Some(json!({"ip": ip, "port": port}))).await }
    };
    let (admin, data) = (lb.admin.port(), lb.data.port());
    assert_error(add("127.0.0.1".into(), admin).await, 400, "is lb's own admin API");
    assert_error(add("127.0.0.1".into(), data).await, 400, "is lb's own data port");
    // Another name for the same socket: a loopback alias, or the mapped form.
    assert_error(add("127.0.0.2".into(), admin).await, 400, "is lb's own admin API");
    assert_error(add("::ffff:127.0.0.1".into(), data).await, 400, "is lb's own data port");
    assert_eq!(lb.admin_json("/v1/pool?pattern=/").await["backends"], json!([]));

    // A data port on 0.0.0.0 is reached through any of this machine's addresses.
    let open = Lb::in_process_with(&["--listen", "0.0.0.0:0"]).unwrap();
    open.add_pool("/", json!({})).await;
    let port = open.data.port();
    for ip in ["127.0.0.1", "127.0.0.9"] {
        let body = json!({"ip": ip, "port": port});
        assert_error(call(&open, Method::POST, "/v1/pool/backends", &q, Some(body)).await, 400, "lb's own data port");
    }
}

#[tokio::test]
async fn every_error_is_json_with_a_human_message() {
    let lb = Lb::in_process();
    assert_error(call(&lb, Method::GET, "/nope", &[], None).await, 404, "no admin endpoint /nope");
    assert_error(call(&lb, Method::PUT, "/v1/pools", &[], Some(json!({}))).await, 405, "method not allowed");
    assert_error(call(&lb, Method::GET, "/v1/pool", &[], None).await, 400, "missing field `pattern`");
    let bad_port = [("pattern", "/"), ("ip", "127.0.0.1"), ("port", "99999")];
    assert_error(call(&lb, Method::DELETE, "/v1/pool/backends", &bad_port, None).await, 400, "port");
    let r = client()
        .post(lb.admin_url("/v1/pools"))
        .header("content-type", "application/json")
        .body("{\"pattern\": \"/\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().starts_with("invalid JSON body: EOF while parsing"), "{body}");
}

/// Sends `request` to the admin port on a raw socket and returns the status and the JSON body
/// of the answer, read to the end (lb closes the connection after it).
async fn raw_admin(lb: &Lb, request: &[u8]) -> (u16, String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(lb.admin).await.unwrap();
    // An oversized head may be refused before all of it is written: that is fine.
    let _ = conn.write_all(request).await;
    let mut answer = Vec::new();
    tokio::time::timeout(common::wait::DEADLINE, conn.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in {answer:?}"));
    let status = head[9..12].parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: not JSON in {answer:?}"));
    (status, head.to_ascii_lowercase(), body)
}

#[tokio::test]
async fn malformed_request_heads_get_json_errors_too() {
    let lb = Lb::in_process();
    let mut oversized = b"GET /v1/pools HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
    oversized.resize(200 * 1024, b'a');
    oversized.extend_from_slice(b"\r\n\r\n");
    let cases: [(&str, &[u8], u16, &str); 6] = [
        ("a garbage line", b"hello there\r\n\r\n", 400, "malformed request"),
        ("a NUL in a header", b"GET /v1/pools HTTP/1.1\r\nHost: localhost\r\nX-A: a\0b\r\n\r\n", 400, "header value"),
        ("bare LF line ends", b"GET /v1/pools HTTP/1.1\nHost: localhost\n\n", 400, "LF without CR"),
        ("an oversized head", &oversized, 431, "request head larger than 65536 bytes"),
        (
            "a bad Content-Length",
            b"POST /v1/pools HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1x\r\n\r\n",
            400,
            "Content-Length",
        ),
        ("an HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "HTTP/1.0 and HTTP/1.1 only"),
    ];
    for (what, request, want, says) in cases {
        let (status, head, body) = raw_admin(&lb, request).await;
        assert_eq!(status, want, "{what}: {body}");
        assert!(
            head.contains("content-type: application/json") && head.contains("connection: close"),
            "{what}: {head}"
        );
        assert!(body["error"].as_str().unwrap().contains(says), "{what}: {body}");
    }
    // A well-formed request on the same port is served as before, one per connection.
    let request = format!("GET /v1/pools HTTP/1.1\r\nHost: {}\r\n\r\n", lb.admin);
    let (status, head, body) = raw_admin(&lb, request.as_bytes()).await;
    assert_eq!((status, body), (200, json!([])));
    assert!(head.contains("connection: close"), "{head}");
}
