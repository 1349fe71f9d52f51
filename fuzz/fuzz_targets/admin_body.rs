//! Admin request bodies, as lb's admin API reads them, each followed by what lb does with it:
//! `POST /v1/pools` (pattern, then `PoolSettings`, applied onto a new pool's defaults),
//! `PATCH /v1/pool` (`PoolSettings` onto defaults), `POST /v1/pool/backends` (`NewBackend`, to a
//! validated `BackendConfig`) and `PATCH /v1/pool/backends` (`BackendChange` onto a backend).
//! Every input is tried as each body. No panic; what lb accepts is valid and stores and loads
//! back unchanged.

#![no_main]

use std::sync::Arc;

use lb::fuzzing::{decode_backend, decode_pool, encode_backend, encode_pool, RetryBudget};
use lb::pool::{parse_addr, Backend, BackendChange, BackendConfig, BackendState, Pool, PoolConfig, PoolSettings};
use lb::routing::Pattern;
use lb_api::NewBackend;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    new_pool(data);
    if let Ok(settings) = serde_json::from_slice::<PoolSettings>(data) {
        let _ = settings.is_empty();
        accepted(settings.apply(PoolConfig::new("/".into())));
    }
    if let Ok(body) = serde_json::from_slice::<NewBackend>(data) {
        if let Ok(addr) = parse_addr(&body.ip, body.port) {
            let config = BackendConfig {
                addr,
                url_path: body.url_path.unwrap_or_else(|| "/".into()),
                weight: body.weight.unwrap_or(1),
            };
            if config.validate().is_ok() {
                let state = BackendState::default();
                assert_eq!(decode_backend(&encode_backend(&config, &state)), Ok((config.clone(), state.clone())));
                let backend = Arc::new(Backend::new(config, state));
                let _ = backend.upstream_path("/a/b?c=d");
                let pool = Pool::new(PoolConfig::new("/".into()), vec![backend], Arc::new(RetryBudget::new(0.2, 10)));
                assert!(pool.pick(0, &Default::default()).is_some());
            }
        }
    }
    if let Ok(change) = serde_json::from_slice::<BackendChange>(data) {
        let mut config = BackendConfig { addr: "127.0.0.1:8080".parse().unwrap(), url_path: "/".into(), weight: 1 };
        config.weight = change.weight.unwrap_or(config.weight);
        let _ = config.validate();
    }
});

/// `POST /v1/pools`, as `admin::add_pool` reads it.
fn new_pool(data: &[u8]) {
    let Ok(mut body) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data) else { return };
    let Some(serde_json::Value::String(pattern)) = body.remove("pattern") else { return };
    let Ok(settings) = serde_json::from_value::<PoolSettings>(body.into()) else { return };
    let Ok(pattern) = Pattern::parse(&pattern) else { return };
    accepted(settings.apply(PoolConfig::new(pattern.to_string())));
}

/// A pool config lb accepted is valid, and stores and loads back unchanged.
fn accepted(config: Result<PoolConfig, String>) {
    if let Ok(config) = config {
        config.validate().expect("an applied config is valid");
        assert_eq!(decode_pool(config.pattern.clone(), &encode_pool(&config)).as_ref(), Ok(&config));
    }
}
