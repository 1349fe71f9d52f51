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
//! beside the digest it has; after sled's flush, and before the change is acknowledged, with the
//! new digest alone. Whatever a crash interrupts, the store on disk has one of the digests the
//! manifest names; anything else is damage, and so is a store that lost an acknowledged change
//! (the manifest names only the new digest by then).
//!
//! Two writes per change, each one fsync: the file holds two copies (slots) of the manifest,
//! each with its generation and a SHA-256 of itself, and a write overwrites the older slot in
//! place (no rename, no size change, so `fdatasync` makes it durable without a directory fsync).
//! A reader takes the whole slot with the higher generation: a write a crash tore leaves its
//! slot unreadable and the other, the manifest before that write, in force, which names the
//! store on disk too (the write before a sled change names both digests; the one after it
//! comes after sled's flush). The file is created whole (both slots) atomically: a temp file,
//! fsync, rename, fsync of the dir. A manifest of an lb from before slots (one JSON text) is
//! read as it is and rewritten in slots at start.

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
/// The size of a slot; the file is two of them.
const SLOT: usize = 512;
/// How a slot starts.
const MAGIC: &[u8; 8] = b"lbmanif2";
/// The format written inside slots (1: the JSON file of lbs before slots).
const FORMAT: u32 = 2;

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
    if bytes.first() == Some(&b'{') {
        return decode_json(&bytes, 1).map(Some).map_err(bad);
    }
    if bytes.len() != 2 * SLOT {
        return Err(bad(format!("it has {} bytes, not {}", bytes.len(), 2 * SLOT)));
    }
    let slots = [decode_slot(&bytes[..SLOT]), decode_slot(&bytes[SLOT..])];
    match slots {
        [Some(a), Some(b)] => Ok(Some(if a.generation >= b.generation { a } else { b })),
        [Some(m), None] | [None, Some(m)] => Ok(Some(m)),
        [None, None] => Err(bad("neither of its two copies is whole".into())),
    }
}

/// Creates or replaces the manifest of `dir` atomically and durably, both slots holding it.
pub fn write(dir: &Path, manifest: &Manifest) -> Result<(), String> {
    let slot = encode_slot(manifest);
    write_atomically(dir, FILE, TEMP, &[slot, slot].concat())
}

/// Writes `manifest` over the older slot of the manifest of `dir` (see the module doc), which
/// [`write`] created: one `fdatasync`.
pub fn update(dir: &Path, manifest: &Manifest) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let path = dir.join(FILE);
    let failed = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let file = std::fs::OpenOptions::new().write(true).open(&path).map_err(failed)?;
    let at = (manifest.generation % 2) * SLOT as u64;
    file.write_all_at(&encode_slot(manifest), at).map_err(failed)?;
    file.sync_data().map_err(failed)
}

/// A slot: [`MAGIC`], the length of the JSON as a big-endian u16, the JSON, the SHA-256 of all
/// that, zeros to [`SLOT`] bytes.
fn encode_slot(manifest: &Manifest) -> [u8; SLOT] {
    let json = ManifestJson {
        manifest: FORMAT,
        generation: manifest.generation,
        digest: manifest.digest.into(),
        pending: manifest.pending.map(DigestJson::from),
    };
    let json = serde_json::to_vec(&json).expect("a manifest serializes");
    // Every number has at most 20 digits: a manifest is under 300 bytes.
    assert!(json.len() + 42 <= SLOT, "a manifest fits its slot");
    let mut slot = [0; SLOT];
    slot[..8].copy_from_slice(MAGIC);
    slot[8..10].copy_from_slice(&(json.len() as u16).to_be_bytes());
    slot[10..10 + json.len()].copy_from_slice(&json);
    let end = 10 + json.len();
    let sum = Sha256::digest(&slot[..end]);
    slot[end..end + 32].copy_from_slice(&sum);
    slot
}

/// The manifest in a slot, if the slot is whole.
fn decode_slot(slot: &[u8]) -> Option<Manifest> {
    if &slot[..8] != MAGIC {
        return None;
    }
    let end = 10 + u16::from_be_bytes([slot[8], slot[9]]) as usize;
    if end + 32 > slot.len() || Sha256::digest(&slot[..end])[..] != slot[end..end + 32] {
        return None;
    }
    decode_json(&slot[10..end], FORMAT).ok()
}

fn decode_json(bytes: &[u8], format: u32) -> Result<Manifest, String> {
    let json: ManifestJson = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if json.manifest != format {
        return Err(format!("unknown manifest format {}", json.manifest));
    }
    Ok(Manifest {
        generation: json.generation,
        digest: json.digest.try_into()?,
        pending: json.pending.map(Digest::try_from).transpose()?,
    })
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
        std::fs::write(dir.path().join(FILE), [7; 2 * SLOT]).unwrap();
        assert!(read(dir.path()).unwrap_err().contains("neither of its two copies is whole"));
    }

    #[test]
    fn updates_alternate_slots_and_a_torn_one_leaves_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut m = Manifest { generation: 1, digest: Digest::default(), pending: None };
        write(dir.path(), &m).unwrap();
        for generation in 2..6 {
            let (before, prior) = (m.clone(), std::fs::read(&path).unwrap());
            m.generation = generation;
            m.digest.pool(&PoolConfig::new(format!("/{generation}")), 1);
            update(dir.path(), &m).unwrap();
            assert_eq!(read(dir.path()).unwrap(), Some(m.clone()));
            // The same write torn by a crash (its slot part new, part old): the one before holds.
            let whole = std::fs::read(&path).unwrap();
            let mut torn = whole.clone();
            let at = (generation % 2) as usize * SLOT;
            torn[at + 40..at + SLOT].copy_from_slice(&prior[at + 40..at + SLOT]);
            assert_ne!(torn, whole);
            std::fs::write(&path, &torn).unwrap();
            assert_eq!(read(dir.path()).unwrap(), Some(before));
            std::fs::write(&path, &whole).unwrap();
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * SLOT as u64);
    }

    #[test]
    fn a_manifest_of_an_lb_from_before_slots_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let old = r#"{"manifest":1,"generation":7,"digest":{"pools":1,"backends":0,"sum":"00000000000000000000000000000001"},"pending":null}"#;
        std::fs::write(dir.path().join(FILE), format!("{old}\n")).unwrap();
        let m = read(dir.path()).unwrap().unwrap();
        assert_eq!((m.generation, m.digest.pools, m.pending), (7, 1, None));
    }
}
