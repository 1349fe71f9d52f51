//! The one place that knows how records look on disk: a format-version byte, then the record in
//! bincode (standard config). Record types are private and separate from the domain types, so a
//! change to `PoolConfig` cannot silently change the disk format; a new format means a new
//! version byte here and a migration in `lb-migrations`.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::pool::{BackendConfig, HealthCheckSpec, PoolConfig};

/// Format of the records this build writes.
const FORMAT: u8 = 1;

#[derive(Serialize, Deserialize)]
struct PoolRecordV1 {
    mode: String,
    strategy: String,
    health_path: String,
    healthy_values: Vec<String>,
    interval_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct BackendRecordV1 {
    ip: IpAddr,
    port: u16,
    url_path: String,
}

fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    let mut out = vec![FORMAT];
    bincode::serde::encode_into_std_write(record, &mut out, bincode::config::standard())
        .expect("writing to a Vec cannot fail");
    out
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&FORMAT, body)) => {
            let (record, read) =
                bincode::serde::decode_from_slice(body, bincode::config::standard())
                    .map_err(|e| format!("undecodable record: {e}"))?;
            if read != body.len() {
                return Err(format!(
                    "{} trailing bytes after the record",
                    body.len() - read
                ));
            }
            Ok(record)
        }
        Some((format, _)) => Err(format!(
            "record format {format} is not one this lb reads ({FORMAT})"
        )),
        None => Err("empty record".into()),
    }
}

pub fn encode_pool(pool: &PoolConfig) -> Vec<u8> {
    encode(&PoolRecordV1 {
        mode: pool.mode.to_string(),
        strategy: pool.strategy.to_string(),
        health_path: pool.health_check.path.clone(),
        healthy_values: pool.health_check.healthy_values.clone(),
        interval_ms: pool.health_check.interval_ms,
    })
}

pub fn decode_pool(pattern: String, bytes: &[u8]) -> Result<PoolConfig, String> {
    let r: PoolRecordV1 = decode(bytes)?;
    Ok(PoolConfig {
        pattern,
        mode: r.mode.parse()?,
        strategy: r.strategy.parse()?,
        health_check: HealthCheckSpec {
            path: r.health_path,
            healthy_values: r.healthy_values,
            interval_ms: r.interval_ms,
        },
    })
}

pub fn encode_backend(backend: &BackendConfig) -> Vec<u8> {
    encode(&BackendRecordV1 {
        ip: backend.addr.ip(),
        port: backend.addr.port(),
        url_path: backend.url_path.clone(),
    })
}

pub fn decode_backend(bytes: &[u8]) -> Result<BackendConfig, String> {
    let r: BackendRecordV1 = decode(bytes)?;
    Ok(BackendConfig {
        addr: SocketAddr::new(r.ip, r.port),
        url_path: r.url_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{Mode, Strategy};

    #[test]
    fn records_round_trip() {
        let pool = PoolConfig {
            pattern: "/api/".into(),
            mode: Mode::Redirect,
            strategy: Strategy::RoundRobin,
            health_check: HealthCheckSpec::default(),
        };
        assert_eq!(
            decode_pool("/api/".into(), &encode_pool(&pool)).unwrap(),
            pool
        );
        let backend = BackendConfig {
            addr: "[::1]:8082".parse().unwrap(),
            url_path: "/v2/".into(),
        };
        assert_eq!(decode_backend(&encode_backend(&backend)).unwrap(), backend);
    }

    #[test]
    fn unknown_formats_and_garbage_are_errors_not_panics() {
        let mut bytes = encode_backend(&BackendConfig {
            addr: "127.0.0.1:1".parse().unwrap(),
            url_path: "/".into(),
        });
        bytes[0] = 9;
        assert!(decode_backend(&bytes).unwrap_err().contains("format 9"));
        assert!(decode_backend(&[]).is_err());
        assert!(decode_backend(&[FORMAT, 0xff, 0xff]).is_err());
        assert!(decode_pool("/".into(), &[FORMAT]).is_err());
    }
}
