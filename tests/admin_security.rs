//! The admin plane lets in no one who does not belong: the token, loopback-only without one, and
//! the protections against browsers (content type, `Origin`, `Host`) and oversized bodies.

mod common;

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use common::process::{bin, wait_exit};
use common::{client, Lb, DEADLINE};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "s3cret-token-for-tests-0123456789";

/// Sends `request` as raw bytes to `addr` and returns the status and the body (as JSON, or
/// `Null`), with the whole head for header checks.
async fn raw(addr: SocketAddr, request: &str) -> (u16, Value, String) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, conn.read_to_end(&mut answer)).await.expect("lb answers in time").unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, serde_json::from_str(body).unwrap_or(Value::Null), head.to_owned())
}

/// Asserts an error answer: the status and an `{"error": ...}` body containing `says`.
fn assert_error(status: u16, body: &Value, want: u16, says: &str) {
    assert_eq!(status, want, "{body}");
    let msg = body["error"].as_str().unwrap_or_else(|| panic!("no error message in {body}"));
    assert!(msg.contains(says), "{msg:?} does not say {says:?}");
}

async fn pool_count(lb: &Lb) -> usize {
    lb.admin_json("/v1/pools").await.as_array().unwrap().len()
}

#[tokio::test]
async fn a_cross_site_form_post_is_refused() {
    let lb = Lb::in_process();
    let admin = lb.admin;
    let body = r#"{"pattern": "/"}"#;
    // What any web page can make a browser send, without asking: a "simple" cross-site POST.
    let post = |origin: &str, content_type: &str| {
        format!(
            "POST /v1/pools HTTP/1.1\r\nHost: {admin}\r\n{origin}Content-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let (status, answer, _) = raw(admin, &post("Origin: http://evil.example\r\n", "text/plain")).await;
    assert_error(status, &answer, 403, "origin \"http://evil.example\"");
    // Either protection alone refuses it.
    let (status, answer, _) = raw(admin, &post("", "text/plain")).await;
    assert_error(status, &answer, 415, "application/json");
    let (status, answer, _) = raw(admin, &post("", "application/x-www-form-urlencoded")).await;
    assert_error(status, &answer, 415, "application/json");
    let (status, answer, _) = raw(admin, &post("Origin: http://evil.example\r\n", "application/json")).await;
    assert_error(status, &answer, 403, "origin");
    let (status, answer, _) = raw(admin, &post("Origin: null\r\n", "application/json")).await;
    assert_error(status, &answer, 403, "origin");
    assert_eq!(pool_count(&lb).await, 0, "nothing got in");

    // The admin's own origin, with JSON, is a write like any other.
    let own = format!("Origin: http://{admin}\r\n");
    let (status, _, _) = raw(admin, &post(&own, "application/json; charset=utf-8")).await;
    assert_eq!(status, 201);
    assert_eq!(pool_count(&lb).await, 1);
}

#[tokio::test]
async fn a_delete_needs_no_content_type_but_may_not_claim_another() {
    let lb = Lb::in_process();
    lb.add_pool("/", serde_json::json!({})).await;
    lb.add_pool("/b/", serde_json::json!({})).await;
    let delete = |pattern: &str, content_type: &str| {
        format!(
            "DELETE /v1/pool?pattern={pattern} HTTP/1.1\r\nHost: {}\r\n{content_type}Connection: close\r\n\r\n",
            lb.admin
        )
    };
    let (status, answer, _) = raw(lb.admin, &delete("/", "Content-Type: text/plain\r\n")).await;
    assert_error(status, &answer, 415, "application/json");
    assert_eq!(pool_count(&lb).await, 2);
    let (status, _, _) = raw(lb.admin, &delete("/", "")).await;
    assert_eq!(status, 200, "a DELETE without a body needs no Content-Type");
    let (status, _, _) = raw(lb.admin, &delete("/b/", "Content-Type: application/json\r\n")).await;
    assert_eq!(status, 200);
    assert_eq!(pool_count(&lb).await, 0);
}

#[tokio::test]
async fn only_the_admins_own_host_is_answered() {
    let lb = Lb::in_process();
    let port = lb.admin.port();
    let get = |host: &str| format!("GET /v1/pools HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    // DNS rebinding: the attacker's name now resolves to 127.0.0.1.
    let (status, answer, _) = raw(lb.admin, &get(&format!("rebound.example:{port}"))).await;
    assert_error(status, &answer, 421, "rebound.example");
    let (status, answer, _) = raw(lb.admin, &get("127.0.0.1:1")).await;
    assert_error(status, &answer, 421, "host");
    let (status, answer, _) = raw(lb.admin, "GET /v1/pools HTTP/1.0\r\nConnection: close\r\n\r\n").await;
    assert_error(status, &answer, 421, "Host");
    for host in [lb.admin.to_string(), format!("localhost:{port}"), format!("LocalHost:{port}")] {
        assert_eq!(raw(lb.admin, &get(&host)).await.0, 200, "{host}");
    }

    let named = Lb::in_process_with(&["--admin-host", "lb-admin.internal"]).unwrap();
    let port = named.admin.port();
    for host in ["lb-admin.internal".to_owned(), format!("lb-admin.internal:{port}")] {
        assert_eq!(raw(named.admin, &get(&host)).await.0, 200, "{host}");
    }
    assert_eq!(raw(named.admin, &get("other.internal")).await.0, 421);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_before_it_is_read() {
    let lb = Lb::in_process();
    // Only the head: were lb waiting for the 100 kB it announces, the answer would never come.
    let head = format!(
        "POST /v1/pools HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
        lb.admin
    );
    let mut conn = tokio::net::TcpStream::connect(lb.admin).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(DEADLINE, conn.read(&mut buf)).await.expect("an answer without the body").unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#"{"error":"request body over 64 KiB"}"#), "{answer}");
}

#[tokio::test]
async fn a_non_loopback_admin_without_a_token_does_not_start() {
    // In-process: refused before anything is bound.
    let refused = Lb::in_process_with(&["--admin", "0.0.0.0:0"]).err().expect("refused");
    assert!(refused.contains("--admin 0.0.0.0:0 is not a loopback address"), "{refused}");
    assert!(Lb::in_process_with(&["--admin", "[::]:0"]).is_err());

    // As a process: one line, exit 1.
    let dir = tempfile::tempdir().unwrap();
    let mut lb = Command::new(bin("lb"))
        .args(["--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("LB_ADMIN_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut lb);
    let output = lb.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("lb: error: --admin 0.0.0.0:0 is not a loopback address"), "{stderr}");
    assert!(output.stdout.is_empty(), "it never listened");

    // With a token it may: any IP literal with its port is its host.
    let token = token_file();
    let open = Lb::in_process_with(&["--admin", "0.0.0.0:0", "--admin-token-file", path(&token)]).unwrap();
    let local = SocketAddr::from(([127, 0, 0, 1], open.admin.port()));
    let r = client().get(format!("http://{local}/v1/pools")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

fn token_file() -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "{TOKEN}").unwrap();
    file
}

fn path(file: &tempfile::NamedTempFile) -> &str {
    file.path().to_str().unwrap()
}

#[tokio::test]
async fn a_token_protected_lb_answers_401_without_it() {
    let token = token_file();
    let lb = Lb::start_with(Arc::new(tempfile::tempdir().unwrap()), &["--admin-token-file", path(&token)]);
    let url = lb.admin_url("/v1/pools");

    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("bearer token"), "{body}");
    for wrong in ["wrong", &TOKEN[1..], &format!("{TOKEN}x")] {
        assert_eq!(client().get(&url).bearer_auth(wrong).send().await.unwrap().status(), 401, "{wrong}");
    }
    let basic = client().get(&url).header("authorization", format!("Basic {TOKEN}")).send().await.unwrap();
    assert_eq!(basic.status(), 401);
    // A write without the token is refused before its content is looked at.
    let r = client().post(&url).body("x").send().await.unwrap();
    assert_eq!(r.status(), 401);

    assert_eq!(client().get(&url).bearer_auth(TOKEN).send().await.unwrap().status(), 200);
    let r = client().get(&url).header("authorization", format!("bearer {TOKEN}")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the scheme is case-insensitive");
    // lb's own health needs no token.
    assert_eq!(common::get(&lb.admin_url("/healthz")).await, (200, "ok".to_owned()));

    // Each refusal is logged with the client's address, never with what it sent.
    common::eventually("the refusals logged", || async {
        let log = lb.stderr.text();
        (log.matches("refused: a wrong token").count() >= 4 && log.contains("refused: no token")).then_some(())
    })
    .await;
    let log = lb.stderr.text();
    assert!(log.contains("admin: GET /v1/pools from 127.0.0.1:"), "{log}");
    assert!(!log.contains(&TOKEN[1..]), "a token in the log:\n{log}");
}

#[tokio::test]
async fn tokens_come_from_a_file_or_lb_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: Option<&str>| {
        let mut cmd = Command::new(bin("lb"));
        cmd.args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--data-dir"]).arg(dir.path()).args(args);
        match env {
            Some(token) => cmd.env("LB_ADMIN_TOKEN", token),
            None => cmd.env_remove("LB_ADMIN_TOKEN"),
        };
        let output = cmd.output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (code, stderr) = run(&[], Some("short"));
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with("lb: error: the admin token must be at least 16 characters (in LB_ADMIN_TOKEN)"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--admin-token-file", "/nonexistent/token"], None);
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("lb: error: cannot read admin token file /nonexistent/token"), "{stderr}");
    let token = token_file();
    let (code, stderr) = run(&["--admin-token-file", path(&token)], Some(TOKEN));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not both"), "{stderr}");

    // The token from the environment works as the file's does.
    let mut cmd = common::lb_command(dir.path());
    cmd.env("LB_ADMIN_TOKEN", TOKEN);
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let admin = loop {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0, "lb ended");
        if let Some(addr) = common::process::addr_after(&line, "admin listening on ") {
            break addr;
        }
    };
    let url = format!("http://{admin}/v1/pools");
    assert_eq!(client().get(&url).send().await.unwrap().status(), 401);
    assert_eq!(client().get(&url).bearer_auth(TOKEN).send().await.unwrap().status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn healthz_is_open_to_monitors_under_any_name() {
    let token = token_file();
    let lb = Lb::in_process_with(&["--admin-token-file", path(&token)]).unwrap();
    let (status, _, head) =
        raw(lb.admin, "GET /healthz HTTP/1.1\r\nHost: monitor.example\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 200, "{head}");
    let (status, _, _) =
        raw(lb.admin, "GET /v1/pools HTTP/1.1\r\nHost: monitor.example\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 421);
}

#[tokio::test]
async fn lbctl_works_with_the_token_and_says_why_without_it() {
    let token = token_file();
    let lb = Lb::in_process_with(&["--admin-token-file", path(&token)]).unwrap();
    let without = lb.lbctl(&["listPools"]);
    let stderr = String::from_utf8_lossy(&without.stderr);
    assert_eq!(without.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr, "lbctl: error: this admin API needs a bearer token (lbctl --token) (401)\n");
    let wrong = lb.lbctl(&["--token=not-the-token-at-all", "listPools"]);
    assert_eq!(wrong.status.code(), Some(1));

    let added = lb.lbctl(&["--token", TOKEN, "--pattern=/", "addPool"]);
    assert_eq!(added.status.code(), Some(0), "{}", String::from_utf8_lossy(&added.stderr));
    let listed = lb.lbctl(&["--token-file", path(&token), "listPools"]);
    assert_eq!(listed.status.code(), Some(0), "{}", String::from_utf8_lossy(&listed.stderr));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("\n/  "), "{listed:?}");
    let from_env = Command::new(bin("lbctl"))
        .arg(format!("--lb={}", lb.admin))
        .args(["--pattern=/", "removePool"])
        .env("LB_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(from_env.status.code(), Some(0), "{}", String::from_utf8_lossy(&from_env.stderr));
    assert_eq!(pool_count_with(&lb, TOKEN).await, 0);
}

async fn pool_count_with(lb: &Lb, token: &str) -> usize {
    let r = client().get(lb.admin_url("/v1/pools")).bearer_auth(token).send().await.unwrap();
    r.json::<Value>().await.unwrap().as_array().unwrap().len()
}

#[tokio::test]
async fn a_unix_socket_admin_is_private_and_serves_lbctl() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let mut cmd = common::lb_command(&dir.path().join("data"));
    cmd.arg("--admin").arg(format!("unix:{}", socket.display())).env_remove("LB_ADMIN_TOKEN");
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    common::process::Lines::collect(child.stdout.take().unwrap(), Some(tx));
    let stderr = common::process::Lines::collect(child.stderr.take().unwrap(), None);
    let announced = common::process::wait_line(&rx, "the admin listening line", |l| {
        l.strip_prefix("admin listening on ").map(str::to_owned)
    });
    assert_eq!(announced, format!("unix:{}", socket.display()));
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);

    let lb = format!("--lb=unix:{}", socket.display());
    let lbctl = |args: &[&str]| Command::new(bin("lbctl")).arg(&lb).args(args).env_remove("LB_TOKEN").output().unwrap();
    let added = lbctl(&["--pattern=/", "addPool"]);
    assert_eq!(added.status.code(), Some(0), "{}", String::from_utf8_lossy(&added.stderr));
    let listed = lbctl(&["listPools"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("\n/  "), "{listed:?}");

    // No web page is its own: an Origin is still refused.
    let mut conn = tokio::net::UnixStream::connect(&socket).await.unwrap();
    conn.write_all(
        b"GET /v1/pools HTTP/1.1\r\nHost: localhost\r\nOrigin: http://evil.example\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(DEADLINE, conn.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");

    common::process::signal(&child, libc::SIGTERM);
    assert!(wait_exit(&mut child).success(), "{}", stderr.text());
    assert!(!socket.exists(), "the socket is removed at exit");
}

#[tokio::test]
async fn a_token_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let token = token_file();
    let private = Lb::start_with(Arc::new(tempfile::tempdir().unwrap()), &["--admin-token-file", path(&token)]);
    std::fs::set_permissions(token.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = Lb::start_with(Arc::new(tempfile::tempdir().unwrap()), &["--admin-token-file", path(&token)]);
    common::eventually("the warning", || async { open.stderr.text().contains("readable by others").then_some(()) })
        .await;
    assert!(open.stderr.text().contains("(mode 644): chmod 600 it"), "{}", open.stderr.text());
    // Both started: the lines before the listening lines are all there by now.
    assert!(!private.stderr.text().contains("readable by others"), "{}", private.stderr.text());
}
