//! Runs one checked request against the admin API and renders the answer: lb's JSON as is
//! with `--json`, otherwise a short sentence or a table for a person.

use lb_api::lenient::{BackendJson, HealthCheckSpec, HealthJson, PoolJson};
use lb_api::{BackendChange, NewBackend};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    admin::{address, Admin, NewPool, PoolSettings},
    args::{Invocation, Request},
    error::Error,
    table::table,
    units::{format_bytes, format_millis},
};

/// Returns what to print on stdout, newline-terminated. Sentences name the pool as the user
/// typed it and take the rest (mode, backend address) from lb's answer, which has the defaults
/// lb applied.
pub async fn run(invocation: Invocation) -> Result<String, Error> {
    let admin = Admin::new(&invocation.lb, invocation.token.as_deref())?;
    let json = invocation.json;
    match &invocation.request {
        Request::ListPools => render(json, admin.list_pools().await?, pools_table),
        Request::AddPool { pattern, settings } => {
            let pool = NewPool { pattern: pattern.clone(), settings: settings.clone() };
            render(json, admin.add_pool(&pool).await?, |pool: PoolJson| {
                format!("added pool {pattern} (mode {})\n", pool.mode.unwrap_or_default())
            })
        }
        Request::RemovePool { pattern } => {
            render(json, admin.remove_pool(pattern).await?, |_: PoolJson| format!("removed pool {pattern}\n"))
        }
        Request::SetMode { pattern, mode } => {
            let settings = PoolSettings { mode: Some(*mode), ..PoolSettings::default() };
            let reply = admin.update_pool(pattern, &settings).await?;
            render(json, reply, |pool: PoolJson| {
                format!("pool {pattern} is now in {} mode\n", pool.mode.unwrap_or_default())
            })
        }
        Request::SetPool { pattern, settings } => {
            let reply = admin.update_pool(pattern, settings).await?;
            render(json, reply, |pool: PoolJson| match pool_summary(&pool, settings) {
                summary if summary.is_empty() => format!("pool {pattern} updated\n"),
                summary => format!("pool {pattern} updated: {summary}\n"),
            })
        }
        Request::SetHealth { pattern, health_check } => {
            let settings = PoolSettings { health_check: Some(health_check.clone()), ..PoolSettings::default() };
            let reply = admin.update_pool(pattern, &settings).await?;
            render(json, reply, |pool: PoolJson| match health_summary(&pool.health_check.unwrap_or_default()) {
                summary if summary.is_empty() => {
                    format!("pool {pattern} health check updated\n")
                }
                summary => format!("pool {pattern} health check: {summary}\n"),
            })
        }
        Request::Stats { pattern, watch: None } => crate::stats::once(&admin, pattern.as_deref()).await,
        Request::Stats { pattern, watch: Some(watch) } => {
            let interval = std::time::Duration::from_millis(watch.interval_ms);
            crate::stats::watch(&admin, pattern.as_deref(), interval, watch.count).await
        }
        Request::PoolHealth { pattern } => render(json, admin.pool_health(pattern).await?, health_tables),
        Request::AddBackend { pattern, ip, port, url_path, weight } => {
            let backend = NewBackend { ip: ip.clone(), port: *port, url_path: Some(url_path.clone()), weight: *weight };
            let reply = admin.add_backend(pattern, &backend).await?;
            render(json, reply, |backend: BackendJson| {
                format!("added backend {} to pool {pattern}\n", address(&backend))
            })
        }
        Request::RemoveBackend { pattern, ip, port } => {
            let reply = admin.remove_backend(pattern, ip, *port).await?;
            render(json, reply, |backend: BackendJson| {
                format!("removed backend {} from pool {pattern}\n", address(&backend))
            })
        }
        Request::SetDraining { pattern, ip, port, draining } => {
            let change = BackendChange { draining: Some(*draining), ..BackendChange::default() };
            let reply = admin.update_backend(pattern, ip, *port, &change).await?;
            // lb's 2xx says the change was made, whether or not its answer repeats the field.
            render(json, reply, |backend: BackendJson| {
                let state = if backend.draining.unwrap_or(*draining) { "is draining" } else { "is back in rotation" };
                format!("backend {} of pool {pattern} {state}\n", address(&backend))
            })
        }
        Request::SetWeight { pattern, ip, port, weight } => {
            let change = BackendChange { weight: Some(*weight), ..BackendChange::default() };
            let reply = admin.update_backend(pattern, ip, *port, &change).await?;
            render(json, reply, |backend: BackendJson| {
                format!(
                    "backend {} of pool {pattern} now has weight {}\n",
                    address(&backend),
                    backend.weight.unwrap_or(*weight)
                )
            })
        }
        // The state as JSON whatever --json says: it is what import reads.
        Request::Export => {
            let state = admin.export().await?;
            serde_json::from_value::<lb_api::StateJson>(state.clone())
                .map_err(|err| Error::Failed(format!("unexpected answer from lb admin: {err}")))?;
            Ok(format!("{state:#}\n"))
        }
        Request::Import { file } => {
            let shown = file.display();
            let text = std::fs::read(file).map_err(|e| Error::Failed(format!("cannot read {shown}: {e}")))?;
            let state: Value =
                serde_json::from_slice(&text).map_err(|e| Error::Failed(format!("{shown} is not JSON: {e}")))?;
            render(json, admin.import(&state).await?, |done: Imported| {
                format!("imported {shown}: lb now has {} pools and {} backends\n", done.pools, done.backends)
            })
        }
        // main prints these as generated, without this function; lb is not asked either way.
        Request::Completions { .. } | Request::Man => {
            let text = crate::docs::generate(&invocation.request).unwrap_or_default();
            Ok(String::from_utf8_lossy(&text).into_owned())
        }
    }
}

/// lb's answer to an import.
#[derive(serde::Deserialize)]
struct Imported {
    pools: u64,
    backends: u64,
}

impl Answer for Imported {
    fn is_lbs(&self) -> bool {
        true
    }
}

/// One of lb's answers, recognisable by the fields every lb has sent: the lenient twins take
/// any JSON object (every field is optional, so that older and newer lbs work), and a `200`
/// from something else on that port must not pass for lb's "done".
trait Answer: DeserializeOwned {
    fn is_lbs(&self) -> bool;
}

impl Answer for PoolJson {
    fn is_lbs(&self) -> bool {
        self.pattern.is_some() && self.backends.as_ref().is_some_and(|b| b.iter().all(Answer::is_lbs))
    }
}

impl Answer for BackendJson {
    fn is_lbs(&self) -> bool {
        self.address.is_some() || (self.ip.is_some() && self.port.is_some())
    }
}

impl Answer for HealthJson {
    fn is_lbs(&self) -> bool {
        self.pattern.is_some()
            && self.status.is_some()
            && self.backends.as_ref().is_some_and(|b| b.iter().all(Answer::is_lbs))
    }
}

impl Answer for Vec<PoolJson> {
    fn is_lbs(&self) -> bool {
        self.iter().all(Answer::is_lbs)
    }
}

/// Checks that `reply` is lb's answer, then prints it pretty with `--json`, or decoded as `T`
/// and worded by `human`.
fn render<T: Answer>(json: bool, reply: Value, human: impl FnOnce(T) -> String) -> Result<String, Error> {
    let not_lbs =
        |why: String| Error::Failed(format!("the answer is not lb's ({why}): is --lb the admin API of an lb?"));
    let decoded: T = serde_json::from_value(reply.clone()).map_err(|err| not_lbs(err.to_string()))?;
    if !decoded.is_lbs() {
        return Err(not_lbs("fields lb always sends are missing".into()));
    }
    if json {
        return Ok(format!("{reply:#}\n"));
    }
    Ok(human(decoded))
}

/// The Go tool's columns, then `Options`: the switches a pool has on (`expose_backend`,
/// `allow_trace`), `-` for none, last so that the Go tool's columns keep their places.
fn pools_table(pools: Vec<PoolJson>) -> String {
    let header = ["Pattern", "Mode", "Strategy", "Backends", "Status", "Options"].map(String::from);
    let rows = pools.into_iter().map(|pool| {
        let backends = pool.backends.map_or(0, |backends| backends.len()).to_string();
        let on = [("expose_backend", pool.expose_backend), ("allow_trace", pool.allow_trace)];
        let on: Vec<&str> = on.iter().filter(|(_, on)| *on == Some(true)).map(|(name, _)| *name).collect();
        let options = if on.is_empty() { "-".to_owned() } else { on.join(",") };
        let [pattern, mode, strategy, status] =
            [pool.pattern, pool.mode, pool.strategy, pool.status].map(Option::unwrap_or_default);
        [pattern, mode, strategy, backends, status, options]
    });
    table(&std::iter::once(header).chain(rows).collect::<Vec<_>>())
}

/// The pool's status, then one row per backend (just the header when it has none).
fn health_tables(health: HealthJson) -> String {
    let text = |field: &Option<String>| field.as_deref().unwrap_or_default().to_owned();
    let pool = table(&[["Pool", "Status"], [&text(&health.pattern), &text(&health.status)]]);
    let header = ["Backend", "Status"].map(String::from);
    let backends = health.backends.unwrap_or_default();
    let rows = backends.iter().map(|backend| [text(&backend.address), text(&backend.status)]);
    let backends = table(&std::iter::once(header).chain(rows).collect::<Vec<_>>());
    pool + &backends
}

/// What `setPool` reports, from lb's answer: mode and strategy always (they say how the pool
/// behaves), the hash key when it matters, then each setting the user changed. A setting lb
/// did not send back is left out rather than guessed.
fn pool_summary(pool: &PoolJson, sent: &PoolSettings) -> String {
    let mut parts = Vec::new();
    let mode = pool.mode.as_deref().unwrap_or_default();
    let strategy = pool.strategy.as_deref().unwrap_or_default();
    if !mode.is_empty() {
        parts.push(format!("mode {mode}"));
    }
    if !strategy.is_empty() {
        parts.push(format!("strategy {strategy}"));
    }
    if strategy == "consistent_hash" || sent.hash_key.is_some() {
        parts.extend(pool.hash_key.as_ref().map(|key| format!("hash key {key}")));
    }
    if sent.retries.is_some() {
        parts.extend(pool.retries.map(|retries| format!("retries {retries}")));
    }
    if sent.retry_on_5xx.is_some() {
        parts.extend(pool.retry_on_5xx.map(|on| if on { "retry on 5xx" } else { "no retry on 5xx" }.to_owned()));
    }
    if sent.retry_body_limit.is_some() {
        parts.extend(pool.retry_body_limit.map(|limit| format!("retry body limit {}", format_bytes(limit))));
    }
    if sent.expose_backend.is_some() {
        let shown = |on| if on { "backend exposed in X-Forwarded-Server" } else { "backend not exposed" };
        parts.extend(pool.expose_backend.map(|on| shown(on).to_owned()));
    }
    if sent.allow_trace.is_some() {
        parts.extend(pool.allow_trace.map(|on| if on { "TRACE allowed" } else { "TRACE refused" }.to_owned()));
    }
    let sent_timeouts = sent.timeouts.clone().unwrap_or_default();
    let timeouts = pool.timeouts.clone().unwrap_or_default();
    for (name, sent, answered) in [
        ("connect", sent_timeouts.connect_ms, timeouts.connect_ms),
        ("response", sent_timeouts.response_ms, timeouts.response_ms),
        ("idle", sent_timeouts.idle_ms, timeouts.idle_ms),
    ] {
        if sent.is_some() {
            parts.extend(answered.map(|ms| format!("{name} timeout {}", format_millis(ms))));
        }
    }
    parts.join(", ")
}

/// `GET /healthz every 2s, timeout 1s, fall 3, rise 2, evict after 30`, leaving out whatever
/// lb did not send; `expecting 204` follows the path when the check wants one status.
fn health_summary(check: &HealthCheckSpec) -> String {
    let mut head = Vec::new();
    head.extend(check.path.as_ref().map(|path| format!("GET {path}")));
    head.extend(check.expected_status.map(|status| format!("expecting {status}")));
    head.extend(check.interval_ms.map(|ms| format!("every {}", format_millis(ms))));
    let mut parts = Vec::new();
    if !head.is_empty() {
        parts.push(head.join(" "));
    }
    parts.extend(check.timeout_ms.map(|ms| format!("timeout {}", format_millis(ms))));
    parts.extend(check.fall.map(|fall| format!("fall {fall}")));
    parts.extend(check.rise.map(|rise| format!("rise {rise}")));
    parts.extend(check.evict_after.map(|evict_after| match evict_after {
        0 => "never evicted".to_owned(),
        n => format!("evict after {n}"),
    }));
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_renders_two_tables() {
        let health = serde_json::from_str(
            r#"{"pattern": "/", "status": "PS_FULL",
                "backends": [{"address": "127.0.0.1:8082", "status": "BS_HEALTHY"}]}"#,
        )
        .unwrap();
        assert_eq!(
            health_tables(health),
            "Pool  Status\n/     PS_FULL\nBackend         Status\n127.0.0.1:8082  BS_HEALTHY\n"
        );
    }

    #[test]
    fn health_without_backends_keeps_the_backend_header() {
        let health = serde_json::from_str(r#"{"pattern": "/x/", "status": "PS_UNAVAILABLE"}"#);
        assert_eq!(health_tables(health.unwrap()), "Pool  Status\n/x/   PS_UNAVAILABLE\nBackend  Status\n");
    }

    #[test]
    fn pools_table_counts_backends() {
        let pools = serde_json::from_str(
            r#"[{"pattern": "/", "mode": "proxy", "strategy": "p2c", "status": "PS_FULL",
                 "backends": [{"address": "a:1"}, {"address": "b:2"}]}]"#,
        )
        .unwrap();
        assert_eq!(
            pools_table(pools),
            "Pattern  Mode   Strategy  Backends  Status   Options\n/        proxy  p2c       2         PS_FULL  -\n"
        );
        let pools = serde_json::from_str(
            r#"[{"pattern": "/a", "status": "PS_EMPTY", "backends": [], "expose_backend": true, "allow_trace": true},
                {"pattern": "/b", "status": "PS_EMPTY", "backends": [], "expose_backend": false, "allow_trace": true}]"#,
        )
        .unwrap();
        assert_eq!(
            pools_table(pools),
            "Pattern  Mode  Strategy  Backends  Status    Options\n\
             /a                       0         PS_EMPTY  expose_backend,allow_trace\n\
             /b                       0         PS_EMPTY  allow_trace\n"
        );
    }

    #[test]
    fn json_output_is_lbs_answer_pretty() {
        let reply = serde_json::json!({"pattern": "/", "backends": []});
        let out = render(true, reply, |_: PoolJson| unreachable!()).unwrap();
        assert_eq!(out, "{\n  \"backends\": [],\n  \"pattern\": \"/\"\n}\n");
    }

    #[test]
    fn an_answer_that_is_not_lbs_is_an_error_with_json_too() {
        use serde_json::json;
        for json in [false, true] {
            for reply in [
                json!({}),
                json!({"status": "ok"}),
                json!({"pattern": "/"}),
                json!({"pattern": "/", "backends": [{"weight": 1}]}),
                json!([1, 2]),
                json!("ok"),
            ] {
                let err = render(json, reply.clone(), |_: PoolJson| String::new()).unwrap_err();
                assert!(err.to_string().starts_with("the answer is not lb's"), "{reply}: {err}");
            }
            let err = render(json, json!([{"mode": "proxy"}]), |_: Vec<PoolJson>| String::new()).unwrap_err();
            assert!(err.to_string().starts_with("the answer is not lb's"), "{err}");
            let err = render(json, json!({"pattern": "/", "backends": []}), |_: HealthJson| String::new()).unwrap_err();
            assert!(err.to_string().starts_with("the answer is not lb's"), "{err}");
            assert!(render(json, json!({"status": "BS_HEALTHY"}), |_: BackendJson| String::new()).is_err());
        }
    }

    fn check(json: &str) -> HealthCheckSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn health_summary_reads_like_the_config() {
        let full = check(
            r#"{"path": "/healthz", "healthy_values": ["ok", "OK"], "expected_status": null,
                "interval_ms": 2000, "timeout_ms": 1000, "fall": 3, "rise": 2, "evict_after": 30}"#,
        );
        assert_eq!(health_summary(&full), "GET /healthz every 2s, timeout 1s, fall 3, rise 2, evict after 30");
        let never = check(
            r#"{"path": "/", "expected_status": 204, "interval_ms": 90000, "timeout_ms": 500,
                "fall": 1, "rise": 1, "evict_after": 0}"#,
        );
        assert_eq!(
            health_summary(&never),
            "GET / expecting 204 every 1m30s, timeout 500ms, fall 1, rise 1, never evicted"
        );
        assert_eq!(health_summary(&check(r#"{"fall": 2}"#)), "fall 2");
        assert_eq!(health_summary(&check("{}")), "");
    }

    fn pool(json: &str) -> PoolJson {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn pool_summary_names_mode_strategy_and_what_changed() {
        let answer = pool(
            r#"{"mode": "proxy", "strategy": "least_conn", "hash_key": "client_ip",
                "retries": 2, "retry_on_5xx": true, "retry_body_limit": 65536,
                "timeouts": {"connect_ms": 3000, "response_ms": 60000, "idle_ms": 90000}}"#,
        );
        let retries = PoolSettings { retries: Some(2), ..PoolSettings::default() };
        assert_eq!(pool_summary(&answer, &retries), "mode proxy, strategy least_conn, retries 2");
        let everything = PoolSettings {
            hash_key: Some("client_ip".into()),
            retry_on_5xx: Some(true),
            retry_body_limit: Some(65536),
            timeouts: Some(lb_api::TimeoutsChange {
                connect_ms: Some(3000),
                response_ms: Some(60000),
                idle_ms: Some(90000),
            }),
            ..retries
        };
        assert_eq!(
            pool_summary(&answer, &everything),
            "mode proxy, strategy least_conn, hash key client_ip, retries 2, retry on 5xx, \
             retry body limit 64KiB, connect timeout 3s, response timeout 1m, idle timeout 1m30s"
        );
        let switches = PoolSettings { expose_backend: Some(true), allow_trace: Some(false), ..PoolSettings::default() };
        let answer = pool(r#"{"mode": "proxy", "strategy": "p2c", "expose_backend": true, "allow_trace": false}"#);
        assert_eq!(
            pool_summary(&answer, &switches),
            "mode proxy, strategy p2c, backend exposed in X-Forwarded-Server, TRACE refused"
        );
    }

    #[test]
    fn pool_summary_shows_the_hash_key_of_consistent_hash_and_skips_what_lb_left_out() {
        let answer = pool(r#"{"mode": "proxy", "strategy": "consistent_hash", "hash_key": "header:X-User"}"#);
        let strategy_and_retries = PoolSettings { retries: Some(1), ..PoolSettings::default() };
        assert_eq!(
            pool_summary(&answer, &strategy_and_retries),
            "mode proxy, strategy consistent_hash, hash key header:X-User"
        );
    }
}
