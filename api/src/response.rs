//! What lb sends and lbctl reads: response bodies.
//!
//! lb writes exactly the structs here. lbctl must keep working against an lb that sends more (a
//! newer one) or less (an older one), so it reads their twins in [`lenient`] instead: same
//! field names, every field an `Option`, unknown fields ignored, and the names (mode,
//! strategy, hash key) plain text. One macro declares each struct and its twin from a single
//! field list, so the two cannot drift; `field: Type => Other` gives the twin another type.

use serde::{Deserialize, Serialize};

use crate::{HashKey, Mode, Strategy};

/// Declares response structs as given, and in [`lenient`] a twin of each (see the module doc).
/// Fields take doc comments only, which the twin's fields get too.
macro_rules! responses {
    ($(
        $(#[$attr:meta])*
        pub struct $name:ident {
            $($(#[doc = $doc:literal])* pub $field:ident: $ty:ty $(=> $lenient:ty)?,)*
        }
    )*) => {
        $(
            $(#[$attr])*
            pub struct $name {
                $($(#[doc = $doc])* pub $field: $ty,)*
            }
        )*

        /// The response bodies as lbctl reads them: every field optional (`None` when lb left it
        /// out or sent `null`), unknown fields ignored, names as plain text.
        pub mod lenient {
            // So that `=> lenient::Timeouts` in a field list names a twin here too.
            use super::lenient;
            $(
                #[doc = concat!("[`", stringify!($name), "`](super::", stringify!($name), "), read leniently.")]
                #[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
                #[serde(default)]
                pub struct $name {
                    $($(#[doc = $doc])* pub $field: Option<twin!($ty $(, $lenient)?)>,)*
                }
            )*
        }
    };
}

/// The type of a lenient twin's field: the strict type unless `=>` gave another.
macro_rules! twin {
    ($ty:ty) => {
        $ty
    };
    ($ty:ty, $lenient:ty) => {
        $lenient
    };
}

responses! {
    /// How long lb waits on a pool's backends, in milliseconds.
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

    /// How lb checks a pool's backends: `GET path` every `interval_ms`, healthy when the answer
    /// comes within `timeout_ms`, has the expected status (any 2xx by default) and a trimmed
    /// body equal to one of `healthy_values`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct HealthCheckSpec {
        pub path: String,
        pub healthy_values: Vec<String>,
        /// `None`: any 2xx.
        pub expected_status: Option<u16> => u16,
        pub interval_ms: u64,
        pub timeout_ms: u64,
        /// Consecutive failures that make a healthy backend sick.
        pub fall: u32,
        /// Consecutive passes that make a sick backend healthy again.
        pub rise: u32,
        /// Consecutive failures after which the backend is removed; 0 = never.
        pub evict_after: u32,
    }

    /// A pool: its settings, `status` and `backends`. The answer of `GET /v1/pool` and of the
    /// calls that add, change or remove a pool; `GET /v1/pools` answers a list of them.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub struct PoolJson {
        pub pattern: String,
        pub mode: Mode => String,
        pub strategy: Strategy => String,
        pub hash_key: HashKey => String,
        /// Extra attempts on other backends for a failed proxied request.
        pub retries: u32,
        /// Also retry idempotent requests answered `502`, `503` or `504`.
        pub retry_on_5xx: bool,
        /// Largest request body kept so that a request can be replayed (bytes).
        pub retry_body_limit: u64,
        pub timeouts: Timeouts => lenient::Timeouts,
        pub health_check: HealthCheckSpec => lenient::HealthCheckSpec,
        /// Name the backend that served a response in its `X-Forwarded-Server` header.
        pub expose_backend: bool,
        /// Pass `TRACE` requests on (proxy) or redirect them; lb refuses them (`405`) otherwise.
        pub allow_trace: bool,
        /// `PS_FULL` (backends, none sick), `PS_DEGRADED` (one or more sick) or `PS_EMPTY`.
        pub status: &'static str => String,
        pub backends: Vec<BackendJson> => Vec<lenient::BackendJson>,
    }

    /// A backend of a pool, with its health. The answer of the calls that add, change or
    /// remove a backend.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub struct BackendJson {
        pub ip: String,
        pub port: u16,
        pub url_path: String,
        pub weight: u32,
        /// `ip:port`, as lb spells it (IPv6 in brackets).
        pub address: String,
        /// `BS_HEALTHY`, `BS_SICK`, `BS_DRAINING` or `BS_UNKNOWN` (never checked).
        pub status: &'static str => String,
        pub draining: bool,
        /// Requests sent to it whose response has not finished.
        pub inflight: usize,
        pub consecutive_failures: u32,
        pub consecutive_passes: u32,
        /// Unix time of the last health check, in milliseconds.
        pub last_check_ms: Option<u64> => u64,
        pub last_error: Option<String> => String,
    }

    /// Answer of `GET /v1/pool/health`: the pool's status and its backends'.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub struct HealthJson {
        pub pattern: String,
        /// As in [`PoolJson::status`].
        pub status: &'static str => String,
        pub backends: Vec<BackendJson> => Vec<lenient::BackendJson>,
    }
}

/// lb's defaults for a new pool, which the README documents with the API.
impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect_ms: 3_000, response_ms: 60_000, idle_ms: 90_000 }
    }
}

/// lb's defaults for a new pool, which the README documents with the API.
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

/// Every refusal's body, `{"error": "..."}`, with a 4xx (or 500) status. Read as it is: an
/// answer without `error` is not lb explaining itself, and lbctl says so instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorJson {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> BackendJson {
        BackendJson {
            ip: "127.0.0.1".into(),
            port: 8082,
            url_path: "/".into(),
            weight: 1,
            address: "127.0.0.1:8082".into(),
            status: "BS_HEALTHY",
            draining: false,
            inflight: 0,
            consecutive_failures: 0,
            consecutive_passes: 1,
            last_check_ms: None,
            last_error: None,
        }
    }

    fn pool() -> PoolJson {
        PoolJson {
            pattern: "/".into(),
            mode: Mode::Proxy,
            strategy: Strategy::P2c,
            hash_key: HashKey::ClientIp,
            retries: 2,
            retry_on_5xx: false,
            retry_body_limit: 65536,
            timeouts: Timeouts::default(),
            health_check: HealthCheckSpec::default(),
            expose_backend: false,
            allow_trace: false,
            status: "PS_FULL",
            backends: vec![backend()],
        }
    }

    #[test]
    fn lb_writes_every_field_in_order() {
        let pool = pool();
        assert_eq!(
            serde_json::to_string(&pool).unwrap(),
            r#"{"pattern":"/","mode":"proxy","strategy":"p2c","hash_key":"client_ip","retries":2,"retry_on_5xx":false,"retry_body_limit":65536,"timeouts":{"connect_ms":3000,"response_ms":60000,"idle_ms":90000},"health_check":{"path":"/healthz","healthy_values":["ok","OK"],"expected_status":null,"interval_ms":10000,"timeout_ms":1000,"fall":3,"rise":2,"evict_after":30},"expose_backend":false,"allow_trace":false,"status":"PS_FULL","backends":[{"ip":"127.0.0.1","port":8082,"url_path":"/","weight":1,"address":"127.0.0.1:8082","status":"BS_HEALTHY","draining":false,"inflight":0,"consecutive_failures":0,"consecutive_passes":1,"last_check_ms":null,"last_error":null}]}"#
        );
        let error = ErrorJson { error: "pool \"/\" already exists".into() };
        assert_eq!(serde_json::to_string(&error).unwrap(), r#"{"error":"pool \"/\" already exists"}"#);
    }

    #[test]
    fn the_lenient_twin_reads_what_lb_writes() {
        let health = HealthJson { pattern: "/".into(), status: "PS_FULL", backends: vec![backend()] };
        let read: lenient::HealthJson = serde_json::from_value(serde_json::to_value(&health).unwrap()).unwrap();
        assert_eq!(read.status.as_deref(), Some("PS_FULL"));
        let backend = &read.backends.unwrap()[0];
        assert_eq!(backend.address.as_deref(), Some("127.0.0.1:8082"));
        assert_eq!(backend.last_check_ms, None);
    }

    #[test]
    fn the_lenient_twin_ignores_unknown_fields_and_names_it_does_not_know() {
        let pool: lenient::PoolJson = serde_json::from_str(
            r#"{"pattern": "/", "mode": "tcp", "future_field": 1,
                "health_check": {"expected_status": null, "interval_ms": 10000, "later": 1},
                "backends": [{"ip": "10.0.0.1", "port": 80}]}"#,
        )
        .unwrap();
        assert_eq!(pool.mode.as_deref(), Some("tcp"));
        assert_eq!(pool.strategy, None);
        let check = pool.health_check.unwrap();
        assert_eq!((check.expected_status, check.interval_ms, check.fall), (None, Some(10_000), None));
        assert_eq!(pool.backends.unwrap()[0].port, Some(80));
    }

    /// The partial request types must keep the field names of what they change.
    #[test]
    fn changes_name_the_fields_they_change() {
        fn keys(value: serde_json::Value) -> Vec<String> {
            value.as_object().unwrap().keys().cloned().collect()
        }
        let timeouts = crate::TimeoutsChange { connect_ms: Some(1), response_ms: Some(1), idle_ms: Some(1) };
        assert_eq!(
            keys(serde_json::to_value(timeouts).unwrap()),
            keys(serde_json::to_value(Timeouts::default()).unwrap())
        );
        let check = crate::HealthCheckChange {
            path: Some("/".into()),
            healthy_values: Some(vec![]),
            expected_status: Some(None),
            interval_ms: Some(1),
            timeout_ms: Some(1),
            fall: Some(1),
            rise: Some(1),
            evict_after: Some(1),
        };
        let spec = HealthCheckSpec::default();
        assert_eq!(keys(serde_json::to_value(&check).unwrap()), keys(serde_json::to_value(spec).unwrap()));
        let settings = crate::PoolSettings {
            mode: Some(Mode::Proxy),
            strategy: Some(Strategy::P2c),
            hash_key: Some(HashKey::ClientIp),
            retries: Some(1),
            retry_on_5xx: Some(true),
            retry_body_limit: Some(1),
            timeouts: Some(crate::TimeoutsChange::default()),
            health_check: Some(check),
            expose_backend: Some(true),
            allow_trace: Some(true),
        };
        let mut pool = keys(serde_json::to_value(pool()).unwrap());
        pool.retain(|key| !["pattern", "status", "backends"].contains(&key.as_str()));
        assert_eq!(keys(serde_json::to_value(settings).unwrap()), pool);
    }
}
