//! The backend half of a pool, below selection: a [`Backend`] as the admin defined it
//! ([`BackendConfig`]), what lb learned of its health ([`BackendState`]), and the live object the
//! data path counts requests on. A `Backend` outlives routing snapshots (the control plane hands
//! the same `Arc` to every new snapshot), so its in-flight count and health stay true across
//! admin changes.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::HeaderValue;

use crate::metrics::BackendMetrics;

/// Largest backend weight.
pub const MAX_WEIGHT: u32 = 10_000;

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
    /// What a new backend is held to, beyond [`validate`](Self::validate): a canonical address
    /// (IPv4-mapped IPv6 is IPv4, so one backend has one name) and a `url_path` that is
    /// absolute, clean (no `.` or `..` segment, also as `%2e`, no `//`) and percent-encoded
    /// ASCII, so lb never forwards a path a backend could read as "go up". A store written
    /// before these rules keeps loading.
    pub fn validate_new(&self) -> Result<(), String> {
        self.validate()?;
        if canonical_addr(self.addr) != self.addr {
            return Err(format!("ip {} is IPv4-mapped: give it as {}", self.addr.ip(), self.addr.ip().to_canonical()));
        }
        clean_url_path(&self.url_path)
    }

    /// Refuses a url_path that could not prefix a request path (also when loading the store).
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
    /// Resolved by the control plane for this backend's pool and address.
    pub(crate) metrics: BackendMetrics,
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
            metrics: BackendMetrics::detached(),
        }
    }

    /// The backend counting on `metrics`.
    pub(crate) fn with_metrics(self, metrics: BackendMetrics) -> Self {
        Backend { metrics, ..self }
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

/// Parses `ip` and `port` as an admin gives them into a socket address.
pub fn parse_addr(ip: &str, port: u16) -> Result<SocketAddr, String> {
    // `[::1]` as lb prints it in `ip:port` is accepted too.
    let bare = ip.trim();
    let bare = bare.strip_prefix('[').and_then(|b| b.strip_suffix(']')).unwrap_or(bare);
    let parsed: IpAddr = bare.parse().map_err(|_| format!("ip {ip:?} is not an IPv4 or IPv6 address"))?;
    Ok(canonical_addr(SocketAddr::new(parsed, port)))
}

/// `addr` with an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) as the IPv4 address it is.
pub fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Refuses a `url_path` that is not absolute, clean and percent-encoded ASCII.
fn clean_url_path(path: &str) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("url_path {path:?} {why}"));
    if !path.starts_with('/') {
        return refuse("must start with /");
    }
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let allowed = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b);
        if !allowed {
            return refuse("must be percent-encoded ASCII (no spaces, ?, #, quotes or other characters)");
        }
        if b == b'%' && !bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
            return refuse("has a % not followed by two hex digits");
        }
    }
    if path.contains("//") {
        return refuse("must not hold an empty segment (//)");
    }
    let dots = |seg: &str| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == "." || seg == ".."
    };
    if path.split('/').any(dots) {
        return refuse("must be clean: no . or .. segment");
    }
    Ok(())
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
    fn new_url_paths_are_absolute_clean_and_encoded() {
        for ok in ["/", "/v2", "/v2/", "/a%20b/", "/a-b_c.d~e/f:g@h!$&'()*+,;=", "/.well-known/", "/a..b"] {
            assert_eq!(clean_url_path(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("v2", "start with /"),
            ("/../../secret/", "no . or .."),
            ("/a/./b", "no . or .."),
            ("/a/..", "no . or .."),
            ("/a/%2E%2e/b", "no . or .."),
            ("/a//b", "(//)"),
            ("/é", "percent-encoded ASCII"),
            ("/a b", "percent-encoded ASCII"),
            ("/a?b", "percent-encoded ASCII"),
            ("/a\0", "percent-encoded ASCII"),
            ("/a%2", "two hex digits"),
            ("/a%zz", "two hex digits"),
        ] {
            let err = clean_url_path(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn addresses_are_canonical() {
        let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(parse_addr("::ffff:127.0.0.1", 80), Ok(v4));
        assert_eq!(parse_addr("127.0.0.1", 80), Ok(v4));
        assert_eq!(parse_addr("[::1]", 80), Ok("[::1]:80".parse().unwrap()));
        assert_eq!(parse_addr("::1", 80), Ok("[::1]:80".parse().unwrap()));
        assert!(parse_addr("[127.0.0.1]x", 80).is_err());
        let mapped = BackendConfig { addr: "[::ffff:127.0.0.1]:80".parse().unwrap(), url_path: "/".into(), weight: 1 };
        assert!(mapped.validate().is_ok(), "a store may hold it");
        assert!(mapped.validate_new().unwrap_err().contains("give it as 127.0.0.1"));
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
    fn inflight_guard_counts() {
        let b = Arc::new(backend("/"));
        let g = b.start_request();
        assert_eq!(b.inflight(), 1);
        drop(g);
        assert_eq!(b.inflight(), 0);
    }
}
