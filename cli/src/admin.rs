//! lb's admin API: one method per endpoint, answering the raw JSON so `--json` can print it as
//! lb sent it, plus the lenient shapes the human output decodes from it.
//!
//! Patterns travel in the `pattern` query parameter, percent-encoded, because they contain `/`.
//! The query is built with `Url` rather than reqwest's `query` feature to keep the workspace's
//! reqwest features as they are.

use std::time::Duration;

use lb_api::{Mode, Strategy};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;

/// Admin calls are small; a server silent this long is stuck, and a script should hear so.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A client for one lb's admin API.
pub struct Admin {
    client: reqwest::Client,
    /// `host:port` as the user gave it (without `http://`), for error messages.
    addr: String,
    base: Url,
}

/// Body of `POST /v1/pools`: the pattern and whatever settings the user gave.
#[derive(Serialize)]
pub struct NewPool<'a> {
    pub pattern: &'a str,
    #[serde(flatten)]
    pub settings: &'a PoolSettings,
}

/// Pool settings as the user gave them: with a pattern the body of `POST /v1/pools`, alone the
/// body of `PATCH /v1/pool`. Unset ones are left out, so lb applies its defaults on creation and
/// keeps the current value on update.
#[derive(Serialize, Debug, Default, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_on_5xx: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_body_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
}

/// A pool's backend timeouts in milliseconds. Every field is optional both ways: lbctl sends
/// only those the user gave (lb updates them one by one) and reads whichever lb sent.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(default)]
pub struct Timeouts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_ms: Option<u64>,
}

/// A pool's health check, optional field by field both ways like [`Timeouts`].
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(default)]
pub struct HealthCheck {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_values: Option<Vec<String>>,
    /// lb answers `null` for "any 2xx"; lbctl never sends `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fall: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rise: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evict_after: Option<u32>,
}

/// Body of `POST /v1/pool/backends`.
#[derive(Serialize)]
pub struct NewBackend<'a> {
    pub ip: &'a str,
    pub port: u16,
    pub url_path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// Body of `PATCH /v1/pool/backends`: only what changes.
#[derive(Serialize, Debug, Default)]
pub struct BackendChange {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draining: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// A pool as lb reports it. Only what lbctl shows; unknown fields are ignored and missing ones
/// default (or stay `None`, so a sentence can leave them out), so other lb versions keep working.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct Pool {
    pub pattern: String,
    pub mode: String,
    pub strategy: String,
    pub hash_key: Option<String>,
    pub retries: Option<u32>,
    pub retry_on_5xx: Option<bool>,
    pub retry_body_limit: Option<u64>,
    pub timeouts: Option<Timeouts>,
    pub health_check: Option<HealthCheck>,
    pub status: String,
    pub backends: Vec<Backend>,
}

/// A backend as lb reports it (lenient like [`Pool`]).
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct Backend {
    pub ip: String,
    pub port: u16,
    pub address: String,
    pub weight: Option<u32>,
    pub draining: Option<bool>,
}

impl Backend {
    /// `ip:port` as lb spells it, rebuilt if an lb did not send `address`.
    pub fn address(&self) -> String {
        if self.address.is_empty() {
            format!("{}:{}", self.ip, self.port)
        } else {
            self.address.clone()
        }
    }
}

/// Answer of `GET /v1/pool/health` (lenient like [`Pool`]). Backends carry more (weight,
/// draining, counters, last error); `--json` shows those, the tables keep to status.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct PoolHealth {
    pub pattern: String,
    pub status: String,
    pub backends: Vec<BackendHealth>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct BackendHealth {
    pub address: String,
    pub status: String,
}

impl Admin {
    /// Accepts `host:port` with or without `http://`, as the Go tool's users wrote it.
    pub fn new(lb: &str) -> Result<Admin, Error> {
        let addr = lb.strip_prefix("http://").unwrap_or(lb).trim_end_matches('/');
        let base = Url::parse(&format!("http://{addr}"))
            .ok()
            .filter(|_| !addr.is_empty() && !addr.contains('/'))
            .ok_or_else(|| Error::Usage(format!("--lb wants HOST:PORT, optionally after http://, not {lb:?}")))?;
        // The admin API is local infrastructure: an HTTP_PROXY meant for the internet must not
        // reroute it.
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|err| Error::Failed(format!("cannot build an HTTP client: {err}")))?;
        Ok(Admin { client, addr: addr.to_owned(), base })
    }

    pub async fn list_pools(&self) -> Result<Value, Error> {
        self.send(self.request(Method::GET, "/v1/pools", &[])).await
    }

    pub async fn add_pool(&self, pool: &NewPool<'_>) -> Result<Value, Error> {
        let request = self.request(Method::POST, "/v1/pools", &[]);
        self.send(request.json(pool)).await
    }

    pub async fn remove_pool(&self, pattern: &str) -> Result<Value, Error> {
        let request = self.request(Method::DELETE, "/v1/pool", &[("pattern", pattern)]);
        self.send(request).await
    }

    pub async fn update_pool(&self, pattern: &str, settings: &PoolSettings) -> Result<Value, Error> {
        let request = self.request(Method::PATCH, "/v1/pool", &[("pattern", pattern)]);
        self.send(request.json(settings)).await
    }

    pub async fn pool_health(&self, pattern: &str) -> Result<Value, Error> {
        let request = self.request(Method::GET, "/v1/pool/health", &[("pattern", pattern)]);
        self.send(request).await
    }

    pub async fn add_backend(&self, pattern: &str, backend: &NewBackend<'_>) -> Result<Value, Error> {
        let request = self.request(Method::POST, "/v1/pool/backends", &[("pattern", pattern)]);
        self.send(request.json(backend)).await
    }

    pub async fn remove_backend(&self, pattern: &str, ip: &str, port: u16) -> Result<Value, Error> {
        let port = port.to_string();
        let query = [("pattern", pattern), ("ip", ip), ("port", &port)];
        self.send(self.request(Method::DELETE, "/v1/pool/backends", &query)).await
    }

    pub async fn update_backend(
        &self,
        pattern: &str,
        ip: &str,
        port: u16,
        change: &BackendChange,
    ) -> Result<Value, Error> {
        let port = port.to_string();
        let query = [("pattern", pattern), ("ip", ip), ("port", &port)];
        let request = self.request(Method::PATCH, "/v1/pool/backends", &query);
        self.send(request.json(change)).await
    }

    /// Builds `base + path + ?query`, percent-encoding the query (patterns hold `/`).
    fn request(&self, method: Method, path: &str, query: &[(&str, &str)]) -> RequestBuilder {
        let mut url = self.base.clone();
        url.set_path(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        self.client.request(method, url)
    }

    /// Sends the request and returns the JSON of a 2xx answer; anything else becomes an
    /// [`Error::Failed`] worded for the user.
    async fn send(&self, request: RequestBuilder) -> Result<Value, Error> {
        let response = request.send().await.map_err(|err| self.failed(&err))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|err| self.failed(&err))?;
        if !status.is_success() {
            return Err(Error::Failed(refusal(status, &body)));
        }
        serde_json::from_slice(&body)
            .map_err(|err| Error::Failed(format!("lb admin at {} answered invalid JSON: {err}", self.addr)))
    }

    fn failed(&self, err: &reqwest::Error) -> Error {
        let addr = &self.addr;
        Error::Failed(if err.is_timeout() {
            format!("lb admin at {addr} did not answer within {}s", TIMEOUT.as_secs())
        } else if err.is_connect() {
            format!("cannot reach lb admin at {addr}: {}", root_cause(err))
        } else {
            format!("talking to lb admin at {addr}: {}", root_cause(err))
        })
    }
}

/// lb explains refusals as `{"error": "..."}`; anything else (a proxy's HTML page, another
/// service on that port) is summarized by its status so the user sees they hit the wrong thing.
fn refusal(status: StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(body) => format!("{} ({})", body.error, status.as_u16()),
        Err(_) => format!("lb admin answered {status} without an error message"),
    }
}

/// reqwest wraps what happened in layers ("error sending request" > connect > io); the innermost
/// one says it best. OS errors lose their "(os error N)" suffix and start lowercase, so the
/// line reads "cannot reach lb admin at ...: connection refused".
fn root_cause(err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let mut message = cause.to_string();
    if let Some(code) = cause.downcast_ref::<std::io::Error>().and_then(std::io::Error::raw_os_error) {
        message = message.replace(&format!(" (os error {code})"), "");
    }
    match message.chars().next() {
        Some(first) if first.is_ascii_uppercase() => first.to_ascii_lowercase().to_string() + &message[1..],
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lb_accepts_host_port_with_or_without_http() {
        for lb in ["127.0.0.1:8081", "http://127.0.0.1:8081", "http://127.0.0.1:8081/"] {
            let admin = Admin::new(lb).unwrap();
            assert_eq!(admin.base.as_str(), "http://127.0.0.1:8081/");
            assert_eq!(admin.addr, "127.0.0.1:8081");
        }
    }

    #[test]
    fn lb_rejects_other_schemes_and_paths() {
        for lb in ["https://127.0.0.1:8081", "127.0.0.1:8081/admin", "", "a b:1"] {
            assert!(matches!(Admin::new(lb), Err(Error::Usage(_))), "{lb:?}");
        }
    }

    #[test]
    fn refusals_quote_lb_and_the_status() {
        let body = br#"{"error": "pool \"/\" already exists"}"#;
        assert_eq!(refusal(StatusCode::CONFLICT, body), r#"pool "/" already exists (409)"#);
        assert_eq!(
            refusal(StatusCode::BAD_GATEWAY, b"<html>"),
            "lb admin answered 502 Bad Gateway without an error message"
        );
    }

    #[test]
    fn pools_decode_leniently() {
        let pool: Pool = serde_json::from_str(
            r#"{"pattern": "/", "mode": "proxy", "future_field": 1,
                "backends": [{"ip": "10.0.0.1", "port": 80}]}"#,
        )
        .unwrap();
        assert_eq!(pool.pattern, "/");
        assert_eq!(pool.strategy, "");
        assert_eq!(pool.backends[0].address(), "10.0.0.1:80");
        assert_eq!(pool.health_check, None);
    }

    #[test]
    fn pools_decode_the_new_settings_and_nulls() {
        let pool: Pool = serde_json::from_str(
            r#"{"pattern": "/", "strategy": "consistent_hash", "hash_key": "header:X-User",
                "retries": 2, "retry_on_5xx": false, "retry_body_limit": 65536,
                "timeouts": {"connect_ms": 3000, "response_ms": 60000, "idle_ms": 90000},
                "health_check": {"path": "/healthz", "healthy_values": ["ok"],
                                 "expected_status": null, "interval_ms": 10000, "later": 1},
                "backends": [{"address": "a:1", "weight": 3, "draining": true,
                              "last_check_ms": null, "last_error": null}]}"#,
        )
        .unwrap();
        assert_eq!(pool.hash_key.as_deref(), Some("header:X-User"));
        assert_eq!(pool.retry_on_5xx, Some(false));
        assert_eq!(pool.timeouts.unwrap().idle_ms, Some(90_000));
        let check = pool.health_check.unwrap();
        assert_eq!(check.expected_status, None);
        assert_eq!(check.interval_ms, Some(10_000));
        assert_eq!(check.fall, None);
        assert_eq!(pool.backends[0].draining, Some(true));
        assert_eq!(pool.backends[0].weight, Some(3));
    }

    #[test]
    fn only_given_settings_are_sent() {
        let settings = PoolSettings {
            strategy: Some(Strategy::LeastConn),
            timeouts: Some(Timeouts { idle_ms: Some(0), ..Timeouts::default() }),
            health_check: Some(HealthCheck { fall: Some(3), ..HealthCheck::default() }),
            ..PoolSettings::default()
        };
        let body = serde_json::to_value(NewPool { pattern: "/", settings: &settings }).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"pattern": "/", "strategy": "least_conn",
                               "timeouts": {"idle_ms": 0}, "health_check": {"fall": 3}})
        );
        assert_eq!(serde_json::to_value(BackendChange::default()).unwrap(), serde_json::json!({}));
    }
}
