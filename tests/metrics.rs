//! `GET /metrics`: every series against traffic the tests send through a real lb, to real
//! sample-web and raw backends.

mod common;

use std::io::Write as _;
use std::net::SocketAddr;

use common::{client, eventually, Fault, FaultyBackend, Lb, SampleWeb};
use serde_json::json;

/// Prometheus text as lb serves it by default.
async fn scrape(lb: &Lb) -> String {
    let r = client().get(lb.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    r.text().await.unwrap()
}

/// The value of one series (`name{labels}` exactly as encoded), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The value of one series, which must be present.
fn must(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// Waits until `series` has `want`, and returns the scrape that showed it.
async fn until(lb: &Lb, series: &str, want: f64) -> String {
    eventually(&format!("{series} = {want}"), || async {
        let text = scrape(lb).await;
        (value(&text, series) == Some(want)).then_some(text)
    })
    .await
}

/// The series of histogram `name` with `labels` (`pool="/",mode="proxy"`): its buckets must be
/// cumulative, end at `+Inf` with `_count`, and bracket `_sum`. Returns `_count`.
fn checked_histogram(text: &str, name: &str, labels: &str) -> u64 {
    let prefix = format!("{name}_bucket{{{labels},le=\"");
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (le, n) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
            Some((le, n.parse().unwrap()))
        })
        .collect();
    assert_eq!(buckets.len(), 16, "{name}{{{labels}}}: 15 bounds and +Inf in:\n{text}");
    assert_eq!(buckets[0].0, 0.00025);
    assert_eq!(buckets[14].0, 10.0);
    let count = must(text, &format!("{name}_count{{{labels}}}"));
    let sum = must(text, &format!("{name}_sum{{{labels}}}"));
    assert_eq!(buckets[15], (f64::INFINITY, count));
    // Each observation in a bucket lies between the bucket's bounds.
    let (mut low, mut high, mut previous) = (0.0, 0.0, (0.0, 0.0));
    for &(le, cumulative) in &buckets {
        assert!(cumulative >= previous.1, "{name}: buckets must be cumulative: {buckets:?}");
        let n = cumulative - previous.1;
        if n > 0.0 {
            low += n * previous.0;
            high += n * le;
        }
        previous = (le, cumulative);
    }
    assert!(low <= sum && sum <= high, "{name}: sum {sum} outside [{low}, {high}] of {buckets:?}");
    count as u64
}

fn series_naming<'t>(text: &'t str, needle: &str) -> Vec<&'t str> {
    text.lines().filter(|l| !l.starts_with('#') && l.contains(needle)).collect()
}

#[tokio::test]
async fn proxied_requests_are_counted_exactly_with_their_durations() {
    let lb = Lb::in_process();
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &a, json!({})).await;
    lb.add_backend("/", &b, json!({})).await;
    for _ in 0..7 {
        assert_eq!(client().get(lb.url("/")).send().await.unwrap().status(), 200);
    }
    for _ in 0..2 {
        assert_eq!(client().get(lb.url("/status/404")).send().await.unwrap().status(), 404);
    }
    // A TRACE the pool does not allow: lb's 405, counted in the pool it was routed to.
    assert_eq!(client().request(reqwest::Method::TRACE, lb.url("/")).send().await.unwrap().status(), 405);
    // lb's own answer before any pool (a lowercase method is refused before routing): `pool=""`.
    let lowercase = reqwest::Method::from_bytes(b"get").unwrap();
    assert_eq!(client().request(lowercase, lb.url("/")).send().await.unwrap().status(), 400);

    let text = scrape(&lb).await;
    assert_eq!(must(&text, r#"lb_requests_total{pool="/",mode="proxy",code_class="2xx"}"#), 7.0);
    assert_eq!(must(&text, r#"lb_requests_total{pool="/",mode="proxy",code_class="4xx"}"#), 3.0);
    assert_eq!(must(&text, r#"lb_requests_total{pool="/",mode="proxy",code_class="5xx"}"#), 0.0);
    assert_eq!(must(&text, r#"lb_requests_total{pool="",mode="",code_class="4xx"}"#), 1.0);
    assert_eq!(checked_histogram(&text, "lb_request_duration_seconds", r#"pool="/",mode="proxy""#), 10);
    assert_eq!(checked_histogram(&text, "lb_request_duration_seconds", r#"pool="",mode="""#), 1);

    let per_backend = |class: &str| {
        [a.addr, b.addr].map(|addr| {
            must(&text, &format!(r#"lb_backend_requests_total{{pool="/",backend="{addr}",code_class="{class}"}}"#))
        })
    };
    assert_eq!(per_backend("2xx").iter().sum::<f64>(), 7.0);
    assert_eq!(per_backend("4xx").iter().sum::<f64>(), 2.0);
    let responses: u64 = [a.addr, b.addr]
        .iter()
        .map(|addr| {
            checked_histogram(&text, "lb_backend_response_duration_seconds", &format!(r#"pool="/",backend="{addr}""#))
        })
        .sum();
    assert_eq!(responses, 9);

    // What the control plane knows, at scrape time.
    for addr in [a.addr, b.addr] {
        let labels = format!(r#"pool="/",backend="{addr}""#);
        assert_eq!(must(&text, &format!("lb_backend_up{{{labels}}}")), 1.0);
        assert_eq!(must(&text, &format!("lb_backend_weight{{{labels}}}")), 1.0);
        assert_eq!(must(&text, &format!("lb_backend_inflight{{{labels}}}")), 0.0);
        assert_eq!(must(&text, &format!(r#"lb_backend_status{{{labels},status="BS_HEALTHY"}}"#)), 1.0);
        assert_eq!(must(&text, &format!(r#"lb_backend_status{{{labels},status="BS_SICK"}}"#)), 0.0);
    }
    assert_eq!(must(&text, r#"lb_admin_changes_total{kind="add_pool"}"#), 1.0);
    assert_eq!(must(&text, r#"lb_admin_changes_total{kind="add_backend"}"#), 2.0);
    assert_eq!(checked_store_writes(&text), 3, "one pool and two backends written");
    assert_eq!(must(&text, &format!(r#"lb_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION"))), 1.0);
    assert!(must(&text, "process_resident_memory_bytes") > 0.0);
    assert!(must(&text, "process_open_fds") > 0.0);
    assert!(value(&text, "process_cpu_seconds_total").is_some());
}

/// `lb_store_write_seconds`, which has prometheus-client's own buckets: its count.
fn checked_store_writes(text: &str) -> u64 {
    let count = must(text, "lb_store_write_seconds_count");
    assert_eq!(must(text, r#"lb_store_write_seconds_bucket{le="+Inf"}"#), count);
    count as u64
}

#[tokio::test]
async fn redirected_clients_are_counted_per_backend() {
    let lb = Lb::in_process();
    let a = SampleWeb::start("a");
    lb.add_pool("/r/", json!({"mode": "redirect"})).await;
    lb.add_backend("/r/", &a, json!({})).await;
    for _ in 0..5 {
        assert_eq!(client().get(lb.url("/r/x")).send().await.unwrap().status(), 307);
    }
    let text = scrape(&lb).await;
    assert_eq!(must(&text, r#"lb_requests_total{pool="/r/",mode="redirect",code_class="3xx"}"#), 5.0);
    let backend = format!(r#"lb_backend_requests_total{{pool="/r/",backend="{}",code_class="3xx"}}"#, a.addr);
    assert_eq!(must(&text, &backend), 5.0);
    assert_eq!(checked_histogram(&text, "lb_request_duration_seconds", r#"pool="/r/",mode="redirect""#), 5);
    // Nothing was proxied: no response was waited for.
    let labels = format!(r#"pool="/r/",backend="{}""#, a.addr);
    assert_eq!(checked_histogram(&text, "lb_backend_response_duration_seconds", &labels), 0);
    assert!(series_naming(&text, r#"mode="proxy""#).is_empty(), "a redirect pool has no proxy series");
}

#[tokio::test]
async fn a_retry_is_counted_with_its_reason_and_each_attempt_with_its_backend() {
    let lb = Lb::in_process();
    let faulty = FaultyBackend::start(Fault::Reset).await;
    let good = SampleWeb::start("good");
    lb.add_pool("/", json!({"retries": 1, "strategy": "round_robin"})).await;
    lb.add_backend("/", &faulty, json!({})).await;
    lb.add_backend("/", &good, json!({})).await;
    for _ in 0..4 {
        assert_eq!(client().get(lb.url("/")).send().await.unwrap().status(), 200);
    }
    let resets = faulty.requests() as f64;
    assert!(resets >= 1.0, "round robin sends the faulty backend some requests");
    let text = scrape(&lb).await;
    assert_eq!(must(&text, r#"lb_retries_total{pool="/",reason="before_response"}"#), resets);
    assert_eq!(must(&text, r#"lb_retries_total{pool="/",reason="connect"}"#), 0.0);
    assert_eq!(must(&text, r#"lb_retry_budget_exhausted_total{pool="/"}"#), 0.0);
    assert_eq!(must(&text, r#"lb_requests_total{pool="/",mode="proxy",code_class="2xx"}"#), 4.0);
    let at = |addr: SocketAddr, class: &str| {
        must(&text, &format!(r#"lb_backend_requests_total{{pool="/",backend="{addr}",code_class="{class}"}}"#))
    };
    assert_eq!(at(faulty.addr, "5xx"), resets, "an attempt without a response counts as lb's 502");
    assert_eq!(at(good.addr, "2xx"), 4.0);
    // Only the answered attempts have a time to response headers.
    let faulty_labels = format!(r#"pool="/",backend="{}""#, faulty.addr);
    assert_eq!(checked_histogram(&text, "lb_backend_response_duration_seconds", &faulty_labels), 0);
}

#[tokio::test]
async fn every_due_retry_is_made_or_refused_by_the_budget() {
    let lb = Lb::in_process();
    let (r1, r2) = (FaultyBackend::start(Fault::Reset).await, FaultyBackend::start(Fault::Reset).await);
    // Sick backends would stop getting requests: no passive health here.
    lb.add_pool("/", json!({"retries": 1, "health_check": {"fall": 1000, "evict_after": 0, "interval_ms": 3_600_000}}))
        .await;
    lb.add_backend("/", &r1, json!({})).await;
    lb.add_backend("/", &r2, json!({})).await;
    // The budget allows 20% of the requests of the last 10 s plus 10 per second of that window:
    // 0.2 * 300 + 100 = 160 retries for 300 requests sent within 10 s.
    let http = client();
    let sent = 300;
    let answers = futures_join(sent, || http.get(lb.url("/")).send()).await;
    assert!(answers.iter().all(|r| r.as_ref().unwrap().status() == 502));
    let text = scrape(&lb).await;
    let retried = must(&text, r#"lb_retries_total{pool="/",reason="before_response"}"#);
    let refused = must(&text, r#"lb_retry_budget_exhausted_total{pool="/"}"#);
    assert_eq!(retried + refused, sent as f64, "each request was due one retry");
    assert!(refused > 0.0, "the budget ran out ({retried} retried)");
    assert_eq!((r1.requests() + r2.requests()) as f64, sent as f64 + retried);
}

/// Runs `n` requests at once.
async fn futures_join<F, Fut>(n: usize, mut request: F) -> Vec<reqwest::Result<reqwest::Response>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(request())).collect();
    let mut answers = Vec::with_capacity(n);
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test]
async fn a_pool_without_backends_answers_503_and_counts_it() {
    let lb = Lb::in_process();
    lb.add_pool("/", json!({})).await;
    for _ in 0..3 {
        assert_eq!(client().get(lb.url("/")).send().await.unwrap().status(), 503);
    }
    let text = scrape(&lb).await;
    assert_eq!(must(&text, r#"lb_no_backend_total{pool="/"}"#), 3.0);
    assert_eq!(must(&text, r#"lb_requests_total{pool="/",mode="proxy",code_class="5xx"}"#), 3.0);
}

#[tokio::test]
async fn health_checks_transitions_and_evictions_are_counted() {
    let lb = Lb::in_process();
    let a = SampleWeb::start("a");
    let hc = json!({"interval_ms": 100, "timeout_ms": 100, "fall": 1, "rise": 1, "evict_after": 0});
    lb.add_pool("/", json!({ "health_check": hc })).await;
    lb.add_backend("/", &a, json!({})).await;
    let labels = format!(r#"pool="/",backend="{}""#, a.addr);
    eventually("a check passed", || async {
        (value(&scrape(&lb).await, &format!(r#"lb_health_checks_total{{{labels},result="pass"}}"#))? >= 1.0)
            .then_some(())
    })
    .await;

    client().post(format!("http://{}/control/sick", a.addr)).send().await.unwrap();
    let text = until(&lb, &format!(r#"lb_health_transitions_total{{{labels},to="BS_SICK"}}"#), 1.0).await;
    assert!(must(&text, &format!(r#"lb_health_checks_total{{{labels},result="fail"}}"#)) >= 1.0);
    assert_eq!(must(&text, &format!(r#"lb_health_transitions_total{{{labels},to="BS_HEALTHY"}}"#)), 0.0);
    assert_eq!(must(&text, &format!("lb_backend_up{{{labels}}}")), 0.0);
    assert_eq!(must(&text, &format!(r#"lb_backend_status{{{labels},status="BS_SICK"}}"#)), 1.0);
    assert_eq!(must(&text, &format!(r#"lb_backend_status{{{labels},status="BS_HEALTHY"}}"#)), 0.0);

    client().post(format!("http://{}/control/healthy", a.addr)).send().await.unwrap();
    let text = until(&lb, &format!(r#"lb_health_transitions_total{{{labels},to="BS_HEALTHY"}}"#), 1.0).await;
    assert_eq!(must(&text, &format!(r#"lb_health_transitions_total{{{labels},to="BS_SICK"}}"#)), 1.0);

    // A backend gone for evict_after checks is evicted: counted, and its series go.
    let mut gone = SampleWeb::start("gone");
    let hc = json!({"interval_ms": 100, "timeout_ms": 100, "fall": 1, "evict_after": 3});
    lb.add_pool("/e/", json!({ "health_check": hc })).await;
    lb.add_backend("/e/", &gone, json!({})).await;
    let text = scrape(&lb).await;
    assert_eq!(must(&text, r#"lb_backend_evictions_total{pool="/e/"}"#), 0.0);
    assert!(!series_naming(&text, &format!(r#"backend="{}""#, gone.addr)).is_empty());
    gone.kill();
    let text = until(&lb, r#"lb_backend_evictions_total{pool="/e/"}"#, 1.0).await;
    assert_eq!(series_naming(&text, &format!(r#"backend="{}""#, gone.addr)), Vec::<&str>::new());
    // An eviction is no admin's change.
    assert_eq!(value(&text, r#"lb_admin_changes_total{kind="remove_backend"}"#), None);
}

#[tokio::test]
async fn series_of_removed_backends_and_pools_disappear_and_start_again_when_re_added() {
    let lb = Lb::in_process();
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    lb.add_pool("/x/", json!({})).await;
    lb.add_backend("/x/", &a, json!({})).await;
    lb.add_backend("/x/", &b, json!({})).await;
    for _ in 0..4 {
        assert_eq!(client().get(lb.url("/x/")).send().await.unwrap().status(), 200);
    }
    let text = scrape(&lb).await;
    assert!(!series_naming(&text, &format!(r#"backend="{}""#, b.addr)).is_empty());

    lb.remove_backend("/x/", b.addr).await;
    let text = scrape(&lb).await;
    assert_eq!(series_naming(&text, &format!(r#"backend="{}""#, b.addr)), Vec::<&str>::new());
    assert!(!series_naming(&text, &format!(r#"backend="{}""#, a.addr)).is_empty());
    assert_eq!(must(&text, r#"lb_requests_total{pool="/x/",mode="proxy",code_class="2xx"}"#), 4.0);
    assert_eq!(must(&text, r#"lb_admin_changes_total{kind="remove_backend"}"#), 1.0);

    let r = client().delete(lb.admin_url("/v1/pool")).query(&[("pattern", "/x/")]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = scrape(&lb).await;
    assert_eq!(series_naming(&text, r#"pool="/x/""#), Vec::<&str>::new());

    lb.add_pool("/x/", json!({})).await;
    lb.add_backend("/x/", &b, json!({})).await;
    let text = scrape(&lb).await;
    assert_eq!(must(&text, r#"lb_requests_total{pool="/x/",mode="proxy",code_class="2xx"}"#), 0.0);
    let backend = format!(r#"lb_backend_requests_total{{pool="/x/",backend="{}",code_class="2xx"}}"#, b.addr);
    assert_eq!(must(&text, &backend), 0.0);
    assert_eq!(series_naming(&text, &format!(r#"backend="{}""#, a.addr)), Vec::<&str>::new());
}

#[tokio::test]
async fn a_mode_change_keeps_the_old_mode_s_series_and_counts_in_the_new() {
    let lb = Lb::in_process();
    let a = SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &a, json!({})).await;
    assert_eq!(client().get(lb.url("/")).send().await.unwrap().status(), 200);
    let r = client().patch(lb.admin_url("/v1/pool")).query(&[("pattern", "/")]).json(&json!({"mode": "redirect"}));
    assert_eq!(r.send().await.unwrap().status(), 200);
    assert_eq!(client().get(lb.url("/")).send().await.unwrap().status(), 307);
    let text = scrape(&lb).await;
    assert_eq!(must(&text, r#"lb_requests_total{pool="/",mode="proxy",code_class="2xx"}"#), 1.0);
    assert_eq!(must(&text, r#"lb_requests_total{pool="/",mode="redirect",code_class="3xx"}"#), 1.0);
    assert_eq!(must(&text, r#"lb_admin_changes_total{kind="update_pool"}"#), 1.0);
}

#[tokio::test]
async fn label_values_are_escaped() {
    let lb = Lb::in_process();
    let pattern = r#"/a"b\c/"#;
    lb.add_pool(pattern, json!({})).await;
    let text = scrape(&lb).await;
    assert_eq!(must(&text, r#"lb_no_backend_total{pool="/a\"b\\c/"}"#), 0.0);
    let om = client()
        .get(lb.admin_url("/metrics"))
        .header("accept", "application/openmetrics-text")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(must(&om, r#"lb_no_backend_total{pool="/a\"b\\c/"}"#), 0.0);
}

#[tokio::test]
async fn openmetrics_when_asked_prometheus_text_otherwise() {
    let lb = Lb::in_process();
    lb.add_pool("/", json!({})).await;
    let text = scrape(&lb).await;
    assert!(text.contains("# TYPE lb_requests_total counter\n"), "{text}");
    assert!(text.contains("# TYPE lb_build_info gauge\n"), "{text}");
    assert!(text.contains("# TYPE lb_request_duration_seconds histogram\n"), "{text}");
    assert!(!text.contains("# EOF"), "{text}");
    assert!(!text.contains("# UNIT"), "{text}");

    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let r = client().get(lb.admin_url("/metrics")).header("accept", accept).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/openmetrics-text; version=1.0.0; charset=utf-8");
    let om = r.text().await.unwrap();
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE lb_requests counter\n"), "{om}");
    assert!(om.contains("# TYPE lb_build info\n"), "{om}");
    assert_eq!(must(&om, r#"lb_requests_total{pool="/",mode="proxy",code_class="2xx"}"#), 0.0);
    assert_eq!(om.matches("# EOF").count(), 1);
}

#[tokio::test]
async fn metrics_sit_behind_the_admin_token() {
    const TOKEN: &str = "metrics-token-for-tests-0123456789";
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "{TOKEN}").unwrap();
    let lb = Lb::in_process_with(&["--admin-token-file", file.path().to_str().unwrap()]).unwrap();
    let url = lb.admin_url("/metrics");
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
    assert_eq!(client().get(&url).bearer_auth("wrong-token-wrong-token-wrong").send().await.unwrap().status(), 401);
    let r = client().get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("lb_build_info"));
}

#[tokio::test]
async fn data_connections_are_counted_open_and_in_all() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let lb = Lb::in_process();
    lb.add_pool("/", json!({})).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = tokio::net::TcpStream::connect(lb.data).await.unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0; 12];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 503");
        held.push(conn);
    }
    let text = until(&lb, r#"lb_connections_open{listener="data"}"#, 3.0).await;
    assert_eq!(must(&text, r#"lb_connections_total{listener="data"}"#), 3.0);
    drop(held);
    let text = until(&lb, r#"lb_connections_open{listener="data"}"#, 0.0).await;
    assert_eq!(must(&text, r#"lb_connections_total{listener="data"}"#), 3.0);

    // The admin listener's: each scrape above came on a connection of its own (a new
    // client each time), and this one's is open while it is answered.
    let before = must(&text, r#"lb_connections_total{listener="admin"}"#);
    assert!(before >= 3.0, "{text}");
    let text = scrape(&lb).await;
    assert!(must(&text, r#"lb_connections_total{listener="admin"}"#) > before);
    assert!(must(&text, r#"lb_connections_open{listener="admin"}"#) >= 1.0);
}

#[tokio::test]
async fn with_metrics_off_nothing_is_counted_and_gauges_still_show() {
    let lb = Lb::in_process_with(&["--metrics", "off"]).unwrap();
    let a = SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &a, json!({})).await;
    for _ in 0..3 {
        assert_eq!(client().get(lb.url("/")).send().await.unwrap().status(), 200);
    }
    let text = scrape(&lb).await;
    assert_eq!(must(&text, r#"lb_requests_total{pool="/",mode="proxy",code_class="2xx"}"#), 0.0);
    assert_eq!(checked_histogram(&text, "lb_request_duration_seconds", r#"pool="/",mode="proxy""#), 0);
    assert_eq!(must(&text, &format!(r#"lb_backend_up{{pool="/",backend="{}"}}"#, a.addr)), 1.0);
    assert_eq!(
        Lb::in_process_with(&["--metrics", "maybe"]).err().map(|e| e.contains("neither on nor off")),
        Some(true)
    );
}
