//! What lbctl sends and lb reads: request bodies and query parameters.
//!
//! lb reads them strictly: an unknown field is refused (`400`), so a typo is an error rather
//! than a setting silently left alone. lbctl writes them leaving unset fields out, so that lb
//! applies its defaults (a new pool) or keeps what is there (a change). One type does both: the
//! strictness is serde's `deny_unknown_fields`, which only reading sees, and the sparseness
//! `skip_serializing_if`, which only writing sees. serde names a struct in some errors
//! (`expected struct PoolSettings`), so these names are part of lb's answers.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{HashKey, Mode, Strategy};

/// A partial [`Timeouts`](crate::Timeouts), in milliseconds: the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutsChange {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_ms: Option<u64>,
}

/// A partial [`HealthCheckSpec`](crate::HealthCheckSpec): the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckChange {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_values: Option<Vec<String>>,
    /// `Some(None)` (JSON `null`) goes back to any 2xx.
    #[serde(deserialize_with = "some", skip_serializing_if = "Option::is_none")]
    pub expected_status: Option<Option<u16>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fall: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rise: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evict_after: Option<u32>,
}

/// A `T` read only from a JSON object. serde's derived `Deserialize` for a struct also takes a
/// sequence of its fields in order (`"timeouts": [1, 2, 3]` would set all three), which no
/// admin means: lb reads every body and nested setting through this, so an array is a `400`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Only<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Only<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Only(PhantomData)).map(Object)
    }
}

/// A nested setting that must be a JSON object (see [`Object`]).
fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Object::deserialize(d).map(|Object(t)| Some(t))
}

/// Tells an explicit JSON `null` apart from a missing field.
fn some<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Settings of a pool to create (with a pattern, [`NewPool`]) or change (`PATCH /v1/pool`);
/// unset fields take their defaults (new pool) or stay as they are (change).
///
/// `Key` is how `hash_key` travels: lb parses it into a [`HashKey`] as it reads the body, so a
/// bad key is refused with the others; lbctl sends it as the user typed it (a `String`), since
/// parsing would lowercase a header name and lb would then echo a key the user did not type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSettings<Key = HashKey> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<Key>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_on_5xx: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_body_limit: Option<u64>,
    #[serde(deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<TimeoutsChange>,
    #[serde(deserialize_with = "object", skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expose_backend: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_trace: Option<bool>,
}

impl<Key> PoolSettings<Key> {
    /// Whether no setting is given: a change with nothing to change.
    pub fn is_empty(&self) -> bool {
        let PoolSettings {
            mode,
            strategy,
            hash_key,
            retries,
            retry_on_5xx,
            retry_body_limit,
            timeouts,
            health_check,
            expose_backend,
            allow_trace,
        } = self;
        mode.is_none()
            && strategy.is_none()
            && hash_key.is_none()
            && retries.is_none()
            && retry_on_5xx.is_none()
            && retry_body_limit.is_none()
            && timeouts.is_none()
            && health_check.is_none()
            && expose_backend.is_none()
            && allow_trace.is_none()
    }
}

/// Body of `POST /v1/pools`: the pattern and the settings given, side by side in one object.
/// lb reads it in two steps, `pattern` then the rest as [`PoolSettings`], so that a missing or
/// non-string pattern gets its own message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewPool<Key = HashKey> {
    pub pattern: String,
    #[serde(flatten)]
    pub settings: PoolSettings<Key>,
}

/// Body of `POST /v1/pool/backends`; lb defaults `url_path` to `/` and `weight` to 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// lb's errors have always named it so ("expected struct AddBackendBody").
#[serde(expecting = "struct AddBackendBody", deny_unknown_fields)]
pub struct NewBackend {
    pub ip: String,
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// Body of `PATCH /v1/pool/backends`; unset fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendChange {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draining: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// Query of the endpoints about one pool: `?pattern=/api/`, percent-encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternQuery {
    pub pattern: String,
}

/// Query of the endpoints about one backend: `?pattern=/api/&ip=127.0.0.1&port=8082`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendQuery {
    pub pattern: String,
    pub ip: String,
    pub port: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_settings_are_left_out() {
        let settings = PoolSettings::<String> {
            strategy: Some(Strategy::LeastConn),
            hash_key: Some("header:X-User".into()),
            timeouts: Some(TimeoutsChange { idle_ms: Some(0), ..TimeoutsChange::default() }),
            health_check: Some(HealthCheckChange { expected_status: Some(Some(204)), ..HealthCheckChange::default() }),
            ..PoolSettings::default()
        };
        let body = serde_json::to_string(&NewPool { pattern: "/".into(), settings }).unwrap();
        assert_eq!(
            body,
            r#"{"pattern":"/","strategy":"least_conn","hash_key":"header:X-User","timeouts":{"idle_ms":0},"health_check":{"expected_status":204}}"#
        );
        assert_eq!(serde_json::to_string(&BackendChange::default()).unwrap(), "{}");
    }

    #[test]
    fn lb_reads_strictly_and_tells_null_from_missing() {
        let err = serde_json::from_str::<PoolSettings>(r#"{"colour": "red"}"#).unwrap_err().to_string();
        assert!(err.starts_with("unknown field `colour`, expected one of `mode`, `strategy`"), "{err}");
        let err = serde_json::from_str::<NewBackend>("3").unwrap_err().to_string();
        assert!(err.contains("expected struct AddBackendBody"), "{err}");
        let null: HealthCheckChange = serde_json::from_str(r#"{"expected_status": null}"#).unwrap();
        assert_eq!(null.expected_status, Some(None));
        assert_eq!(serde_json::from_str::<HealthCheckChange>("{}").unwrap().expected_status, None);
        let key: PoolSettings = serde_json::from_str(r#"{"hash_key": "header:X-User"}"#).unwrap();
        assert_eq!(key.hash_key.unwrap().to_string(), "header:x-user");
    }

    #[test]
    fn structs_are_read_only_from_objects() {
        // What serde's derive alone accepts: the fields in order, as an array.
        assert!(serde_json::from_str::<TimeoutsChange>("[1, 2, 3]").is_ok());
        let err = serde_json::from_str::<PoolSettings>(r#"{"timeouts": [1, 2, 3]}"#).unwrap_err().to_string();
        assert!(err.starts_with("invalid type: sequence, expected a JSON object"), "{err}");
        let err = serde_json::from_str::<PoolSettings>(r#"{"health_check": ["/x"]}"#).unwrap_err().to_string();
        assert!(err.starts_with("invalid type: sequence, expected a JSON object"), "{err}");
        let err = serde_json::from_str::<Object<NewBackend>>(r#"["127.0.0.1", 80]"#).unwrap_err().to_string();
        assert!(err.starts_with("invalid type: sequence, expected a JSON object"), "{err}");
        let err = serde_json::from_str::<PoolSettings>(r#"{"retries": {"n": 1}}"#).unwrap_err().to_string();
        assert!(err.starts_with("invalid type: map, expected u32"), "{err}");
        let ok: Object<PoolSettings> = serde_json::from_str(r#"{"timeouts": {"idle_ms": 5}}"#).unwrap();
        assert_eq!(ok.0.timeouts.unwrap().idle_ms, Some(5));
    }
}
