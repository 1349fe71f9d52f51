//! Partial changes an admin asks for: unset fields take their defaults (a new pool) or stay as
//! they are (a change). Their JSON is lb-api's, shared with lbctl; applying them is lb's.

use serde::Deserialize;

pub use lb_api::{BackendChange, HealthCheckChange, TimeoutsChange};

use super::config::{check_health_bounds, HealthCheckSpec, PoolConfig, Timeouts};

/// The settings of `POST /v1/pools` and `PATCH /v1/pool`: [`lb_api::PoolSettings`], read as it
/// reads itself (strictly, with serde's messages), plus what lb does with them. A wrapper
/// rather than a re-export so that `settings.apply(config)` needs no trait in scope.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct PoolSettings(pub lb_api::PoolSettings);

impl PoolSettings {
    /// Whether no setting is given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `config` with these settings applied, validated; a health check setting given is also
    /// held to [`check_health_bounds`], the whole check as it ends up.
    pub fn apply(self, mut config: PoolConfig) -> Result<PoolConfig, String> {
        let lb_api::PoolSettings {
            mode,
            strategy,
            hash_key,
            retries,
            retry_on_5xx,
            retry_body_limit,
            timeouts,
            health_check,
            expose_backend,
            allow_trace,
        } = self.0;
        config.mode = mode.unwrap_or(config.mode);
        config.strategy = strategy.unwrap_or(config.strategy);
        config.hash_key = hash_key.unwrap_or(config.hash_key);
        config.retries = retries.unwrap_or(config.retries);
        config.retry_on_5xx = retry_on_5xx.unwrap_or(config.retry_on_5xx);
        config.retry_body_limit = retry_body_limit.unwrap_or(config.retry_body_limit);
        config.expose_backend = expose_backend.unwrap_or(config.expose_backend);
        config.allow_trace = allow_trace.unwrap_or(config.allow_trace);
        if let Some(t) = timeouts {
            config.timeouts = apply_timeouts(t, config.timeouts);
        }
        let health_changed = health_check.is_some();
        if let Some(h) = health_check {
            config.health_check = apply_health_check(h, config.health_check);
        }
        config.validate()?;
        if health_changed {
            check_health_bounds(&config.health_check)?;
        }
        Ok(config)
    }
}

/// `t` with the timeouts given changed.
fn apply_timeouts(change: TimeoutsChange, mut t: Timeouts) -> Timeouts {
    t.connect_ms = change.connect_ms.unwrap_or(t.connect_ms);
    t.response_ms = change.response_ms.unwrap_or(t.response_ms);
    t.idle_ms = change.idle_ms.unwrap_or(t.idle_ms);
    t
}

/// `spec` with the fields given changed.
fn apply_health_check(change: HealthCheckChange, mut spec: HealthCheckSpec) -> HealthCheckSpec {
    macro_rules! set {
        ($($field:ident),*) => { $(if let Some(v) = change.$field { spec.$field = v; })* };
    }
    set!(path, healthy_values, expected_status, interval_ms, timeout_ms, fall, rise, evict_after);
    spec
}
