//! The whole state as lb-api's [`StateJson`] (export, import, `last-good.json`), to and from
//! the live model. Import turns a state into one [`Change::ReplaceAll`], which the write path
//! validates whole before anything changes.

use std::sync::Arc;

use lb_api::state::{BackendState as BackendEntry, PoolState};
use lb_api::{StateJson, STATE_VERSION};

use super::{Change, Error};
use crate::pool::{parse_addr, BackendConfig, Pool, PoolConfig};

/// The state of `pools` (in pattern order, as the control plane keeps them), backends in the
/// order of their addresses as lb prints them, the store's order: an export does not change
/// across a restart.
pub fn export(pools: &[Arc<Pool>]) -> StateJson {
    let pools = pools
        .iter()
        .map(|pool| {
            let c = &pool.config;
            let mut backends: Vec<_> = pool.backends.iter().map(|b| (b.addr().to_string(), b)).collect();
            backends.sort_by(|a, b| a.0.cmp(&b.0));
            PoolState {
                pattern: c.pattern.clone(),
                mode: c.mode,
                strategy: c.strategy,
                hash_key: c.hash_key.clone(),
                retries: c.retries,
                retry_on_5xx: c.retry_on_5xx,
                retry_body_limit: c.retry_body_limit,
                timeouts: c.timeouts.clone(),
                health_check: c.health_check.clone(),
                expose_backend: c.expose_backend,
                allow_trace: c.allow_trace,
                backends: backends
                    .into_iter()
                    .map(|(_, b)| BackendEntry {
                        ip: b.addr().ip().to_string(),
                        port: b.addr().port(),
                        url_path: b.config.url_path.clone(),
                        weight: b.config.weight,
                        draining: b.is_draining(),
                    })
                    .collect(),
            }
        })
        .collect();
    StateJson { version: STATE_VERSION, pools }
}

/// The change that replaces every pool and backend with `state`'s. Addresses are parsed here;
/// everything else is validated by the write path.
pub fn import(state: StateJson) -> Result<Change, Error> {
    if state.version != STATE_VERSION {
        return Err(Error::Invalid(format!(
            "state version {} is not the {STATE_VERSION} this lb reads",
            state.version
        )));
    }
    let mut pools = Vec::with_capacity(state.pools.len());
    for p in state.pools {
        let config = PoolConfig {
            pattern: p.pattern,
            mode: p.mode,
            strategy: p.strategy,
            hash_key: p.hash_key,
            retries: p.retries,
            retry_on_5xx: p.retry_on_5xx,
            retry_body_limit: p.retry_body_limit,
            timeouts: p.timeouts,
            health_check: p.health_check,
            expose_backend: p.expose_backend,
            allow_trace: p.allow_trace,
        };
        let mut backends = Vec::with_capacity(p.backends.len());
        for b in p.backends {
            let addr =
                parse_addr(&b.ip, b.port).map_err(|e| Error::Invalid(format!("pool {:?}: {e}", config.pattern)))?;
            backends.push((BackendConfig { addr, url_path: b.url_path, weight: b.weight }, b.draining));
        }
        pools.push((config, backends));
    }
    Ok(Change::ReplaceAll { pools })
}
