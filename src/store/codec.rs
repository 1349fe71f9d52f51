//! The one place that maps lb's types to the records on disk. The record formats themselves are
//! defined, frozen, in `lb_migrations::records` next to the migrations that convert between
//! them; this module reads and writes only the latest format, so a format change touches this
//! file, a new `records::vN`, and a migration. Pools are at format 3, backends at format 2.

use std::net::SocketAddr;

use lb_migrations::records::{v2 as backends, v3 as pools};

use crate::pool::{BackendConfig, BackendState, BackendStatus, HealthCheckSpec, HealthRecord, PoolConfig, Timeouts};

pub fn encode_pool(pool: &PoolConfig) -> Vec<u8> {
    pools::encode_pool(&record(pool))
}

/// The bytes of `pool` the store's manifest digests: its format 2 record while its settings fit
/// in format 2 (`expose_backend` and `allow_trace` off), format 3 otherwise. A manifest written
/// by an lb before format 3 digested format 2 records; with this, a store it wrote still
/// matches its manifest once migration 4 rewrote its pools to format 3.
pub fn digested_pool(pool: &PoolConfig) -> Vec<u8> {
    let record = record(pool);
    match pools::to_v2(&record) {
        Some(old) => backends::encode_pool(&old),
        None => pools::encode_pool(&record),
    }
}

fn record(pool: &PoolConfig) -> pools::Pool {
    let h = &pool.health_check;
    pools::Pool {
        mode: pool.mode.to_string(),
        strategy: pool.strategy.to_string(),
        hash_key: pool.hash_key.to_string(),
        retries: pool.retries,
        retry_on_5xx: pool.retry_on_5xx,
        retry_body_limit: pool.retry_body_limit,
        connect_timeout_ms: pool.timeouts.connect_ms,
        response_timeout_ms: pool.timeouts.response_ms,
        idle_timeout_ms: pool.timeouts.idle_ms,
        health_path: h.path.clone(),
        healthy_values: h.healthy_values.clone(),
        expected_status: h.expected_status,
        interval_ms: h.interval_ms,
        timeout_ms: h.timeout_ms,
        fall: h.fall,
        rise: h.rise,
        evict_after: h.evict_after,
        expose_backend: pool.expose_backend,
        allow_trace: pool.allow_trace,
    }
}

pub fn decode_pool(pattern: String, bytes: &[u8]) -> Result<PoolConfig, String> {
    let r = pools::decode_pool(bytes)?;
    let pool = PoolConfig {
        pattern,
        mode: r.mode.parse()?,
        strategy: r.strategy.parse()?,
        hash_key: r.hash_key.parse()?,
        retries: r.retries,
        retry_on_5xx: r.retry_on_5xx,
        retry_body_limit: r.retry_body_limit,
        timeouts: Timeouts {
            connect_ms: r.connect_timeout_ms,
            response_ms: r.response_timeout_ms,
            idle_ms: r.idle_timeout_ms,
        },
        health_check: HealthCheckSpec {
            path: r.health_path,
            healthy_values: r.healthy_values,
            expected_status: r.expected_status,
            interval_ms: r.interval_ms,
            timeout_ms: r.timeout_ms,
            fall: r.fall,
            rise: r.rise,
            evict_after: r.evict_after,
        },
        expose_backend: r.expose_backend,
        allow_trace: r.allow_trace,
    };
    pool.validate()?;
    Ok(pool)
}

pub fn encode_backend(config: &BackendConfig, state: &BackendState) -> Vec<u8> {
    let h = &state.health;
    backends::encode_backend(&backends::Backend {
        ip: config.addr.ip(),
        port: config.addr.port(),
        url_path: config.url_path.clone(),
        weight: config.weight,
        draining: state.draining,
        status: h.status as u8,
        consecutive_failures: h.consecutive_failures,
        consecutive_passes: h.consecutive_passes,
        last_check_ms: h.last_check_ms,
        last_error: h.last_error.clone(),
    })
}

pub fn decode_backend(bytes: &[u8]) -> Result<(BackendConfig, BackendState), String> {
    let r = backends::decode_backend(bytes)?;
    let config = BackendConfig { addr: SocketAddr::new(r.ip, r.port), url_path: r.url_path, weight: r.weight };
    config.validate()?;
    let state = BackendState {
        draining: r.draining,
        health: HealthRecord {
            status: BackendStatus::from_u8(r.status),
            consecutive_failures: r.consecutive_failures,
            consecutive_passes: r.consecutive_passes,
            last_check_ms: r.last_check_ms,
            last_error: r.last_error,
        },
    };
    Ok((config, state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{HashKey, Mode, Strategy};

    #[test]
    fn records_round_trip() {
        let mut pool = PoolConfig::new("/api/".into());
        pool.mode = Mode::Redirect;
        pool.strategy = Strategy::ConsistentHash;
        pool.hash_key = HashKey::Cookie("session".into());
        pool.retries = 5;
        pool.retry_on_5xx = true;
        pool.timeouts.response_ms = 1234;
        pool.health_check = HealthCheckSpec { expected_status: Some(204), fall: 5, ..HealthCheckSpec::default() };
        assert_eq!(decode_pool("/api/".into(), &encode_pool(&pool)).unwrap(), pool);
        for (expose_backend, allow_trace) in [(true, false), (false, true)] {
            let pool = PoolConfig { expose_backend, allow_trace, ..pool.clone() };
            assert_eq!(decode_pool("/api/".into(), &encode_pool(&pool)).unwrap(), pool);
        }
        let backend = BackendConfig { addr: "[::1]:8082".parse().unwrap(), url_path: "/v2/".into(), weight: 7 };
        let state = BackendState {
            draining: true,
            health: HealthRecord {
                status: BackendStatus::Sick,
                consecutive_failures: 4,
                consecutive_passes: 0,
                last_check_ms: Some(1_700_000_000_000),
                last_error: Some("refused".into()),
            },
        };
        assert_eq!(decode_backend(&encode_backend(&backend, &state)).unwrap(), (backend, state));
    }

    #[test]
    fn unknown_formats_and_garbage_are_errors_not_panics() {
        let backend = BackendConfig { addr: "127.0.0.1:1".parse().unwrap(), url_path: "/".into(), weight: 1 };
        let mut bytes = encode_backend(&backend, &BackendState::default());
        bytes[0] = 9;
        assert!(decode_backend(&bytes).unwrap_err().contains("format 9"));
        assert!(decode_backend(&[]).is_err());
        assert!(decode_backend(&[backends::FORMAT, 0xff, 0xff]).is_err());
        assert!(decode_pool("/".into(), &[pools::FORMAT]).is_err());
        let old = digested_pool(&PoolConfig::new("/".into()));
        assert!(decode_pool("/".into(), &old).unwrap_err().contains("found format 2"), "lb reads format 3 pools only");
    }

    #[test]
    fn the_digested_record_is_format_2_while_the_settings_fit_in_it() {
        let pool = PoolConfig::new("/".into());
        assert_eq!(digested_pool(&pool)[0], backends::FORMAT);
        assert_eq!(encode_pool(&pool)[0], pools::FORMAT);
        for on in [PoolConfig { expose_backend: true, ..pool.clone() }, PoolConfig { allow_trace: true, ..pool }] {
            assert_eq!(digested_pool(&on), encode_pool(&on));
        }
    }
}
