//! The nouns of lb: a [`Pool`] of [`Backend`]s behind a pattern, in a [`Mode`].
//!
//! `PoolConfig` and `BackendConfig` are what an admin says and the store keeps; `Pool` and
//! `Backend` are their live counterparts on the data path. A `Backend` outlives routing
//! snapshots (the control plane hands the same `Arc` to every new snapshot), so its in-flight
//! count and health stay true across admin changes.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::retry::{RetryBudget, Tried};
use crate::selection::{hash_bytes, Pick, Selector};

/// How a pool hands a request to its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Full-NAT reverse proxy: the client only ever talks to lb.
    #[default]
    Proxy,
    /// lb answers `307` and the client repeats its request at the backend.
    Redirect,
}

/// How a pool picks a backend for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Power of two choices on in-flight requests (per unit of weight).
    #[default]
    P2c,
    /// Weighted smooth round robin, nginx's algorithm.
    RoundRobin,
    /// Weighted random.
    Random,
    /// Fewest requests in flight (per unit of weight), ties broken round robin.
    LeastConn,
    /// Sticky by a key (`hash_key`) on a consistent-hash ring.
    ConsistentHash,
}

macro_rules! names {
    ($ty:ty, $what:literal, $($variant:path => $name:literal),+ $(,)?) => {
        impl $ty {
            /// The name used in the admin API, lbctl and logs.
            pub fn as_str(self) -> &'static str {
                match self { $($variant => $name),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok($variant),)+
                    _ => Err(format!(
                        concat!("unknown ", $what, " {:?}, expected one of: {}"),
                        s,
                        [$($name),+].join(", ")
                    )),
                }
            }
        }
    };
}

names!(Mode, "mode", Mode::Proxy => "proxy", Mode::Redirect => "redirect");
names!(
    Strategy,
    "strategy",
    Strategy::P2c => "p2c",
    Strategy::RoundRobin => "round_robin",
    Strategy::Random => "random",
    Strategy::LeastConn => "least_conn",
    Strategy::ConsistentHash => "consistent_hash",
);

/// What a `consistent_hash` pool keeps requests sticky by.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HashKey {
    /// The client's IP address.
    #[default]
    ClientIp,
    /// A request header's value (the client IP when absent).
    Header(http::HeaderName),
    /// A cookie's value (the client IP when absent).
    Cookie(String),
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashKey::ClientIp => f.write_str("client_ip"),
            HashKey::Header(name) => write!(f, "header:{name}"),
            HashKey::Cookie(name) => write!(f, "cookie:{name}"),
        }
    }
}

impl FromStr for HashKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("unknown hash_key {s:?}, expected client_ip, header:NAME or cookie:NAME");
        match s.split_once(':') {
            None if s == "client_ip" => Ok(HashKey::ClientIp),
            Some(("header", name)) => {
                http::HeaderName::from_bytes(name.as_bytes()).map(HashKey::Header).map_err(|_| bad())
            }
            Some(("cookie", name))
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && !b";=,".contains(&b)) =>
            {
                Ok(HashKey::Cookie(name.to_owned()))
            }
            _ => Err(bad()),
        }
    }
}

impl Serialize for HashKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HashKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// How long lb waits on a pool's backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// To open a connection; a timeout is retried like a refused connection.
    pub connect_ms: u64,
    /// From sending the request to the response headers; a timeout answers `504`.
    pub response_ms: u64,
    /// How long an unused keep-alive connection to a backend is kept.
    pub idle_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect_ms: 3_000, response_ms: 60_000, idle_ms: 90_000 }
    }
}

/// A partial [`Timeouts`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutsChange {
    pub connect_ms: Option<u64>,
    pub response_ms: Option<u64>,
    pub idle_ms: Option<u64>,
}

impl TimeoutsChange {
    pub fn apply(self, mut t: Timeouts) -> Timeouts {
        t.connect_ms = self.connect_ms.unwrap_or(t.connect_ms);
        t.response_ms = self.response_ms.unwrap_or(t.response_ms);
        t.idle_ms = self.idle_ms.unwrap_or(t.idle_ms);
        t
    }
}

/// Most retries a pool may ask for: each is another backend tried for one request.
pub const MAX_RETRIES: u32 = 10;
/// Largest request body a pool may keep for replay.
pub const MAX_RETRY_BODY: u64 = 16 << 20;
/// Largest backend weight.
pub const MAX_WEIGHT: u32 = 10_000;
const DAY_MS: u64 = 24 * 3600 * 1000;

/// How lb checks a pool's backends: `GET path` every `interval_ms`, healthy when the answer
/// comes within `timeout_ms`, has the expected status (any 2xx by default) and a trimmed body
/// equal to one of `healthy_values`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckSpec {
    pub path: String,
    pub healthy_values: Vec<String>,
    /// `None`: any 2xx.
    pub expected_status: Option<u16>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Consecutive failures that make a healthy backend sick.
    pub fall: u32,
    /// Consecutive passes that make a sick backend healthy again.
    pub rise: u32,
    /// Consecutive failures after which the backend is removed; 0 = never.
    pub evict_after: u32,
}

impl Default for HealthCheckSpec {
    fn default() -> Self {
        HealthCheckSpec {
            path: "/healthz".into(),
            healthy_values: vec!["ok".into(), "OK".into()],
            expected_status: None,
            interval_ms: 10_000,
            timeout_ms: 1_000,
            fall: 3,
            rise: 2,
            evict_after: 30,
        }
    }
}

impl HealthCheckSpec {
    /// Refuses a spec no check could run with.
    pub fn validate(&self) -> Result<(), String> {
        if !self.path.starts_with('/') || self.path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("health check path {:?} must start with / and hold no spaces", self.path));
        }
        if self.healthy_values.is_empty() {
            return Err("health check needs at least one healthy value".into());
        }
        if let Some(status) = self.expected_status {
            if !(100..=599).contains(&status) {
                return Err(format!("expected_status {status} is not an HTTP status"));
            }
        }
        let day = 24 * 3600 * 1000;
        if self.interval_ms == 0 || self.interval_ms > day {
            return Err("health check interval must be more than 0 and at most a day".into());
        }
        if self.timeout_ms == 0 || self.timeout_ms > day {
            return Err("health check timeout must be more than 0 and at most a day".into());
        }
        if self.fall == 0 || self.rise == 0 {
            return Err("fall and rise must be at least 1".into());
        }
        Ok(())
    }
}

/// A partial [`HealthCheckSpec`]: what an admin wants changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckChange {
    pub path: Option<String>,
    pub healthy_values: Option<Vec<String>>,
    /// `Some(None)` (JSON `null`) goes back to any 2xx.
    #[serde(deserialize_with = "some")]
    pub expected_status: Option<Option<u16>>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub fall: Option<u32>,
    pub rise: Option<u32>,
    pub evict_after: Option<u32>,
}

/// Tells an explicit JSON `null` apart from a missing field.
fn some<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl HealthCheckChange {
    /// `spec` with these changes applied.
    pub fn apply(self, mut spec: HealthCheckSpec) -> HealthCheckSpec {
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = self.$field { spec.$field = v; })* };
        }
        set!(path, healthy_values, expected_status, interval_ms, timeout_ms, fall, rise, evict_after);
        spec
    }
}

/// A pool as the admin defined it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub pattern: String,
    pub mode: Mode,
    pub strategy: Strategy,
    pub hash_key: HashKey,
    /// Extra attempts on other backends for a failed proxied request.
    pub retries: u32,
    /// Also retry idempotent requests answered `502`, `503` or `504`.
    pub retry_on_5xx: bool,
    /// Largest request body kept so that a request can be replayed (bytes).
    pub retry_body_limit: u64,
    pub timeouts: Timeouts,
    pub health_check: HealthCheckSpec,
}

impl PoolConfig {
    /// A pool with every setting at its default.
    pub fn new(pattern: String) -> Self {
        PoolConfig {
            pattern,
            mode: Mode::default(),
            strategy: Strategy::default(),
            hash_key: HashKey::default(),
            retries: 2,
            retry_on_5xx: false,
            retry_body_limit: 64 * 1024,
            timeouts: Timeouts::default(),
            health_check: HealthCheckSpec::default(),
        }
    }

    /// Refuses settings lb could not run with.
    pub fn validate(&self) -> Result<(), String> {
        self.health_check.validate()?;
        if self.retries > MAX_RETRIES {
            return Err(format!("retries must be at most {MAX_RETRIES}"));
        }
        if self.retry_body_limit > MAX_RETRY_BODY {
            return Err(format!("retry_body_limit must be at most {MAX_RETRY_BODY} bytes"));
        }
        let t = &self.timeouts;
        for (name, ms) in [("connect_ms", t.connect_ms), ("response_ms", t.response_ms), ("idle_ms", t.idle_ms)] {
            if ms == 0 || ms > DAY_MS {
                return Err(format!("timeouts.{name} must be more than 0 and at most a day"));
            }
        }
        Ok(())
    }
}

/// A backend as the admin defined it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub addr: SocketAddr,
    /// Joined in front of the request path; `/` leaves the path as it is.
    pub url_path: String,
    /// Share of the pool's requests, relative to the other backends (default 1).
    pub weight: u32,
}

impl BackendConfig {
    /// Refuses a url_path that could not prefix a request path.
    pub fn validate(&self) -> Result<(), String> {
        let p = &self.url_path;
        if !p.starts_with('/') || p.contains(['?', '#']) || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("url_path {p:?} must start with / and hold no spaces, ? or #"));
        }
        if self.weight == 0 || self.weight > MAX_WEIGHT {
            return Err(format!("weight must be between 1 and {MAX_WEIGHT}"));
        }
        if self.addr.port() == 0 {
            return Err("port must be between 1 and 65535".into());
        }
        if self.addr.ip().is_unspecified() || self.addr.ip().is_multicast() {
            return Err(format!("ip {} cannot be a backend address", self.addr.ip()));
        }
        Ok(())
    }
}

/// What lb last learned of a backend's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum BackendStatus {
    /// Never checked.
    #[default]
    Unknown = 0,
    Healthy = 1,
    Sick = 2,
}

impl BackendStatus {
    /// The name used in the admin API, `lbctl poolHealth` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendStatus::Unknown => "BS_UNKNOWN",
            BackendStatus::Healthy => "BS_HEALTHY",
            BackendStatus::Sick => "BS_SICK",
        }
    }

    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => BackendStatus::Healthy,
            2 => BackendStatus::Sick,
            _ => BackendStatus::Unknown,
        }
    }
}

/// A backend's health bookkeeping, kept in memory and persisted on every status change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthRecord {
    pub status: BackendStatus,
    pub consecutive_failures: u32,
    pub consecutive_passes: u32,
    /// Unix time of the last check, in milliseconds.
    pub last_check_ms: Option<u64>,
    pub last_error: Option<String>,
}

/// Everything the store keeps about a backend besides its configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendState {
    /// Planned maintenance: no new requests, still checked.
    pub draining: bool,
    pub health: HealthRecord,
}

/// A pool's health at a glance, as the Go tool reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolStatus {
    /// Backends, none of them sick.
    Full,
    /// One or more backends sick.
    Degraded,
    /// No backends.
    Empty,
}

impl PoolStatus {
    /// The status of a pool whose backends have `statuses`.
    pub fn of(statuses: impl IntoIterator<Item = BackendStatus>) -> Self {
        let mut any = false;
        for status in statuses {
            if status == BackendStatus::Sick {
                return PoolStatus::Degraded;
            }
            any = true;
        }
        if any {
            PoolStatus::Full
        } else {
            PoolStatus::Empty
        }
    }

    /// The name used in the admin API and `lbctl poolHealth`.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolStatus::Full => "PS_FULL",
            PoolStatus::Degraded => "PS_DEGRADED",
            PoolStatus::Empty => "PS_EMPTY",
        }
    }
}

/// A live backend: where to send requests, and what the data path counts about it.
#[derive(Debug)]
pub struct Backend {
    pub config: BackendConfig,
    /// `ip:port`, ready for the `X-Forwarded-Server` header.
    pub server_header: HeaderValue,
    /// `http://ip:port`, the front of every redirect `Location`.
    pub origin: String,
    /// `ip:port`, the authority of every upstream URI.
    pub authority: http::uri::Authority,
    inflight: AtomicUsize,
    /// [`BackendStatus`] as a byte, read on every pick.
    status: AtomicU8,
    draining: AtomicBool,
    /// Removed from its pool (or replaced): health news about it is stale.
    retired: AtomicBool,
    /// Only the control plane writes this; the lock is never taken on the request path.
    health: Mutex<HealthRecord>,
}

impl Backend {
    pub fn new(config: BackendConfig, state: BackendState) -> Self {
        let addr = config.addr;
        Backend {
            server_header: HeaderValue::from_str(&addr.to_string()).expect("a socket address is a valid header"),
            origin: format!("http://{addr}"),
            authority: addr.to_string().parse().expect("a socket address is a valid authority"),
            config,
            inflight: AtomicUsize::new(0),
            status: AtomicU8::new(state.health.status as u8),
            draining: AtomicBool::new(state.draining),
            retired: AtomicBool::new(false),
            health: Mutex::new(state.health),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.config.addr
    }

    pub fn status(&self) -> BackendStatus {
        BackendStatus::from_u8(self.status.load(Ordering::Relaxed))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Relaxed);
    }

    /// Marks the backend as gone from its pool, so late health results about it are dropped.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// The status shown to admins: draining wins over health.
    pub fn status_name(&self) -> &'static str {
        if self.is_draining() {
            "BS_DRAINING"
        } else {
            self.status().as_str()
        }
    }

    /// A copy of the health bookkeeping.
    pub fn health(&self) -> HealthRecord {
        self.health.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes the health bookkeeping; the status goes live for routing at once.
    pub fn update_health<R>(&self, change: impl FnOnce(&mut HealthRecord) -> R) -> R {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let result = change(&mut health);
        self.status.store(health.status as u8, Ordering::Relaxed);
        result
    }

    /// What the store keeps about this backend besides its configuration.
    pub fn state(&self) -> BackendState {
        BackendState { draining: self.is_draining(), health: self.health() }
    }

    /// May new requests go here? Unknown counts as usable: right after it is added nothing is
    /// known yet, and refusing every backend would turn a restart into an outage.
    pub fn is_usable(&self) -> bool {
        self.status() != BackendStatus::Sick && !self.is_draining()
    }

    /// Requests sent to this backend whose response has not finished yet.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the returned guard drops.
    pub fn start_request(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(self.clone())
    }

    /// The path to request at this backend for a client's `path_and_query`: the backend's
    /// `url_path` joined with a single slash, as Go's `httputil.ReverseProxy` joins them.
    pub fn upstream_path(&self, path_and_query: &str) -> String {
        let mut out = String::with_capacity(self.config.url_path.len() + path_and_query.len() + 1);
        self.push_upstream_path(&mut out, path_and_query);
        out
    }

    /// Appends [`upstream_path`](Self::upstream_path) to `out` (a redirect's origin, say).
    pub fn push_upstream_path(&self, out: &mut String, path_and_query: &str) {
        let base = self.config.url_path.as_str();
        if base == "/" {
            out.push_str(path_and_query);
            return;
        }
        let (path, query) = match path_and_query.find('?') {
            Some(i) => path_and_query.split_at(i),
            None => (path_and_query, ""),
        };
        out.push_str(base);
        match (base.ends_with('/'), path.starts_with('/')) {
            (true, true) => out.push_str(&path[1..]),
            (false, false) => {
                out.push('/');
                out.push_str(path);
            }
            _ => out.push_str(path),
        }
        out.push_str(query);
    }
}

/// Keeps a request counted in its backend's in-flight total while alive.
#[derive(Debug)]
pub struct InflightGuard(Arc<Backend>);

impl InflightGuard {
    pub fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A live pool in one routing snapshot.
pub struct Pool {
    pub config: PoolConfig,
    pub backends: Vec<Arc<Backend>>,
    selector: Box<dyn Selector>,
    /// Shared with the pool's next snapshots, so that changes do not reset it.
    pub budget: Arc<RetryBudget>,
}

impl Pool {
    pub fn new(config: PoolConfig, backends: Vec<Arc<Backend>>, budget: Arc<RetryBudget>) -> Self {
        let selector = crate::selection::build(config.strategy, &backends);
        Pool { config, backends, selector, budget }
    }

    /// The backend a request should go to next: usable and not yet tried by it.
    pub fn pick(&self, key: u64, tried: &Tried) -> Option<(usize, &Arc<Backend>)> {
        let backends = &self.backends;
        let usable = |i: usize| backends[i].is_usable() && !tried.contains(i);
        let i = self.selector.pick(backends, &Pick { usable: &usable, key })?;
        Some((i, &backends[i]))
    }

    /// The request's stickiness key: only `consistent_hash` pools look at the request.
    pub fn key(&self, headers: &http::HeaderMap, client: IpAddr) -> u64 {
        if self.config.strategy != Strategy::ConsistentHash {
            return 0;
        }
        let value = match &self.config.hash_key {
            HashKey::ClientIp => None,
            HashKey::Header(name) => headers.get(name).map(HeaderValue::as_bytes),
            HashKey::Cookie(name) => cookie(headers, name),
        };
        match value {
            Some(v) => hash_bytes(v),
            None => match client {
                IpAddr::V4(ip) => hash_bytes(&ip.octets()),
                IpAddr::V6(ip) => hash_bytes(&ip.octets()),
            },
        }
    }

    pub fn status(&self) -> PoolStatus {
        PoolStatus::of(self.backends.iter().map(|b| b.status()))
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers.get_all(http::header::COOKIE).iter().find_map(|v| {
        v.as_bytes().split(|&b| b == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
        })
    })
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("config", &self.config).field("backends", &self.backends).finish()
    }
}

/// Parses `ip` and `port` as an admin gives them into a socket address.
pub fn parse_addr(ip: &str, port: u16) -> Result<SocketAddr, String> {
    let ip: IpAddr = ip.trim().parse().map_err(|_| format!("ip {ip:?} is not an IPv4 or IPv6 address"))?;
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(url_path: &str) -> Backend {
        Backend::new(
            BackendConfig { addr: "127.0.0.1:9".parse().unwrap(), url_path: url_path.into(), weight: 1 },
            BackendState::default(),
        )
    }

    #[test]
    fn upstream_path_joins_with_one_slash() {
        assert_eq!(backend("/").upstream_path("/a?b=1"), "/a?b=1");
        assert_eq!(backend("/v2/").upstream_path("/a?b=1"), "/v2/a?b=1");
        assert_eq!(backend("/v2").upstream_path("/a?b=1"), "/v2/a?b=1");
        assert_eq!(backend("/v2/").upstream_path("/"), "/v2/");
        assert_eq!(backend("/v2").upstream_path("/?x"), "/v2/?x");
    }

    #[test]
    fn pool_status_follows_the_go_tool() {
        use BackendStatus::*;
        assert_eq!(PoolStatus::of([]), PoolStatus::Empty);
        assert_eq!(PoolStatus::of([Healthy, Unknown]), PoolStatus::Full);
        assert_eq!(PoolStatus::of([Healthy, Sick]), PoolStatus::Degraded);
    }

    #[test]
    fn names_round_trip_and_unknown_is_explained() {
        assert_eq!("redirect".parse::<Mode>().unwrap(), Mode::Redirect);
        assert_eq!("round_robin".parse::<Strategy>().unwrap(), Strategy::RoundRobin);
        let err = "nat".parse::<Mode>().unwrap_err();
        assert!(err.contains("proxy, redirect"), "{err}");
    }

    #[test]
    fn inflight_guard_counts() {
        let b = Arc::new(backend("/"));
        let g = b.start_request();
        assert_eq!(b.inflight(), 1);
        drop(g);
        assert_eq!(b.inflight(), 0);
    }
}
