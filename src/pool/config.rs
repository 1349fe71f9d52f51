//! What an admin says about a pool, as the store keeps it: [`PoolConfig`] with its [`Mode`],
//! [`Strategy`], [`HashKey`], [`Timeouts`] and [`HealthCheckSpec`], and the limits that
//! validation holds them to. The parts are lb-api's, since the admin API reports them; the
//! limits are lb's.

pub use lb_api::{HashKey, HealthCheckSpec, Mode, Strategy, Timeouts};

use crate::retry::MAX_RETRIES;

/// Largest request body a pool may keep for replay.
pub const MAX_RETRY_BODY: u64 = 16 << 20;
const DAY_MS: u64 = 24 * 3600 * 1000;

/// Refuses a value lb could not run with. A trait because [`HealthCheckSpec`] is lb-api's
/// (the admin API reports it) while what lb can run with is lb's to say.
pub trait Validate {
    fn validate(&self) -> Result<(), String>;
}

impl Validate for HealthCheckSpec {
    /// Refuses a spec no check could run with.
    fn validate(&self) -> Result<(), String> {
        if !self.path.starts_with('/') || self.path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("health check path {:?} must start with / and hold no spaces", self.path));
        }
        if self.healthy_values.is_empty() {
            return Err("health check needs at least one healthy value".into());
        }
        if let Some(status) = self.expected_status {
            if !(100..=599).contains(&status) {
                return Err(format!("expected_status {status} is not an HTTP status"));
            }
        }
        let day = 24 * 3600 * 1000;
        if self.interval_ms == 0 || self.interval_ms > day {
            return Err("health check interval must be more than 0 and at most a day".into());
        }
        if self.timeout_ms == 0 || self.timeout_ms > day {
            return Err("health check timeout must be more than 0 and at most a day".into());
        }
        if self.fall == 0 || self.rise == 0 {
            return Err("fall and rise must be at least 1".into());
        }
        Ok(())
    }
}

/// Shortest interval between two checks of a backend a new setting may ask for.
pub const MIN_INTERVAL_MS: u64 = 100;

/// The bounds a health check setting must keep when an admin sets it, beyond what
/// [`Validate`] asks of every stored spec: checks at most every 100 ms, a check's timeout no
/// longer than the interval (or checks would pile up), and `evict_after` 0 (never) or at least
/// `fall` (a backend is sick before it is evicted). Only new settings are held to them: a store
/// written before these bounds keeps loading as it is.
pub fn check_health_bounds(spec: &HealthCheckSpec) -> Result<(), String> {
    if spec.interval_ms < MIN_INTERVAL_MS {
        return Err(format!("health_check.interval_ms must be at least {MIN_INTERVAL_MS}, not {}", spec.interval_ms));
    }
    if spec.timeout_ms > spec.interval_ms {
        return Err(format!(
            "health_check.timeout_ms ({}) must not be above interval_ms ({})",
            spec.timeout_ms, spec.interval_ms
        ));
    }
    if spec.evict_after != 0 && spec.evict_after < spec.fall {
        return Err(format!(
            "health_check.evict_after must be 0 (never) or at least fall ({}), not {}",
            spec.fall, spec.evict_after
        ));
    }
    Ok(())
}

/// A pool as the admin defined it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub pattern: String,
    pub mode: Mode,
    pub strategy: Strategy,
    pub hash_key: HashKey,
    /// Extra attempts on other backends for a failed proxied request.
    pub retries: u32,
    /// Also retry idempotent requests answered `502`, `503` or `504`.
    pub retry_on_5xx: bool,
    /// Largest request body kept so that a request can be replayed (bytes).
    pub retry_body_limit: u64,
    pub timeouts: Timeouts,
    pub health_check: HealthCheckSpec,
    /// Name the backend (`ip:port`) in `X-Forwarded-Server` on the pool's responses; off, lb
    /// removes the header, also one a backend sent.
    pub expose_backend: bool,
    /// Pass `TRACE` on (proxy) or redirect it; off, lb answers `405` as for every pool.
    pub allow_trace: bool,
}

impl PoolConfig {
    /// A pool with every setting at its default.
    pub fn new(pattern: String) -> Self {
        PoolConfig {
            pattern,
            mode: Mode::default(),
            strategy: Strategy::default(),
            hash_key: HashKey::default(),
            retries: 2,
            retry_on_5xx: false,
            retry_body_limit: 64 * 1024,
            timeouts: Timeouts::default(),
            health_check: HealthCheckSpec::default(),
            expose_backend: false,
            allow_trace: false,
        }
    }

    /// Refuses settings lb could not run with (also when loading the store).
    pub fn validate(&self) -> Result<(), String> {
        self.health_check.validate()?;
        if self.retries > MAX_RETRIES {
            return Err(format!("retries must be at most {MAX_RETRIES}"));
        }
        if self.retry_body_limit > MAX_RETRY_BODY {
            return Err(format!("retry_body_limit must be at most {MAX_RETRY_BODY} bytes"));
        }
        let t = &self.timeouts;
        for (name, ms) in [("connect_ms", t.connect_ms), ("response_ms", t.response_ms), ("idle_ms", t.idle_ms)] {
            if ms == 0 || ms > DAY_MS {
                return Err(format!("timeouts.{name} must be more than 0 and at most a day"));
            }
        }
        Ok(())
    }
}
