//! The control plane's vocabulary: a [`Change`] asked for, what it [`Applied`], and why one
//! was refused ([`Error`]). An [`Applied`] displays as the change's one log line.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::pool::{Backend, BackendChange, BackendConfig, BackendStatus, Pool, PoolConfig, PoolSettings};
use crate::store::StoreError;

/// A change to pools and backends. Every change names its pool by pattern, as the admin typed
/// it (`Example.com/` names the pool `example.com/`).
#[derive(Debug, Clone)]
pub enum Change {
    /// Creates a pool without backends; unset settings take their defaults.
    AddPool { pattern: String, settings: PoolSettings },
    /// Changes a pool's settings, keeping its backends.
    UpdatePool { pattern: String, settings: PoolSettings },
    /// Removes a pool and its backends.
    RemovePool { pattern: String },
    /// Adds a backend after one passing health check, as the Go tool did.
    AddBackend { pattern: String, backend: BackendConfig },
    /// Drains (no new requests; in-flight ones finish; still checked) or undrains a backend,
    /// and/or changes its weight.
    UpdateBackend { pattern: String, addr: SocketAddr, change: BackendChange },
    /// Removes a backend; requests already sent to it finish.
    RemoveBackend { pattern: String, addr: SocketAddr, reason: Removal },
    /// Replaces every pool and backend, atomically: an import or a restore. Everything is
    /// validated before anything changes. Backends (with their draining flag) are not checked
    /// first, as a restore must not wait for them: they start unchecked and are checked at once.
    ReplaceAll { pools: Vec<(PoolConfig, Vec<(BackendConfig, bool)>)> },
}

/// Why a backend is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// An admin asked (admin API or lbctl).
    Admin,
    /// The health loop: the backend failed `evict_after` times in a row.
    Evicted {
        /// Its status before the last failure.
        from: BackendStatus,
        failures: u32,
        /// The last failure, as the health loop logs it (`check failed: ...`).
        cause: String,
    },
}

/// What a change did: the pool or backend as it now is, or as it was when removed.
#[derive(Debug)]
pub enum Applied {
    /// The new pool.
    PoolAdded(Arc<Pool>),
    /// The pool with its new settings.
    PoolChanged(Arc<Pool>),
    /// The pool as it was, backends included.
    PoolRemoved(Arc<Pool>),
    /// The new backend, checked. `pattern` (here and below) as the change named it, which is
    /// how the log line has always shown it.
    BackendAdded { pattern: String, backend: Arc<Backend> },
    /// The backend as it now is (a new object if its weight changed).
    BackendChanged { pattern: String, backend: Arc<Backend> },
    /// The backend as it was; requests in flight on it finish.
    BackendRemoved { pattern: String, backend: Arc<Backend>, reason: Removal },
    /// Every pool and backend replaced; how many there are now.
    Replaced { pools: usize, backends: usize },
}

impl Applied {
    /// An eviction, which is logged as a warning.
    pub fn is_eviction(&self) -> bool {
        matches!(self, Applied::BackendRemoved { reason: Removal::Evicted { .. }, .. })
    }
}

/// The change's log line.
impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Applied::PoolAdded(pool) => write!(f, "pool {} added ({} mode)", pool.config.pattern, pool.config.mode),
            Applied::PoolChanged(pool) => {
                let c = &pool.config;
                write!(
                    f,
                    "pool {} changed: {} mode, {} strategy, {} retries, checks GET {} every {} ms",
                    c.pattern, c.mode, c.strategy, c.retries, c.health_check.path, c.health_check.interval_ms
                )
            }
            Applied::PoolRemoved(pool) => write!(f, "pool {} removed", pool.config.pattern),
            Applied::BackendAdded { pattern, backend } => write!(f, "pool {pattern} backend {} added", backend.addr()),
            Applied::BackendChanged { pattern, backend } => {
                let state = if backend.is_draining() { "draining" } else { "in rotation" };
                write!(f, "pool {pattern} backend {}: {state}, weight {}", backend.addr(), backend.config.weight)
            }
            Applied::BackendRemoved { pattern, backend, reason: Removal::Admin } => write!(
                f,
                "pool {pattern} backend {} removed ({} requests still in flight)",
                backend.addr(),
                backend.inflight()
            ),
            Applied::BackendRemoved { pattern, backend, reason: Removal::Evicted { from, failures, cause } } => write!(
                f,
                "pool {pattern} backend {}: {} -> evicted ({failures} consecutive failures; {cause})",
                backend.addr(),
                from.as_str()
            ),
            Applied::Replaced { pools, backends } => {
                write!(f, "state replaced: now {pools} pools and {backends} backends")
            }
        }
    }
}

/// Why a change was refused. Each maps to one HTTP status in the admin API.
#[derive(Debug)]
pub enum Error {
    /// Malformed input (400).
    Invalid(String),
    /// Unknown pool or backend (404).
    NotFound(String),
    /// Already exists, or a pattern in conflict with another (409).
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
