//! Health checks: `GET` a backend's check path and compare the trimmed body with the pool's
//! healthy values. Runs on the control plane's runtime, never on the data path.

use std::net::SocketAddr;
use std::time::Duration;

use crate::pool::HealthCheckSpec;

/// How long one check may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Runs health checks over one shared connection pool.
#[derive(Clone)]
pub struct HealthCheck {
    client: reqwest::Client,
}

impl Default for HealthCheck {
    fn default() -> Self {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain-HTTP client always builds");
        HealthCheck { client }
    }
}

impl HealthCheck {
    /// Checks `addr` once; the error says why it is sick.
    pub async fn check(&self, addr: SocketAddr, spec: &HealthCheckSpec) -> Result<(), String> {
        let url = format!("http://{addr}{}", spec.path);
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| describe(&e))?;
        let body = body.trim();
        if !status.is_success() {
            return Err(format!("GET {url} answered {status}"));
        }
        if !spec.healthy_values.iter().any(|v| v == body) {
            let shown: String = body.chars().take(40).collect();
            return Err(format!(
                "GET {url} answered {shown:?}, expected one of {:?}",
                spec.healthy_values
            ));
        }
        Ok(())
    }
}

/// reqwest's errors bury the cause (refused, reset) at the end of their source chain.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("timed out after {TIMEOUT:?}");
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
