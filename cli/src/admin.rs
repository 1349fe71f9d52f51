//! lb's admin API: one method per endpoint, answering the raw JSON so `--json` can print it as
//! lb sent it. The bodies and query parameters are lb-api's, the same types lb reads; the
//! human output decodes the answers into lb-api's lenient twins of lb's responses.
//!
//! Patterns travel in the `pattern` query parameter, percent-encoded, because they contain `/`.

use std::time::Duration;

use lb_api::{BackendChange, BackendQuery, ErrorJson, NewBackend, PatternQuery};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::Serialize;
use serde_json::Value;

use crate::error::Error;

/// Admin calls are small; a server silent this long is stuck, and a script should hear so.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The most `/metrics` lbctl reads: lb's for thousands of backends fit many times over.
const METRICS_LIMIT: usize = 64 << 20;

/// A client for one lb's admin API.
pub struct Admin {
    client: reqwest::Client,
    /// `host:port` as the user gave it (without `http://`), for error messages.
    addr: String,
    base: Url,
}

/// Pool settings as the user gave them: with a pattern ([`NewPool`]) the body of
/// `POST /v1/pools`, alone the body of `PATCH /v1/pool`. `--hash_key` travels as typed: lb
/// parses it, and would answer a lowercased header name if lbctl parsed it first.
pub type PoolSettings = lb_api::PoolSettings<String>;

/// Body of `POST /v1/pools`: the pattern and whatever settings the user gave.
pub type NewPool = lb_api::NewPool<String>;

/// `ip:port` as lb spells it, rebuilt if an lb did not send `address`.
pub fn address(backend: &lb_api::lenient::BackendJson) -> String {
    match backend.address.as_deref() {
        Some(address) if !address.is_empty() => address.to_owned(),
        _ => format!("{}:{}", backend.ip.as_deref().unwrap_or_default(), backend.port.unwrap_or_default()),
    }
}

impl Admin {
    /// Accepts `host:port` with or without `http://`, as the Go tool's users wrote it. The
    /// port is required: lb's admin API is never on port 80 by default, and a silent 80 would
    /// send the request (and the token) to whatever listens there. `token`, if given, goes
    /// with every request as `Authorization: Bearer`.
    pub fn new(lb: &str, token: Option<&str>) -> Result<Admin, Error> {
        if let Some(path) = lb.strip_prefix("unix:") {
            return Admin::unix(lb, path, token);
        }
        let addr = lb.strip_prefix("http://").unwrap_or(lb).trim_end_matches('/');
        let has_port = addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
        });
        let base = Url::parse(&format!("http://{addr}"))
            .ok()
            .filter(|_| !addr.is_empty() && !addr.contains('/'))
            .ok_or_else(|| Error::Usage(format!("--lb wants HOST:PORT, optionally after http://, not {lb:?}")))?;
        if !has_port {
            return Err(Error::Usage(format!(
                "--lb {lb:?} has no port: give HOST:PORT (lb's admin default is 127.0.0.1:8081)"
            )));
        }
        let client = client(token, reqwest::Client::builder())?;
        Ok(Admin { client, addr: addr.to_owned(), base })
    }

    /// `--lb=unix:PATH`: lb's admin API on a unix socket.
    fn unix(lb: &str, path: &str, token: Option<&str>) -> Result<Admin, Error> {
        if path.is_empty() {
            return Err(Error::Usage("--lb=unix: needs a path (e.g. --lb=unix:/run/lb/admin.sock)".into()));
        }
        let base = Url::parse("http://localhost/").expect("a valid URL");
        let client = client(token, reqwest::Client::builder().unix_socket(path))?;
        Ok(Admin { client, addr: lb.to_owned(), base })
    }

    pub async fn list_pools(&self) -> Result<Value, Error> {
        self.send(self.request(Method::GET, "/v1/pools")).await
    }

    pub async fn add_pool(&self, pool: &NewPool) -> Result<Value, Error> {
        self.send(self.request(Method::POST, "/v1/pools").json(pool)).await
    }

    pub async fn remove_pool(&self, pattern: &str) -> Result<Value, Error> {
        self.send(self.request(Method::DELETE, "/v1/pool").query(&pool(pattern))).await
    }

    pub async fn update_pool(&self, pattern: &str, settings: &PoolSettings) -> Result<Value, Error> {
        let request = self.request(Method::PATCH, "/v1/pool").query(&pool(pattern));
        self.send(request.json(settings)).await
    }

    pub async fn pool_health(&self, pattern: &str) -> Result<Value, Error> {
        self.send(self.request(Method::GET, "/v1/pool/health").query(&pool(pattern))).await
    }

    pub async fn add_backend(&self, pattern: &str, backend: &NewBackend) -> Result<Value, Error> {
        let request = self.request(Method::POST, "/v1/pool/backends").query(&pool(pattern));
        self.send(request.json(backend)).await
    }

    pub async fn remove_backend(&self, pattern: &str, ip: &str, port: u16) -> Result<Value, Error> {
        let request = self.request(Method::DELETE, "/v1/pool/backends").query(&backend(pattern, ip, port));
        self.send(request).await
    }

    pub async fn update_backend(
        &self,
        pattern: &str,
        ip: &str,
        port: u16,
        change: &BackendChange,
    ) -> Result<Value, Error> {
        let request = self.request(Method::PATCH, "/v1/pool/backends").query(&backend(pattern, ip, port));
        self.send(request.json(change)).await
    }

    pub async fn export(&self) -> Result<Value, Error> {
        self.send(self.request(Method::GET, "/v1/state")).await
    }

    pub async fn import(&self, state: &Value) -> Result<Value, Error> {
        self.send(self.request(Method::PUT, "/v1/state").json(state)).await
    }

    /// `GET /metrics`: lb's Prometheus text, for `lbctl stats` to read. At most
    /// [`METRICS_LIMIT`] bytes: something else on that port may answer without end.
    pub async fn metrics(&self) -> Result<String, Error> {
        let mut response = self.request(Method::GET, "/metrics").send().await.map_err(|err| self.failed(&err))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|err| self.failed(&err))? {
            if body.len() + chunk.len() > METRICS_LIMIT {
                return Err(Error::Failed(format!(
                    "lb admin at {} answered more than {} of metrics",
                    self.addr,
                    crate::units::format_bytes(METRICS_LIMIT as u64)
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(Error::Failed(refusal(status, &body)));
        }
        String::from_utf8(body)
            .map_err(|_| Error::Failed(format!("lb admin at {} answered metrics that are not UTF-8", self.addr)))
    }

    /// A request to `base + path`; `.query(...)` adds the parameters, percent-encoded. Every
    /// write says it is JSON, a `DELETE` without a body too: lb refuses writes that do not.
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut url = self.base.clone();
        url.set_path(path);
        let write = method != Method::GET;
        let request = self.client.request(method, url);
        if write {
            request.header(reqwest::header::CONTENT_TYPE, "application/json")
        } else {
            request
        }
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

/// The HTTP client for lb's admin API, sending `token` with every request.
fn client(token: Option<&str>, builder: reqwest::ClientBuilder) -> Result<reqwest::Client, Error> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Error::Usage("the token must be visible ASCII characters, without spaces".into()))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    // The admin API is local infrastructure: an HTTP_PROXY meant for the internet must not
    // reroute it.
    builder
        .default_headers(headers)
        .timeout(TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|err| Error::Failed(format!("cannot build an HTTP client: {err}")))
}

/// The query naming the pool `pattern`.
fn pool(pattern: &str) -> impl Serialize {
    PatternQuery { pattern: pattern.to_owned() }
}

/// The query naming backend `ip:port` of the pool `pattern`.
fn backend(pattern: &str, ip: &str, port: u16) -> impl Serialize {
    BackendQuery { pattern: pattern.to_owned(), ip: ip.to_owned(), port }
}

/// lb explains refusals as `{"error": "..."}`; anything else (a proxy's HTML page, another
/// service on that port) is summarized by its status so the user sees they hit the wrong thing.
fn refusal(status: StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorJson>(body) {
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
    use lb_api::{lenient, HealthCheckChange, Strategy, TimeoutsChange};

    use super::*;

    #[test]
    fn lb_accepts_host_port_with_or_without_http() {
        for lb in ["127.0.0.1:8081", "http://127.0.0.1:8081", "http://127.0.0.1:8081/"] {
            let admin = Admin::new(lb, None).unwrap();
            assert_eq!(admin.base.as_str(), "http://127.0.0.1:8081/");
            assert_eq!(admin.addr, "127.0.0.1:8081");
        }
    }

    #[test]
    fn lb_rejects_other_schemes_and_paths() {
        for lb in ["https://127.0.0.1:8081", "127.0.0.1:8081/admin", "", "a b:1"] {
            assert!(matches!(Admin::new(lb, None), Err(Error::Usage(_))), "{lb:?}");
        }
    }

    #[test]
    fn lb_needs_a_port() {
        for lb in ["localhost", "http://127.0.0.1", "127.0.0.1:", "[::1]", ":8081", "host:80x"] {
            match Admin::new(lb, None) {
                Err(Error::Usage(message)) => assert!(message.contains("--lb"), "{lb:?}: {message}"),
                other => panic!("{lb:?}: {:?}", other.map(|a| a.addr)),
            }
        }
        for lb in ["localhost:80", "[::1]:8081", "http://lb.internal:8081/"] {
            assert!(Admin::new(lb, None).is_ok(), "{lb:?}");
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

    fn pool(json: &str) -> lenient::PoolJson {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn pools_decode_leniently() {
        let pool = pool(
            r#"{"pattern": "/", "mode": "proxy", "future_field": 1,
                "backends": [{"ip": "10.0.0.1", "port": 80}]}"#,
        );
        assert_eq!(pool.pattern.as_deref(), Some("/"));
        assert_eq!(pool.strategy, None);
        assert_eq!(address(&pool.backends.unwrap()[0]), "10.0.0.1:80");
        assert_eq!(pool.health_check, None);
    }

    #[test]
    fn pools_decode_the_new_settings_and_nulls() {
        let pool = pool(
            r#"{"pattern": "/", "strategy": "consistent_hash", "hash_key": "header:X-User",
                "retries": 2, "retry_on_5xx": false, "retry_body_limit": 65536,
                "timeouts": {"connect_ms": 3000, "response_ms": 60000, "idle_ms": 90000},
                "health_check": {"path": "/healthz", "healthy_values": ["ok"],
                                 "expected_status": null, "interval_ms": 10000, "later": 1},
                "backends": [{"address": "a:1", "weight": 3, "draining": true,
                              "last_check_ms": null, "last_error": null}]}"#,
        );
        assert_eq!(pool.hash_key.as_deref(), Some("header:X-User"));
        assert_eq!(pool.retry_on_5xx, Some(false));
        assert_eq!(pool.timeouts.unwrap().idle_ms, Some(90_000));
        let check = pool.health_check.unwrap();
        assert_eq!(check.expected_status, None);
        assert_eq!(check.interval_ms, Some(10_000));
        assert_eq!(check.fall, None);
        let backends = pool.backends.unwrap();
        assert_eq!(backends[0].draining, Some(true));
        assert_eq!(backends[0].weight, Some(3));
        assert_eq!(address(&backends[0]), "a:1");
    }

    #[test]
    fn only_given_settings_are_sent_and_hash_keys_as_typed() {
        let settings = PoolSettings {
            strategy: Some(Strategy::LeastConn),
            hash_key: Some("header:X-User".into()),
            timeouts: Some(TimeoutsChange { idle_ms: Some(0), ..TimeoutsChange::default() }),
            health_check: Some(HealthCheckChange { fall: Some(3), ..HealthCheckChange::default() }),
            ..PoolSettings::default()
        };
        let body = serde_json::to_value(NewPool { pattern: "/".into(), settings }).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"pattern": "/", "strategy": "least_conn", "hash_key": "header:X-User",
                               "timeouts": {"idle_ms": 0}, "health_check": {"fall": 3}})
        );
        assert_eq!(serde_json::to_value(BackendChange::default()).unwrap(), serde_json::json!({}));
    }
}
