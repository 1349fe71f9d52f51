//! The active check: `GET` the pool's health path and judge the answer by its spec.

use std::net::SocketAddr;
use std::time::Duration;

use crate::pool::HealthCheckSpec;

/// Runs health checks over one shared connection pool.
#[derive(Clone)]
pub struct Probe {
    client: reqwest::Client,
}

impl Default for Probe {
    fn default() -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .expect("a plain-HTTP client always builds");
        Probe { client }
    }
}

impl Probe {
    /// Checks `addr` once; the error says why it is sick.
    pub async fn check(&self, addr: SocketAddr, spec: &HealthCheckSpec) -> Result<(), String> {
        let url = format!("http://{addr}{}", spec.path);
        let timeout = Duration::from_millis(spec.timeout_ms);
        let failed = |e: reqwest::Error| format!("GET {url}: {}", describe(&e, timeout));
        let response = self.client.get(&url).timeout(timeout).send().await.map_err(failed)?;
        let status = response.status();
        let body = response.text().await.map_err(failed)?;
        let body = body.trim();
        let status_ok = match spec.expected_status {
            Some(want) => status.as_u16() == want,
            None => status.is_success(),
        };
        if !status_ok {
            return Err(format!("GET {url} answered {status}"));
        }
        if !spec.healthy_values.iter().any(|v| v == body) {
            let shown: String = body.chars().take(40).collect();
            return Err(format!("GET {url} answered {shown:?}, expected one of {:?}", spec.healthy_values));
        }
        Ok(())
    }
}

/// reqwest's errors bury the cause (refused, reset) at the end of their source chain.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {timeout:?}");
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
