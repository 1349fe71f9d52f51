//! lb's admin API: one method per endpoint, answering the raw JSON so `--json` can print it as
//! lb sent it, plus the lenient shapes the human output decodes from it.
//!
//! Patterns travel in the `pattern` query parameter, percent-encoded, because they contain `/`.
//! The query is built with `Url` rather than reqwest's `query` feature to keep the workspace's
//! reqwest features as they are.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    args::{Mode, Strategy},
    error::Error,
};

/// Admin calls are small; a server silent this long is stuck, and a script should hear so.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A client for one lb's admin API.
pub struct Admin {
    client: reqwest::Client,
    /// `host:port` as the user gave it (without `http://`), for error messages.
    addr: String,
    base: Url,
}

/// Body of `POST /v1/pools`; unset options are left out so lb applies its own defaults.
#[derive(Serialize)]
pub struct NewPool<'a> {
    pub pattern: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
}

/// Body of `POST /v1/pool/backends`.
#[derive(Serialize)]
pub struct NewBackend<'a> {
    pub ip: &'a str,
    pub port: u16,
    pub url_path: &'a str,
}

/// A pool as lb reports it. Only what lbctl shows; unknown fields are ignored and missing ones
/// default, so newer lb versions keep working.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct Pool {
    pub pattern: String,
    pub mode: String,
    pub strategy: String,
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

/// Answer of `GET /v1/pool/health` (lenient like [`Pool`]).
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
        let addr = lb
            .strip_prefix("http://")
            .unwrap_or(lb)
            .trim_end_matches('/');
        let base = Url::parse(&format!("http://{addr}"))
            .ok()
            .filter(|_| !addr.is_empty() && !addr.contains('/'))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "--lb wants HOST:PORT, optionally after http://, not {lb:?}"
                ))
            })?;
        // The admin API is local infrastructure: an HTTP_PROXY meant for the internet must not
        // reroute it.
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|err| Error::Failed(format!("cannot build an HTTP client: {err}")))?;
        Ok(Admin {
            client,
            addr: addr.to_owned(),
            base,
        })
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

    pub async fn set_mode(&self, pattern: &str, mode: Mode) -> Result<Value, Error> {
        let request = self.request(Method::PATCH, "/v1/pool", &[("pattern", pattern)]);
        self.send(request.json(&serde_json::json!({ "mode": mode })))
            .await
    }

    pub async fn pool_health(&self, pattern: &str) -> Result<Value, Error> {
        let request = self.request(Method::GET, "/v1/pool/health", &[("pattern", pattern)]);
        self.send(request).await
    }

    pub async fn add_backend(
        &self,
        pattern: &str,
        backend: &NewBackend<'_>,
    ) -> Result<Value, Error> {
        let request = self.request(Method::POST, "/v1/pool/backends", &[("pattern", pattern)]);
        self.send(request.json(backend)).await
    }

    pub async fn remove_backend(&self, pattern: &str, ip: &str, port: u16) -> Result<Value, Error> {
        let port = port.to_string();
        let query = [("pattern", pattern), ("ip", ip), ("port", &port)];
        self.send(self.request(Method::DELETE, "/v1/pool/backends", &query))
            .await
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
        serde_json::from_slice(&body).map_err(|err| {
            Error::Failed(format!(
                "lb admin at {} answered invalid JSON: {err}",
                self.addr
            ))
        })
    }

    fn failed(&self, err: &reqwest::Error) -> Error {
        let addr = &self.addr;
        Error::Failed(if err.is_timeout() {
            format!(
                "lb admin at {addr} did not answer within {}s",
                TIMEOUT.as_secs()
            )
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
    if let Some(code) = cause
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::raw_os_error)
    {
        message = message.replace(&format!(" (os error {code})"), "");
    }
    match message.chars().next() {
        Some(first) if first.is_ascii_uppercase() => {
            first.to_ascii_lowercase().to_string() + &message[1..]
        }
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lb_accepts_host_port_with_or_without_http() {
        for lb in [
            "127.0.0.1:8081",
            "http://127.0.0.1:8081",
            "http://127.0.0.1:8081/",
        ] {
            let admin = Admin::new(lb).unwrap();
            assert_eq!(admin.base.as_str(), "http://127.0.0.1:8081/");
            assert_eq!(admin.addr, "127.0.0.1:8081");
        }
    }

    #[test]
    fn lb_rejects_other_schemes_and_paths() {
        for lb in [
            "https://127.0.0.1:8081",
            "127.0.0.1:8081/admin",
            "",
            "a b:1",
        ] {
            assert!(matches!(Admin::new(lb), Err(Error::Usage(_))), "{lb:?}");
        }
    }

    #[test]
    fn refusals_quote_lb_and_the_status() {
        let body = br#"{"error": "pool \"/\" already exists"}"#;
        assert_eq!(
            refusal(StatusCode::CONFLICT, body),
            r#"pool "/" already exists (409)"#
        );
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
    }
}
