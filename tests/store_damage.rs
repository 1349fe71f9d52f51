//! A damaged store is refused at start, with one line, exit 1, and every file of the data dir
//! byte-identical; a crash is not damage; a second lb on the same dir names the first; a
//! store written before manifests and length-prefixed keys is migrated with nothing lost.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{lb_command, Lb, SampleWeb};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The sha256 of every file under `dir`, by path.
fn checksums(dir: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                let sum = Sha256::digest(std::fs::read(&path).unwrap());
                out.insert(path, sum.iter().map(|b| format!("{b:02x}")).collect());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// A stopped lb's data dir holding pools `/` (two backends) and `/api/` (one, draining).
async fn store_with_pools(a: &SampleWeb, b: &SampleWeb) -> Arc<tempfile::TempDir> {
    let mut lb = Lb::start();
    lb.add_pool("/", json!({})).await;
    lb.add_pool("/api/", json!({"strategy": "round_robin", "health_check": {"healthy_values": ["ok", "api-is-up"]}}))
        .await;
    lb.add_backend("/", a, json!({})).await;
    lb.add_backend("/", b, json!({})).await;
    lb.add_backend("/api/", a, json!({"weight": 3})).await;
    let r = common::client()
        .patch(lb.admin_url("/v1/pool/backends"))
        .query(&[("pattern", "/api/"), ("ip", &a.addr.ip().to_string()), ("port", &a.port().to_string())])
        .json(&json!({"draining": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    lb.stop();
    lb.dir.clone()
}

/// Damages the store with `damage`, then asserts that lb refuses it and leaves every file as
/// the damage left it; returns the error line.
async fn assert_refused_untouched(damage: impl FnOnce(&Path)) -> String {
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    let dir = store_with_pools(&a, &b).await;
    damage(dir.path());
    let before = checksums(dir.path());
    let line = common::process::refused(&mut lb_command(dir.path()));
    assert_eq!(checksums(dir.path()), before, "lb changed the data dir of a store it refused");
    assert!(line.contains("damaged") || line.contains("cannot be read"), "{line}");
    line
}

/// Overwrites 4 bytes of `db` in the middle of the last record naming the `/api/` pool's
/// healthy values: data sled can tell is bad, as a failing disk would leave it.
fn corrupt_four_bytes(dir: &Path) {
    let path = dir.join("db");
    let mut bytes = std::fs::read(&path).unwrap();
    let needle = b"api-is-up";
    let at = bytes.windows(needle.len()).rposition(|w| w == needle).expect("the record is in db");
    bytes[at + 4..at + 8].copy_from_slice(b"XXXX");
    std::fs::write(&path, bytes).unwrap();
}

#[tokio::test]
async fn four_corrupted_bytes_in_db_are_refused_untouched() {
    let line = assert_refused_untouched(corrupt_four_bytes).await;
    assert!(line.contains("last-good.json"), "the line says how to restore: {line}");
}

#[tokio::test]
async fn a_truncated_db_is_refused_untouched() {
    assert_refused_untouched(|dir| {
        let db = std::fs::OpenOptions::new().write(true).open(dir.join("db")).unwrap();
        let len = db.metadata().unwrap().len();
        db.set_len(len / 2).unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_deleted_db_is_refused_untouched() {
    let line = assert_refused_untouched(|dir| std::fs::remove_file(dir.join("db")).unwrap()).await;
    assert!(line.contains("holds 0 pools and 0 backends where lb last acknowledged 2 pools and 3 backends"), "{line}");
}

#[tokio::test]
async fn a_deleted_manifest_is_refused_untouched() {
    let line = assert_refused_untouched(|dir| std::fs::remove_file(dir.join("lb-manifest")).unwrap()).await;
    assert!(line.contains("manifest lb-manifest is missing"), "{line}");
}

#[tokio::test]
async fn an_intact_store_opens_after_the_refusals_of_a_damaged_copy() {
    // The same store, undamaged, loads everything: what the refusals above refuse is damage.
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    let dir = store_with_pools(&a, &b).await;
    let lb = Lb::start_in(dir);
    let pools = lb.admin_json("/v1/pools").await;
    assert_eq!(pools.as_array().unwrap().len(), 2, "{pools}");
    assert_eq!(pools[1]["backends"][0]["draining"], true);
    assert_eq!(pools[1]["backends"][0]["weight"], 3);
}

#[tokio::test]
async fn crashes_between_acknowledged_writes_are_not_damage() {
    let a = SampleWeb::start("a");
    let mut lb = Lb::start();
    for round in 0..3 {
        lb.add_pool(&format!("/p{round}/"), json!({})).await;
        lb.add_backend(&format!("/p{round}/"), &a, json!({})).await;
        lb.crash();
        lb = Lb::start_in(lb.dir.clone());
        let pools = lb.admin_json("/v1/pools").await;
        assert_eq!(pools.as_array().unwrap().len(), round + 1, "{pools}");
    }
}

/// Copies sled's files of `from` into `to` (lb's own files stay as they are in `to`), and
/// removes those of `to` that `from` does not have: `to`'s store becomes `from`'s.
fn copy_sled_files(from: &Path, to: &Path) {
    let own = |name: &str| name.starts_with("lb-manifest") || name == "lb.pid" || name.starts_with("last-good.json");
    for entry in std::fs::read_dir(to).unwrap() {
        let entry = entry.unwrap();
        if !own(&entry.file_name().to_string_lossy()) && !from.join(entry.file_name()).exists() {
            let path = entry.path();
            if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) }.unwrap();
        }
    }
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if own(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_sled_files(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_store_that_lost_the_last_acknowledged_change_is_refused() {
    let mut lb = Lb::start();
    lb.add_pool("/a/", json!({})).await;
    let before = tempfile::tempdir().unwrap();
    copy_sled_files(lb.dir.path(), before.path());
    lb.add_pool("/b/", json!({})).await;
    // A crash at once after the acknowledgement, then the store rolled back to the state before
    // it, as a disk that lost the last writes would leave it: the manifest already names only
    // the state with `/b/`.
    lb.crash();
    copy_sled_files(before.path(), lb.dir.path());
    let checked = checksums(lb.dir.path());
    let line = common::process::refused(&mut lb_command(lb.dir.path()));
    assert!(line.contains("holds 1 pool and 0 backends where lb last acknowledged 2 pools and 0 backends"), "{line}");
    assert_eq!(checksums(lb.dir.path()), checked, "lb changed the data dir of a store it refused");
}

#[tokio::test]
async fn a_crash_in_the_middle_of_writes_keeps_every_acknowledged_one() {
    let mut lb = Lb::start();
    let url = lb.admin_url("/v1/pools");
    // Writes one after another until lb dies; each acknowledged one is counted.
    let acknowledged = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = tokio::spawn({
        let acknowledged = acknowledged.clone();
        async move {
            for n in 0.. {
                let body = json!({"pattern": format!("/p{n}/")});
                match common::client().post(&url).json(&body).send().await {
                    Ok(r) if r.status() == 201 => acknowledged.store(n + 1, std::sync::atomic::Ordering::SeqCst),
                    _ => return,
                }
            }
        }
    });
    common::wait::eventually("20 acknowledged writes", || {
        let n = acknowledged.load(std::sync::atomic::Ordering::SeqCst);
        async move { (n >= 20).then_some(()) }
    })
    .await;
    lb.crash();
    writer.await.unwrap();
    let acknowledged = acknowledged.load(std::sync::atomic::Ordering::SeqCst);
    let lb = Lb::start_in(lb.dir.clone());
    let pools = lb.admin_json("/v1/pools").await;
    let held = pools.as_array().unwrap().len();
    // Every acknowledged write, and perhaps the one in flight when lb died.
    assert!(held == acknowledged || held == acknowledged + 1, "{acknowledged} acknowledged, {held} held: {pools}");
}

#[tokio::test]
async fn a_manifest_written_before_slots_is_read_and_rewritten_in_slots() {
    let mut lb = Lb::start();
    lb.add_pool("/a/", json!({})).await;
    lb.stop();
    // As an lb before slots wrote it: the newer slot's JSON alone, format 1.
    let path = lb.dir.path().join("lb-manifest");
    let slots = std::fs::read(&path).unwrap();
    let newest = |slot: &[u8]| {
        let len = u16::from_be_bytes([slot[8], slot[9]]) as usize;
        serde_json::from_slice::<serde_json::Value>(&slot[10..10 + len]).unwrap()
    };
    let (a, b) = (newest(&slots[..512]), newest(&slots[512..]));
    let mut old = if a["generation"].as_u64() >= b["generation"].as_u64() { a } else { b };
    old["manifest"] = json!(1);
    std::fs::write(&path, format!("{old}\n")).unwrap();
    let lb = Lb::start_in(lb.dir.clone());
    assert_eq!(lb.admin_json("/v1/pools").await.as_array().unwrap().len(), 1);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1024, "rewritten in two slots");
}

#[test]
fn a_second_lb_on_the_same_dir_names_the_first() {
    let lb = Lb::start();
    let first = std::fs::read_to_string(lb.dir.path().join("lb.pid")).unwrap();
    let line = common::process::refused(&mut lb_command(lb.dir.path()));
    assert_eq!(line, format!("lb: error: another lb (pid {}) is using {}", first.trim(), lb.dir.path().display()));
}

#[tokio::test]
async fn a_store_of_todays_lb_migrates_to_prefixed_keys_with_nothing_lost() {
    use lb_migrations::records::v2;
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    let dir = Arc::new(tempfile::tempdir().unwrap());
    {
        // As the lb before schema 3 wrote it: schema 2, `pattern NUL ip:port` keys, no manifest.
        let db = sled::Config::new().path(dir.path()).flush_every_ms(None).open().unwrap();
        lb_migrations::run_migrations(&db, &lb_migrations::MIGRATIONS[..2]).unwrap();
        let pool = |strategy: &str| v2::Pool {
            mode: "proxy".into(),
            strategy: strategy.into(),
            hash_key: "client_ip".into(),
            retries: 2,
            retry_on_5xx: false,
            retry_body_limit: 65536,
            connect_timeout_ms: 3000,
            response_timeout_ms: 60000,
            idle_timeout_ms: 90000,
            health_path: "/healthz".into(),
            healthy_values: vec!["ok".into()],
            expected_status: None,
            interval_ms: 10000,
            timeout_ms: 1000,
            fall: 3,
            rise: 2,
            evict_after: 30,
        };
        let backend = |s: &SampleWeb, weight| v2::Backend {
            ip: s.addr.ip(),
            port: s.port(),
            url_path: "/".into(),
            weight,
            draining: false,
            status: 1,
            consecutive_failures: 0,
            consecutive_passes: 2,
            last_check_ms: None,
            last_error: None,
        };
        let pools = db.open_tree("pools").unwrap();
        let backends = db.open_tree("backends").unwrap();
        pools.insert("/", v2::encode_pool(&pool("p2c"))).unwrap();
        pools.insert("/a", v2::encode_pool(&pool("round_robin"))).unwrap();
        for (pattern, s, weight) in [("/", &a, 1), ("/", &b, 2), ("/a", &b, 5)] {
            let key = format!("{pattern}\0{}", s.addr);
            backends.insert(key.as_bytes(), v2::encode_backend(&backend(s, weight))).unwrap();
        }
        db.flush().unwrap();
    }
    let mut lb = Lb::start_in(dir.clone());
    let check = |pools: serde_json::Value| {
        let pools = pools.as_array().unwrap().clone();
        assert_eq!(pools.len(), 2);
        let addrs = |p: &serde_json::Value| -> Vec<(String, u64)> {
            let backends = p["backends"].as_array().unwrap().iter();
            let mut found: Vec<_> =
                backends.map(|b| (b["address"].to_string(), b["weight"].as_u64().unwrap())).collect();
            found.sort();
            found
        };
        let mut want = vec![(format!("\"{}\"", a.addr), 1), (format!("\"{}\"", b.addr), 2)];
        want.sort();
        assert_eq!(addrs(&pools[0]), want);
        assert_eq!(pools[1]["strategy"], "round_robin");
        assert_eq!(addrs(&pools[1]), vec![(format!("\"{}\"", b.addr), 5)]);
    };
    check(lb.admin_json("/v1/pools").await);
    // Removing `/` leaves `/a` whole, also after a restart.
    let r = common::client().delete(lb.admin_url("/v1/pool")).query(&[("pattern", "/")]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    lb.stop();
    let lb = Lb::start_in(dir);
    let pools = lb.admin_json("/v1/pools").await;
    assert_eq!(pools.as_array().unwrap().len(), 1, "{pools}");
    assert_eq!(pools[0]["backends"].as_array().unwrap().len(), 1, "{pools}");
}

#[tokio::test]
async fn after_a_write_error_lb_keeps_serving_and_recovers_when_the_disk_does() {
    let a = SampleWeb::start("a");
    let lb = Lb::start();
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &a, json!({})).await;
    // The manifest, written in place by every change, replaced by a directory: every write to
    // it fails, also as root (for whom a read-only file is no obstacle), as a failing disk would.
    let (manifest, saved) = (lb.dir.path().join("lb-manifest"), lb.dir.path().join("lb-manifest.saved"));
    std::fs::rename(&manifest, &saved).unwrap();
    std::fs::create_dir(&manifest).unwrap();
    let r = common::client().post(lb.admin_url("/v1/pools")).json(&json!({"pattern": "/new/"})).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let error: serde_json::Value = r.json().await.unwrap();
    let message = error["error"].as_str().unwrap();
    assert!(message.contains("cannot write") && message.contains("nothing changed"), "{message}");
    let r = common::client().delete(lb.admin_url("/v1/pool")).query(&[("pattern", "/")]).send().await.unwrap();
    assert_eq!(r.status(), 500);
    // Nothing changed, and the data plane serves on.
    assert_eq!(common::get(&lb.url("/")).await, (200, "Hello web from node a".to_owned()));
    let pools = lb.admin_json("/v1/pools").await;
    assert_eq!(pools.as_array().unwrap().len(), 1, "{pools}");
    std::fs::remove_dir(&manifest).unwrap();
    std::fs::rename(&saved, &manifest).unwrap();
    lb.add_pool("/new/", json!({})).await;
    // What was refused is not in the store, what was accepted is.
    let lb = lb.restart();
    let pools = lb.admin_json("/v1/pools").await;
    let patterns: Vec<&str> = pools.as_array().unwrap().iter().map(|p| p["pattern"].as_str().unwrap()).collect();
    assert_eq!(patterns, ["/", "/new/"]);
    assert_eq!(common::get(&lb.url("/")).await, (200, "Hello web from node a".to_owned()));
}
