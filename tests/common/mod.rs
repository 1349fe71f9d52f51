//! Test scaffolding: a real lb (a process, or in the test process), `sample-web` and `lbctl`
//! processes on loopback, scripted raw backends, a temp data dir, and waits with deadlines
//! instead of sleeps.
//!
//! - [`lb`]: a running lb ([`Lb`]) and what a test asks of its admin API.
//! - [`sample_web`]: a running sample-web ([`SampleWeb`]).
//! - [`raw_backend`]: scripted raw HTTP/1.1 backends in the test process, [`FaultyBackend`]
//!   among them.
//! - [`process`]: the binaries, their output and signals.
//! - [`wait`]: [`DEADLINE`] and [`eventually`].
// Each test binary uses a part of this module.
#![allow(dead_code)]

pub mod lb;
pub mod process;
pub mod raw_backend;
pub mod sample_web;
pub mod wait;

// What tests use most, at `common::`; each test binary takes a part of it.
#[allow(unused_imports)]
pub use {
    self::lb::{lb_command, Lb},
    raw_backend::{Fault, FaultyBackend},
    sample_web::SampleWeb,
    wait::{eventually, DEADLINE},
};

/// An HTTP client that shows redirects instead of following them.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().timeout(DEADLINE).build().unwrap()
}

/// Pool `/` of `lb`, round robin, with a backend that died (unnoticed by checks: an hour apart,
/// `fall` 100, no eviction) and a live one: one of every two requests meets the dead one first
/// and is retried. Returns both; the dead one is killed.
pub async fn dead_and_live(lb: &Lb) -> (SampleWeb, SampleWeb) {
    let (mut dead, live) = (SampleWeb::start("dead"), SampleWeb::start("live"));
    lb.add_pool(
        "/",
        serde_json::json!({"strategy": "round_robin", "health_check": {"interval_ms": 3_600_000, "fall": 100, "evict_after": 0}}),
    )
    .await;
    lb.add_backend("/", &dead, serde_json::json!({})).await;
    lb.add_backend("/", &live, serde_json::json!({})).await;
    dead.kill();
    (dead, live)
}

/// `GET url` and the body as text, with the status.
pub async fn get(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}
