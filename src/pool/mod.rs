//! The nouns of lb: a [`Pool`] of [`Backend`]s behind a pattern, in a [`Mode`].
//!
//! - [`config`]: `PoolConfig` and its parts, what an admin says and the store keeps.
//! - [`change`]: partial changes to them, as the admin API takes them.
//! - [`backend`]: `BackendConfig`, `BackendState` and the live `Backend`; it sits below
//!   [`selection`](crate::selection), which picks among backends.
//! - here: the live `Pool` of one routing snapshot, with its selector and retry budget, and the
//!   request's stickiness key.

pub mod backend;
pub mod change;
pub mod config;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderValue;

pub use backend::{
    canonical_addr, parse_addr, Backend, BackendConfig, BackendState, BackendStatus, HealthRecord, InflightGuard,
    MAX_WEIGHT,
};
pub use change::{BackendChange, HealthCheckChange, PoolSettings, TimeoutsChange};
pub use config::{
    check_health_bounds, HashKey, HealthCheckSpec, Mode, PoolConfig, Strategy, Timeouts, Validate, MAX_RETRY_BODY,
    MIN_INTERVAL_MS,
};

use crate::metrics::PoolMetrics;
use crate::retry::{RetryBudget, Tried};
use crate::selection::{hash_bytes, Pick, Selector};

/// A pool's health at a glance, as the Go tool reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolStatus {
    /// Backends, none of them sick.
    Full,
    /// One or more backends sick.
    Degraded,
    /// No backends.
    Empty,
}

impl PoolStatus {
    /// The status of a pool whose backends have `statuses`.
    pub fn of(statuses: impl IntoIterator<Item = BackendStatus>) -> Self {
        let mut any = false;
        for status in statuses {
            if status == BackendStatus::Sick {
                return PoolStatus::Degraded;
            }
            any = true;
        }
        if any {
            PoolStatus::Full
        } else {
            PoolStatus::Empty
        }
    }

    /// The name used in the admin API and `lbctl poolHealth`.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolStatus::Full => "PS_FULL",
            PoolStatus::Degraded => "PS_DEGRADED",
            PoolStatus::Empty => "PS_EMPTY",
        }
    }
}

/// A live pool in one routing snapshot.
pub struct Pool {
    pub config: PoolConfig,
    pub backends: Vec<Arc<Backend>>,
    selector: Box<dyn Selector>,
    /// Shared with the pool's next snapshots, so that changes do not reset it.
    pub budget: Arc<RetryBudget>,
    /// Resolved by the control plane for this pool's pattern and mode.
    pub(crate) metrics: PoolMetrics,
}

impl Pool {
    pub fn new(config: PoolConfig, backends: Vec<Arc<Backend>>, budget: Arc<RetryBudget>) -> Self {
        let selector = crate::selection::build(config.strategy, &backends);
        Pool { config, backends, selector, budget, metrics: PoolMetrics::detached() }
    }

    /// The pool counting on `metrics`.
    pub(crate) fn with_metrics(self, metrics: PoolMetrics) -> Self {
        Pool { metrics, ..self }
    }

    /// The backend a request should go to next: usable and not yet tried by it.
    pub fn pick(&self, key: u64, tried: &Tried) -> Option<(usize, &Arc<Backend>)> {
        let backends = &self.backends;
        let usable = |i: usize| backends[i].is_usable() && !tried.contains(i);
        let i = self.selector.pick(backends, &Pick { usable: &usable, key })?;
        Some((i, &backends[i]))
    }

    /// The request's stickiness key: only `consistent_hash` pools look at the request.
    pub fn key(&self, headers: &http::HeaderMap, client: IpAddr) -> u64 {
        if self.config.strategy != Strategy::ConsistentHash {
            return 0;
        }
        let value = match &self.config.hash_key {
            HashKey::ClientIp => None,
            HashKey::Header(name) => headers.get(name).map(HeaderValue::as_bytes),
            HashKey::Cookie(name) => cookie(headers, name),
        };
        match value {
            Some(v) => hash_bytes(v),
            None => match client {
                IpAddr::V4(ip) => hash_bytes(&ip.octets()),
                IpAddr::V6(ip) => hash_bytes(&ip.octets()),
            },
        }
    }

    pub fn status(&self) -> PoolStatus {
        PoolStatus::of(self.backends.iter().map(|b| b.status()))
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers.get_all(http::header::COOKIE).iter().find_map(|v| {
        v.as_bytes().split(|&b| b == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
        })
    })
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("config", &self.config).field("backends", &self.backends).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_status_follows_the_go_tool() {
        use BackendStatus::*;
        assert_eq!(PoolStatus::of([]), PoolStatus::Empty);
        assert_eq!(PoolStatus::of([Healthy, Unknown]), PoolStatus::Full);
        assert_eq!(PoolStatus::of([Healthy, Sick]), PoolStatus::Degraded);
    }
}
