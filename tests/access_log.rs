//! The access log and request IDs, through lb processes with real backends: the lines for
//! proxied, redirected, retried and refused requests in both formats, hostile bytes, reopening
//! on SIGHUP, lines dropped when the writer cannot keep up, and the request ID's way from the
//! client to the backend.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use common::raw_backend::Backend;
use common::{client, eventually, Lb, SampleWeb};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// lb logging to `access.log` in its data dir, in `format`, with `extra` flags.
fn lb_logging(format: &str, extra: &[&str]) -> (Lb, PathBuf) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let path = dir.path().join("access.log");
    let mut args = vec!["--access-log", path.to_str().unwrap(), "--access-log-format", format];
    args.extend(extra);
    (Lb::start_with(dir, &args), path)
}

/// The lines of `path` once it holds at least `n`.
async fn lines(path: &Path, n: usize) -> Vec<String> {
    eventually(&format!("{n} lines in {}", path.display()), || async {
        let text = std::fs::read_to_string(path).ok()?;
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        (lines.len() >= n).then_some(lines)
    })
    .await
}

fn parse_json(lines: &[String]) -> Vec<Value> {
    lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

/// A combined line's fields: bare words, `[...]` and `"..."` (with `\xHH` escapes kept).
fn combined_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        let (field, after) = match rest.as_bytes()[0] {
            b'"' => {
                let end = rest[1..].find('"').expect("a closing quote") + 1;
                (&rest[1..end], &rest[end + 1..])
            }
            b'[' => {
                let end = rest.find(']').expect("a closing bracket");
                (&rest[1..end], &rest[end + 1..])
            }
            _ => {
                let end = rest.find(' ').unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        fields.push(field.to_owned());
        rest = after.strip_prefix(' ').unwrap_or(after);
    }
    fields
}

/// Sends raw bytes and returns the raw answer (the request says `Connection: close`).
async fn raw(lb: &Lb, request: &[u8]) -> String {
    let mut conn = tokio::net::TcpStream::connect(lb.data).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(common::DEADLINE, conn.read_to_end(&mut answer)).await.unwrap().unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn json_lines_for_proxied_redirected_and_refused_requests() {
    let (lb, log) = lb_logging("json", &[]);
    let web = SampleWeb::start("A");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &web, json!({})).await;
    lb.add_pool("/r/", json!({"mode": "redirect"})).await;
    lb.add_backend("/r/", &web, json!({})).await;
    lb.add_pool("/empty/", json!({})).await;

    let http = client();
    let r = http.get(lb.url("/hello?x=1")).header("x-request-id", "client-1").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let r = http.get(lb.url("/r/x")).header("user-agent", "ua/1").send().await.unwrap();
    assert_eq!(r.status(), 307);
    let redirect_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let r = http.get(lb.url("/empty/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let r = http.request(reqwest::Method::TRACE, lb.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 405);

    // Workers hand their lines over apart: a line's place in the file is not its request's.
    let entries = parse_json(&lines(&log, 4).await);
    assert_eq!(entries.len(), 4, "{entries:?}");
    let backend = web.addr.to_string();
    let with = |status: u16| entries.iter().find(|e| e["status"] == status).unwrap_or_else(|| panic!("{status}"));
    let (proxied, redirected, unavailable, refused) = (with(200), with(307), with(503), with(405));
    assert_eq!(proxied["method"], "GET");
    assert_eq!(proxied["target"], "/hello?x=1");
    assert_eq!(proxied["protocol"], "HTTP/1.1");
    assert_eq!(proxied["status"], 200);
    assert_eq!(proxied["bytes"], body.len());
    assert_eq!(proxied["client"], "127.0.0.1");
    assert_eq!((&proxied["pool"], &proxied["mode"]), (&json!("/"), &json!("proxy")));
    assert_eq!((&proxied["backend"], &proxied["attempts"]), (&json!(backend), &json!(1)));
    assert_eq!(proxied["request_id"], "client-1");
    assert!(proxied["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(proxied["time"].as_str().unwrap().ends_with('Z'));

    assert_eq!((&redirected["status"], &redirected["mode"]), (&json!(307), &json!("redirect")));
    assert_eq!((&redirected["pool"], &redirected["backend"]), (&json!("/r/"), &json!(backend)));
    assert_eq!((&redirected["user_agent"], &redirected["attempts"]), (&json!("ua/1"), &json!(0)));
    assert_eq!(redirected["request_id"], redirect_id, "the 307 carries the ID lb logged");

    assert_eq!((&unavailable["status"], &unavailable["pool"]), (&json!(503), &json!("/empty/")));
    assert_eq!((&unavailable["backend"], &unavailable["attempts"]), (&Value::Null, &json!(0)));
    assert!(unavailable["bytes"].as_u64().unwrap() > 0);

    assert_eq!((&refused["status"], &refused["method"]), (&json!(405), &json!("TRACE")));
    // A TRACE is refused after routing (a pool may allow it): it is logged with its pool.
    assert_eq!((&refused["pool"], &refused["mode"], &refused["backend"]), (&json!("/"), &json!("proxy"), &Value::Null));
    for entry in &entries {
        assert!(entry["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{entry}");
    }
}

#[tokio::test]
async fn combined_lines_with_lbs_fields_appended() {
    let (lb, log) = lb_logging("combined", &[]);
    let web = SampleWeb::start("A");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &web, json!({})).await;
    lb.add_pool("/empty/", json!({})).await;
    let http = client();
    let r = http.get(lb.url("/a?b=c")).header("referer", "http://r.example/").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert_eq!(http.get(lb.url("/empty/")).send().await.unwrap().status(), 503);

    let mut lines = lines(&log, 2).await;
    // Workers hand their lines over apart: the 200's line may come second.
    lines.sort_by_key(|l| l.contains("\" 503 "));
    let ok = combined_fields(&lines[0]);
    // %h %l %u [%t] "%r" %>s %b "Referer" "User-Agent", then "pool" mode backend attempts
    // duration_ms "request_id".
    assert_eq!(ok.len(), 15, "{ok:?}");
    assert_eq!(&ok[..3], ["127.0.0.1", "-", "-"]);
    assert!(ok[3].ends_with(" +0000") && ok[3].len() == 26, "{}", ok[3]);
    assert_eq!(ok[4], "GET /a?b=c HTTP/1.1");
    assert_eq!(ok[5..7], ["200".to_owned(), body.len().to_string()]);
    assert_eq!(ok[7], "http://r.example/");
    assert_eq!(ok[8], "-", "reqwest sends no User-Agent");
    assert_eq!(ok[9..13], ["/".to_owned(), "proxy".into(), web.addr.to_string(), "1".into()]);
    assert!(ok[13].parse::<f64>().is_ok(), "{}", ok[13]);
    assert!(!ok[14].is_empty() && ok[14] != "-");

    let unavailable = combined_fields(&lines[1]);
    assert_eq!(unavailable[5], "503");
    assert_eq!(unavailable[9..13], ["/empty/", "proxy", "-", "0"]);
}

#[tokio::test]
async fn a_retried_request_logs_two_attempts_and_the_backend_that_answered() {
    let (lb, log) = lb_logging("json", &[]);
    let (_dead, live) = common::dead_and_live(&lb).await;
    // Round robin alternates: one of two requests meets the dead backend first.
    for _ in 0..2 {
        assert_eq!(client().get(lb.url("/")).send().await.unwrap().status(), 200);
    }
    let entries = parse_json(&lines(&log, 2).await);
    let live = json!(live.addr.to_string());
    assert!(entries.iter().all(|e| e["status"] == 200 && e["backend"] == live), "{entries:?}");
    // Each worker keeps its own place in the rotation: at least one request met the dead
    // backend first.
    let attempts: Vec<u64> = entries.iter().map(|e| e["attempts"].as_u64().unwrap()).collect();
    assert!(attempts.contains(&2) && attempts.iter().all(|a| [1, 2].contains(a)), "{attempts:?}");
}

#[tokio::test]
async fn hostile_bytes_stay_inside_their_field() {
    let backend = Backend::answering(&b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"[..]).await;
    for format in ["json", "combined"] {
        let (lb, log) = lb_logging(format, &[]);
        lb.add_pool("/", json!({})).await;
        lb.add_backend("/", &backend, json!({})).await;
        let answer = raw(
            &lb,
            b"GET /a\"b{}?r={}|^ HTTP/1.1\r\nHost: x\r\nUser-Agent: evil\" \\\t\xff\xfe}\r\n\
              Referer: \",\"status\":1} \r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let lines = lines(&log, 1).await;
        assert_eq!(lines.len(), 1, "one line: {lines:?}");
        if format == "json" {
            let entry = &parse_json(&lines)[0];
            assert_eq!(entry["target"], "/a\"b{}?r={}|^");
            assert_eq!(entry["user_agent"], "evil\" \\\t\u{ff}\u{fe}}");
            assert_eq!(entry["referer"], "\",\"status\":1}");
            assert_eq!(entry["status"], 200);
        } else {
            let fields = combined_fields(&lines[0]);
            assert_eq!(fields.len(), 15, "{fields:?}");
            assert_eq!(fields[4], r"GET /a\x22b{}?r={}|^ HTTP/1.1");
            assert_eq!(fields[5], "200");
            assert_eq!(fields[7], r"\x22,\x22status\x22:1}");
            assert_eq!(fields[8], r"evil\x22 \x5c\x09\xff\xfe}");
        }
    }
}

#[tokio::test]
async fn sighup_reopens_the_log_after_a_rename() {
    let (lb, log) = lb_logging("json", &[]);
    let web = SampleWeb::start("A");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &web, json!({})).await;
    let get = |path: &'static str| {
        let url = lb.url(path);
        async move { assert_eq!(client().get(url).send().await.unwrap().status(), 200) }
    };
    get("/before").await;
    lines(&log, 1).await;
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    // Until the HUP, lines go on into the renamed file.
    get("/renamed").await;
    lines(&rotated, 2).await;
    // SAFETY: kill(2) on the lb process this test started.
    unsafe { libc::kill(lb.pid() as i32, libc::SIGHUP) };
    eventually("lb reopened its access log", || async { lb.stderr.text().contains("reopened").then_some(()) }).await;
    get("/after").await;
    let new = parse_json(&lines(&log, 1).await);
    assert_eq!(new[0]["target"], "/after");
    let old = parse_json(&lines(&rotated, 2).await);
    let mut targets: Vec<&str> = old.iter().map(|e| e["target"].as_str().unwrap()).collect();
    targets.sort();
    assert_eq!(targets, ["/before", "/renamed"]);
    // lb kept running through the HUP.
    get("/still").await;
}

#[tokio::test]
async fn lines_are_dropped_and_counted_when_the_writer_cannot_keep_up() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let fifo = dir.path().join("full.fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo and open on a path we own; the descriptor is closed below.
    let reader = unsafe {
        assert_eq!(libc::mkfifo(c_path.as_ptr(), 0o600), 0);
        libc::open(c_path.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK)
    };
    assert!(reader >= 0);
    // Nobody reads the FIFO: once its 64 KiB are full, the writer blocks for good.
    let mut lb = Lb::start_with(dir, &["--access-log", fifo.to_str().unwrap()]);
    let backend = Backend::answering(&b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"[..]).await;
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &backend, json!({})).await;
    // Long lines fill lb's bounded queue (4 MiB) after a few hundred requests.
    let agent = Arc::new("x".repeat(8000));
    let http = client();
    let end = Instant::now() + common::DEADLINE;
    while !lb.stderr.text().contains("dropping lines") {
        assert!(Instant::now() < end, "no lines dropped within {:?}:\n{}", common::DEADLINE, lb.stderr.text());
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let (http, url, agent) = (http.clone(), lb.url("/"), agent.clone());
            requests.spawn(async move { http.get(url).header("user-agent", agent.as_str()).send().await });
        }
        while let Some(r) = requests.join_next().await {
            assert_eq!(r.unwrap().unwrap().status(), 200, "lb keeps answering");
        }
    }
    // The writer is stuck on the FIFO for good: lb still stops, and counts what it dropped.
    lb.stop();
    let stderr = lb.stderr.text();
    let dropped: u64 = stderr
        .lines()
        .filter(|l| l.contains("access log:"))
        .find_map(|l| l.split(" lines dropped").next()?.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("a count of dropped lines:\n{stderr}"));
    assert!(dropped > 0, "{stderr}");
    // SAFETY: the descriptor opened above.
    unsafe { libc::close(reader) };
}

/// The request headers sample-web's `/echo` saw under `name`.
fn echoed(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"][name].as_array().map_or(vec![], |v| v.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
}

#[tokio::test]
async fn request_ids_are_kept_replaced_or_made_and_reach_the_backend() {
    let (lb, log) = lb_logging("json", &[]);
    let web = SampleWeb::start("A");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &web, json!({})).await;
    let echo = |id: Option<&'static str>| {
        let mut r = client().get(lb.url("/echo"));
        if let Some(id) = id {
            r = r.header("x-request-id", id);
        }
        async move {
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let kept = echo(Some("0f8fad5b-d9cb-469f-a165-70867728950e")).await;
    assert_eq!(echoed(&kept, "x-request-id"), ["0f8fad5b-d9cb-469f-a165-70867728950e"]);
    let long = Box::leak("a".repeat(129).into_boxed_str());
    let mut made = Vec::new();
    for invalid in [Some("has spaces"), Some("quote\"d"), Some(""), Some(&*long), None] {
        let seen = echoed(&echo(invalid).await, "x-request-id");
        assert_eq!(seen.len(), 1, "{invalid:?}: {seen:?}");
        assert_ne!(Some(seen[0].as_str()), invalid, "an invalid ID is replaced");
        assert!(seen[0].len() <= 64 && seen[0].bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'), "{seen:?}");
        made.push(seen[0].clone());
    }
    made.sort();
    made.dedup();
    assert_eq!(made.len(), 5, "every made ID is new: {made:?}");

    // Two IDs in one request: neither is forwarded.
    let answer = raw(
        &lb,
        b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Request-Id: one\r\nX-Request-Id: two\r\nConnection: close\r\n\r\n",
    )
    .await;
    let body: Value = serde_json::from_str(&answer[answer.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    let seen = echoed(&body, "x-request-id");
    assert!(seen.len() == 1 && seen[0] != "one" && seen[0] != "two", "{seen:?}");

    // The access log has the IDs the backend saw (in the order workers handed them over).
    let entries = parse_json(&lines(&log, 7).await);
    let mut logged: Vec<String> = entries.iter().map(|e| e["request_id"].as_str().unwrap().to_owned()).collect();
    let mut expected = made.clone();
    expected.extend(["0f8fad5b-d9cb-469f-a165-70867728950e".to_owned(), seen[0].clone()]);
    logged.sort();
    expected.sort();
    assert_eq!(logged, expected);
}

#[tokio::test]
async fn the_request_id_header_can_be_renamed() {
    let (lb, log) = lb_logging("json", &["--request-id-header", "X-Trace-Id"]);
    let web = SampleWeb::start("A");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &web, json!({})).await;
    lb.add_pool("/r/", json!({"mode": "redirect"})).await;
    lb.add_backend("/r/", &web, json!({})).await;
    let r = client().get(lb.url("/echo")).header("x-trace-id", "trace-7").header("x-request-id", "a b").send();
    let echo: Value = r.await.unwrap().json().await.unwrap();
    assert_eq!(echoed(&echo, "x-trace-id"), ["trace-7"]);
    assert_eq!(echoed(&echo, "x-request-id"), ["a b"], "another header now, passed on as any other");
    let r = client().get(lb.url("/r/")).send().await.unwrap();
    assert_eq!(r.status(), 307);
    let made = r.headers()["x-trace-id"].to_str().unwrap().to_owned();
    assert!(r.headers().get("x-request-id").is_none());
    let entries = parse_json(&lines(&log, 2).await);
    let mut logged: Vec<&str> = entries.iter().map(|e| e["request_id"].as_str().unwrap()).collect();
    logged.sort();
    let mut expected = ["trace-7", made.as_str()];
    expected.sort();
    assert_eq!(logged, expected);
}

#[tokio::test]
async fn request_id_off_leaves_the_header_alone() {
    let (lb, log) = lb_logging("json", &["--request-id", "off"]);
    let web = SampleWeb::start("A");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &web, json!({})).await;
    let echo: Value = client().get(lb.url("/echo")).send().await.unwrap().json().await.unwrap();
    assert_eq!(echoed(&echo, "x-request-id"), Vec::<String>::new());
    let r = client().get(lb.url("/echo")).header("x-request-id", "a b").send().await.unwrap();
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echoed(&echo, "x-request-id"), ["a b"]);
    let entries = parse_json(&lines(&log, 2).await);
    assert!(entries.iter().all(|e| e["request_id"].is_null()), "{entries:?}");
}

/// `--request-id auto` (the default) makes IDs only with the access log on; `on` without it.
#[tokio::test]
async fn without_the_access_log_ids_are_made_only_when_asked() {
    let web = SampleWeb::start("A");
    for (args, made) in [(&[][..], false), (&["--request-id", "on"][..], true)] {
        let lb = Lb::start_with(Arc::new(tempfile::tempdir().unwrap()), args);
        lb.add_pool("/", json!({})).await;
        lb.add_backend("/", &web, json!({})).await;
        let echo: Value = client().get(lb.url("/echo")).send().await.unwrap().json().await.unwrap();
        assert_eq!(echoed(&echo, "x-request-id").len(), usize::from(made), "{args:?}: {echo}");
    }
}

#[test]
fn bad_flags_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/access.log");
    let error = common::process::refused(common::lb_command(dir.path()).arg("--access-log").arg(&missing));
    assert!(error.contains("cannot open access log"), "{error}");
    for (flag, value) in
        [("--request-id-header", "bad name"), ("--request-id-header", "Host"), ("--access-log-format", "xml")]
    {
        let out = common::lb_command(dir.path()).args([flag, value]).output().unwrap();
        assert!(!out.status.success(), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
}
