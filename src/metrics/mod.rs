//! What lb counts, for `GET /metrics` on the admin listener (Prometheus text or OpenMetrics).
//!
//! prometheus-client keeps the registry, the label families and both text encodings. The
//! request path never looks a label up: when the control plane builds a pool or a backend it
//! resolves that pool's and backend's handles ([`PoolMetrics`], [`BackendMetrics`]: counters
//! indexed by code class and reason, [`Histogram`]s) once, and the data path reaches them
//! through the `Pool` and `Backend` it already holds. A request costs relaxed atomic adds, two
//! clock reads and one predictable branch on whether metrics are on (`lb --metrics off`): no
//! lock, no hash lookup, no allocation. What the control plane already knows (backend status,
//! in flight, weight) is read at scrape time from the published pools, and process metrics
//! from `/proc`.
//!
//! Removing a pool or a backend removes its series; adding it again starts them from zero.
//!
//! # Layout
//! - `histogram.rs`: the lock-free [`Histogram`] of the two per-request histograms.
//! - `process.rs`: CPU, RSS and file descriptors from `/proc`.
//! - this file: the families, the per-pool and per-backend handles, and [`Metrics::encode`].

mod histogram;
mod process;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use histogram::Histogram;

use crate::retry::Failure;

/// `lb_access_log_dropped_total`: access log lines dropped (the access log counts them here,
/// with or without `--metrics`, since lb also reports them at shutdown).
pub static ACCESS_LOG_DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `Content-Type` of the Prometheus text format, the default.
pub const TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// `Content-Type` of OpenMetrics, sent when `Accept` asks for it.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `code_class` values, by `status / 100 - 1`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// `mode` values of the pools' series.
const MODES: [&str; 2] = ["proxy", "redirect"];
/// `reason` values of `lb_retries_total`, by [`reason`].
const REASONS: [&str; 3] = ["connect", "before_response", "status"];
/// `lb_backend_status` values, as the admin API names them.
const STATUSES: [&str; 4] = ["BS_UNKNOWN", "BS_HEALTHY", "BS_SICK", "BS_DRAINING"];
const HEALTHY: &str = "BS_HEALTHY";
const SICK: &str = "BS_SICK";

/// The index of a status's class in [`CLASSES`]; codes above 599 count as `5xx`.
#[inline]
fn class(status: StatusCode) -> usize {
    (status.as_u16() / 100).clamp(1, 5) as usize - 1
}

fn reason(failure: Failure) -> usize {
    match failure {
        Failure::Connect => 0,
        Failure::BeforeResponse => 1,
        Failure::Status(_) => 2,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    pool: String,
    mode: &'static str,
    code_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolModeLabels {
    pool: String,
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    pool: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    pool: String,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendClassLabels {
    pool: String,
    backend: String,
    code_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    pool: String,
    backend: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    pool: String,
    backend: String,
    to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    pool: String,
    backend: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

type Histograms<S> = Family<S, Histogram, fn() -> Histogram>;

fn histograms<S: Clone + std::hash::Hash + Eq>() -> Histograms<S> {
    Family::new_with_constructor(Histogram::new as fn() -> Histogram)
}

/// Every family lb keeps between scrapes; clones share them.
#[derive(Clone, Debug)]
struct Families {
    requests: Family<RequestLabels, Counter>,
    duration: Histograms<PoolModeLabels>,
    backend_requests: Family<BackendClassLabels, Counter>,
    backend_response: Histograms<BackendLabels>,
    retries: Family<RetryLabels, Counter>,
    budget_exhausted: Family<PoolLabels, Counter>,
    checks: Family<CheckLabels, Counter>,
    transitions: Family<TransitionLabels, Counter>,
    evictions: Family<PoolLabels, Counter>,
    no_backend: Family<PoolLabels, Counter>,
    connections_open: Family<ListenerLabels, Gauge>,
    connections_total: Family<ListenerLabels, Counter>,
    admin_changes: Family<KindLabels, Counter>,
}

/// lb's metrics: one per lb instance (tests run several in one process).
#[derive(Debug)]
pub struct Metrics {
    on: bool,
    registry: Registry,
    families: Families,
    /// Answers to requests that reached no pool (`pool=""`, `mode=""`).
    unrouted: PoolMetrics,
    /// `lb_connections_total` and `lb_connections_open` of each of [`LISTENERS`].
    listeners: [(Counter, Gauge); 2],
    store_writes: StoreWrites,
}

/// `listener` values, by [`Listener`].
const LISTENERS: [&str; 2] = ["data", "admin"];

/// A listener whose client connections are counted.
#[derive(Debug, Clone, Copy)]
pub enum Listener {
    /// The data port.
    Data = 0,
    /// The admin API.
    Admin = 1,
}

impl Metrics {
    /// Metrics recording when `on`; off, every handle is inert and the request path pays one
    /// branch. The registry exists either way (a scrape shows gauges and process metrics).
    pub fn new(on: bool) -> Metrics {
        let families = Families {
            requests: Family::default(),
            duration: histograms(),
            backend_requests: Family::default(),
            backend_response: histograms(),
            retries: Family::default(),
            budget_exhausted: Family::default(),
            checks: Family::default(),
            transitions: Family::default(),
            evictions: Family::default(),
            no_backend: Family::default(),
            connections_open: Family::default(),
            connections_total: Family::default(),
            admin_changes: Family::default(),
        };
        let f = &families;
        let mut r = Registry::default();
        r.register("lb_requests", "Requests lb answered, by pool, mode and status class", f.requests.clone());
        r.register(
            "lb_request_duration_seconds",
            "From a request's head to its response head (lb's own answers included)",
            f.duration.clone(),
        );
        r.register(
            "lb_backend_requests",
            "Attempts sent to a backend (proxy) or clients sent there (redirect), by status class",
            f.backend_requests.clone(),
        );
        r.register(
            "lb_backend_response_duration_seconds",
            "From sending an attempt to the backend's response headers",
            f.backend_response.clone(),
        );
        r.register("lb_retries", "Proxied attempts retried on another backend, by what failed", f.retries.clone());
        r.register(
            "lb_retry_budget_exhausted",
            "Retries not made because the pool's retry budget was spent",
            f.budget_exhausted.clone(),
        );
        r.register("lb_health_checks", "Active health checks, by result", f.checks.clone());
        r.register("lb_health_transitions", "Backend status changes, by the status reached", f.transitions.clone());
        r.register("lb_backend_evictions", "Backends removed for failing too long", f.evictions.clone());
        r.register("lb_no_backend", "Requests answered 503 because no backend was usable", f.no_backend.clone());
        r.register("lb_connections_open", "Client connections open, by listener", f.connections_open.clone());
        r.register("lb_connections", "Client connections accepted, by listener", f.connections_total.clone());
        r.register("lb_admin_changes", "Changes applied through the admin API, by kind", f.admin_changes.clone());
        let store_writes = StoreWrites {
            on,
            seconds: prometheus_client::metrics::histogram::Histogram::new(
                histogram::BOUNDS.iter().copied().chain([30.0]),
            ),
        };
        r.register(
            "lb_store_write_seconds",
            "Durable store writes (an admin change, flushed), in seconds",
            store_writes.seconds.clone(),
        );
        r.register("lb_build", "lb's version", Info::new(VersionLabels { version: env!("CARGO_PKG_VERSION") }));
        r.register_collector(Box::new(process::Process));
        let listeners = LISTENERS.map(|listener| {
            let labels = ListenerLabels { listener };
            (
                families.connections_total.get_or_create_owned(&labels),
                families.connections_open.get_or_create_owned(&labels),
            )
        });
        let mut metrics =
            Metrics { on, registry: r, families, unrouted: PoolMetrics::detached(), listeners, store_writes };
        metrics.unrouted = metrics.pool("", "");
        metrics
    }

    /// Whether metrics are recorded.
    #[inline]
    pub fn on(&self) -> bool {
        self.on
    }

    /// The handles of requests no pool answered.
    #[inline]
    pub fn unrouted(&self) -> &PoolMetrics {
        &self.unrouted
    }

    /// The handles of pool `pattern` in `mode` (`proxy`, `redirect`), created at zero if new.
    pub fn pool(&self, pattern: &str, mode: &'static str) -> PoolMetrics {
        let f = &self.families;
        let pool = || pattern.to_owned();
        let labels = PoolLabels { pool: pool() };
        PoolMetrics {
            on: self.on,
            requests: CLASSES
                .map(|code_class| f.requests.get_or_create_owned(&RequestLabels { pool: pool(), mode, code_class })),
            duration: f.duration.get_or_create_owned(&PoolModeLabels { pool: pool(), mode }),
            retries: REASONS.map(|reason| f.retries.get_or_create_owned(&RetryLabels { pool: pool(), reason })),
            budget_exhausted: f.budget_exhausted.get_or_create_owned(&labels),
            no_backend: f.no_backend.get_or_create_owned(&labels),
            evictions: f.evictions.get_or_create_owned(&labels),
        }
    }

    /// The handles of backend `addr` of pool `pattern`, created at zero if new.
    pub fn backend(&self, pattern: &str, addr: SocketAddr) -> BackendMetrics {
        let f = &self.families;
        let backend = addr.to_string();
        let labels = BackendLabels { pool: pattern.to_owned(), backend: backend.clone() };
        let class = |code_class| BackendClassLabels { pool: pattern.to_owned(), backend: backend.clone(), code_class };
        let check = |result| CheckLabels { pool: pattern.to_owned(), backend: backend.clone(), result };
        let to = |to| TransitionLabels { pool: pattern.to_owned(), backend: backend.clone(), to };
        BackendMetrics {
            on: self.on,
            requests: CLASSES.map(|c| f.backend_requests.get_or_create_owned(&class(c))),
            response: f.backend_response.get_or_create_owned(&labels),
            checks: ["pass", "fail"].map(|r| f.checks.get_or_create_owned(&check(r))),
            to_healthy: f.transitions.get_or_create_owned(&to(HEALTHY)),
            to_sick: f.transitions.get_or_create_owned(&to(SICK)),
        }
    }

    /// Drops the series of backend `addr` of pool `pattern`: it was removed or evicted.
    pub fn remove_backend(&self, pattern: &str, addr: SocketAddr) {
        let f = &self.families;
        let (pool, backend) = (pattern.to_owned(), addr.to_string());
        for code_class in CLASSES {
            f.backend_requests.remove(&BackendClassLabels { pool: pool.clone(), backend: backend.clone(), code_class });
        }
        f.backend_response.remove(&BackendLabels { pool: pool.clone(), backend: backend.clone() });
        for result in ["pass", "fail"] {
            f.checks.remove(&CheckLabels { pool: pool.clone(), backend: backend.clone(), result });
        }
        for to in [HEALTHY, SICK] {
            f.transitions.remove(&TransitionLabels { pool: pool.clone(), backend: backend.clone(), to });
        }
    }

    /// Drops the series of pool `pattern` (in either mode) and of its `backends`.
    pub fn remove_pool(&self, pattern: &str, backends: impl IntoIterator<Item = SocketAddr>) {
        let f = &self.families;
        let pool = || pattern.to_owned();
        for mode in MODES {
            for code_class in CLASSES {
                f.requests.remove(&RequestLabels { pool: pool(), mode, code_class });
            }
            f.duration.remove(&PoolModeLabels { pool: pool(), mode });
        }
        for reason in REASONS {
            f.retries.remove(&RetryLabels { pool: pool(), reason });
        }
        let labels = PoolLabels { pool: pool() };
        f.budget_exhausted.remove(&labels);
        f.no_backend.remove(&labels);
        f.evictions.remove(&labels);
        for addr in backends {
            self.remove_backend(pattern, addr);
        }
    }

    /// An admin change of `kind` was applied.
    pub fn admin_change(&self, kind: &'static str) {
        if self.on {
            self.families.admin_changes.get_or_create(&KindLabels { kind }).inc();
        }
    }

    /// A client connection on `listener`, counted open until the guard drops.
    pub fn connection(&self, listener: Listener) -> Connection {
        if !self.on {
            return Connection(None);
        }
        let (total, open) = &self.listeners[listener as usize];
        total.inc();
        open.inc();
        Connection(Some(open.clone()))
    }

    /// The store's write timer.
    pub fn store_writes(&self) -> StoreWrites {
        self.store_writes.clone()
    }

    /// The scrape: every series, then the gauges of `backends` as the control plane publishes
    /// them; OpenMetrics (with its `# EOF`) when `openmetrics`, else Prometheus text 0.0.4.
    pub fn encode(&self, openmetrics: bool, backends: &[BackendGauges]) -> String {
        let gauges = scrape_gauges(backends);
        let mut out = String::new();
        let encoded = if openmetrics {
            use prometheus_client::encoding::text;
            text::encode_registry(&mut out, &self.registry)
                .and_then(|()| text::encode_registry(&mut out, &gauges))
                .and_then(|()| text::encode_eof(&mut out))
        } else {
            use prometheus_client::encoding::prometheus_text;
            prometheus_text::encode(&mut out, &self.registry).and_then(|()| prometheus_text::encode(&mut out, &gauges))
        };
        // Writing to a String cannot fail, and lb's metrics encode.
        encoded.expect("metrics encode into a string");
        out
    }
}

/// Whether an `Accept` header asks for OpenMetrics (a media range of it with a q above 0).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|range| {
            let mut params = range.split(';').map(str::trim);
            let media = params.next().unwrap_or_default();
            media.eq_ignore_ascii_case("application/openmetrics-text")
                && params.all(|p| {
                    let Some((name, value)) = p.split_once('=') else { return true };
                    !name.trim().eq_ignore_ascii_case("q") || value.trim().parse::<f32>().map_or(true, |q| q > 0.0)
                })
        })
    })
}

/// One backend as the published snapshot shows it, for the scrape-time gauges.
#[derive(Debug, Clone)]
pub struct BackendGauges {
    pub pool: String,
    /// `ip:port`.
    pub backend: String,
    /// Its status as the admin API shows it (`BS_DRAINING` wins over health).
    pub status: &'static str,
    /// Whether its health status is `BS_HEALTHY` (draining or not).
    pub healthy: bool,
    pub inflight: i64,
    pub weight: i64,
}

fn scrape_gauges(backends: &[BackendGauges]) -> Registry {
    let up = Family::<BackendLabels, Gauge>::default();
    let status = Family::<StatusLabels, Gauge>::default();
    let inflight = Family::<BackendLabels, Gauge>::default();
    let weight = Family::<BackendLabels, Gauge>::default();
    for b in backends {
        let labels = BackendLabels { pool: b.pool.clone(), backend: b.backend.clone() };
        up.get_or_create(&labels).set(i64::from(b.healthy));
        inflight.get_or_create(&labels).set(b.inflight);
        weight.get_or_create(&labels).set(b.weight);
        for s in STATUSES {
            let labels = StatusLabels { pool: b.pool.clone(), backend: b.backend.clone(), status: s };
            status.get_or_create(&labels).set(i64::from(s == b.status));
        }
    }
    let mut r = Registry::default();
    r.register("lb_backend_up", "1 when the backend's health status is BS_HEALTHY", up);
    r.register("lb_backend_status", "The backend's status, one-hot", status);
    r.register("lb_backend_inflight", "Requests in flight on the backend", inflight);
    r.register("lb_backend_weight", "The backend's weight", weight);
    r
}

/// A pool's handles, resolved when the pool is built (and again when its mode changes).
#[derive(Debug, Clone)]
pub struct PoolMetrics {
    on: bool,
    requests: [Counter; 5],
    duration: Histogram,
    retries: [Counter; 3],
    budget_exhausted: Counter,
    no_backend: Counter,
    evictions: Counter,
}

impl PoolMetrics {
    /// Handles in no registry, recording nothing: a pool built outside lb's control plane.
    pub fn detached() -> PoolMetrics {
        PoolMetrics {
            on: false,
            requests: Default::default(),
            duration: Histogram::new(),
            retries: Default::default(),
            budget_exhausted: Counter::default(),
            no_backend: Counter::default(),
            evictions: Counter::default(),
        }
    }

    /// A request was answered `status`, `took` after its head arrived.
    #[inline]
    pub fn answered(&self, status: StatusCode, took: Duration) {
        self.requests[class(status)].inc();
        self.duration.observe(took);
    }

    /// A proxied attempt that failed this way is tried again.
    pub fn retried(&self, failure: Failure) {
        if self.on {
            self.retries[reason(failure)].inc();
        }
    }

    /// A retry was due but the pool's budget was spent.
    pub fn budget_exhausted(&self) {
        if self.on {
            self.budget_exhausted.inc();
        }
    }

    /// No usable backend: the request is answered `503`.
    pub fn no_backend(&self) {
        if self.on {
            self.no_backend.inc();
        }
    }

    /// A backend of this pool was evicted.
    pub fn evicted(&self) {
        if self.on {
            self.evictions.inc();
        }
    }
}

/// A backend's handles, resolved when the backend is built.
#[derive(Debug, Clone)]
pub struct BackendMetrics {
    on: bool,
    requests: [Counter; 5],
    response: Histogram,
    checks: [Counter; 2],
    to_healthy: Counter,
    to_sick: Counter,
}

impl BackendMetrics {
    /// Handles in no registry, recording nothing: a backend built outside lb's control plane.
    pub fn detached() -> BackendMetrics {
        BackendMetrics {
            on: false,
            requests: Default::default(),
            response: Histogram::new(),
            checks: Default::default(),
            to_healthy: Counter::default(),
            to_sick: Counter::default(),
        }
    }

    /// An attempt is sent now: its start, when metrics are on.
    #[inline]
    pub fn sending(&self) -> Option<Instant> {
        self.on.then(Instant::now)
    }

    /// The attempt `sent` got response headers with `status`.
    #[inline]
    pub fn responded(&self, sent: Option<Instant>, status: StatusCode) {
        if let Some(sent) = sent {
            self.requests[class(status)].inc();
            self.response.observe(sent.elapsed());
        }
    }

    /// The attempt `sent` got no response; lb's answer for it would be `status`.
    #[inline]
    pub fn failed(&self, sent: Option<Instant>, status: StatusCode) {
        if sent.is_some() {
            self.requests[class(status)].inc();
        }
    }

    /// A client was redirected here.
    #[inline]
    pub fn redirected(&self) {
        if self.on {
            self.requests[2].inc();
        }
    }

    /// An active check passed or failed.
    pub fn checked(&self, passed: bool) {
        if self.on {
            self.checks[usize::from(!passed)].inc();
        }
    }

    /// The backend's health status became `BS_HEALTHY` (`healthy`) or `BS_SICK`.
    pub fn became(&self, healthy: bool) {
        if self.on {
            if healthy { &self.to_healthy } else { &self.to_sick }.inc();
        }
    }
}

/// An open client connection; counted closed when dropped.
#[derive(Debug)]
pub struct Connection(Option<Gauge>);

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(open) = &self.0 {
            open.dec();
        }
    }
}

/// The store's write-duration histogram (prometheus-client's: writes are not the request path).
#[derive(Debug, Clone)]
pub struct StoreWrites {
    on: bool,
    seconds: prometheus_client::metrics::histogram::Histogram,
}

impl StoreWrites {
    /// Timing that goes nowhere: a store opened without lb's metrics.
    pub fn detached() -> StoreWrites {
        StoreWrites { on: false, seconds: prometheus_client::metrics::histogram::Histogram::new([]) }
    }

    /// Times one write, observed when the guard drops.
    pub fn time(&self) -> WriteTimer<'_> {
        WriteTimer { writes: self, started: self.on.then(Instant::now) }
    }
}

/// One store write being timed.
pub struct WriteTimer<'a> {
    writes: &'a StoreWrites,
    started: Option<Instant>,
}

impl Drop for WriteTimer<'_> {
    fn drop(&mut self) {
        if let Some(started) = self.started {
            self.writes.seconds.observe(started.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_format() {
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(wants_openmetrics(Some("application/openmetrics-text; version=1.0.0")));
        assert!(wants_openmetrics(Some("text/plain;q=0.5, Application/OpenMetrics-Text;version=0.0.1;q=0.75")));
        assert!(!wants_openmetrics(Some("application/openmetrics-text;q=0")));
    }

    #[test]
    fn code_classes() {
        assert_eq!(class(StatusCode::CONTINUE), 0);
        assert_eq!(class(StatusCode::TEMPORARY_REDIRECT), 2);
        assert_eq!(class(StatusCode::SERVICE_UNAVAILABLE), 4);
        assert_eq!(class(StatusCode::from_u16(999).unwrap()), 4);
    }
}
