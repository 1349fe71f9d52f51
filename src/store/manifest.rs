//! The manifest: what lb last acknowledged, kept beside sled in `DIR/lb-manifest` so that a
//! damaged store is noticed at start instead of served with pools missing.
//!
//! It holds a [`Digest`] of everything acknowledged: how many pools and backends, and the
//! wrapping sum of a SHA-256 (its first 128 bits) of each record. A sum, not a hash of the
//! whole, so that each write updates it from the records it replaces, whatever the store's
//! size. It covers what an admin set (pools, backends, draining, weight), not health, which
//! lb writes without flushing and relearns anyway. It is computed from records decoded and
//! re-encoded by [`codec`](super::codec), so a migration that only moves keys keeps it, and a
//! pool is digested in the oldest format that holds its settings
//! ([`codec::digested_pool`](super::codec::digested_pool)), so a migration that only adds
//! settings, off, keeps it too.
//!
//! Before sled's write, the manifest is written with `pending`, the digest the store will have,
//! beside the digest it has: whatever a crash interrupts, the store on disk has one of the two
//! digests the manifest names; anything else is damage. Once the burst of changes is over, the
//! control plane settles the manifest (the new digest alone), off the request path: until
//! then, a store that lost only the last change would pass. Each manifest write is atomic: a
//! temp file, fsync, rename, fsync of the dir. It costs the request path one such write per
//! change (two fsyncs), not two.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::pool::{BackendConfig, BackendState, PoolConfig};

/// The manifest's file name in the data dir.
pub const FILE: &str = "lb-manifest";
/// The temp file a new manifest is written to before it replaces the old.
pub const TEMP: &str = "lb-manifest.tmp";

/// A digest of acknowledged pools and backends (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest {
    pub pools: u64,
    pub backends: u64,
    sum: u128,
}

impl Digest {
    /// Counts pool `config` in (`sign` 1) or out (`sign` -1).
    pub fn pool(&mut self, config: &PoolConfig, sign: i8) {
        let record = super::codec::digested_pool(config);
        self.count(b"pool", &config.pattern, &record, sign, true);
    }

    /// Counts a backend of pool `pattern` in or out: its config and draining, not its health.
    pub fn backend(&mut self, pattern: &str, config: &BackendConfig, state: &BackendState, sign: i8) {
        let acknowledged = BackendState { draining: state.draining, ..BackendState::default() };
        let record = super::codec::encode_backend(config, &acknowledged);
        self.count(b"backend", pattern, &record, sign, false);
    }

    fn count(&mut self, kind: &[u8], pattern: &str, record: &[u8], sign: i8, pool: bool) {
        let mut h = Sha256::new();
        h.update(kind);
        h.update((pattern.len() as u64).to_be_bytes());
        h.update(pattern.as_bytes());
        h.update(record);
        let bytes: [u8; 16] = h.finalize()[..16].try_into().expect("16 of 32 bytes");
        let value = u128::from_be_bytes(bytes);
        let n = if pool { &mut self.pools } else { &mut self.backends };
        if sign > 0 {
            self.sum = self.sum.wrapping_add(value);
            *n = n.wrapping_add(1);
        } else {
            self.sum = self.sum.wrapping_sub(value);
            *n = n.wrapping_sub(1);
        }
    }

    /// The digest of pools loaded from a store.
    pub fn of(pools: &[super::StoredPool]) -> Digest {
        let mut d = Digest::default();
        for (pool, backends) in pools {
            d.pool(pool, 1);
            for (config, state) in backends {
                d.backend(&pool.pattern, config, state, 1);
            }
        }
        d
    }

    /// "2 pools and 3 backends", for messages.
    pub fn counts(&self) -> String {
        let s = |n: u64| if n == 1 { "" } else { "s" };
        format!("{} pool{} and {} backend{}", self.pools, s(self.pools), self.backends, s(self.backends))
    }
}

/// What `DIR/lb-manifest` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Counts every manifest write.
    pub generation: u64,
    /// What the store holds once every acknowledged write is in.
    pub digest: Digest,
    /// The digest of a write under way: the store may hold it instead.
    pub pending: Option<Digest>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestJson {
    manifest: u32,
    generation: u64,
    digest: DigestJson,
    pending: Option<DigestJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DigestJson {
    pools: u64,
    backends: u64,
    sum: String,
}

impl From<Digest> for DigestJson {
    fn from(d: Digest) -> Self {
        DigestJson { pools: d.pools, backends: d.backends, sum: format!("{:032x}", d.sum) }
    }
}

impl TryFrom<DigestJson> for Digest {
    type Error = String;
    fn try_from(d: DigestJson) -> Result<Self, String> {
        let sum = u128::from_str_radix(&d.sum, 16).map_err(|_| format!("bad digest {:?}", d.sum))?;
        Ok(Digest { pools: d.pools, backends: d.backends, sum })
    }
}

/// Reads the manifest of `dir`: `None` when there is none, an error when it cannot be read.
pub fn read(dir: &Path) -> Result<Option<Manifest>, String> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let bad = |why: String| format!("{} is damaged: {why}", path.display());
    let json: ManifestJson = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if json.manifest != 1 {
        return Err(bad(format!("unknown manifest format {}", json.manifest)));
    }
    Ok(Some(Manifest {
        generation: json.generation,
        digest: json.digest.try_into().map_err(bad)?,
        pending: json.pending.map(Digest::try_from).transpose().map_err(bad)?,
    }))
}

/// Replaces the manifest of `dir` atomically and durably.
pub fn write(dir: &Path, manifest: &Manifest) -> Result<(), String> {
    let json = ManifestJson {
        manifest: 1,
        generation: manifest.generation,
        digest: manifest.digest.into(),
        pending: manifest.pending.map(DigestJson::from),
    };
    let mut bytes = serde_json::to_vec(&json).expect("a manifest serializes");
    bytes.push(b'\n');
    write_atomically(dir, FILE, TEMP, &bytes)
}

/// Writes `name` in `dir` through `temp`: write, fsync, rename, fsync the dir, so that a crash
/// leaves the old file or the new one, never a part.
pub fn write_atomically(dir: &Path, name: &str, temp: &str, bytes: &[u8]) -> Result<(), String> {
    let (path, temp): (PathBuf, PathBuf) = (dir.join(name), dir.join(temp));
    let failed = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut file = File::create(&temp).map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    drop(file);
    std::fs::rename(&temp, &path).map_err(failed)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_count_in_and_out_and_ignore_health() {
        let pool = PoolConfig::new("/".into());
        let backend = BackendConfig { addr: "127.0.0.1:1".parse().unwrap(), url_path: "/".into(), weight: 1 };
        let mut d = Digest::default();
        d.pool(&pool, 1);
        d.backend("/", &backend, &BackendState::default(), 1);
        let mut sick = BackendState::default();
        sick.health.consecutive_failures = 9;
        let mut same = Digest::default();
        same.pool(&pool, 1);
        same.backend("/", &backend, &sick, 1);
        assert_eq!(d, same);
        let draining = BackendState { draining: true, ..BackendState::default() };
        let mut other = Digest::default();
        other.pool(&pool, 1);
        other.backend("/", &backend, &draining, 1);
        assert_ne!(d, other);
        other.backend("/", &backend, &draining, -1);
        other.pool(&pool, -1);
        assert_eq!(other, Digest::default());
    }

    #[test]
    fn manifests_round_trip_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let mut d = Digest::default();
        d.pool(&PoolConfig::new("/x".into()), 1);
        let m = Manifest { generation: 3, digest: d, pending: Some(Digest::default()) };
        write(dir.path(), &m).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(m));
        std::fs::write(dir.path().join(FILE), b"{\"manifest\": 1").unwrap();
        assert!(read(dir.path()).unwrap_err().contains("is damaged"));
    }
}
