//! The control plane: the only writer of pools and backends.
//!
//! Every change is written to the store and flushed first, then applied to the in-memory model,
//! then published as a new immutable [`Routes`] snapshot that the data plane picks up on its next
//! request. The data plane never takes the lock held here.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Mutex;

use crate::health::HealthCheck;
use crate::pool::{
    Backend, BackendConfig, BackendStatus, HealthCheckSpec, Mode, Pool, PoolConfig, Strategy,
};
use crate::routing::{Pattern, RoutingTable};
use crate::store::{Store, StoreError};

/// The routing snapshot the data plane reads.
pub type Routes = RoutingTable<Arc<Pool>>;

/// Why an admin change was refused. Each maps to one HTTP status in the admin API.
#[derive(Debug)]
pub enum Error {
    /// Malformed input (400).
    Invalid(String),
    /// Unknown pool or backend (404).
    NotFound(String),
    /// Already exists (409).
    Conflict(String),
    /// The backend failed its health check (422).
    Sick(String),
    /// The store failed; nothing changed (500).
    Store(StoreError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(m) | Error::NotFound(m) | Error::Conflict(m) | Error::Sick(m) => {
                f.write_str(m)
            }
            Error::Store(e) => write!(f, "{e}"),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

/// A pool to create; unset fields take their defaults.
#[derive(Debug, Clone, Default)]
pub struct NewPool {
    pub pattern: String,
    pub mode: Option<Mode>,
    pub strategy: Option<Strategy>,
    pub health_check: Option<HealthCheckSpec>,
}

struct Entry {
    pattern: Pattern,
    pool: Arc<Pool>,
}

/// Owns the store and the live model, and publishes routing snapshots.
pub struct ControlPlane {
    store: Store,
    health: HealthCheck,
    routes: Arc<ArcSwap<Routes>>,
    pools: Mutex<BTreeMap<String, Entry>>,
}

impl ControlPlane {
    /// Loads every pool from the store and publishes the first snapshot.
    pub fn load(store: Store) -> Result<ControlPlane, StoreError> {
        let mut pools = BTreeMap::new();
        for (config, backends) in store.load()? {
            let pattern = Pattern::parse(&config.pattern).map_err(|e| StoreError::Corrupt {
                tree: lb_migrations::POOLS,
                key: config.pattern.clone(),
                reason: e.to_string(),
            })?;
            let backends = backends
                .into_iter()
                .map(|b| Arc::new(Backend::new(b)))
                .collect();
            pools.insert(
                config.pattern.clone(),
                Entry {
                    pattern,
                    pool: Arc::new(Pool::new(config, backends)),
                },
            );
        }
        let control = ControlPlane {
            store,
            health: HealthCheck::default(),
            routes: Arc::new(ArcSwap::from_pointee(Routes::default())),
            pools: Mutex::new(pools),
        };
        control.publish(
            &control
                .pools
                .try_lock()
                .expect("nobody else holds the lock yet"),
        );
        Ok(control)
    }

    /// The snapshot handle the data plane reads.
    pub fn routes(&self) -> Arc<ArcSwap<Routes>> {
        self.routes.clone()
    }

    /// Flushes the store (at shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.store.flush()
    }

    pub async fn pools(&self) -> Vec<Arc<Pool>> {
        self.pools
            .lock()
            .await
            .values()
            .map(|e| e.pool.clone())
            .collect()
    }

    pub async fn pool(&self, pattern: &str) -> Result<Arc<Pool>, Error> {
        let key = canonical(pattern)?;
        let pools = self.pools.lock().await;
        Ok(find(&pools, &key)?.pool.clone())
    }

    pub async fn add_pool(&self, new: NewPool) -> Result<Arc<Pool>, Error> {
        let pattern = Pattern::parse(&new.pattern).map_err(|e| Error::Invalid(e.to_string()))?;
        let health_check = new.health_check.unwrap_or_default();
        health_check.validate().map_err(Error::Invalid)?;
        let key = pattern.to_string();
        let config = PoolConfig {
            pattern: key.clone(),
            mode: new.mode.unwrap_or_default(),
            strategy: new.strategy.unwrap_or_default(),
            health_check,
        };
        let mut pools = self.pools.lock().await;
        if pools.contains_key(&key) {
            return Err(Error::Conflict(format!("pool {key:?} already exists")));
        }
        self.store.put_pool(&config).await?;
        let pool = Arc::new(Pool::new(config, Vec::new()));
        pools.insert(
            key,
            Entry {
                pattern,
                pool: pool.clone(),
            },
        );
        self.publish(&pools);
        Ok(pool)
    }

    /// Changes a pool's mode and/or strategy, keeping its backends.
    pub async fn update_pool(
        &self,
        pattern: &str,
        mode: Option<Mode>,
        strategy: Option<Strategy>,
    ) -> Result<Arc<Pool>, Error> {
        let key = canonical(pattern)?;
        let mut pools = self.pools.lock().await;
        let entry = find(&pools, &key)?;
        let mut config = entry.pool.config.clone();
        config.mode = mode.unwrap_or(config.mode);
        config.strategy = strategy.unwrap_or(config.strategy);
        self.store.put_pool(&config).await?;
        let pool = Arc::new(Pool::new(config, entry.pool.backends.clone()));
        pools.get_mut(&key).expect("found above").pool = pool.clone();
        self.publish(&pools);
        Ok(pool)
    }

    /// Removes a pool and its backends; returns the pool as it was.
    pub async fn remove_pool(&self, pattern: &str) -> Result<Arc<Pool>, Error> {
        let key = canonical(pattern)?;
        let mut pools = self.pools.lock().await;
        find(&pools, &key)?;
        self.store.remove_pool(&key).await?;
        let entry = pools.remove(&key).expect("found above");
        self.publish(&pools);
        Ok(entry.pool)
    }

    /// Adds a backend after one passing health check, as the Go tool did.
    pub async fn add_backend(
        &self,
        pattern: &str,
        config: BackendConfig,
    ) -> Result<Arc<Backend>, Error> {
        config.validate().map_err(Error::Invalid)?;
        let key = canonical(pattern)?;
        let spec = {
            let pools = self.pools.lock().await;
            let entry = find(&pools, &key)?;
            ensure_absent(&entry.pool, config.addr)?;
            entry.pool.config.health_check.clone()
        };
        // Checked without the lock: a slow backend must not stall other admin calls.
        self.health
            .check(config.addr, &spec)
            .await
            .map_err(|why| Error::Sick(format!("backend is sick: {why}")))?;
        let mut pools = self.pools.lock().await;
        let entry = find(&pools, &key)?;
        ensure_absent(&entry.pool, config.addr)?;
        self.store.put_backend(&key, &config).await?;
        let backend = Arc::new(Backend::new(config));
        backend.set_status(BackendStatus::Healthy);
        let mut backends = entry.pool.backends.clone();
        backends.push(backend.clone());
        let pool = Arc::new(Pool::new(entry.pool.config.clone(), backends));
        pools.get_mut(&key).expect("found above").pool = pool;
        self.publish(&pools);
        Ok(backend)
    }

    /// Removes a backend; requests already sent to it finish.
    pub async fn remove_backend(
        &self,
        pattern: &str,
        addr: SocketAddr,
    ) -> Result<Arc<Backend>, Error> {
        let key = canonical(pattern)?;
        let mut pools = self.pools.lock().await;
        let entry = find(&pools, &key)?;
        let Some(index) = entry.pool.backends.iter().position(|b| b.addr() == addr) else {
            return Err(Error::NotFound(format!(
                "pool {key:?} has no backend {addr}"
            )));
        };
        self.store.remove_backend(&key, addr).await?;
        let mut backends = entry.pool.backends.clone();
        let backend = backends.remove(index);
        let pool = Arc::new(Pool::new(entry.pool.config.clone(), backends));
        pools.get_mut(&key).expect("found above").pool = pool;
        self.publish(&pools);
        Ok(backend)
    }

    fn publish(&self, pools: &BTreeMap<String, Entry>) {
        let table = Routes::new(pools.values().map(|e| (e.pattern.clone(), e.pool.clone())));
        self.routes.store(Arc::new(table));
    }
}

/// The store key of a pattern as an admin typed it (`Example.com/` is `example.com/`).
fn canonical(pattern: &str) -> Result<String, Error> {
    Pattern::parse(pattern)
        .map(|p| p.to_string())
        .map_err(|e| Error::Invalid(e.to_string()))
}

fn find<'a>(pools: &'a BTreeMap<String, Entry>, key: &str) -> Result<&'a Entry, Error> {
    pools
        .get(key)
        .ok_or_else(|| Error::NotFound(format!("no pool {key:?}")))
}

fn ensure_absent(pool: &Pool, addr: SocketAddr) -> Result<(), Error> {
    if pool.backends.iter().any(|b| b.addr() == addr) {
        return Err(Error::Conflict(format!(
            "pool {:?} already has backend {addr}",
            pool.config.pattern
        )));
    }
    Ok(())
}
