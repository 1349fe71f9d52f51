//! Export, import and restore: the whole state as JSON, applied all or nothing, loaded at start
//! into an empty store, and the last good export in the data dir to restore a damaged store.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{client, eventually, get, lb_command, Lb, SampleWeb};
use serde_json::{json, Value};

/// Pools with settings other than the defaults, backends with weights and draining.
async fn configure(lb: &Lb, a: &SampleWeb, b: &SampleWeb) {
    lb.add_pool("/", json!({"strategy": "round_robin", "retries": 4, "timeouts": {"connect_ms": 1500}})).await;
    lb.add_pool(
        "example.com/api/",
        json!({"mode": "redirect", "strategy": "consistent_hash", "hash_key": "header:X-User",
               "health_check": {"interval_ms": 2000, "fall": 5, "healthy_values": ["ok"]}}),
    )
    .await;
    lb.add_pool("/empty/", json!({})).await;
    lb.add_backend("/", a, json!({"weight": 3})).await;
    lb.add_backend("/", b, json!({"url_path": "/v2/"})).await;
    lb.add_backend("example.com/api/", b, json!({})).await;
    let r = client()
        .patch(lb.admin_url("/v1/pool/backends"))
        .query(&[("pattern", "/"), ("ip", &b.addr.ip().to_string()), ("port", &b.port().to_string())])
        .json(&json!({"draining": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn state(lb: &Lb) -> Value {
    lb.admin_json("/v1/state").await
}

fn lbctl_ok(lb: &Lb, args: &[&str]) -> String {
    let out = lb.lbctl(args);
    assert!(out.status.success(), "lbctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn export_then_import_into_a_fresh_lb_reproduces_everything() {
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    let lb = Lb::in_process();
    configure(&lb, &a, &b).await;
    let exported = lbctl_ok(&lb, &["export"]);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &exported).unwrap();
    let state_json: Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(state_json["version"], 1);
    assert_eq!(state_json["pools"].as_array().unwrap().len(), 3);
    let root = state_json["pools"][0]["backends"].as_array().unwrap();
    let drained: Vec<(&Value, &Value)> = root.iter().map(|b| (&b["url_path"], &b["draining"])).collect();
    assert!(drained.contains(&(&json!("/v2/"), &json!(true))), "{state_json:#}");

    let fresh = Lb::in_process();
    fresh.add_pool("/old/", json!({})).await;
    let said = lbctl_ok(&fresh, &["import", file.path().to_str().unwrap()]);
    assert!(said.contains("now has 3 pools and 3 backends"), "{said}");
    // Replace, not merge: /old/ is gone; everything else is as exported.
    assert_eq!(state(&fresh).await, state_json);
    let pools = fresh.admin_json("/v1/pools").await;
    assert_eq!(pools[0]["pattern"], "/");
    assert_eq!(pools[0]["retries"], 4);
    assert_eq!(pools[2]["hash_key"], "header:x-user");
    // It serves at once (the imported backends are checked without delay).
    eventually("the imported pool serving", || async {
        (get(&fresh.url("/")).await == (200, "Hello web from node a".to_owned())).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_invalid_state_changes_nothing() {
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    let lb = Lb::in_process();
    configure(&lb, &a, &b).await;
    let before = state(&lb).await;
    let valid = before.clone();
    let mut bad = Vec::new();
    let mut v = valid.clone();
    v["version"] = json!(2);
    bad.push((v, 400, "state version 2"));
    let mut v = valid.clone();
    v["pools"][2]["pattern"] = json!("/");
    bad.push((v, 400, "appears twice"));
    let mut v = valid.clone();
    v["pools"][2]["pattern"] = json!("/{x}/b");
    v["pools"][1]["pattern"] = json!("/a/{y}");
    bad.push((v, 409, "conflicts"));
    let mut v = valid.clone();
    v["pools"][2]["backends"] =
        json!([{"ip": "127.0.0.1", "port": 1, "url_path": "no slash", "weight": 1, "draining": false}]);
    bad.push((v, 400, "url_path"));
    let mut v = valid.clone();
    v["pools"][0]["backends"][1] = v["pools"][0]["backends"][0].clone();
    bad.push((v, 400, "twice"));
    let mut v = valid.clone();
    v["pools"][0]["colour"] = json!("red");
    bad.push((v, 400, "unknown field `colour`"));
    bad.push((json!({"version": 1, "pools": {}}), 400, "invalid JSON body"));
    for (body, status, words) in bad {
        let r = client().put(lb.admin_url("/v1/state")).json(&body).send().await.unwrap();
        let got = r.status().as_u16();
        let answer: Value = r.json().await.unwrap();
        assert_eq!(got, status, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(words), "want {words:?}: {answer}");
        assert_eq!(state(&lb).await, before, "a refused import changed the state");
    }
}

#[tokio::test]
async fn lb_import_fills_an_empty_store_and_refuses_a_full_one() {
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    let lb = Lb::in_process();
    configure(&lb, &a, &b).await;
    let exported = state(&lb).await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), exported.to_string()).unwrap();
    let path = file.path().to_str().unwrap();

    let mut fresh = Lb::start_with(Arc::new(tempfile::tempdir().unwrap()), &["--import", path]);
    assert_eq!(state(&fresh).await, exported);
    eventually("the imported pool serving", || async {
        (get(&fresh.url("/")).await == (200, "Hello web from node a".to_owned())).then_some(())
    })
    .await;
    fresh.stop();
    // The import is in the store: a restart without --import has it.
    let fresh = Lb::start_in(fresh.dir.clone());
    assert_eq!(state(&fresh).await, exported);
    drop(fresh);

    let full = tempfile::tempdir().unwrap();
    let mut started = Lb::start_in(Arc::new(tempfile::tempdir().unwrap()));
    started.add_pool("/", json!({})).await;
    started.stop();
    let line = common::process::refused(lb_command(started.dir.path()).args(["--import", path]));
    assert!(line.contains("already holds 1 pools"), "{line}");
    let mut garbage = lb_command(full.path());
    std::fs::write(full.path().join("x.json"), "{\"version\": 1}").unwrap();
    let line = common::process::refused(garbage.arg("--import").arg(full.path().join("x.json")));
    assert!(line.contains("missing field `pools`"), "{line}");
}

/// Waits until the data dir's last-good.json is the state `want`.
async fn last_good_is(dir: &Path, want: &Value) {
    eventually("last-good.json holding the state", || async {
        let text = std::fs::read_to_string(dir.join("last-good.json")).ok()?;
        (serde_json::from_str::<Value>(&text).ok()? == *want).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_damaged_store_is_restored_from_last_good_json() {
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    let mut lb = Lb::start();
    configure(&lb, &a, &b).await;
    let acknowledged = state(&lb).await;
    last_good_is(lb.dir.path(), &acknowledged).await;
    lb.stop();
    let dir = lb.dir.path().to_owned();

    // Damage: db deleted. lb refuses the store...
    std::fs::remove_file(dir.join("db")).unwrap();
    let line = common::process::refused(&mut lb_command(&dir));
    assert!(line.contains("damaged") && line.contains("last-good.json"), "{line}");

    // ... and the README's procedure brings everything back.
    let aside = tempfile::tempdir().unwrap();
    let damaged = aside.path().join("lb-data.damaged");
    std::fs::rename(&dir, &damaged).unwrap();
    let last_good = damaged.join("last-good.json");
    let restored = Lb::start_with(lb.dir.clone(), &["--import", last_good.to_str().unwrap()]);
    assert_eq!(state(&restored).await, acknowledged);
    eventually("the restored pool serving", || async {
        (get(&restored.url("/")).await == (200, "Hello web from node a".to_owned())).then_some(())
    })
    .await;
    // The restored store keeps its own last-good.json from then on.
    last_good_is(&dir, &acknowledged).await;
}
