//! The admin API's answers, including every error case.

mod common;

use common::{client, Lb, SampleWeb};
use serde_json::{json, Value};

async fn call(
    lb: &Lb,
    method: reqwest::Method,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Value) {
    let write = method != Method::GET;
    let mut req = client().request(method, lb.admin_url(path)).query(query);
    if let Some(body) = body {
        req = req.body(body.to_owned());
    }
    if write {
        req = req.header("content-type", "application/json");
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Asserts an error answer: the status and a JSON `error` message containing `says`.
fn assert_error((status, body): (u16, Value), want: u16, says: &str) {
    assert_eq!(status, want, "{body}");
    let msg = body["error"].as_str().unwrap_or_else(|| panic!("no error message in {body}"));
    assert!(msg.contains(says), "{msg:?} does not say {says:?}");
}

use reqwest::Method;

#[tokio::test]
async fn lb_healthz_says_ok() {
    let lb = Lb::start();
    assert_eq!(common::get(&lb.admin_url("/healthz")).await, (200, "ok".to_owned()));
}

#[tokio::test]
async fn pools_and_backends_are_listed_added_changed_removed() {
    let lb = Lb::start();
    let web = SampleWeb::start("a");
    let (status, pool) = call(&lb, Method::POST, "/v1/pools", &[], Some(r#"{"pattern": "/api/"}"#)).await;
    assert_eq!(status, 201);
    assert_eq!(pool["mode"], "proxy");
    assert_eq!(pool["strategy"], "p2c");
    assert_eq!(pool["status"], "PS_EMPTY");
    assert_eq!(
        pool["health_check"],
        json!({"path": "/healthz", "healthy_values": ["ok", "OK"], "expected_status": null, "interval_ms": 10000,
               "timeout_ms": 1000, "fall": 3, "rise": 2, "evict_after": 30})
    );

    let body = json!({"ip": web.ip(), "port": web.port()}).to_string();
    let (status, backend) = call(&lb, Method::POST, "/v1/pool/backends", &[("pattern", "/api/")], Some(&body)).await;
    assert_eq!(status, 201);
    assert_eq!(backend["address"], web.addr.to_string());
    assert_eq!(backend["url_path"], "/");
    assert_eq!(backend["status"], "BS_HEALTHY");

    let (status, health) = call(&lb, Method::GET, "/v1/pool/health", &[("pattern", "/api/")], None).await;
    assert_eq!(status, 200);
    assert_eq!((&health["pattern"], &health["status"]), (&json!("/api/"), &json!("PS_FULL")));
    let b = &health["backends"][0];
    assert_eq!((&b["address"], &b["status"]), (&json!(web.addr.to_string()), &json!("BS_HEALTHY")));
    assert_eq!(
        (&b["consecutive_passes"], &b["consecutive_failures"], &b["draining"]),
        (&json!(1), &json!(0), &json!(false))
    );
    assert!(b["last_check_ms"].as_u64().unwrap() > 1_600_000_000_000, "{b}");

    let (status, pool) =
        call(&lb, Method::PATCH, "/v1/pool", &[("pattern", "/api/")], Some(r#"{"mode": "redirect"}"#)).await;
    assert_eq!((status, &pool["mode"]), (200, &json!("redirect")));
    assert_eq!(pool["backends"].as_array().unwrap().len(), 1, "mode change keeps backends");

    let (status, pools) = call(&lb, Method::GET, "/v1/pools", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(pools.as_array().unwrap().len(), 1);
    assert_eq!(pools[0]["pattern"], "/api/");

    let port = web.port().to_string();
    let q = [("pattern", "/api/"), ("ip", "127.0.0.1"), ("port", port.as_str())];
    assert_eq!(call(&lb, Method::DELETE, "/v1/pool/backends", &q, None).await.0, 200);
    assert_eq!(call(&lb, Method::DELETE, "/v1/pool", &[("pattern", "/api/")], None).await.0, 200);
    assert_eq!(call(&lb, Method::GET, "/v1/pools", &[], None).await.1, json!([]));
}

#[tokio::test]
async fn malformed_input_is_400() {
    let lb = Lb::start();
    lb.add_pool("/", json!({})).await;
    let pools = "/v1/pools";
    assert_error(call(&lb, Method::POST, pools, &[], Some("{not json")).await, 400, "invalid JSON");
    assert_error(call(&lb, Method::POST, pools, &[], Some(r#"{"mode": "proxy"}"#)).await, 400, "pattern");
    assert_error(call(&lb, Method::POST, pools, &[], Some(r#"{"pattern": "api"}"#)).await, 400, "invalid pattern");
    assert_error(call(&lb, Method::POST, pools, &[], Some(r#"{"pattern": ""}"#)).await, 400, "empty");
    assert_error(
        call(&lb, Method::POST, pools, &[], Some(r#"{"pattern": "/x", "mode": "nat"}"#)).await,
        400,
        "unknown mode",
    );
    assert_error(
        call(&lb, Method::POST, pools, &[], Some(r#"{"pattern": "/x", "strategy": "fastest"}"#)).await,
        400,
        "unknown strategy",
    );
    assert_error(
        call(&lb, Method::POST, pools, &[], Some(r#"{"pattern": "/x", "colour": "red"}"#)).await,
        400,
        "unknown field",
    );
    let zero = r#"{"pattern": "/x", "health_check": {"interval_ms": 0}}"#;
    assert_error(call(&lb, Method::POST, pools, &[], Some(zero)).await, 400, "interval");

    let backends = "/v1/pool/backends";
    let q = [("pattern", "/")];
    assert_error(
        call(&lb, Method::POST, backends, &q, Some(r#"{"ip": "not-an-ip", "port": 80}"#)).await,
        400,
        "not an IPv4",
    );
    assert_error(
        call(&lb, Method::POST, backends, &q, Some(r#"{"ip": "127.0.0.1", "port": 70000}"#)).await,
        400,
        "invalid JSON",
    );
    assert_error(call(&lb, Method::POST, backends, &q, Some(r#"{"ip": "127.0.0.1", "port": 0}"#)).await, 400, "port");
    assert_error(
        call(&lb, Method::POST, backends, &q, Some(r#"{"ip": "127.0.0.1", "port": 80, "url_path": "v2"}"#)).await,
        400,
        "url_path",
    );
    assert_error(
        call(&lb, Method::POST, backends, &[], Some(r#"{"ip": "127.0.0.1", "port": 80}"#)).await,
        400,
        "pattern",
    );
    assert_error(
        call(&lb, Method::DELETE, backends, &[("pattern", "/"), ("ip", "127.0.0.1"), ("port", "x")], None).await,
        400,
        "port",
    );
    assert_error(call(&lb, Method::PATCH, "/v1/pool", &q, Some("{}")).await, 400, "nothing to change");
    let huge = format!(r#"{{"pattern": "/{}"}}"#, "a".repeat(100_000));
    assert_eq!(call(&lb, Method::POST, pools, &[], Some(&huge)).await.0, 413);
}

#[tokio::test]
async fn unknown_pool_or_backend_is_404() {
    let lb = Lb::start();
    lb.add_pool("/", json!({})).await;
    let q = [("pattern", "/nope/")];
    assert_error(call(&lb, Method::GET, "/v1/pool", &q, None).await, 404, "no pool");
    assert_error(call(&lb, Method::DELETE, "/v1/pool", &q, None).await, 404, "no pool");
    assert_error(call(&lb, Method::GET, "/v1/pool/health", &q, None).await, 404, "no pool");
    assert_error(call(&lb, Method::PATCH, "/v1/pool", &q, Some(r#"{"mode": "proxy"}"#)).await, 404, "no pool");
    assert_error(
        call(&lb, Method::POST, "/v1/pool/backends", &q, Some(r#"{"ip": "127.0.0.1", "port": 9}"#)).await,
        404,
        "no pool",
    );
    let q = [("pattern", "/"), ("ip", "127.0.0.1"), ("port", "9")];
    assert_error(call(&lb, Method::DELETE, "/v1/pool/backends", &q, None).await, 404, "no backend");
    assert_error(call(&lb, Method::GET, "/v1/nothing", &[], None).await, 404, "no admin endpoint");
}

#[tokio::test]
async fn duplicates_are_409() {
    let lb = Lb::start();
    let web = SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    assert_error(call(&lb, Method::POST, "/v1/pools", &[], Some(r#"{"pattern": "/"}"#)).await, 409, "already exists");
    lb.add_pool("Shop.Example/", json!({})).await;
    assert_error(
        call(&lb, Method::POST, "/v1/pools", &[], Some(r#"{"pattern": "shop.example/"}"#)).await,
        409,
        "already exists",
    );
    lb.add_backend("/", &web, json!({})).await;
    let body = json!({"ip": web.ip(), "port": web.port()}).to_string();
    assert_error(
        call(&lb, Method::POST, "/v1/pool/backends", &[("pattern", "/")], Some(&body)).await,
        409,
        "already has backend",
    );
}

#[tokio::test]
async fn sick_backend_is_refused_with_422_and_not_added() {
    let lb = Lb::start();
    let web = SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    let r = client().post(format!("http://{}/control/sick", web.addr)).send().await.unwrap();
    assert!(r.status().is_success());
    let body = json!({"ip": web.ip(), "port": web.port()}).to_string();
    assert_error(
        call(&lb, Method::POST, "/v1/pool/backends", &[("pattern", "/")], Some(&body)).await,
        422,
        "backend is sick",
    );
    // A port nobody listens on: refused, also 422.
    let dead = json!({"ip": "127.0.0.1", "port": 1}).to_string();
    assert_error(
        call(&lb, Method::POST, "/v1/pool/backends", &[("pattern", "/")], Some(&dead)).await,
        422,
        "backend is sick",
    );
    let (_, pool) = call(&lb, Method::GET, "/v1/pool", &[("pattern", "/")], None).await;
    assert_eq!(pool["backends"], json!([]));
}
