//! The control plane: the only writer of pools and backends.
//!
//! Every change goes through one write path, [`ControlPlane::apply`]: it validates the
//! [`Change`] against the live model, writes the store and flushes it, updates the model,
//! publishes a new immutable [`Routes`] snapshot that the data plane picks up on its next
//! request, and logs the change in one line. Admin API calls (and so lbctl) and evictions all
//! take it. The data plane never takes the lock held here.
//!
//! Health flows one way: check tasks and the data plane (requests that failed before any
//! response) send [`Observation`]s down one channel; a single loop applies them with
//! [`health::observe`], logs and persists status changes, and evicts backends that failed too
//! long, through the write path. One writer means no races between a check, a failed request
//! and an admin removal.
//!
//! # Layout
//! - `change.rs`: [`Change`], [`Applied`] (whose display is the log line) and [`Error`].
//! - `state.rs`: the whole state as lb-api's JSON (export, import), and the [`last-good`
//!   export](ControlPlane::run_backup) kept in the data dir.
//! - this file: [`ControlPlane`]: the model, the write path, the health loop.

mod change;
pub mod state;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, Mutex, MutexGuard, Notify};
use tokio::task::AbortHandle;

pub use change::{Applied, Change, Error, Removal};

use crate::health::{self, Checks, FailureReporter, Observation, Source, OBSERVATION_QUEUE};
use crate::metrics::Metrics;
use crate::pool::{canonical_addr, Backend, BackendConfig, BackendState, BackendStatus, Pool, PoolConfig};
use crate::retry::RetryBudget;
use crate::routing::{Pattern, Routes};
use crate::store::{Store, StoreError};

/// The live model: every pool by its canonical pattern.
type Pools = BTreeMap<String, Entry>;

struct Entry {
    pattern: Pattern,
    pool: Arc<Pool>,
    /// Kept across the pool's snapshots.
    budget: Arc<RetryBudget>,
    /// The check task of each backend.
    checks: HashMap<SocketAddr, AbortHandle>,
    metrics: Arc<Metrics>,
}

impl Entry {
    fn new(pattern: Pattern, config: PoolConfig, backends: Vec<Arc<Backend>>, metrics: &Arc<Metrics>) -> Entry {
        let budget = Arc::new(RetryBudget::default());
        let pool = Arc::new(live_pool(metrics, config, backends, budget.clone()));
        Entry { pattern, pool, budget, checks: HashMap::new(), metrics: metrics.clone() }
    }

    /// Replaces the pool's snapshot, keeping its retry budget; returns the new one.
    fn rebuild(&mut self, config: PoolConfig, backends: Vec<Arc<Backend>>) -> Arc<Pool> {
        self.pool = Arc::new(live_pool(&self.metrics, config, backends, self.budget.clone()));
        self.pool.clone()
    }
}

/// A pool counting on its handles for its pattern and mode.
fn live_pool(metrics: &Metrics, config: PoolConfig, backends: Vec<Arc<Backend>>, budget: Arc<RetryBudget>) -> Pool {
    let handles = metrics.pool(&config.pattern, config.mode.as_str());
    Pool::new(config, backends, budget).with_metrics(handles)
}

/// A backend of pool `pattern` counting on its handles.
fn live_backend(metrics: &Metrics, pattern: &str, config: BackendConfig, state: BackendState) -> Arc<Backend> {
    let handles = metrics.backend(pattern, config.addr);
    Arc::new(Backend::new(config, state).with_metrics(handles))
}

/// Owns the store and the live model, publishes routing snapshots, and runs health checks.
pub struct ControlPlane {
    store: Store,
    checks: Checks,
    routes: Arc<ArcSwap<Routes>>,
    pools: Mutex<Pools>,
    observations: mpsc::Sender<Observation>,
    /// Taken by [`ControlPlane::run_health`].
    observed: std::sync::Mutex<Option<mpsc::Receiver<Observation>>>,
    /// lb's own listeners, with what each is: no backend may be one of them.
    listeners: Vec<(SocketAddr, &'static str)>,
    /// Told of every applied change, for [`ControlPlane::run_backup`].
    changed: Notify,
    metrics: Arc<Metrics>,
}

/// How long the last-good export waits after a change for more, so that a burst of changes
/// (a script adding 10,000 backends) costs a few exports rather than one each.
const BACKUP_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(500);

impl ControlPlane {
    /// Loads every pool from the store and publishes the first snapshot. Health checks start
    /// with [`ControlPlane::run_health`].
    /// Pools and backends count on `metrics`, the store's writes too.
    pub fn load(mut store: Store, metrics: Arc<Metrics>) -> Result<ControlPlane, StoreError> {
        store.time_writes(metrics.store_writes());
        let (observations, observed) = mpsc::channel(OBSERVATION_QUEUE);
        let routes = Arc::new(ArcSwap::from_pointee(Routes::default()));
        let control = ControlPlane {
            store,
            checks: Checks::new(routes.clone(), observations.clone()),
            routes,
            pools: Mutex::new(BTreeMap::new()),
            observations,
            observed: std::sync::Mutex::new(Some(observed)),
            listeners: Vec::new(),
            changed: Notify::new(),
            metrics,
        };
        {
            let mut pools = control.pools.try_lock().expect("nobody else holds the lock yet");
            for (config, backends) in control.store.load()? {
                // Go's grammar only: an older lb may have stored what a new pool may not be named
                // (a control character); it keeps loading, and can be listed and removed.
                let pattern = Pattern::parse_as_go(&config.pattern).map_err(|e| StoreError::Corrupt {
                    tree: lb_migrations::POOLS,
                    key: config.pattern.clone(),
                    reason: e.to_string(),
                })?;
                let m = &control.metrics;
                let backends = backends.into_iter().map(|(c, s)| live_backend(m, &config.pattern, c, s)).collect();
                pools.insert(config.pattern.clone(), Entry::new(pattern, config, backends, m));
            }
            control.publish(&pools);
        }
        Ok(control)
    }

    /// Tells the control plane lb's bound listeners (`(address, "data port")`, ...), so that it
    /// refuses them as backends: lb's admin port behind a pool would publish the admin API on
    /// the data port, and its data port would send requests round in a loop.
    pub fn with_listeners(mut self, listeners: Vec<(SocketAddr, &'static str)>) -> Self {
        self.listeners = listeners;
        self
    }

    /// Refuses `addr` if it reaches one of lb's own listeners: the same port on the listener's
    /// address, on any loopback address for a loopback listener, or on any address of this
    /// machine for a listener on `0.0.0.0`/`[::]`.
    fn refuse_own_listener(&self, addr: SocketAddr) -> Result<(), Error> {
        for &(listener, what) in &self.listeners {
            if listener.port() != addr.port() {
                continue;
            }
            let (l, ip) = (listener.ip().to_canonical(), addr.ip());
            let reaches = l == ip || (l.is_loopback() && ip.is_loopback()) || (l.is_unspecified() && is_local(ip));
            if reaches {
                return Err(Error::Invalid(format!("backend {addr} is lb's own {what} ({listener})")));
            }
        }
        Ok(())
    }

    /// The snapshot handle the data plane reads.
    pub fn routes(&self) -> Arc<ArcSwap<Routes>> {
        self.routes.clone()
    }

    /// lb's metrics, which the control plane resolves pools' and backends' handles in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
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
            self.observe(observation).await;
        }
    }

    /// Keeps `DIR/last-good.json` the export of the state: at once, then after each burst of
    /// changes, off the admin requests' path. Every change it sees was acknowledged, so the
    /// file is always a state lb stood by. Runs until the runtime stops.
    pub async fn run_backup(self: Arc<Self>) {
        loop {
            let pools = self.pools().await;
            let control = self.clone();
            // Serialized off the runtime too: 10,000 backends take milliseconds.
            let write = move || {
                let json = serde_json::to_vec_pretty(&state::export(&pools)).expect("a state serializes");
                control.store.write_last_good(&json)
            };
            match tokio::task::spawn_blocking(write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("{e}"),
                Err(e) => tracing::warn!("last-good export failed: {e}"),
            }
            self.changed.notified().await;
            tokio::time::sleep(BACKUP_DEBOUNCE).await;
        }
    }

    /// Flushes the store (at shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.store.flush()
    }

    /// Every pool, in pattern order.
    pub async fn pools(&self) -> Vec<Arc<Pool>> {
        self.pools.lock().await.values().map(|e| e.pool.clone()).collect()
    }

    /// The pool named by `pattern` (as an admin typed it).
    pub async fn pool(&self, pattern: &str) -> Result<Arc<Pool>, Error> {
        let key = canonical(pattern)?;
        let pools = self.pools.lock().await;
        Ok(find(&pools, &key)?.pool.clone())
    }

    /// Applies one change: the one write path (see the module doc). A refused change leaves
    /// store, model and snapshot as they were.
    pub async fn apply(&self, change: Change) -> Result<Applied, Error> {
        let pools = self.pools.lock().await;
        self.write(pools, change).await
    }

    /// [`apply`](Self::apply) with the lock already held. Each change is checked against the
    /// model, then written to the store, then to the model; the snapshot is published and the
    /// change logged once it is done.
    async fn write(&self, mut pools: MutexGuard<'_, Pools>, change: Change) -> Result<Applied, Error> {
        let applied = match change {
            Change::AddPool { pattern, settings } => {
                let pattern = Pattern::parse(&pattern).map_err(|e| Error::Invalid(e.to_string()))?;
                let key = pattern.to_string();
                let config = settings.apply(PoolConfig::new(key.clone())).map_err(Error::Invalid)?;
                if pools.contains_key(&key) {
                    return Err(Error::Conflict(format!("pool {key:?} already exists")));
                }
                // Go refuses a pattern that overlaps another with neither more specific; so do we.
                if let Some(conflict) = pools.values().find_map(|e| pattern.conflict_with(&e.pattern)) {
                    return Err(Error::Conflict(conflict.to_string()));
                }
                self.store.put_pool(&config).await?;
                let entry = Entry::new(pattern, config, Vec::new(), &self.metrics);
                let pool = entry.pool.clone();
                pools.insert(key, entry);
                Applied::PoolAdded(pool)
            }
            Change::UpdatePool { pattern, settings } => {
                let key = canonical(&pattern)?;
                let entry = find_mut(&mut pools, &key)?;
                let config = settings.apply(entry.pool.config.clone()).map_err(Error::Invalid)?;
                self.store.put_pool(&config).await?;
                // Check tasks read the new spec from the snapshot published below.
                let backends = entry.pool.backends.clone();
                Applied::PoolChanged(entry.rebuild(config, backends))
            }
            Change::RemovePool { pattern } => {
                let key = canonical(&pattern)?;
                find(&pools, &key)?;
                self.store.remove_pool(&key).await?;
                let entry = pools.remove(&key).expect("found above");
                entry.checks.values().for_each(AbortHandle::abort);
                entry.pool.backends.iter().for_each(|b| b.retire());
                self.metrics.remove_pool(&key, entry.pool.backends.iter().map(|b| b.addr()));
                Applied::PoolRemoved(entry.pool)
            }
            Change::AddBackend { pattern, backend: config } => {
                config.validate_new().map_err(Error::Invalid)?;
                self.refuse_own_listener(config.addr)?;
                let key = canonical(&pattern)?;
                let entry = find(&pools, &key)?;
                ensure_absent(&entry.pool, config.addr)?;
                let spec = entry.pool.config.health_check.clone();
                // Checked without the lock: a slow backend must not stall other admin calls,
                // nor the health loop. So everything is checked again once it is taken back.
                drop(pools);
                if let Err(why) = self.checks.check(config.addr, &spec).await {
                    return Err(Error::Sick(format!("backend is sick: {why}")));
                }
                let mut state = BackendState::default();
                health::observe(&mut state.health, &spec, Ok(()), Source::Check);
                pools = self.pools.lock().await;
                let entry = find_mut(&mut pools, &key)?;
                ensure_absent(&entry.pool, config.addr)?;
                self.store.put_backend(&key, &config, &state).await?;
                let backend = live_backend(&self.metrics, &key, config, state);
                let mut backends = entry.pool.backends.clone();
                backends.push(backend.clone());
                entry.rebuild(entry.pool.config.clone(), backends);
                // Just checked: its next check goes to a random point of the interval.
                let check = self.checks.spawn(&entry.pattern, &backend, 1);
                entry.checks.insert(backend.addr(), check);
                Applied::BackendAdded { pattern, backend }
            }
            Change::UpdateBackend { pattern, addr, change } => {
                let key = canonical(&pattern)?;
                let entry = find_mut(&mut pools, &key)?;
                let old = find_backend(&entry.pool, addr)?.clone();
                let addr = old.addr();
                let mut state = old.state();
                state.draining = change.draining.unwrap_or(state.draining);
                let mut config = old.config.clone();
                config.weight = change.weight.unwrap_or(config.weight);
                config.validate().map_err(Error::Invalid)?;
                self.store.put_backend(&key, &config, &state).await?;
                if config == old.config {
                    // Draining is read live from the backend, which stays as it is.
                    old.set_draining(state.draining);
                    Applied::BackendChanged { pattern, backend: old }
                } else {
                    // A new weight means a new selector and a new backend object (with its own
                    // check); requests in flight on the old one finish there.
                    let backend = live_backend(&self.metrics, &key, config, state);
                    let backends = entry.pool.backends.iter().map(|b| if Arc::ptr_eq(b, &old) { &backend } else { b });
                    entry.rebuild(entry.pool.config.clone(), backends.cloned().collect());
                    // Just checked: its next check goes to a random point of the interval.
                    let check = self.checks.spawn(&entry.pattern, &backend, 1);
                    old.retire();
                    if let Some(old_check) = entry.checks.insert(addr, check) {
                        old_check.abort();
                    }
                    Applied::BackendChanged { pattern, backend }
                }
            }
            Change::RemoveBackend { pattern, addr, reason } => {
                let key = canonical(&pattern)?;
                let entry = find_mut(&mut pools, &key)?;
                let backend = find_backend(&entry.pool, addr)?.clone();
                // As stored: an older lb may have kept an IPv4-mapped address.
                let addr = backend.addr();
                self.store.remove_backend(&key, addr).await?;
                let backends = entry.pool.backends.iter().filter(|b| !Arc::ptr_eq(b, &backend)).cloned().collect();
                entry.rebuild(entry.pool.config.clone(), backends);
                backend.retire();
                if let Some(check) = entry.checks.remove(&addr) {
                    check.abort();
                }
                self.metrics.remove_backend(&key, addr);
                if matches!(reason, Removal::Evicted { .. }) {
                    entry.pool.metrics.evicted();
                }
                Applied::BackendRemoved { pattern, backend, reason }
            }
            Change::ReplaceAll { pools: new } => {
                let mut entries = Pools::new();
                let mut count = 0;
                for (config, backends) in new {
                    let pattern = Pattern::parse(&config.pattern).map_err(|e| Error::Invalid(e.to_string()))?;
                    let key = pattern.to_string();
                    let config = PoolConfig { pattern: key.clone(), ..config };
                    config.validate().map_err(|e| Error::Invalid(format!("pool {key:?}: {e}")))?;
                    // An import is a new write: held to the rules of one, as an admin's would be.
                    crate::pool::check_health_bounds(&config.health_check)
                        .map_err(|e| Error::Invalid(format!("pool {key:?}: {e}")))?;
                    if entries.contains_key(&key) {
                        return Err(Error::Invalid(format!("pool {key:?} appears twice")));
                    }
                    if let Some(conflict) = entries.values().find_map(|e| pattern.conflict_with(&e.pattern)) {
                        return Err(Error::Conflict(conflict.to_string()));
                    }
                    let mut seen = HashSet::new();
                    let mut live = Vec::with_capacity(backends.len());
                    for (backend, draining) in backends {
                        backend.validate_new().map_err(|e| Error::Invalid(format!("pool {key:?}: {e}")))?;
                        self.refuse_own_listener(backend.addr)?;
                        if !seen.insert(backend.addr) {
                            return Err(Error::Invalid(format!("pool {key:?} has backend {} twice", backend.addr)));
                        }
                        let state = BackendState { draining, ..BackendState::default() };
                        live.push(live_backend(&self.metrics, &key, backend, state));
                    }
                    count += live.len();
                    entries.insert(key, Entry::new(pattern, config, live, &self.metrics));
                }
                let stored: Vec<_> = entries
                    .values()
                    .map(|e| {
                        let backends = e.pool.backends.iter().map(|b| (b.config.clone(), b.state())).collect();
                        (e.pool.config.clone(), backends)
                    })
                    .collect();
                self.store.replace_all(&stored).await?;
                for (key, old) in std::mem::replace(&mut *pools, entries) {
                    old.checks.values().for_each(AbortHandle::abort);
                    old.pool.backends.iter().for_each(|b| b.retire());
                    // Series of what stays keep counting; those of what went go.
                    let gone =
                        |b: &&Arc<Backend>| pools.get(&key).is_none_or(|e| find_backend(&e.pool, b.addr()).is_err());
                    let gone_backends = old.pool.backends.iter().filter(gone).map(|b| b.addr());
                    if pools.contains_key(&key) {
                        gone_backends.for_each(|addr| self.metrics.remove_backend(&key, addr));
                    } else {
                        self.metrics.remove_pool(&key, gone_backends);
                    }
                }
                for entry in pools.values_mut() {
                    for backend in &entry.pool.backends {
                        // Never checked: at once.
                        let check = self.checks.spawn(&entry.pattern, backend, 0);
                        entry.checks.insert(backend.addr(), check);
                    }
                }
                Applied::Replaced { pools: pools.len(), backends: count }
            }
        };
        self.publish(&pools);
        self.changed.notify_one();
        if let Some(kind) = change_kind(&applied) {
            self.metrics.admin_change(kind);
        }
        log(&applied);
        Ok(applied)
    }

    /// Applies one observation: status change logged and persisted, eviction carried out.
    async fn observe(&self, o: Observation) {
        let pools = self.pools.lock().await;
        let Some(entry) = pools.get(&*o.pattern) else {
            return;
        };
        // The backend may have been removed (or replaced) meanwhile.
        if o.backend.is_retired() {
            return;
        }
        let spec = &entry.pool.config.health_check;
        let reason = o.result.clone().err();
        if o.source == Source::Check {
            o.backend.metrics.checked(reason.is_none());
        }
        let verdict = o.backend.update_health(|h| health::observe(h, spec, o.result, o.source));
        if verdict.changed() && verdict.to != BackendStatus::Unknown {
            o.backend.metrics.became(verdict.to == BackendStatus::Healthy);
        }
        let addr = o.backend.addr();
        let why = || match (&reason, o.source) {
            (Some(e), Source::Check) => format!("check failed: {e}"),
            (Some(e), Source::Request) => format!("request failed: {e}"),
            (None, _) => "check passed".to_owned(),
        };
        if verdict.evict {
            let failures = o.backend.health().consecutive_failures;
            let reason = Removal::Evicted { from: verdict.from, failures, cause: why() };
            // With the lock still held: nothing can change between the verdict and the removal.
            let change = Change::RemoveBackend { pattern: o.pattern.to_string(), addr, reason };
            if let Err(e) = self.write(pools, change).await {
                tracing::error!("pool {} backend {addr}: eviction failed: {e}", o.pattern);
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

    fn publish(&self, pools: &Pools) {
        let table = Routes::new(pools.values().map(|e| (e.pattern.clone(), e.pool.clone())));
        self.routes.store(Arc::new(table));
    }
}

/// Logs a change that was applied. An admin's changes keep the `lb::admin` target their lines
/// have always had (filters such as `LB_LOG=lb::admin=warn` still apply); evictions come from
/// the health loop, here.
fn log(applied: &Applied) {
    if applied.is_eviction() {
        tracing::warn!("{applied}");
    } else {
        tracing::info!(target: "lb::admin", "{applied}");
    }
}

/// `lb_admin_changes_total`'s `kind` of an applied change; evictions are no admin's.
fn change_kind(applied: &Applied) -> Option<&'static str> {
    Some(match applied {
        Applied::PoolAdded(_) => "add_pool",
        Applied::PoolChanged(_) => "update_pool",
        Applied::PoolRemoved(_) => "remove_pool",
        Applied::BackendAdded { .. } => "add_backend",
        Applied::BackendChanged { .. } => "update_backend",
        Applied::BackendRemoved { reason: Removal::Evicted { .. }, .. } => return None,
        Applied::BackendRemoved { .. } => "remove_backend",
        Applied::Replaced { .. } => "replace_all",
    })
}

/// The store key of a pattern as an admin typed it (`Example.com/` is `example.com/`). Go's
/// grammar only, so that a pool an older lb accepted can still be named.
fn canonical(pattern: &str) -> Result<String, Error> {
    Pattern::parse_as_go(pattern).map(|p| p.to_string()).map_err(|e| Error::Invalid(e.to_string()))
}

fn find<'a>(pools: &'a Pools, key: &str) -> Result<&'a Entry, Error> {
    pools.get(key).ok_or_else(|| Error::NotFound(format!("no pool {key:?}")))
}

fn find_mut<'a>(pools: &'a mut Pools, key: &str) -> Result<&'a mut Entry, Error> {
    pools.get_mut(key).ok_or_else(|| Error::NotFound(format!("no pool {key:?}")))
}

/// Whether `ip` is an address of this machine: one a socket can be bound to. Binding sends
/// nothing anywhere.
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// Whether `a` and `b` name one backend: IPv4-mapped IPv6 is its IPv4 address (an older lb may
/// have stored either).
fn same_backend(a: SocketAddr, b: SocketAddr) -> bool {
    canonical_addr(a) == canonical_addr(b)
}

fn find_backend(pool: &Pool, addr: SocketAddr) -> Result<&Arc<Backend>, Error> {
    pool.backends
        .iter()
        .find(|b| same_backend(b.addr(), addr))
        .ok_or_else(|| Error::NotFound(format!("pool {:?} has no backend {addr}", pool.config.pattern)))
}

fn ensure_absent(pool: &Pool, addr: SocketAddr) -> Result<(), Error> {
    if pool.backends.iter().any(|b| same_backend(b.addr(), addr)) {
        return Err(Error::Conflict(format!("pool {:?} already has backend {addr}", pool.config.pattern)));
    }
    Ok(())
}
