//! The write path against a real sled store in a temp dir: every kind of change shows in the
//! published snapshot and, after a reopen, in the store; every refusal leaves both as they were.
//! Backends are loopback: a tiny HTTP responder that passes the check, or a closed port.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

use super::*;
use serde_json::json;

use crate::pool::{BackendChange, BackendConfig, BackendStatus, Mode, PoolSettings, Strategy};
use crate::store::StoredPool;

/// How long anything here may take.
const DEADLINE: Duration = Duration::from_secs(10);

async fn open(dir: &Path) -> ControlPlane {
    ControlPlane::load(reopen(dir).await, Arc::new(crate::metrics::Metrics::new(true))).unwrap()
}

/// Opens the store in `dir`. sled lets go of its directory lock from its flusher thread, a
/// moment after the last handle drops, so a reopen may have to wait for it.
async fn reopen(dir: &Path) -> Store {
    let end = Instant::now() + DEADLINE;
    loop {
        match Store::open(dir) {
            Ok(store) => return store,
            Err(_) if Instant::now() < end => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => panic!("cannot open the store: {e}"),
        }
    }
}

/// What the store holds once `control` is gone.
async fn stored_after_reopen(control: ControlPlane, dir: &Path) -> Vec<StoredPool> {
    drop(control);
    reopen(dir).await.load().unwrap()
}

/// The pool `pattern` in the published snapshot.
fn published(control: &ControlPlane, pattern: &str) -> Option<Arc<Pool>> {
    control.routes().load().get(&Pattern::parse(pattern).unwrap()).cloned()
}

/// A loopback backend whose `/healthz` answers `ok`, on every connection and every request of
/// it. With a gate, each answer waits for a permit; `requests` hears of each request first.
struct Responder {
    addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<()>,
    gate: Option<Arc<Semaphore>>,
}

impl Responder {
    async fn start(gated: bool) -> Responder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = gated.then(|| Arc::new(Semaphore::new(0)));
        let (seen, requests) = mpsc::unbounded_channel();
        let conn_gate = gate.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (gate, seen) = (conn_gate.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0; 1024];
                    while let Ok(n @ 1..) = conn.read(&mut chunk).await {
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let _ = seen.send(());
                            if let Some(gate) = &gate {
                                gate.acquire().await.unwrap().forget();
                            }
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if conn.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Responder { addr, requests, gate }
    }

    async fn healthy() -> Responder {
        Self::start(false).await
    }
}

/// A loopback address nobody listens on: a check there is refused.
fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn backend(addr: SocketAddr) -> BackendConfig {
    BackendConfig { addr, url_path: "/".into(), weight: 1 }
}

fn add_pool(pattern: &str) -> Change {
    Change::AddPool { pattern: pattern.into(), settings: PoolSettings::default() }
}

fn add_backend(pattern: &str, addr: SocketAddr) -> Change {
    Change::AddBackend { pattern: pattern.into(), backend: backend(addr) }
}

/// Pool settings as the admin API's JSON gives them.
fn settings(json: serde_json::Value) -> PoolSettings {
    serde_json::from_value(json).unwrap()
}

#[tokio::test]
async fn add_pool_is_published_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let control = open(dir.path()).await;
    let settings = settings(json!({"mode": "redirect"}));
    let applied = control.apply(Change::AddPool { pattern: "Shop.Example/api/".into(), settings }).await.unwrap();
    assert!(matches!(&applied, Applied::PoolAdded(p) if p.config.pattern == "shop.example/api/"), "{applied:?}");
    assert_eq!(applied.to_string(), "pool shop.example/api/ added (redirect mode)");

    let pool = published(&control, "shop.example/api/").expect("published");
    assert_eq!(pool.config.mode, Mode::Redirect);
    let stored = stored_after_reopen(control, dir.path()).await;
    assert_eq!(stored, vec![(pool.config.clone(), vec![])]);
}

#[tokio::test]
async fn update_pool_changes_its_settings_and_keeps_its_backends() {
    let dir = tempfile::tempdir().unwrap();
    let web = Responder::healthy().await;
    let control = open(dir.path()).await;
    control.apply(add_pool("/")).await.unwrap();
    control.apply(add_backend("/", web.addr)).await.unwrap();

    let settings = settings(json!({"strategy": "least_conn", "health_check": {"interval_ms": 2000}}));
    let applied = control.apply(Change::UpdatePool { pattern: "/".into(), settings }).await.unwrap();
    assert!(matches!(applied, Applied::PoolChanged(_)), "{applied:?}");

    let pool = published(&control, "/").unwrap();
    assert_eq!((pool.config.strategy, pool.config.health_check.interval_ms), (Strategy::LeastConn, 2000));
    assert_eq!(pool.backends.len(), 1, "backends kept");
    let stored = stored_after_reopen(control, dir.path()).await;
    assert_eq!(stored[0].0, pool.config);
    assert_eq!(stored[0].1.len(), 1);
}

#[tokio::test]
async fn remove_pool_removes_it_and_its_backends() {
    let dir = tempfile::tempdir().unwrap();
    let web = Responder::healthy().await;
    let control = open(dir.path()).await;
    control.apply(add_pool("/")).await.unwrap();
    control.apply(add_pool("/keep/")).await.unwrap();
    control.apply(add_backend("/", web.addr)).await.unwrap();

    let applied = control.apply(Change::RemovePool { pattern: "/".into() }).await.unwrap();
    let Applied::PoolRemoved(pool) = &applied else { panic!("{applied:?}") };
    assert_eq!(pool.backends.len(), 1, "answered as it was");
    assert!(pool.backends[0].is_retired());

    assert!(published(&control, "/").is_none());
    assert!(published(&control, "/keep/").is_some());
    let stored = stored_after_reopen(control, dir.path()).await;
    assert_eq!(stored.iter().map(|(p, b)| (p.pattern.as_str(), b.len())).collect::<Vec<_>>(), [("/keep/", 0)]);
}

#[tokio::test]
async fn add_backend_checks_it_then_publishes_and_stores_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut web = Responder::healthy().await;
    let control = open(dir.path()).await;
    control.apply(add_pool("/")).await.unwrap();

    let applied = control.apply(add_backend("/", web.addr)).await.unwrap();
    let Applied::BackendAdded { backend, .. } = &applied else { panic!("{applied:?}") };
    assert_eq!(backend.status(), BackendStatus::Healthy, "it passed its check");
    assert!(web.requests.try_recv().is_ok(), "it was checked");
    assert_eq!(applied.to_string(), format!("pool / backend {} added", web.addr));

    let pool = published(&control, "/").unwrap();
    assert!(Arc::ptr_eq(&pool.backends[0], backend));
    let stored = stored_after_reopen(control, dir.path()).await;
    let (config, state) = &stored[0].1[0];
    assert_eq!(config, &backend.config);
    assert_eq!((state.health.status, state.health.consecutive_passes), (BackendStatus::Healthy, 1));
}

#[tokio::test]
async fn update_backend_drains_and_reweighs() {
    let dir = tempfile::tempdir().unwrap();
    let web = Responder::healthy().await;
    let control = open(dir.path()).await;
    control.apply(add_pool("/")).await.unwrap();
    control.apply(add_backend("/", web.addr)).await.unwrap();
    let update = |change| Change::UpdateBackend { pattern: "/".into(), addr: web.addr, change };

    let drain = BackendChange { draining: Some(true), weight: None };
    let applied = control.apply(update(drain)).await.unwrap();
    assert_eq!(applied.to_string(), format!("pool / backend {}: draining, weight 1", web.addr));
    let before = published(&control, "/").unwrap().backends[0].clone();
    assert!(before.is_draining());

    let reweigh = BackendChange { draining: None, weight: Some(3) };
    control.apply(update(reweigh)).await.unwrap();
    let after = published(&control, "/").unwrap().backends[0].clone();
    assert_eq!((after.config.weight, after.is_draining()), (3, true));
    assert!(before.is_retired(), "replaced by a backend of the new weight");

    let stored = stored_after_reopen(control, dir.path()).await;
    let (config, state) = &stored[0].1[0];
    assert_eq!((config.weight, state.draining), (3, true));
}

#[tokio::test]
async fn remove_backend_by_an_admin_or_by_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Responder::healthy().await, Responder::healthy().await);
    let control = open(dir.path()).await;
    control.apply(add_pool("/")).await.unwrap();
    control.apply(add_backend("/", a.addr)).await.unwrap();
    control.apply(add_backend("/", b.addr)).await.unwrap();

    let remove = |addr, reason| Change::RemoveBackend { pattern: "/".into(), addr, reason };
    let applied = control.apply(remove(a.addr, Removal::Admin)).await.unwrap();
    assert_eq!(applied.to_string(), format!("pool / backend {} removed (0 requests still in flight)", a.addr));
    assert!(!applied.is_eviction());
    let evicted = Removal::Evicted { from: BackendStatus::Sick, failures: 30, cause: "check failed: x".into() };
    let applied = control.apply(remove(b.addr, evicted)).await.unwrap();
    assert!(applied.is_eviction());
    assert_eq!(
        applied.to_string(),
        format!("pool / backend {}: BS_SICK -> evicted (30 consecutive failures; check failed: x)", b.addr)
    );

    assert!(published(&control, "/").unwrap().backends.is_empty());
    let stored = stored_after_reopen(control, dir.path()).await;
    assert_eq!(stored[0].1, vec![]);
}

#[tokio::test]
async fn the_health_loop_evicts_through_the_write_path() {
    let dir = tempfile::tempdir().unwrap();
    let web = Responder::healthy().await;
    let control = Arc::new(open(dir.path()).await);
    tokio::spawn(control.clone().run_health());
    // Checks a day apart: only the failures sent here count.
    let spec = settings(json!({"health_check": {"interval_ms": 86_400_000, "fall": 1, "evict_after": 2}}));
    control.apply(Change::AddPool { pattern: "/".into(), settings: spec }).await.unwrap();
    let Applied::BackendAdded { backend, .. } = control.apply(add_backend("/", web.addr)).await.unwrap() else {
        panic!("not a backend")
    };

    // Failed requests count up to `fall` (1), and a failed check takes it to `evict_after`.
    let failures = control.failure_reporter();
    for _ in 0..5 {
        failures.report("/", &backend, "connection reset".into());
    }
    let check = |error: &str| crate::health::Observation {
        pattern: "/".into(),
        backend: backend.clone(),
        result: Err(error.into()),
        source: crate::health::Source::Check,
    };
    failures.0.send(check("connection refused")).await.unwrap();
    let end = Instant::now() + DEADLINE;
    while !published(&control, "/").unwrap().backends.is_empty() {
        assert!(Instant::now() < end, "not evicted within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(backend.is_retired());
    assert_eq!(control.store.load().unwrap()[0].1, vec![], "evicted from the store too");
}

/// The tag of an error, to compare.
fn kind(e: &Error) -> &'static str {
    match e {
        Error::Invalid(_) => "Invalid",
        Error::NotFound(_) => "NotFound",
        Error::Conflict(_) => "Conflict",
        Error::Sick(_) => "Sick",
        Error::Store(_) => "Store",
    }
}

#[tokio::test]
async fn refusals_leave_store_and_snapshot_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let web = Responder::healthy().await;
    let control = open(dir.path()).await;
    control.apply(add_pool("/")).await.unwrap();
    control.apply(add_pool("/a/{x}")).await.unwrap();
    control.apply(add_backend("/", web.addr)).await.unwrap();
    let snapshot = control.routes().load_full();
    let stored = control.store.load().unwrap();

    let nobody: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let heavy = BackendConfig { weight: 0, ..backend(closed_port()) };
    let bad_health = || settings(json!({"health_check": {"fall": 0}}));
    let weigh = |pattern: &str, addr, weight| Change::UpdateBackend {
        pattern: pattern.into(),
        addr,
        change: BackendChange { draining: None, weight: Some(weight) },
    };
    let remove = |pattern: &str, addr| Change::RemoveBackend { pattern: pattern.into(), addr, reason: Removal::Admin };
    let refusals = [
        (add_pool("/"), "Conflict", r#"pool "/" already exists"#),
        (add_pool("/{y}/b"), "Conflict", "/a/{x}"),
        (add_pool("api"), "Invalid", "invalid pattern"),
        (Change::AddPool { pattern: "/x".into(), settings: bad_health() }, "Invalid", "fall"),
        (Change::UpdatePool { pattern: "/nope/".into(), settings: bad_health() }, "NotFound", "no pool"),
        (Change::UpdatePool { pattern: "/".into(), settings: bad_health() }, "Invalid", "fall"),
        (Change::RemovePool { pattern: "/nope/".into() }, "NotFound", "no pool"),
        (add_backend("/nope/", web.addr), "NotFound", "no pool"),
        (add_backend("/", web.addr), "Conflict", "already has backend"),
        (Change::AddBackend { pattern: "/".into(), backend: heavy }, "Invalid", "weight"),
        (add_backend("/", closed_port()), "Sick", "backend is sick"),
        (weigh("/nope/", web.addr, 2), "NotFound", "no pool"),
        (weigh("/", nobody, 2), "NotFound", "has no backend"),
        (weigh("/", web.addr, 0), "Invalid", "weight"),
        (remove("/nope/", web.addr), "NotFound", "no pool"),
        (remove("/", nobody), "NotFound", "has no backend"),
    ];
    for (change, want, says) in refusals {
        let what = format!("{change:?}");
        let e = control.apply(change).await.expect_err(&what);
        assert_eq!(kind(&e), want, "{what}: {e}");
        assert!(e.to_string().contains(says), "{what}: {e}");
        assert!(Arc::ptr_eq(&control.routes().load_full(), &snapshot), "{what}: a new snapshot was published");
        assert_eq!(control.store.load().unwrap(), stored, "{what}: the store changed");
    }
    assert_eq!(stored_after_reopen(control, dir.path()).await, stored);
}

#[tokio::test]
async fn a_backend_is_checked_without_the_lock_and_its_pool_looked_up_again_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut web = Responder::start(true).await;
    let control = Arc::new(open(dir.path()).await);
    let slow_check = settings(json!({"health_check": {"timeout_ms": 60_000, "interval_ms": 60_000}}));
    control.apply(Change::AddPool { pattern: "/".into(), settings: slow_check }).await.unwrap();

    let (control2, addr) = (control.clone(), web.addr);
    let adding = tokio::spawn(async move { control2.apply(add_backend("/", addr)).await });
    tokio::time::timeout(DEADLINE, web.requests.recv()).await.expect("the backend is checked");
    // The check hangs; other changes go on meanwhile, and one removes the pool.
    let removal = control.apply(Change::RemovePool { pattern: "/".into() });
    tokio::time::timeout(DEADLINE, removal).await.expect("the lock is free during the check").unwrap();
    web.gate.as_ref().unwrap().add_permits(1);

    let added = tokio::time::timeout(DEADLINE, adding).await.unwrap().unwrap();
    assert_eq!(added.map_err(|e| kind(&e)).unwrap_err(), "NotFound");
    assert!(published(&control, "/").is_none());
    assert_eq!(control.store.load().unwrap(), vec![]);
}

#[tokio::test]
async fn of_two_adds_of_one_backend_checked_at_once_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut web = Responder::start(true).await;
    let control = Arc::new(open(dir.path()).await);
    control.apply(add_pool("/")).await.unwrap();

    let adds: Vec<_> = (0..2)
        .map(|_| {
            let (control, addr) = (control.clone(), web.addr);
            tokio::spawn(async move { control.apply(add_backend("/", addr)).await })
        })
        .collect();
    for _ in 0..2 {
        tokio::time::timeout(DEADLINE, web.requests.recv()).await.expect("both are checked at once");
    }
    web.gate.as_ref().unwrap().add_permits(2);
    let mut outcomes = Vec::new();
    for add in adds {
        outcomes
            .push(tokio::time::timeout(DEADLINE, add).await.unwrap().unwrap().map(|_| "added").map_err(|e| kind(&e)));
    }
    outcomes.sort();
    assert_eq!(outcomes, [Ok("added"), Err("Conflict")]);
    assert_eq!(published(&control, "/").unwrap().backends.len(), 1);
    assert_eq!(control.store.load().unwrap()[0].1.len(), 1);
}

#[tokio::test]
async fn what_an_older_lb_stored_keeps_loading_and_can_be_changed_or_removed() {
    let dir = tempfile::tempdir().unwrap();
    {
        // As an lb without today's bounds wrote them: a 50 ms interval, a control character in
        // a pattern, an IPv4-mapped backend address.
        let store = reopen(dir.path()).await;
        let mut legacy = PoolConfig::new("/old\x1b[31m".into());
        legacy.health_check.interval_ms = 50;
        store.put_pool(&legacy).await.unwrap();
        let mapped = BackendConfig { addr: "[::ffff:127.0.0.1]:9".parse().unwrap(), url_path: "/".into(), weight: 1 };
        store.put_backend(&legacy.pattern, &mapped, &Default::default()).await.unwrap();
        store.flush().unwrap();
    }
    let control = open(dir.path()).await;
    let pool = control.pool("/old\x1b[31m").await.unwrap();
    assert_eq!(pool.config.health_check.interval_ms, 50);
    // Changes that leave its check alone go through; one that touches it meets the bounds.
    let mode = settings(json!({"mode": "redirect"}));
    control.apply(Change::UpdatePool { pattern: "/old\x1b[31m".into(), settings: mode }).await.unwrap();
    let fall = settings(json!({"health_check": {"fall": 2}}));
    let e = control.apply(Change::UpdatePool { pattern: "/old\x1b[31m".into(), settings: fall }).await.unwrap_err();
    assert!(e.to_string().contains("interval_ms must be at least 100, not 50"), "{e}");
    // The mapped backend answers to its IPv4 name.
    let drain = Change::UpdateBackend {
        pattern: "/old\x1b[31m".into(),
        addr: "127.0.0.1:9".parse().unwrap(),
        change: BackendChange { draining: Some(true), weight: None },
    };
    control.apply(drain).await.unwrap();
    let removal = Change::RemoveBackend {
        pattern: "/old\x1b[31m".into(),
        addr: "127.0.0.1:9".parse().unwrap(),
        reason: Removal::Admin,
    };
    control.apply(removal).await.unwrap();
    control.apply(Change::RemovePool { pattern: "/old\x1b[31m".into() }).await.unwrap();
    assert_eq!(stored_after_reopen(control, dir.path()).await, vec![]);
}
