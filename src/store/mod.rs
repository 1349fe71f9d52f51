//! Durable state: pools and backends in sled, one tree each, records encoded by [`codec`].
//!
//! Every write is flushed before it returns, so an acknowledged admin change survives a crash.
//! Writes that touch several keys run in one sled transaction. A write whose flush fails is
//! undone in memory, so the store never claims what it could not make durable.
//!
//! A damaged store is refused, untouched. sled rewrites its files when it opens them (it
//! recovers its log, truncating what it cannot read), so lb never opens a store it has not
//! verified: [`Store::open`] first copies sled's files to a temp dir, opens and migrates the
//! copy, loads it, and compares what it holds with the [`manifest`] of what lb last
//! acknowledged. Only a store that matches is opened for real. One lb per dir: [`lock`].
//!
//! # Layout
//! - `codec.rs`: lb's types to records and back, latest format only.
//! - `manifest.rs`: the digest of acknowledged state kept beside sled, and atomic file writes.
//! - `lock.rs`: the data dir's lock and pid file.
//! - this file: [`Store`]: open (verify, lock, migrate), load, the writes.

pub(crate) mod codec;
mod lock;
pub mod manifest;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sled::transaction::TransactionError;
use sled::Transactional;

use crate::pool::{BackendConfig, BackendState, PoolConfig};
use manifest::{Digest, Manifest};

/// Why the store could not do what was asked.
#[derive(Debug)]
pub enum StoreError {
    Open(String),
    /// A record this build cannot read; the store is left untouched.
    Corrupt {
        tree: &'static str,
        key: String,
        reason: String,
    },
    /// The store does not hold what lb last acknowledged; it is left untouched.
    Damaged(String),
    /// Another lb holds the data dir.
    Locked(String),
    Io(sled::Error),
    /// The manifest could not be written: nothing changed.
    Manifest(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Open(msg) | StoreError::Locked(msg) => f.write_str(msg),
            StoreError::Corrupt { tree, key, reason } => {
                write!(f, "store record {tree}/{key} cannot be read: {reason} (the store was left untouched)")
            }
            StoreError::Damaged(msg) => f.write_str(msg),
            StoreError::Io(e) => write!(f, "store error: {e}"),
            StoreError::Manifest(e) => write!(f, "store error: {e}; nothing changed"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(e)
    }
}

/// A backend as loaded from the store.
pub type StoredBackend = (BackendConfig, BackendState);
/// A pool as loaded from the store, with its backends.
pub type StoredPool = (PoolConfig, Vec<StoredBackend>);

/// The last good export of the state, kept in the data dir for a restore.
pub const LAST_GOOD: &str = "last-good.json";

/// The first schema whose stores always have a manifest: one without is damaged.
const MANIFEST_SINCE: u32 = 3;

/// lb's sled database.
pub struct Store {
    db: sled::Db,
    pools: sled::Tree,
    backends: sled::Tree,
    dir: PathBuf,
    /// The manifest as last written; writes hold it from their first manifest write to their
    /// last (they are serialized by the control plane anyway).
    manifest: Mutex<Manifest>,
    /// `lb_store_write_seconds`: each durable write, flush included.
    writes: crate::metrics::StoreWrites,
    _lock: lock::DirLock,
}

impl Store {
    /// Locks `dir` (created if missing), verifies the store in it against its manifest on a
    /// copy, then opens it and brings its schema up to date. A store that is damaged, of a
    /// newer schema, or holds a record lb cannot read is refused with every file untouched.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let open_err =
            |e: &dyn std::fmt::Display| StoreError::Open(format!("cannot open store in {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(|e| open_err(&e))?;
        let mut lock = lock::DirLock::take(dir).map_err(StoreError::Locked)?;
        let found = verify(dir)?;
        let mut manifest = Manifest { generation: 0, digest: found, pending: None };
        if let Some(last) = manifest::read(dir).map_err(|e| damaged(dir, e))? {
            manifest.generation = last.generation;
        }
        // Before sled touches anything: from here on, the store on disk is `found`.
        write_manifest(dir, &mut manifest)?;
        lock.claim().map_err(|e| open_err(&e))?;
        let db = sled::Config::new().path(dir).open().map_err(|e| open_err(&e))?;
        lb_migrations::run(&db).map_err(|e| open_err(&e))?;
        let pools = db.open_tree(lb_migrations::POOLS)?;
        let backends = db.open_tree(lb_migrations::BACKENDS)?;
        let store = Store {
            db,
            pools,
            backends,
            dir: dir.to_owned(),
            manifest: Mutex::new(manifest),
            writes: crate::metrics::StoreWrites::detached(),
            _lock: lock,
        };
        let loaded = Digest::of(&store.load()?);
        if loaded != found {
            return Err(damaged(
                dir,
                format!("it holds {} once opened, {} in its copy", loaded.counts(), found.counts()),
            ));
        }
        Ok(store)
    }

    /// Every pool with its backends, in pattern order.
    pub fn load(&self) -> Result<Vec<StoredPool>, StoreError> {
        load(&self.pools, &self.backends)
    }

    /// Creates or replaces a pool record (its backends are untouched).
    pub async fn put_pool(&self, pool: &PoolConfig) -> Result<(), StoreError> {
        let _timed = self.writes.time();
        let key = pool.pattern.as_bytes();
        let mut next = self.digest();
        if let Some(old) = self.pools.get(key)? {
            next.pool(&decoded_pool(&pool.pattern, &old)?, -1);
        }
        next.pool(pool, 1);
        self.begin(next)?;
        let previous = self.pools.insert(key, codec::encode_pool(pool))?;
        self.finish(next, || restore(&self.pools, key, previous)).await?;
        Ok(())
    }

    /// Removes a pool and all its backends, atomically.
    pub async fn remove_pool(&self, pattern: &str) -> Result<(), StoreError> {
        let _timed = self.writes.time();
        let mut next = self.digest();
        if let Some(old) = self.pools.get(pattern.as_bytes())? {
            next.pool(&decoded_pool(pattern, &old)?, -1);
        }
        let mut backend_keys = Vec::new();
        for entry in self.backends.scan_prefix(backend_prefix(pattern)) {
            let (key, value) = entry?;
            let (config, state) = decoded_backend(&key, &value)?;
            next.backend(pattern, &config, &state, -1);
            backend_keys.push(key);
        }
        self.begin(next)?;
        let removed = (&self.pools, &self.backends)
            .transaction(|(pools, backends)| {
                let mut old = Vec::with_capacity(backend_keys.len());
                for key in &backend_keys {
                    old.push((key.clone(), backends.remove(key)?));
                }
                Ok((pools.remove(pattern.as_bytes())?, old))
            })
            .map_err(transaction_error)?;
        self.finish(next, || {
            let (pool, backends) = removed;
            restore(&self.pools, pattern.as_bytes(), pool);
            for (key, value) in backends {
                restore(&self.backends, &key, value);
            }
        })
        .await?;
        Ok(())
    }

    /// Adds or replaces a backend of a pool, durably.
    pub async fn put_backend(
        &self,
        pattern: &str,
        backend: &BackendConfig,
        state: &BackendState,
    ) -> Result<(), StoreError> {
        let key = backend_key(pattern, backend.addr);
        let _timed = self.writes.time();
        let mut next = self.digest();
        if let Some(old) = self.backends.get(&key)? {
            let (config, state) = decoded_backend(&key, &old)?;
            next.backend(pattern, &config, &state, -1);
        }
        next.backend(pattern, backend, state, 1);
        self.begin(next)?;
        let record = codec::encode_backend(backend, state);
        let previous = self.backends.insert(key.as_slice(), record)?;
        self.finish(next, || restore(&self.backends, &key, previous)).await?;
        Ok(())
    }

    /// Records a backend's state without waiting for the flush: health is relearned by the
    /// next check, so sled's periodic flush (every 500 ms) is durable enough, and thousands of
    /// backends changing state at once must not mean thousands of fsyncs. The manifest does
    /// not cover health, so it is not written either.
    pub fn save_backend_state(
        &self,
        pattern: &str,
        backend: &BackendConfig,
        state: &BackendState,
    ) -> Result<(), StoreError> {
        let record = codec::encode_backend(backend, state);
        self.backends.insert(backend_key(pattern, backend.addr), record)?;
        Ok(())
    }

    pub async fn remove_backend(&self, pattern: &str, addr: SocketAddr) -> Result<(), StoreError> {
        let _timed = self.writes.time();
        let key = backend_key(pattern, addr);
        let mut next = self.digest();
        if let Some(old) = self.backends.get(&key)? {
            let (config, state) = decoded_backend(&key, &old)?;
            next.backend(pattern, &config, &state, -1);
        }
        self.begin(next)?;
        let previous = self.backends.remove(key.as_slice())?;
        self.finish(next, || restore(&self.backends, &key, previous)).await?;
        Ok(())
    }

    /// Replaces every pool and backend with `pools`, in one transaction.
    pub async fn replace_all(&self, pools: &[StoredPool]) -> Result<(), StoreError> {
        let _timed = self.writes.time();
        let next = Digest::of(pools);
        let all = |tree: &sled::Tree| tree.iter().collect::<Result<Vec<_>, _>>();
        let (old_pools, old_backends) = (all(&self.pools)?, all(&self.backends)?);
        let mut new_pools = Vec::with_capacity(pools.len());
        let mut new_backends = Vec::new();
        for (pool, backends) in pools {
            new_pools.push((pool.pattern.as_bytes().to_vec(), codec::encode_pool(pool)));
            for (config, state) in backends {
                new_backends.push((backend_key(&pool.pattern, config.addr), codec::encode_backend(config, state)));
            }
        }
        self.begin(next)?;
        (&self.pools, &self.backends)
            .transaction(|(pools, backends)| {
                for (key, _) in &old_pools {
                    pools.remove(key)?;
                }
                for (key, _) in &old_backends {
                    backends.remove(key)?;
                }
                for (key, value) in &new_pools {
                    pools.insert(key.as_slice(), value.as_slice())?;
                }
                for (key, value) in &new_backends {
                    backends.insert(key.as_slice(), value.as_slice())?;
                }
                Ok(())
            })
            .map_err(transaction_error)?;
        self.finish(next, || {
            for (tree, new, old) in
                [(&self.pools, &new_pools, old_pools), (&self.backends, &new_backends, old_backends)]
            {
                for (key, _) in new {
                    let _ = tree.remove(key.as_slice());
                }
                for (key, value) in old {
                    let _ = tree.insert(key, value);
                }
            }
        })
        .await?;
        Ok(())
    }

    /// Replaces `DIR/last-good.json` with `json`, atomically.
    /// Times every durable write into `writes`.
    pub fn time_writes(&mut self, writes: crate::metrics::StoreWrites) {
        self.writes = writes;
    }

    pub fn write_last_good(&self, json: &[u8]) -> Result<(), String> {
        manifest::write_atomically(&self.dir, LAST_GOOD, "last-good.json.tmp", json)
    }

    /// Flushes everything written so far (health states; every change is flushed already).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn digest(&self) -> Digest {
        self.manifest.lock().unwrap_or_else(|e| e.into_inner()).digest
    }

    /// The first manifest write of a change: the store may hold `next` from now on. A failure
    /// refuses the change before anything was written.
    fn begin(&self, next: Digest) -> Result<(), StoreError> {
        let mut m = self.manifest.lock().unwrap_or_else(|e| e.into_inner());
        let mut pending = Manifest { pending: Some(next), ..m.clone() };
        update_manifest(&self.dir, &mut pending)?;
        *m = pending;
        Ok(())
    }

    /// The last manifest write of a change, after sled's flush and before it is acknowledged:
    /// the digest `next` alone, so that from the acknowledgement on a store that lost the
    /// change is damage. A failure undoes the change and refuses it: `undo`, flushed, and the
    /// manifest naming both digests rewritten (a failed write may have renamed before its last
    /// fsync failed), each best effort, since the disk is failing; whichever of them lands, the
    /// store on disk is one the manifest names.
    fn commit(&self, next: Digest, undo: impl FnOnce()) -> Result<(), StoreError> {
        let mut m = self.manifest.lock().unwrap_or_else(|e| e.into_inner());
        let mut settled = Manifest { digest: next, pending: None, ..m.clone() };
        if let Err(e) = update_manifest(&self.dir, &mut settled) {
            undo();
            let _ = self.db.flush();
            let _ = update_manifest(&self.dir, &mut m);
            return Err(e);
        }
        *m = settled;
        Ok(())
    }

    /// Makes a change written to sled durable and acknowledged: sled's flush, then the
    /// manifest's digest alone ([`Store::commit`]). `undo` reverts the change in sled if either
    /// fails, so the store never claims what it could not make durable.
    async fn finish(&self, next: Digest, undo: impl FnOnce()) -> Result<(), StoreError> {
        if let Err(e) = self.db.flush_async().await {
            undo();
            return Err(e.into());
        }
        self.commit(next, undo)
    }
}

/// Creates the manifest anew, whole, with the next generation.
fn write_manifest(dir: &Path, manifest: &mut Manifest) -> Result<(), StoreError> {
    manifest.generation += 1;
    manifest::write(dir, manifest).map_err(StoreError::Manifest)
}

/// Writes `manifest` with the next generation over the older copy in the manifest.
fn update_manifest(dir: &Path, manifest: &mut Manifest) -> Result<(), StoreError> {
    manifest.generation += 1;
    manifest::update(dir, manifest).map_err(StoreError::Manifest)
}

fn damaged(dir: &Path, why: String) -> StoreError {
    StoreError::Damaged(format!(
        "store in {dir} is damaged: {why}; every file was left untouched: move {dir} aside (to {dir}.damaged) \
         and restore with lb --import {dir}.damaged/{LAST_GOOD} (README: Backup and restore)",
        dir = dir.display(),
    ))
}

/// Is `name` one of lb's own files in the data dir, rather than sled's?
fn is_lbs_own(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with("lb-manifest") || name == lock::FILE || name.starts_with("last-good.json")
}

/// Verifies the store in `dir` without touching it (see the module doc) and returns the
/// digest of what it holds.
fn verify(dir: &Path) -> Result<Digest, StoreError> {
    let manifest = manifest::read(dir).map_err(|e| damaged(dir, e))?;
    let unreadable = |e: &dyn std::fmt::Display| damaged(dir, format!("it cannot be read ({e})"));
    let copy = tempfile::Builder::new().prefix("lb-verify-").tempdir().map_err(|e| {
        StoreError::Open(format!("cannot make a temp dir to verify the store in {}: {e}", dir.display()))
    })?;
    let mut sled_files = false;
    copy_dir(dir, copy.path(), &mut sled_files)
        .map_err(|e| StoreError::Open(format!("cannot copy the store in {} to verify it: {e}", dir.display())))?;
    let (schema, found) = if sled_files {
        let db = sled::Config::new().path(copy.path()).flush_every_ms(None).open().map_err(|e| unreadable(&e))?;
        let schema = lb_migrations::schema_version(&db).map_err(|e| unreadable(&e))?;
        lb_migrations::run(&db)
            .map_err(|e| StoreError::Open(format!("cannot open store in {}: {e}", dir.display())))?;
        let pools = db.open_tree(lb_migrations::POOLS)?;
        let backends = db.open_tree(lb_migrations::BACKENDS)?;
        (schema, Digest::of(&load(&pools, &backends)?))
    } else {
        (0, Digest::default())
    };
    match manifest {
        Some(m) if m.digest == found || m.pending == Some(found) => Ok(found),
        Some(m) => Err(damaged(
            dir,
            format!(
                "it holds {} where lb last acknowledged {} (manifest generation {})",
                found.counts(),
                m.digest.counts(),
                m.generation
            ),
        )),
        None if schema >= MANIFEST_SINCE => Err(damaged(dir, format!("its manifest {} is missing", manifest::FILE))),
        // A store of an lb from before manifests, or a new one.
        None => Ok(found),
    }
}

/// Copies sled's files from `from` to `to` (lb's own files stay behind); sets `any` if there
/// were some.
fn copy_dir(from: &Path, to: &Path, any: &mut bool) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if is_lbs_own(&entry.file_name()) {
            continue;
        }
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            std::fs::create_dir(&target)?;
            copy_dir(&entry.path(), &target, any)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
            *any = true;
        }
    }
    Ok(())
}

/// Every pool in `pools` with its backends, in pattern order.
fn load(pools: &sled::Tree, backends: &sled::Tree) -> Result<Vec<StoredPool>, StoreError> {
    let mut out = Vec::new();
    for entry in pools.iter() {
        let (key, value) = entry?;
        let pattern = utf8(lb_migrations::POOLS, &key)?;
        let pool = decoded_pool(&pattern, &value)?;
        let mut found = Vec::new();
        for entry in backends.scan_prefix(backend_prefix(&pattern)) {
            let (key, value) = entry?;
            let backend = decoded_backend(&key, &value)?;
            if key.as_ref() != backend_key(&pattern, backend.0.addr).as_slice() {
                return Err(corrupt(lb_migrations::BACKENDS, &key, format!("holds backend {}", backend.0.addr)));
            }
            found.push(backend);
        }
        out.push((pool, found));
    }
    Ok(out)
}

fn decoded_pool(pattern: &str, value: &[u8]) -> Result<PoolConfig, StoreError> {
    codec::decode_pool(pattern.to_owned(), value)
        .map_err(|reason| corrupt(lb_migrations::POOLS, pattern.as_bytes(), reason))
}

fn decoded_backend(key: &[u8], value: &[u8]) -> Result<StoredBackend, StoreError> {
    codec::decode_backend(value).map_err(|reason| corrupt(lb_migrations::BACKENDS, key, reason))
}

fn restore(tree: &sled::Tree, key: &[u8], value: Option<sled::IVec>) {
    let _ = match value {
        Some(v) => tree.insert(key, v),
        None => tree.remove(key),
    };
}

fn transaction_error(e: TransactionError<()>) -> StoreError {
    match e {
        TransactionError::Storage(e) => StoreError::Io(e),
        TransactionError::Abort(()) => StoreError::Open("transaction aborted".into()),
    }
}

fn backend_prefix(pattern: &str) -> Vec<u8> {
    lb_migrations::keys::backend_prefix(pattern)
}

fn backend_key(pattern: &str, addr: SocketAddr) -> Vec<u8> {
    lb_migrations::keys::backend_key(pattern, &addr.to_string())
}

fn utf8(tree: &'static str, key: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(key.to_vec()).map_err(|_| corrupt(tree, key, "key is not UTF-8".into()))
}

fn corrupt(tree: &'static str, key: &[u8], reason: String) -> StoreError {
    StoreError::Corrupt { tree, key: lb_migrations::keys::shown(key), reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    /// Opens the store again in this process. sled lets go of its directory lock from its
    /// flusher thread, a moment after the last handle drops, so a reopen may have to wait.
    fn reopen(dir: &std::path::Path) -> Store {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            match Store::open(dir) {
                Ok(store) => return store,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => panic!("cannot reopen the store: {e}"),
            }
        }
    }

    fn pool(pattern: &str) -> PoolConfig {
        PoolConfig::new(pattern.into())
    }

    fn backend(port: u16) -> (BackendConfig, BackendState) {
        let config = BackendConfig { addr: SocketAddr::from(([127, 0, 0, 1], port)), url_path: "/".into(), weight: 1 };
        let mut state = BackendState::default();
        state.health.consecutive_failures = u32::from(port);
        (config, state)
    }

    async fn put(store: &Store, pattern: &str, (config, state): (BackendConfig, BackendState)) {
        store.put_backend(pattern, &config, &state).await.unwrap();
    }

    #[tokio::test]
    async fn survives_reopen_and_removes_pools_whole() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_pool(&pool("/")).await.unwrap();
            store.put_pool(&pool("/a")).await.unwrap();
            put(&store, "/", backend(1)).await;
            put(&store, "/", backend(2)).await;
            put(&store, "/a", backend(3)).await;
            store.remove_backend("/", backend(1).0.addr).await.unwrap();
        }
        let store = reopen(dir.path());
        let loaded = store.load().unwrap();
        assert_eq!(loaded, vec![(pool("/"), vec![backend(2)]), (pool("/a"), vec![backend(3)])]);
        store.remove_pool("/").await.unwrap();
        // "/" is a prefix of "/a": removing it must not touch /a's backends.
        assert_eq!(store.load().unwrap(), vec![(pool("/a"), vec![backend(3)])]);
    }

    #[tokio::test]
    async fn removing_a_pool_never_reaches_a_pool_whose_pattern_extends_it_with_nul() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_pool(&pool("/d")).await.unwrap();
            store.put_pool(&pool("/d\0z")).await.unwrap();
            put(&store, "/d", backend(1)).await;
            put(&store, "/d\0z", backend(2)).await;
            store.remove_pool("/d").await.unwrap();
        }
        let store = reopen(dir.path());
        assert_eq!(store.load().unwrap(), vec![(pool("/d\0z"), vec![backend(2)])]);
    }

    #[test]
    fn corrupt_record_is_reported_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            lb_migrations::run(&db).unwrap();
            db.open_tree(lb_migrations::POOLS).unwrap().insert("/x", &[7u8, 1, 2][..]).unwrap();
            db.flush().unwrap();
        }
        // Found on the copy, before sled opens the store itself.
        let err = Store::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("pools//x") && err.contains("format 7"), "{err}");
    }
}
