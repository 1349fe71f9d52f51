//! Durable state: pools and backends in sled, one tree each, records encoded by [`codec`].
//!
//! Every write is flushed before it returns, so an acknowledged admin change survives a crash.
//! Writes that touch several keys run in one sled transaction. A write whose flush fails is
//! undone in memory, so the store never claims what it could not make durable.

pub(crate) mod codec;

use std::net::SocketAddr;
use std::path::Path;

use sled::transaction::TransactionError;
use sled::Transactional;

use crate::pool::{BackendConfig, BackendState, PoolConfig};

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
    Io(sled::Error),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Open(msg) => f.write_str(msg),
            StoreError::Corrupt { tree, key, reason } => {
                write!(f, "store record {tree}/{key} cannot be read: {reason} (the store was left untouched)")
            }
            StoreError::Io(e) => write!(f, "store error: {e}"),
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

/// lb's sled database.
pub struct Store {
    db: sled::Db,
    pools: sled::Tree,
    backends: sled::Tree,
}

impl Store {
    /// Opens (or creates) the store in `dir` and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let open_err =
            |e: &dyn std::fmt::Display| StoreError::Open(format!("cannot open store in {}: {e}", dir.display()));
        let db = sled::Config::new().path(dir).open().map_err(|e| open_err(&e))?;
        lb_migrations::run(&db).map_err(|e| open_err(&e))?;
        let pools = db.open_tree(lb_migrations::POOLS)?;
        let backends = db.open_tree(lb_migrations::BACKENDS)?;
        Ok(Store { db, pools, backends })
    }

    /// Every pool with its backends, in pattern order.
    pub fn load(&self) -> Result<Vec<StoredPool>, StoreError> {
        let mut out = Vec::new();
        for entry in self.pools.iter() {
            let (key, value) = entry?;
            let pattern = utf8(lb_migrations::POOLS, &key)?;
            let pool = codec::decode_pool(pattern.clone(), &value)
                .map_err(|reason| corrupt(lb_migrations::POOLS, &key, reason))?;
            let mut backends = Vec::new();
            for entry in self.backends.scan_prefix(backend_prefix(&pattern)) {
                let (key, value) = entry?;
                backends.push(
                    codec::decode_backend(&value).map_err(|reason| corrupt(lb_migrations::BACKENDS, &key, reason))?,
                );
            }
            out.push((pool, backends));
        }
        Ok(out)
    }

    /// Creates or replaces a pool record (its backends are untouched).
    pub async fn put_pool(&self, pool: &PoolConfig) -> Result<(), StoreError> {
        let previous = self.pools.insert(pool.pattern.as_bytes(), codec::encode_pool(pool))?;
        self.flush_or_undo(|| restore(&self.pools, pool.pattern.as_bytes(), previous)).await
    }

    /// Removes a pool and all its backends, atomically.
    pub async fn remove_pool(&self, pattern: &str) -> Result<(), StoreError> {
        let backend_keys: Vec<sled::IVec> =
            self.backends.scan_prefix(backend_prefix(pattern)).keys().collect::<Result<_, _>>()?;
        let removed = (&self.pools, &self.backends)
            .transaction(|(pools, backends)| {
                let mut old = Vec::with_capacity(backend_keys.len());
                for key in &backend_keys {
                    old.push((key.clone(), backends.remove(key)?));
                }
                Ok((pools.remove(pattern.as_bytes())?, old))
            })
            .map_err(transaction_error)?;
        self.flush_or_undo(|| {
            let (pool, backends) = removed;
            restore(&self.pools, pattern.as_bytes(), pool);
            for (key, value) in backends {
                restore(&self.backends, &key, value);
            }
        })
        .await
    }

    /// Adds or replaces a backend of a pool, durably.
    pub async fn put_backend(
        &self,
        pattern: &str,
        backend: &BackendConfig,
        state: &BackendState,
    ) -> Result<(), StoreError> {
        let key = backend_key(pattern, backend.addr);
        let record = codec::encode_backend(backend, state);
        let previous = self.backends.insert(key.as_slice(), record)?;
        self.flush_or_undo(|| restore(&self.backends, &key, previous)).await
    }

    /// Records a backend's state without waiting for the flush: health is relearned by the
    /// next check, so sled's periodic flush (every 500 ms) is durable enough, and thousands of
    /// backends changing state at once must not mean thousands of fsyncs.
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
        let key = backend_key(pattern, addr);
        let previous = self.backends.remove(key.as_slice())?;
        self.flush_or_undo(|| restore(&self.backends, &key, previous)).await
    }

    /// Flushes everything written so far.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    async fn flush_or_undo(&self, undo: impl FnOnce()) -> Result<(), StoreError> {
        if let Err(e) = self.db.flush_async().await {
            undo();
            return Err(e.into());
        }
        Ok(())
    }
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
    let mut key = Vec::with_capacity(pattern.len() + 1);
    key.extend_from_slice(pattern.as_bytes());
    key.push(0);
    key
}

fn backend_key(pattern: &str, addr: SocketAddr) -> Vec<u8> {
    let mut key = backend_prefix(pattern);
    key.extend_from_slice(addr.to_string().as_bytes());
    key
}

fn utf8(tree: &'static str, key: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(key.to_vec()).map_err(|_| corrupt(tree, key, "key is not UTF-8".into()))
}

fn corrupt(tree: &'static str, key: &[u8], reason: String) -> StoreError {
    StoreError::Corrupt { tree, key: String::from_utf8_lossy(key).replace('\0', "/"), reason }
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

    #[test]
    fn corrupt_record_is_reported_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            lb_migrations::run(&db).unwrap();
            db.open_tree(lb_migrations::POOLS).unwrap().insert("/x", &[7u8, 1, 2][..]).unwrap();
            db.flush().unwrap();
        }
        let err = reopen(dir.path()).load().unwrap_err().to_string();
        assert!(err.contains("pools//x") && err.contains("format 7"), "{err}");
    }
}
