//! The control plane: the only writer of pools and backends.
//!
//! Every admin change is written to the store and flushed first, then applied to the in-memory
//! model, then published as a new immutable [`Routes`] snapshot that the data plane picks up on
//! its next request. The data plane never takes the lock held here.
//!
//! Health flows one way: check tasks and the data plane (requests that failed before any
//! response) send [`Observation`]s down one channel; a single loop applies them with
//! [`health::observe`], logs and persists status changes, and evicts backends that failed too
//! long. One writer means no races between a check, a failed request and an admin removal.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, Mutex};
use tokio::task::AbortHandle;

use crate::health::{self, Checks, FailureReporter, Observation, Source, OBSERVATION_QUEUE};
use crate::pool::{Backend, BackendChange, BackendConfig, BackendState, Pool, PoolConfig, PoolSettings};
use crate::retry::RetryBudget;
use crate::routing::{Pattern, Routes};
use crate::store::{Store, StoreError};

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
            Error::Invalid(m) | Error::NotFound(m) | Error::Conflict(m) | Error::Sick(m) => f.write_str(m),
            Error::Store(e) => write!(f, "{e}"),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

struct Entry {
    pattern: Pattern,
    pool: Arc<Pool>,
    /// Kept across the pool's snapshots.
    budget: Arc<RetryBudget>,
    /// The check task of each backend.
    checks: HashMap<SocketAddr, AbortHandle>,
}

/// Owns the store and the live model, publishes routing snapshots, and runs health checks.
pub struct ControlPlane {
    store: Store,
    checks: Checks,
    routes: Arc<ArcSwap<Routes>>,
    pools: Mutex<BTreeMap<String, Entry>>,
    observations: mpsc::Sender<Observation>,
    /// Taken by [`ControlPlane::run_health`].
    observed: std::sync::Mutex<Option<mpsc::Receiver<Observation>>>,
}

impl ControlPlane {
    /// Loads every pool from the store and publishes the first snapshot. Health checks start
    /// with [`ControlPlane::run_health`].
    pub fn load(store: Store) -> Result<ControlPlane, StoreError> {
        let (observations, observed) = mpsc::channel(OBSERVATION_QUEUE);
        let routes = Arc::new(ArcSwap::from_pointee(Routes::default()));
        let control = ControlPlane {
            store,
            checks: Checks::new(routes.clone(), observations.clone()),
            routes,
            pools: Mutex::new(BTreeMap::new()),
            observations,
            observed: std::sync::Mutex::new(Some(observed)),
        };
        {
            let mut pools = control.pools.try_lock().expect("nobody else holds the lock yet");
            for (config, backends) in control.store.load()? {
                let pattern = Pattern::parse(&config.pattern).map_err(|e| StoreError::Corrupt {
                    tree: lb_migrations::POOLS,
                    key: config.pattern.clone(),
                    reason: e.to_string(),
                })?;
                let backends = backends.into_iter().map(|(c, s)| Arc::new(Backend::new(c, s))).collect();
                let budget = Arc::new(RetryBudget::default());
                let pool = control.build_pool(config.clone(), backends, &budget);
                pools.insert(config.pattern, Entry { pattern, pool, budget, checks: HashMap::new() });
            }
            control.publish(&pools);
        }
        Ok(control)
    }

    /// The snapshot handle the data plane reads.
    pub fn routes(&self) -> Arc<ArcSwap<Routes>> {
        self.routes.clone()
    }

    /// The handle the data plane reports failed requests to.
    pub fn failure_reporter(&self) -> FailureReporter {
        FailureReporter(self.observations.clone())
    }

    /// Starts a check task for every backend, then applies observations until the runtime stops.
    /// Call once, on the control plane's runtime.
    pub async fn run_health(self: Arc<Self>) {
        let Some(mut observed) = self.observed.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        {
            let mut pools = self.pools.lock().await;
            for entry in pools.values_mut() {
                for backend in &entry.pool.backends {
                    // Checks resume at once after a restart.
                    let check = self.checks.spawn(&entry.pattern, backend, 0);
                    entry.checks.insert(backend.addr(), check);
                }
            }
        }
        while let Some(observation) = observed.recv().await {
            self.apply(observation).await;
        }
    }

    /// Flushes the store (at shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.store.flush()
    }

    pub async fn pools(&self) -> Vec<Arc<Pool>> {
        self.pools.lock().await.values().map(|e| e.pool.clone()).collect()
    }

    pub async fn pool(&self, pattern: &str) -> Result<Arc<Pool>, Error> {
        let key = canonical(pattern)?;
        let pools = self.pools.lock().await;
        Ok(find(&pools, &key)?.pool.clone())
    }

    pub async fn add_pool(&self, pattern: &str, settings: PoolSettings) -> Result<Arc<Pool>, Error> {
        let pattern = Pattern::parse(pattern).map_err(|e| Error::Invalid(e.to_string()))?;
        let key = pattern.to_string();
        let config = settings.apply(PoolConfig::new(key.clone())).map_err(Error::Invalid)?;
        let mut pools = self.pools.lock().await;
        if pools.contains_key(&key) {
            return Err(Error::Conflict(format!("pool {key:?} already exists")));
        }
        // Go refuses a pattern that overlaps another with neither more specific; so do we.
        if let Some(conflict) = pools.values().find_map(|e| pattern.conflict_with(&e.pattern)) {
            return Err(Error::Conflict(conflict.to_string()));
        }
        self.store.put_pool(&config).await?;
        let budget = Arc::new(RetryBudget::default());
        let pool = self.build_pool(config, Vec::new(), &budget);
        pools.insert(key, Entry { pattern, pool: pool.clone(), budget, checks: HashMap::new() });
        self.publish(&pools);
        Ok(pool)
    }

    /// Changes a pool's settings, keeping its backends.
    pub async fn update_pool(&self, pattern: &str, settings: PoolSettings) -> Result<Arc<Pool>, Error> {
        let key = canonical(pattern)?;
        let mut pools = self.pools.lock().await;
        let entry = find(&pools, &key)?;
        let config = settings.apply(entry.pool.config.clone()).map_err(Error::Invalid)?;
        self.store.put_pool(&config).await?;
        // Check tasks read the spec from the snapshot published below.
        let pool = self.build_pool(config, entry.pool.backends.clone(), &entry.budget);
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
        entry.checks.values().for_each(AbortHandle::abort);
        entry.pool.backends.iter().for_each(|b| b.retire());
        self.publish(&pools);
        Ok(entry.pool)
    }

    /// Adds a backend after one passing health check, as the Go tool did.
    pub async fn add_backend(&self, pattern: &str, config: BackendConfig) -> Result<Arc<Backend>, Error> {
        config.validate().map_err(Error::Invalid)?;
        let key = canonical(pattern)?;
        let spec = {
            let pools = self.pools.lock().await;
            let entry = find(&pools, &key)?;
            ensure_absent(&entry.pool, config.addr)?;
            entry.pool.config.health_check.clone()
        };
        // Checked without the lock: a slow backend must not stall other admin calls.
        let checked = self.checks.check(config.addr, &spec).await;
        if let Err(why) = checked {
            return Err(Error::Sick(format!("backend is sick: {why}")));
        }
        let mut state = BackendState::default();
        health::observe(&mut state.health, &spec, Ok(()), Source::Check);

        let mut pools = self.pools.lock().await;
        let entry = find(&pools, &key)?;
        ensure_absent(&entry.pool, config.addr)?;
        self.store.put_backend(&key, &config, &state).await?;
        let backend = Arc::new(Backend::new(config, state));
        let mut backends = entry.pool.backends.clone();
        backends.push(backend.clone());
        let pool = self.build_pool(entry.pool.config.clone(), backends, &entry.budget);
        // Just checked: its next check goes to a random point of the interval.
        let entry = pools.get_mut(&key).expect("found above");
        let check = self.checks.spawn(&entry.pattern, &backend, 1);
        entry.pool = pool;
        entry.checks.insert(backend.addr(), check);
        self.publish(&pools);
        Ok(backend)
    }

    /// Removes a backend; requests already sent to it finish.
    pub async fn remove_backend(&self, pattern: &str, addr: SocketAddr) -> Result<Arc<Backend>, Error> {
        let key = canonical(pattern)?;
        let mut pools = self.pools.lock().await;
        self.remove_locked(&mut pools, &key, addr).await
    }

    /// Drains (no new requests; in-flight ones finish; still checked) or undrains a backend,
    /// and/or changes its weight.
    pub async fn update_backend(
        &self,
        pattern: &str,
        addr: SocketAddr,
        change: BackendChange,
    ) -> Result<Arc<Backend>, Error> {
        let key = canonical(pattern)?;
        let mut pools = self.pools.lock().await;
        let entry = find(&pools, &key)?;
        let old = find_backend(entry, addr)?.clone();
        let mut state = old.state();
        state.draining = change.draining.unwrap_or(state.draining);
        let mut config = old.config.clone();
        config.weight = change.weight.unwrap_or(config.weight);
        config.validate().map_err(Error::Invalid)?;
        self.store.put_backend(&key, &config, &state).await?;
        if config == old.config {
            old.set_draining(state.draining);
            return Ok(old);
        }
        // A new weight means a new selector and a new backend object (with its own check);
        // requests in flight on the old one finish there.
        let backend = Arc::new(Backend::new(config, state));
        let backends = entry
            .pool
            .backends
            .iter()
            .map(|b| if Arc::ptr_eq(b, &old) { backend.clone() } else { b.clone() })
            .collect();
        let pool = self.build_pool(entry.pool.config.clone(), backends, &entry.budget);
        // Just checked: its next check goes to a random point of the interval.
        let entry = pools.get_mut(&key).expect("found above");
        let check = self.checks.spawn(&entry.pattern, &backend, 1);
        entry.pool = pool;
        old.retire();
        if let Some(old_check) = entry.checks.insert(addr, check) {
            old_check.abort();
        }
        self.publish(&pools);
        Ok(backend)
    }

    async fn remove_locked(
        &self,
        pools: &mut BTreeMap<String, Entry>,
        key: &str,
        addr: SocketAddr,
    ) -> Result<Arc<Backend>, Error> {
        let entry = find(pools, key)?;
        let index = entry.pool.backends.iter().position(|b| b.addr() == addr);
        let Some(index) = index else {
            return Err(Error::NotFound(format!("pool {key:?} has no backend {addr}")));
        };
        self.store.remove_backend(key, addr).await?;
        let mut backends = entry.pool.backends.clone();
        let backend = backends.remove(index);
        let pool = self.build_pool(entry.pool.config.clone(), backends, &entry.budget);
        let entry = pools.get_mut(key).expect("found above");
        entry.pool = pool;
        backend.retire();
        if let Some(check) = entry.checks.remove(&addr) {
            check.abort();
        }
        self.publish(pools);
        Ok(backend)
    }

    /// A pool snapshot.
    fn build_pool(&self, config: PoolConfig, backends: Vec<Arc<Backend>>, budget: &Arc<RetryBudget>) -> Arc<Pool> {
        Arc::new(Pool::new(config, backends, budget.clone()))
    }

    /// Applies one observation: status change logged and persisted, eviction carried out.
    async fn apply(&self, o: Observation) {
        let mut pools = self.pools.lock().await;
        let Some(entry) = pools.get(&*o.pattern) else {
            return;
        };
        // The backend may have been removed (or replaced) meanwhile.
        if o.backend.is_retired() {
            return;
        }
        let spec = &entry.pool.config.health_check;
        let reason = o.result.clone().err();
        let verdict = o.backend.update_health(|h| health::observe(h, spec, o.result, o.source));
        let addr = o.backend.addr();
        let why = || match (&reason, o.source) {
            (Some(e), Source::Check) => format!("check failed: {e}"),
            (Some(e), Source::Request) => format!("request failed: {e}"),
            (None, _) => "check passed".to_owned(),
        };
        if verdict.evict {
            let failures = o.backend.health().consecutive_failures;
            match self.remove_locked(&mut pools, &o.pattern, addr).await {
                Ok(_) => tracing::warn!(
                    "pool {} backend {addr}: {} -> evicted ({failures} consecutive failures; {})",
                    o.pattern,
                    verdict.from.as_str(),
                    why()
                ),
                Err(e) => {
                    tracing::error!("pool {} backend {addr}: eviction failed: {e}", o.pattern)
                }
            }
            return;
        }
        if verdict.changed() {
            tracing::info!(
                "pool {} backend {addr}: {} -> {} ({})",
                o.pattern,
                verdict.from.as_str(),
                verdict.to.as_str(),
                why()
            );
            if let Err(e) = self.store.save_backend_state(&o.pattern, &o.backend.config, &o.backend.state()) {
                tracing::error!("pool {} backend {addr}: cannot persist health: {e}", o.pattern);
            }
        }
    }

    fn publish(&self, pools: &BTreeMap<String, Entry>) {
        let table = Routes::new(pools.values().map(|e| (e.pattern.clone(), e.pool.clone())));
        self.routes.store(Arc::new(table));
    }
}

/// The store key of a pattern as an admin typed it (`Example.com/` is `example.com/`).
fn canonical(pattern: &str) -> Result<String, Error> {
    Pattern::parse(pattern).map(|p| p.to_string()).map_err(|e| Error::Invalid(e.to_string()))
}

fn find<'a>(pools: &'a BTreeMap<String, Entry>, key: &str) -> Result<&'a Entry, Error> {
    pools.get(key).ok_or_else(|| Error::NotFound(format!("no pool {key:?}")))
}

fn find_backend(entry: &Entry, addr: SocketAddr) -> Result<&Arc<Backend>, Error> {
    entry
        .pool
        .backends
        .iter()
        .find(|b| b.addr() == addr)
        .ok_or_else(|| Error::NotFound(format!("pool {:?} has no backend {addr}", entry.pool.config.pattern)))
}

fn ensure_absent(pool: &Pool, addr: SocketAddr) -> Result<(), Error> {
    if pool.backends.iter().any(|b| b.addr() == addr) {
        return Err(Error::Conflict(format!("pool {:?} already has backend {addr}", pool.config.pattern)));
    }
    Ok(())
}
