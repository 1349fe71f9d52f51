//! The whole state, as `GET /v1/state` and `lbctl export` write it and `PUT /v1/state`,
//! `lbctl import` and `lb --import` read it: every pool with all its settings and its backends
//! as an admin defined them (health is relearned, not exported). lb also keeps its last good
//! one in the data dir, `last-good.json`, for a restore.
//!
//! Read strictly: every field is required and unknown ones are refused, so that a restore
//! restores exactly what was exported or says why not. The one exception is a setting added
//! after version 1 (`expose_backend`, `allow_trace`): it may be missing and is then off, as it
//! was in the lb that wrote the state, so that a backup taken before it still restores.
//! `version` is [`STATE_VERSION`]; a format that an older lb could not read the same way gets a
//! new number, and lb refuses one it does not know.

use serde::{Deserialize, Serialize};

use crate::{HashKey, HealthCheckSpec, Mode, Strategy, Timeouts};

/// The version of the state format this lb writes and reads.
pub const STATE_VERSION: u32 = 1;

/// The whole state: `{"version": 1, "pools": [...]}`, pools in pattern order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateJson {
    pub version: u32,
    pub pools: Vec<PoolState>,
}

/// A pool in [`StateJson`]: its pattern, every setting, its backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolState {
    pub pattern: String,
    pub mode: Mode,
    pub strategy: Strategy,
    pub hash_key: HashKey,
    pub retries: u32,
    pub retry_on_5xx: bool,
    pub retry_body_limit: u64,
    pub timeouts: Timeouts,
    pub health_check: HealthCheckSpec,
    /// Missing in a state of an lb before the setting: off, as that lb behaved.
    #[serde(default)]
    pub expose_backend: bool,
    /// Missing in a state of an lb before the setting: off, as that lb behaved.
    #[serde(default)]
    pub allow_trace: bool,
    pub backends: Vec<BackendState>,
}

/// A backend in [`StateJson`], as an admin defined it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendState {
    pub ip: String,
    pub port: u16,
    pub url_path: String,
    pub weight: u32,
    pub draining: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_read_strictly() {
        let ok = r#"{"version": 1, "pools": [{"pattern": "/", "mode": "proxy", "strategy": "p2c",
            "hash_key": "client_ip", "retries": 2, "retry_on_5xx": false, "retry_body_limit": 65536,
            "timeouts": {}, "health_check": {},
            "backends": [{"ip": "127.0.0.1", "port": 1, "url_path": "/", "weight": 1, "draining": false}]}]}"#;
        let state: StateJson = serde_json::from_str(ok).unwrap();
        assert_eq!(state.pools[0].backends[0].port, 1);
        let typo = ok.replace("\"draining\"", "\"drained\"");
        assert!(serde_json::from_str::<StateJson>(&typo).unwrap_err().to_string().contains("unknown field `drained`"));
        let missing = ok.replace("\"retries\": 2,", "");
        assert!(serde_json::from_str::<StateJson>(&missing)
            .unwrap_err()
            .to_string()
            .contains("missing field `retries`"));
        assert!(serde_json::from_str::<StateJson>("[]").is_err());
    }

    #[test]
    fn a_state_from_before_the_newer_settings_reads_with_them_off() {
        let old = r#"{"version": 1, "pools": [{"pattern": "/", "mode": "proxy", "strategy": "p2c",
            "hash_key": "client_ip", "retries": 2, "retry_on_5xx": false, "retry_body_limit": 65536,
            "timeouts": {}, "health_check": {}, "backends": []}]}"#;
        let state: StateJson = serde_json::from_str(old).unwrap();
        assert!(!state.pools[0].expose_backend && !state.pools[0].allow_trace);
        let new = old.replace("\"backends\"", "\"expose_backend\": true, \"allow_trace\": true, \"backends\"");
        let state: StateJson = serde_json::from_str(&new).unwrap();
        assert!(state.pools[0].expose_backend && state.pools[0].allow_trace);
        let bad = old.replace("\"backends\"", "\"allow_trace\": \"yes\", \"backends\"");
        assert!(serde_json::from_str::<StateJson>(&bad).unwrap_err().to_string().contains("expected a boolean"));
    }
}
