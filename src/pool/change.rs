//! Partial changes an admin asks for: unset fields take their defaults (a new pool) or stay as
//! they are (a change).

use serde::Deserialize;

use super::config::{HashKey, HealthCheckSpec, Mode, PoolConfig, Strategy, Timeouts};

/// A partial [`Timeouts`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutsChange {
    pub connect_ms: Option<u64>,
    pub response_ms: Option<u64>,
    pub idle_ms: Option<u64>,
}

impl TimeoutsChange {
    pub fn apply(self, mut t: Timeouts) -> Timeouts {
        t.connect_ms = self.connect_ms.unwrap_or(t.connect_ms);
        t.response_ms = self.response_ms.unwrap_or(t.response_ms);
        t.idle_ms = self.idle_ms.unwrap_or(t.idle_ms);
        t
    }
}

/// A partial [`HealthCheckSpec`]: what an admin wants changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckChange {
    pub path: Option<String>,
    pub healthy_values: Option<Vec<String>>,
    /// `Some(None)` (JSON `null`) goes back to any 2xx.
    #[serde(deserialize_with = "some")]
    pub expected_status: Option<Option<u16>>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub fall: Option<u32>,
    pub rise: Option<u32>,
    pub evict_after: Option<u32>,
}

/// Tells an explicit JSON `null` apart from a missing field.
fn some<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl HealthCheckChange {
    /// `spec` with these changes applied.
    pub fn apply(self, mut spec: HealthCheckSpec) -> HealthCheckSpec {
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = self.$field { spec.$field = v; })* };
        }
        set!(path, healthy_values, expected_status, interval_ms, timeout_ms, fall, rise, evict_after);
        spec
    }
}

/// Settings of a pool to create or change; unset fields take their defaults (new pool) or stay
/// as they are (change).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSettings {
    pub mode: Option<Mode>,
    pub strategy: Option<Strategy>,
    pub hash_key: Option<HashKey>,
    pub retries: Option<u32>,
    pub retry_on_5xx: Option<bool>,
    pub retry_body_limit: Option<u64>,
    pub timeouts: Option<TimeoutsChange>,
    pub health_check: Option<HealthCheckChange>,
}

impl PoolSettings {
    pub fn is_empty(&self) -> bool {
        let PoolSettings { mode, strategy, hash_key, retries, retry_on_5xx, retry_body_limit, timeouts, health_check } =
            self;
        mode.is_none()
            && strategy.is_none()
            && hash_key.is_none()
            && retries.is_none()
            && retry_on_5xx.is_none()
            && retry_body_limit.is_none()
            && timeouts.is_none()
            && health_check.is_none()
    }

    /// `config` with these settings applied, validated.
    pub fn apply(self, mut config: PoolConfig) -> Result<PoolConfig, String> {
        config.mode = self.mode.unwrap_or(config.mode);
        config.strategy = self.strategy.unwrap_or(config.strategy);
        config.hash_key = self.hash_key.unwrap_or(config.hash_key);
        config.retries = self.retries.unwrap_or(config.retries);
        config.retry_on_5xx = self.retry_on_5xx.unwrap_or(config.retry_on_5xx);
        config.retry_body_limit = self.retry_body_limit.unwrap_or(config.retry_body_limit);
        if let Some(t) = self.timeouts {
            config.timeouts = t.apply(config.timeouts);
        }
        if let Some(h) = self.health_check {
            config.health_check = h.apply(config.health_check);
        }
        config.validate()?;
        Ok(config)
    }
}

/// A change to a backend; unset fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendChange {
    pub draining: Option<bool>,
    pub weight: Option<u32>,
}
