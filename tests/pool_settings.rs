//! The pool settings `expose_backend` and `allow_trace`, end to end: real lb, real backends,
//! set through the admin API and lbctl, kept across a restart, migrated from a store that the
//! lb before them wrote.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::raw_backend::Backend as RawBackend;
use common::{client, Fault, FaultyBackend, Lb, SampleWeb};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A backend that names itself in its own `X-Forwarded-Server`, as one behind another proxy
/// might: lb must not pass that on either when the pool does not expose backends.
async fn self_naming_backend() -> RawBackend {
    RawBackend::answering(
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Forwarded-Server: internal.example:9000\r\n\r\nok"[..],
    )
    .await
}

async fn patch_pool(lb: &Lb, pattern: &str, settings: Value) -> (u16, Value) {
    let r = client().patch(lb.admin_url("/v1/pool")).query(&[("pattern", pattern)]).json(&settings);
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The `X-Forwarded-Server` values of a `GET path`, with its status.
async fn forwarded_server(lb: &Lb, path: &str) -> (u16, Vec<String>) {
    let r = client().get(lb.url(path)).send().await.unwrap();
    let values = r.headers().get_all("x-forwarded-server").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    (r.status().as_u16(), values)
}

#[tokio::test]
async fn the_backend_is_named_only_by_pools_that_expose_it() {
    let lb = Lb::in_process();
    let backend = self_naming_backend().await;
    let pool = lb.add_pool("/", json!({})).await;
    assert_eq!((&pool["expose_backend"], &pool["allow_trace"]), (&json!(false), &json!(false)));
    lb.add_backend("/", &backend, json!({})).await;
    lb.add_pool("/r/", json!({"mode": "redirect"})).await;
    lb.add_backend("/r/", &backend, json!({})).await;

    assert_eq!(forwarded_server(&lb, "/").await, (200, vec![]), "not even the backend's own");
    assert_eq!(forwarded_server(&lb, "/r/").await, (307, vec![]));

    let me = backend.addr.to_string();
    for pattern in ["/", "/r/"] {
        let (status, pool) = patch_pool(&lb, pattern, json!({"expose_backend": true})).await;
        assert_eq!((status, &pool["expose_backend"], &pool["allow_trace"]), (200, &json!(true), &json!(false)));
    }
    assert_eq!(forwarded_server(&lb, "/").await, (200, vec![me.clone()]), "lb's, in place of the backend's");
    assert_eq!(forwarded_server(&lb, "/r/").await, (307, vec![me]));

    patch_pool(&lb, "/", json!({"expose_backend": false})).await;
    assert_eq!(forwarded_server(&lb, "/").await, (200, vec![]));
}

#[tokio::test]
async fn a_failed_request_names_the_backend_only_when_exposed() {
    let lb = Lb::in_process();
    let backend = FaultyBackend::start(Fault::Reset).await;
    lb.add_pool("/", json!({"retries": 0})).await;
    lb.add_backend("/", &backend, json!({})).await;
    let (status, servers) = forwarded_server(&lb, "/").await;
    assert_eq!((status, servers), (502, vec![]));
    patch_pool(&lb, "/", json!({"expose_backend": true})).await;
    let (status, servers) = forwarded_server(&lb, "/").await;
    assert_eq!((status, servers), (502, vec![backend.addr.to_string()]));
}

/// Sends raw bytes to lb's data port and returns the whole answer (the request asks lb to
/// close the connection after it).
async fn raw(lb: &Lb, request: &str) -> String {
    let mut conn = tokio::net::TcpStream::connect(lb.data).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(common::DEADLINE, conn.read_to_string(&mut response)).await.unwrap().unwrap();
    response
}

#[tokio::test]
async fn trace_is_refused_unless_the_pool_allows_it() {
    let lb = Lb::in_process();
    let web = SampleWeb::start("a");
    lb.add_pool("/echo", json!({})).await;
    lb.add_backend("/echo", &web, json!({})).await;
    lb.add_pool("/r/", json!({"mode": "redirect", "allow_trace": true})).await;
    lb.add_backend("/r/", &web, json!({})).await;
    lb.add_pool("GET /only-get/", json!({"allow_trace": true})).await;
    let trace = |path: &str| client().request(Method::TRACE, lb.url(path)).send();

    let r = trace("/echo").await.unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers().contains_key("allow"));

    let (status, pool) = patch_pool(&lb, "/echo", json!({"allow_trace": true})).await;
    assert_eq!((status, &pool["allow_trace"]), (200, &json!(true)));
    let r = trace("/echo").await.unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["method"], "TRACE", "{echo}");

    // Redirect mode sends the client to the backend with its method, as for every method.
    let r = trace("/r/x").await.unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["location"], format!("http://{}/r/x", web.addr).as_str());

    // RFC 9110 9.3.8: no content in a TRACE, even where it is allowed.
    for body in ["Content-Length: 5\r\n\r\nhello", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"] {
        let answer = raw(&lb, &format!("TRACE /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{body}")).await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(answer.contains("TRACE with content"), "{answer}");
    }
    let answer = raw(&lb, "TRACE /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");

    // Max-Forwards (RFC 9110 7.6.2): one lower at the backend; at 0, lb is the last hop.
    let r = client().request(Method::TRACE, lb.url("/echo")).header("max-forwards", "3").send().await.unwrap();
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["max-forwards"], json!(["2"]), "{echo}");
    let r = client()
        .request(Method::TRACE, lb.url("/echo?q=1"))
        .header("max-forwards", "0")
        .header("x-seen", "yes")
        .header("cookie", "session=secret")
        .send()
        .await
        .unwrap();
    assert_eq!((r.status().as_u16(), &r.headers()["content-type"]), (200, &"message/http".parse().unwrap()));
    let echoed = r.text().await.unwrap();
    assert!(echoed.starts_with("TRACE /echo?q=1 HTTP/1.1\r\n") && echoed.contains("x-seen: yes\r\n"), "{echoed}");
    assert!(!echoed.contains("secret"), "{echoed}");
    let r = client().request(Method::TRACE, lb.url("/echo")).header("max-forwards", "-1").send().await.unwrap();
    assert_eq!(r.status(), 400);

    // A TRACE no pool takes (a pattern of another method, a trailing-slash redirect, no
    // pattern at all) is lb's 405, as before.
    for path in ["/only-get/", "/r", "/nothing"] {
        let r = trace(path).await.unwrap();
        assert_eq!(r.status(), 405, "{path}");
    }
}

#[tokio::test]
async fn bad_values_are_refused_and_change_nothing() {
    let lb = Lb::in_process();
    lb.add_pool("/", json!({})).await;
    for body in [json!({"expose_backend": "yes"}), json!({"allow_trace": 1}), json!({"allow_trace": [true]})] {
        let (status, answer) = patch_pool(&lb, "/", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains("expected a boolean"), "{body}: {answer}");
    }
    let body = json!({"pattern": "/x", "expose_backend": "true"});
    let r = client().post(lb.admin_url("/v1/pools")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let pools: Value = lb.admin_json("/v1/pools").await;
    assert_eq!(pools.as_array().unwrap().len(), 1);
    assert_eq!((&pools[0]["expose_backend"], &pools[0]["allow_trace"]), (&json!(false), &json!(false)));
}

#[tokio::test]
async fn the_settings_survive_a_restart_and_an_export_and_import() {
    let lb = Lb::start();
    let backend = self_naming_backend().await;
    lb.add_pool("/", json!({"expose_backend": true, "allow_trace": true})).await;
    lb.add_backend("/", &backend, json!({})).await;
    lb.add_pool("/off/", json!({})).await;
    let lb = lb.restart();
    let pool: Value = lb.admin_json("/v1/pool?pattern=/").await;
    assert_eq!((&pool["expose_backend"], &pool["allow_trace"]), (&json!(true), &json!(true)));
    assert_eq!(forwarded_server(&lb, "/").await, (200, vec![backend.addr.to_string()]));

    let state: Value = lb.admin_json("/v1/state").await;
    assert_eq!((&state["pools"][0]["expose_backend"], &state["pools"][0]["allow_trace"]), (&json!(true), &json!(true)));
    assert_eq!(
        (&state["pools"][1]["expose_backend"], &state["pools"][1]["allow_trace"]),
        (&json!(false), &json!(false))
    );
    let fresh = Lb::in_process();
    let r = client().put(fresh.admin_url("/v1/state")).json(&state).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(fresh.admin_json("/v1/state").await, state);

    // A state exported before these settings existed imports with them off.
    let mut old = state.clone();
    for pool in old["pools"].as_array_mut().unwrap() {
        let pool = pool.as_object_mut().unwrap();
        pool.remove("expose_backend");
        pool.remove("allow_trace");
    }
    let r = client().put(fresh.admin_url("/v1/state")).json(&old).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let now: Value = fresh.admin_json("/v1/state").await;
    assert_eq!(now["pools"][0]["expose_backend"], json!(false));
    assert_eq!(now["pools"][0]["allow_trace"], json!(false));
}

/// Copies the store in `from` (a fixture) into `to`.
fn copy_store(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir(to.join(entry.file_name())).unwrap();
            copy_store(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// `tests/fixtures/schema3-store` is a data dir written by lb at commit 14cfac7 (schema 3, pool
/// records at format 2, its manifest and `last-good.json`): the state in
/// `schema3-store.json` imported with `PUT /v1/state`, then lb stopped with SIGTERM.
#[tokio::test]
async fn a_store_of_the_lb_before_these_settings_migrates_with_nothing_lost() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema3-store");
    let dir = Arc::new(tempfile::tempdir().unwrap());
    copy_store(&fixture, dir.path());
    let lb = Lb::start_in(dir.clone());

    let state = std::fs::read(fixture.with_extension("json")).unwrap();
    let mut want: Value = serde_json::from_slice(&state).unwrap();
    for pool in want["pools"].as_array_mut().unwrap() {
        pool["expose_backend"] = json!(false);
        pool["allow_trace"] = json!(false);
    }
    let now: Value = lb.admin_json("/v1/state").await;
    assert_eq!(now, want, "every pool, backend and setting, the new settings off");
    let db_version = {
        let mut lb = lb;
        lb.stop();
        let db = sled::Config::new().path(dir.path()).flush_every_ms(None).open().unwrap();
        lb_migrations::schema_version(&db).unwrap()
    };
    assert_eq!(db_version, lb_migrations::latest());
    // And it opens again, its manifest now that of the migrated store.
    let lb = Lb::start_in(dir);
    assert_eq!(lb.admin_json("/v1/state").await, want);
}

fn lbctl_ok(lb: &Lb, args: &[&str]) -> String {
    let out = lb.lbctl(args);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "lbctl {args:?}: {}{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

// lbctl runs as a blocking child process: the raw backend needs another thread meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lbctl_sets_and_shows_both_with_the_go_tools_command_line() {
    let lb = Lb::in_process();
    let backend = self_naming_backend().await;
    let port = format!("-port={}", backend.addr.port());
    lbctl_ok(&lb, &["-pattern=/", "-expose_backend", "addPool"]);
    lbctl_ok(&lb, &["-pattern=/", "-ip=127.0.0.1", &port, "addBackend"]);
    assert_eq!(forwarded_server(&lb, "/").await, (200, vec![backend.addr.to_string()]));
    assert_eq!(
        lbctl_ok(&lb, &["-pattern=/", "-allow_trace=true", "setPool"]),
        "pool / updated: mode proxy, strategy p2c, TRACE allowed\n"
    );
    assert_eq!(client().request(Method::TRACE, lb.url("/")).send().await.unwrap().status(), 200);
    assert_eq!(
        lbctl_ok(&lb, &["listPools"]),
        "Pattern  Mode   Strategy  Backends  Status   Options\n\
         /        proxy  p2c       1         PS_FULL  expose_backend,allow_trace\n"
    );
    assert_eq!(
        lbctl_ok(&lb, &["--pattern=/", "--expose_backend=false", "setPool"]),
        "pool / updated: mode proxy, strategy p2c, backend not exposed\n"
    );
    assert_eq!(forwarded_server(&lb, "/").await, (200, vec![]));
    let pools: Value = serde_json::from_str(&lbctl_ok(&lb, &["--json", "listPools"])).unwrap();
    assert_eq!((&pools[0]["expose_backend"], &pools[0]["allow_trace"]), (&json!(false), &json!(true)));
}
