//! Frozen copies of every record format lb has written, and the conversions between them.
//!
//! A record is a format byte followed by the record in bincode (standard config). lb's own
//! `store::codec` reads and writes only the latest format; these copies never change once
//! released, so a migration keeps reading what an older lb wrote.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{Change, BACKENDS, POOLS, TREES};

fn encode<T: Serialize>(format: u8, record: &T) -> Vec<u8> {
    let mut out = vec![format];
    bincode::serde::encode_into_std_write(record, &mut out, bincode::config::standard())
        .expect("writing to a Vec cannot fail");
    out
}

/// Most bytes a record's strings and lists may claim as they are decoded. bincode trusts a length
/// prefix and allocates it before reading, so without a limit a corrupt record of ten bytes
/// asks for exabytes and lb panics at open (found by the `store_record` fuzz target). lb's
/// records hold what admin bodies of at most 64 KiB gave, so this is far above any real one.
const DECODE_LIMIT: usize = 1 << 20;

fn decode<T: DeserializeOwned>(format: u8, bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&f, body)) if f == format => {
            let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
            let (record, read) = bincode::serde::decode_from_slice(body, config)
                .map_err(|e| format!("undecodable format {format} record: {e}"))?;
            if read != body.len() {
                return Err(format!("{} trailing bytes after a format {format} record", body.len() - read));
            }
            Ok(record)
        }
        Some((f, _)) => Err(format!("expected a format {format} record, found format {f}")),
        None => Err("empty record".into()),
    }
}

/// Format 1 (schema 1): pools and backends as lb 0.1 first wrote them.
pub mod v1 {
    use super::*;

    pub const FORMAT: u8 = 1;

    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct Pool {
        pub mode: String,
        pub strategy: String,
        pub health_path: String,
        pub healthy_values: Vec<String>,
        pub interval_ms: u64,
    }

    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct Backend {
        pub ip: std::net::IpAddr,
        pub port: u16,
        pub url_path: String,
    }

    pub fn encode_pool(r: &Pool) -> Vec<u8> {
        encode(FORMAT, r)
    }

    pub fn encode_backend(r: &Backend) -> Vec<u8> {
        encode(FORMAT, r)
    }

    pub fn decode_pool(bytes: &[u8]) -> Result<Pool, String> {
        decode(FORMAT, bytes)
    }

    pub fn decode_backend(bytes: &[u8]) -> Result<Backend, String> {
        decode(FORMAT, bytes)
    }
}

/// Format 2 (schema 2): health-check thresholds, retries, timeouts and the hash key on pools;
/// weight, health and draining on backends.
pub mod v2 {
    use super::*;

    pub const FORMAT: u8 = 2;

    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct Pool {
        pub mode: String,
        pub strategy: String,
        pub hash_key: String,
        pub retries: u32,
        pub retry_on_5xx: bool,
        pub retry_body_limit: u64,
        pub connect_timeout_ms: u64,
        pub response_timeout_ms: u64,
        pub idle_timeout_ms: u64,
        pub health_path: String,
        pub healthy_values: Vec<String>,
        pub expected_status: Option<u16>,
        pub interval_ms: u64,
        pub timeout_ms: u64,
        pub fall: u32,
        pub rise: u32,
        pub evict_after: u32,
    }

    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct Backend {
        pub ip: std::net::IpAddr,
        pub port: u16,
        pub url_path: String,
        pub weight: u32,
        pub draining: bool,
        /// 0 unknown, 1 healthy, 2 sick.
        pub status: u8,
        pub consecutive_failures: u32,
        pub consecutive_passes: u32,
        pub last_check_ms: Option<u64>,
        pub last_error: Option<String>,
    }

    pub fn encode_pool(r: &Pool) -> Vec<u8> {
        encode(FORMAT, r)
    }

    pub fn decode_pool(bytes: &[u8]) -> Result<Pool, String> {
        decode(FORMAT, bytes)
    }

    pub fn encode_backend(r: &Backend) -> Vec<u8> {
        encode(FORMAT, r)
    }

    pub fn decode_backend(bytes: &[u8]) -> Result<Backend, String> {
        decode(FORMAT, bytes)
    }
}

/// Format 3 (schema 4): pools gain `expose_backend` and `allow_trace`. Backends stay at
/// format 2 ([`v2::Backend`]): a format is a record's, not the store's.
pub mod v3 {
    use super::*;

    pub const FORMAT: u8 = 3;

    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct Pool {
        pub mode: String,
        pub strategy: String,
        pub hash_key: String,
        pub retries: u32,
        pub retry_on_5xx: bool,
        pub retry_body_limit: u64,
        pub connect_timeout_ms: u64,
        pub response_timeout_ms: u64,
        pub idle_timeout_ms: u64,
        pub health_path: String,
        pub healthy_values: Vec<String>,
        pub expected_status: Option<u16>,
        pub interval_ms: u64,
        pub timeout_ms: u64,
        pub fall: u32,
        pub rise: u32,
        pub evict_after: u32,
        pub expose_backend: bool,
        pub allow_trace: bool,
    }

    pub fn encode_pool(r: &Pool) -> Vec<u8> {
        encode(FORMAT, r)
    }

    pub fn decode_pool(bytes: &[u8]) -> Result<Pool, String> {
        decode(FORMAT, bytes)
    }

    /// A format 2 pool as format 3, with both new settings off. For TRACE that is how every lb
    /// before them behaved (405); `X-Forwarded-Server`, which they always sent, is no longer
    /// sent unless the pool turns `expose_backend` on (the README says so).
    pub fn from_v2(old: v2::Pool) -> Pool {
        let v2::Pool {
            mode,
            strategy,
            hash_key,
            retries,
            retry_on_5xx,
            retry_body_limit,
            connect_timeout_ms,
            response_timeout_ms,
            idle_timeout_ms,
            health_path,
            healthy_values,
            expected_status,
            interval_ms,
            timeout_ms,
            fall,
            rise,
            evict_after,
        } = old;
        Pool {
            mode,
            strategy,
            hash_key,
            retries,
            retry_on_5xx,
            retry_body_limit,
            connect_timeout_ms,
            response_timeout_ms,
            idle_timeout_ms,
            health_path,
            healthy_values,
            expected_status,
            interval_ms,
            timeout_ms,
            fall,
            rise,
            evict_after,
            expose_backend: false,
            allow_trace: false,
        }
    }

    /// The format 2 record of `pool`, if its settings fit in format 2 (both new ones off).
    pub fn to_v2(pool: &Pool) -> Option<v2::Pool> {
        if pool.expose_backend || pool.allow_trace {
            return None;
        }
        let Pool {
            mode,
            strategy,
            hash_key,
            retries,
            retry_on_5xx,
            retry_body_limit,
            connect_timeout_ms,
            response_timeout_ms,
            idle_timeout_ms,
            health_path,
            healthy_values,
            expected_status,
            interval_ms,
            timeout_ms,
            fall,
            rise,
            evict_after,
            expose_backend: _,
            allow_trace: _,
        } = pool.clone();
        Some(v2::Pool {
            mode,
            strategy,
            hash_key,
            retries,
            retry_on_5xx,
            retry_body_limit,
            connect_timeout_ms,
            response_timeout_ms,
            idle_timeout_ms,
            health_path,
            healthy_values,
            expected_status,
            interval_ms,
            timeout_ms,
            fall,
            rise,
            evict_after,
        })
    }
}

fn tree_index(name: &str) -> usize {
    TREES.iter().position(|t| *t == name).expect("a known tree")
}

/// Migration 2: every record to format 2, with the defaults lb 0.1 behaved by.
pub fn v1_to_v2(db: &sled::Db) -> Result<Vec<Change>, String> {
    let mut changes = Vec::new();
    let shown = |key: &[u8]| String::from_utf8_lossy(key).replace('\0', "/");
    for entry in db.open_tree(POOLS).map_err(|e| e.to_string())?.iter() {
        let (key, value) = entry.map_err(|e| e.to_string())?;
        let old: v1::Pool = decode(v1::FORMAT, &value).map_err(|e| format!("pool {}: {e}", shown(&key)))?;
        let new = v2::Pool {
            mode: old.mode,
            strategy: old.strategy,
            hash_key: "client_ip".into(),
            retries: 2,
            retry_on_5xx: false,
            retry_body_limit: 64 * 1024,
            connect_timeout_ms: 3_000,
            response_timeout_ms: 60_000,
            idle_timeout_ms: 90_000,
            health_path: old.health_path,
            healthy_values: old.healthy_values,
            expected_status: None,
            interval_ms: old.interval_ms,
            timeout_ms: 1_000,
            fall: 3,
            rise: 2,
            evict_after: 30,
        };
        changes.push(Change { tree: tree_index(POOLS), key: key.to_vec(), value: Some(v2::encode_pool(&new)) });
    }
    for entry in db.open_tree(BACKENDS).map_err(|e| e.to_string())?.iter() {
        let (key, value) = entry.map_err(|e| e.to_string())?;
        let old: v1::Backend = decode(v1::FORMAT, &value).map_err(|e| format!("backend {}: {e}", shown(&key)))?;
        let new = v2::Backend {
            ip: old.ip,
            port: old.port,
            url_path: old.url_path,
            weight: 1,
            draining: false,
            status: 0,
            consecutive_failures: 0,
            consecutive_passes: 0,
            last_check_ms: None,
            last_error: None,
        };
        changes.push(Change { tree: tree_index(BACKENDS), key: key.to_vec(), value: Some(v2::encode_backend(&new)) });
    }
    Ok(changes)
}

/// Migration 3: every backend key from schema 2's `pattern NUL ip:port` to [`crate::keys`]'
/// length-prefixed one; records unchanged. An address holds no NUL, so the last NUL of an old
/// key ends its pattern, even for a pattern that holds NULs itself.
pub fn v2_to_v3(db: &sled::Db) -> Result<Vec<Change>, String> {
    let tree = tree_index(BACKENDS);
    let mut changes = Vec::new();
    for entry in db.open_tree(BACKENDS).map_err(|e| e.to_string())?.iter() {
        let (key, value) = entry.map_err(|e| e.to_string())?;
        let nul = key.iter().rposition(|&b| b == 0);
        let (pattern, addr) = match nul.map(|i| (&key[..i], &key[i + 1..])) {
            Some((pattern, addr)) => (std::str::from_utf8(pattern), std::str::from_utf8(addr)),
            None => return Err(format!("backend key {} holds no NUL", crate::keys::shown(&key))),
        };
        let (Ok(pattern), Ok(addr)) = (pattern, addr) else {
            return Err(format!("backend key {} is not UTF-8", crate::keys::shown(&key)));
        };
        changes.push(Change { tree, key: key.to_vec(), value: None });
        changes.push(Change { tree, key: crate::keys::backend_key(pattern, addr), value: Some(value.to_vec()) });
    }
    Ok(changes)
}

/// Migration 4: every pool record from format 2 to format 3, `expose_backend` and
/// `allow_trace` off (as lb behaved before them); backends unchanged.
pub fn pools_to_format_3(db: &sled::Db) -> Result<Vec<Change>, String> {
    let tree = tree_index(POOLS);
    let mut changes = Vec::new();
    for entry in db.open_tree(POOLS).map_err(|e| e.to_string())?.iter() {
        let (key, value) = entry.map_err(|e| e.to_string())?;
        let old = v2::decode_pool(&value).map_err(|e| format!("pool {}: {e}", crate::keys::shown(&key)))?;
        changes.push(Change { tree, key: key.to_vec(), value: Some(v3::encode_pool(&v3::from_v2(old))) });
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{run, run_migrations, schema_version, MIGRATIONS};

    #[test]
    fn a_schema_2_store_gets_collision_free_backend_keys_with_nothing_lost() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        run_migrations(&db, &MIGRATIONS[..2]).unwrap();
        let backends = db.open_tree(BACKENDS).unwrap();
        // As schema 2 wrote them, `/d`'s backend and `/d\0z`'s (a pattern holding a NUL).
        let old =
            [(&b"/d\x00127.0.0.1:1"[..], &b"d"[..]), (b"/d\x00z\x00127.0.0.1:2", b"dz"), (b"/\x00[::1]:3", b"root")];
        for (key, value) in old {
            backends.insert(key, value).unwrap();
        }
        assert_eq!(run_migrations(&db, &MIGRATIONS[..3]).unwrap(), crate::Outcome { from: 2, to: 3 });
        let now: Vec<(Vec<u8>, Vec<u8>)> =
            backends.iter().map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect();
        let mut want = vec![
            (crate::keys::backend_key("/d", "127.0.0.1:1"), b"d".to_vec()),
            (crate::keys::backend_key("/d\0z", "127.0.0.1:2"), b"dz".to_vec()),
            (crate::keys::backend_key("/", "[::1]:3"), b"root".to_vec()),
        ];
        want.sort();
        assert_eq!(now, want);
        let d: Vec<_> = backends.scan_prefix(crate::keys::backend_prefix("/d")).values().collect();
        assert_eq!(d.len(), 1, "/d's scan reaches only /d's backend");
    }

    fn v2_pool(mode: &str, hash_key: &str) -> v2::Pool {
        v2::Pool {
            mode: mode.into(),
            strategy: "consistent_hash".into(),
            hash_key: hash_key.into(),
            retries: 4,
            retry_on_5xx: true,
            retry_body_limit: 1024,
            connect_timeout_ms: 1_500,
            response_timeout_ms: 20_000,
            idle_timeout_ms: 30_000,
            health_path: "/hc".into(),
            healthy_values: vec!["up".into()],
            expected_status: Some(204),
            interval_ms: 5_000,
            timeout_ms: 500,
            fall: 4,
            rise: 3,
            evict_after: 0,
        }
    }

    #[test]
    fn a_schema_3_store_gets_format_3_pools_with_nothing_lost() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        run_migrations(&db, &MIGRATIONS[..3]).unwrap();
        let pools = db.open_tree(POOLS).unwrap();
        let backends = db.open_tree(BACKENDS).unwrap();
        let (root, api) = (v2_pool("proxy", "header:x-user"), v2_pool("redirect", "client_ip"));
        pools.insert("/", v2::encode_pool(&root)).unwrap();
        pools.insert("example.com/api/", v2::encode_pool(&api)).unwrap();
        let backend = v2::Backend {
            ip: "::1".parse().unwrap(),
            port: 8082,
            url_path: "/v2/".into(),
            weight: 7,
            draining: true,
            status: 2,
            consecutive_failures: 3,
            consecutive_passes: 0,
            last_check_ms: Some(1_700_000_000_000),
            last_error: Some("refused".into()),
        };
        let key = crate::keys::backend_key("/", "[::1]:8082");
        backends.insert(key.as_slice(), v2::encode_backend(&backend)).unwrap();

        assert_eq!(run(&db).unwrap(), crate::Outcome { from: 3, to: 4 });
        let read = |pattern: &str| v3::decode_pool(&pools.get(pattern).unwrap().unwrap()).unwrap();
        for (pattern, old) in [("/", root), ("example.com/api/", api)] {
            let new = read(pattern);
            assert!(!new.expose_backend && !new.allow_trace);
            assert_eq!(v3::to_v2(&new), Some(old), "{pattern}: every format 2 field kept");
        }
        assert!(v2::decode_pool(&pools.get("/").unwrap().unwrap()).is_err(), "no format 2 pool is left");
        assert_eq!(v2::decode_backend(&backends.get(key).unwrap().unwrap()).unwrap(), backend);
        assert_eq!(backends.len(), 1);
    }

    #[test]
    fn an_unreadable_schema_3_pool_stops_migration_4_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        run_migrations(&db, &MIGRATIONS[..3]).unwrap();
        let pools = db.open_tree(POOLS).unwrap();
        pools.insert("/a", v2::encode_pool(&v2_pool("proxy", "client_ip"))).unwrap();
        pools.insert("/b\x1b", &[v2::FORMAT, 0xff][..]).unwrap();
        let err = run(&db).unwrap_err().to_string();
        assert!(err.contains("migration 4") && err.contains("pool /b\\u{1b}"), "{err}");
        assert_eq!(schema_version(&db).unwrap(), 3);
        assert_eq!(v2::decode_pool(&pools.get("/a").unwrap().unwrap()).unwrap(), v2_pool("proxy", "client_ip"));
    }

    #[test]
    fn format_3_pools_with_both_settings_off_have_a_format_2_twin() {
        let on = v3::Pool { allow_trace: true, ..v3::from_v2(v2_pool("proxy", "client_ip")) };
        assert_eq!(v3::to_v2(&on), None);
        assert_eq!(v3::decode_pool(&v3::encode_pool(&on)), Ok(on));
    }

    #[test]
    fn a_schema_2_key_without_nul_stops_migration_3_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        run_migrations(&db, &MIGRATIONS[..2]).unwrap();
        db.open_tree(BACKENDS).unwrap().insert("/127.0.0.1:1", "x").unwrap();
        let err = run(&db).unwrap_err().to_string();
        assert!(err.contains("migration 3") && err.contains("holds no NUL"), "{err}");
        assert_eq!(schema_version(&db).unwrap(), 2);
        assert!(db.open_tree(BACKENDS).unwrap().get("/127.0.0.1:1").unwrap().is_some());
    }

    #[test]
    fn a_length_prefix_beyond_the_record_is_an_error_not_an_allocation() {
        // A format 2 backend whose url_path claims 2^64-1 bytes, then 2^40: bincode allocated
        // either before reading (a panic, or an abort), found by the store_record fuzz target.
        let mut huge = vec![v2::FORMAT, 0, 127, 0, 0, 1, 80, 0xfd];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(v2::decode_backend(&huge).is_err());
        let mut large = vec![v2::FORMAT, 0xfd];
        large.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(v2::decode_pool(&large).is_err());
        assert!(v1::decode_pool(&[v1::FORMAT, 1, b'x', 0xfc, 0xff, 0xff, 0xff, 0xff]).is_err());

        // A record far larger than lb writes still reads.
        let backend = v1::Backend { ip: "::1".parse().unwrap(), port: 1, url_path: "/".repeat(256 * 1024) };
        assert_eq!(v1::decode_backend(&v1::encode_backend(&backend)).unwrap(), backend);
    }

    #[test]
    fn a_schema_1_store_becomes_schema_2_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        run_migrations(&db, &MIGRATIONS[..1]).unwrap();
        let pool = v1::Pool {
            mode: "redirect".into(),
            strategy: "p2c".into(),
            health_path: "/hc".into(),
            healthy_values: vec!["up".into()],
            interval_ms: 2_000,
        };
        let backend = v1::Backend { ip: "127.0.0.1".parse().unwrap(), port: 8082, url_path: "/v2/".into() };
        db.open_tree(POOLS).unwrap().insert("/api/", v1::encode_pool(&pool)).unwrap();
        db.open_tree(BACKENDS).unwrap().insert(b"/api/\x00127.0.0.1:8082", v1::encode_backend(&backend)).unwrap();

        run_migrations(&db, &MIGRATIONS[..2]).unwrap();
        assert_eq!(schema_version(&db).unwrap(), 2);
        let pool = v2::decode_pool(&db.open_tree(POOLS).unwrap().get("/api/").unwrap().unwrap()).unwrap();
        assert_eq!((pool.mode.as_str(), pool.health_path.as_str(), pool.interval_ms), ("redirect", "/hc", 2_000));
        assert_eq!((pool.fall, pool.rise, pool.evict_after, pool.timeout_ms), (3, 2, 30, 1_000));
        assert_eq!((pool.retries, pool.hash_key.as_str(), pool.connect_timeout_ms), (2, "client_ip", 3_000));
        let raw = db.open_tree(BACKENDS).unwrap().get(b"/api/\x00127.0.0.1:8082").unwrap().unwrap();
        let backend = v2::decode_backend(&raw).unwrap();
        assert_eq!(
            (backend.port, backend.url_path.as_str(), backend.status, backend.draining),
            (8082, "/v2/", 0, false)
        );
        assert_eq!(backend.weight, 1);
    }

    #[test]
    fn an_unreadable_schema_1_record_stops_the_migration_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        run_migrations(&db, &MIGRATIONS[..1]).unwrap();
        db.open_tree(POOLS).unwrap().insert("/", &[1u8, 0xff][..]).unwrap();
        let err = run_migrations(&db, &MIGRATIONS[..2]).unwrap_err().to_string();
        assert!(err.contains("migration 2") && err.contains("pool /"), "{err}");
        assert_eq!(schema_version(&db).unwrap(), 1);
        assert_eq!(db.open_tree(POOLS).unwrap().get("/").unwrap().unwrap().as_ref(), [1u8, 0xff]);
    }
}
