//! The admin API: JSON over HTTP under `/v1/`, served on its own thread and runtime.
//!
//! Pools are named by their pattern in a `pattern` query parameter, since patterns hold
//! slashes, hosts and spaces; backends by `ip` and `port` parameters next to it. Every error is
//! `{"error": "..."}` with a 4xx status that says what kind of mistake it was.
//!
//! # Layout
//! - `admin/guard.rs`: who may call it and in what form (token, `Host`, `Origin`, content
//!   type, body size), checked before any handler runs.
//! - `admin/listen.rs`: where it listens, a TCP address or a private unix socket.
//! - `admin/dashboard.rs`: `GET /dashboard`, a live page polling the endpoints here.
//! - `admin/head.rs`: each request head read and checked before hyper sees it, so that a
//!   malformed one gets `{"error": ...}` too.
//! - this file: the routes and handlers, and lb-api's JSON shapes built from the live pools.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lb_api::{BackendJson, BackendQuery, ErrorJson, HealthJson, NewBackend, Object, PatternQuery, PoolJson};
use serde::de::DeserializeOwned;
use serde::Serialize;

mod dashboard;
mod guard;
mod head;
mod listen;

pub use guard::{open_to, Access, Token};
pub use listen::{AdminAddr, AdminListener};

use crate::control::{self, Applied, Change, ControlPlane, Removal};
use crate::pool::{parse_addr, Backend, BackendChange, BackendConfig, Pool, PoolSettings};

/// Largest request body the admin API reads.
const MAX_BODY: usize = 64 * 1024;
/// Largest state `PUT /v1/state` reads: 10,000 backends take about 1.5 MiB.
const MAX_STATE_BODY: usize = 64 << 20;

/// The admin API's routes, behind the checks of [`Access`] (see `guard.rs`).
pub fn router(control: Arc<ControlPlane>, access: Access) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(dashboard::router())
        .route("/metrics", get(metrics))
        .route("/v1/pools", get(list_pools).post(add_pool))
        .route("/v1/pool", get(get_pool).patch(update_pool).delete(remove_pool))
        .route("/v1/pool/health", get(pool_health))
        .route("/v1/pool/backends", axum::routing::post(add_backend).patch(update_backend).delete(remove_backend))
        .route(
            "/v1/state",
            get(export_state).put(import_state).layer(axum::extract::DefaultBodyLimit::max(MAX_STATE_BODY)),
        )
        .fallback(
            |uri: Uri| async move { ApiError(StatusCode::NOT_FOUND, format!("no admin endpoint {}", uri.path())) },
        )
        .method_not_allowed_fallback(|| async {
            ApiError(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint".into())
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(Arc::new(access), guard::guard))
        // No panic-catching layer: release builds abort on panic (Cargo.toml says why), so it
        // could never answer.
        .with_state(control)
}

/// An error answer: a status and a message, sent as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorJson { error: self.1 })).into_response()
    }
}

impl From<control::Error> for ApiError {
    fn from(e: control::Error) -> Self {
        let status = match &e {
            control::Error::Invalid(_) => StatusCode::BAD_REQUEST,
            control::Error::NotFound(_) => StatusCode::NOT_FOUND,
            control::Error::Conflict(_) => StatusCode::CONFLICT,
            control::Error::Sick(_) => StatusCode::UNPROCESSABLE_ENTITY,
            control::Error::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

type Answer<T> = Result<T, ApiError>;

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// Parses a JSON body (the guard made sure it says it is JSON), which must be an object:
/// `[...]` where an object belongs is refused, though serde's derive would take it.
fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Answer<T> {
    let body = body.map_err(|e| ApiError(e.status(), e.body_text()))?;
    let Object(body) = serde_json::from_slice(&body).map_err(|e| bad_request(format!("invalid JSON body: {e}")))?;
    Ok(body)
}

fn query<T: DeserializeOwned>(q: Result<Query<T>, QueryRejection>) -> Answer<T> {
    q.map(|Query(q)| q).map_err(|e| bad_request(e.body_text()))
}

/// `GET /metrics`: Prometheus text, or OpenMetrics when `Accept` asks for it. The backend
/// gauges come from the pools as the control plane last published them.
async fn metrics(State(control): State<Arc<ControlPlane>>, headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(axum::http::header::ACCEPT).and_then(|a| a.to_str().ok());
    let openmetrics = crate::metrics::wants_openmetrics(accept);
    let mut backends = Vec::new();
    for pool in control.pools().await {
        for b in &pool.backends {
            backends.push(crate::metrics::BackendGauges {
                pool: pool.config.pattern.clone(),
                backend: b.addr().to_string(),
                status: b.status_name(),
                healthy: b.status() == crate::pool::BackendStatus::Healthy,
                inflight: i64::try_from(b.inflight()).unwrap_or(i64::MAX),
                weight: i64::from(b.config.weight),
            });
        }
    }
    let body = control.metrics().encode(openmetrics, &backends);
    let content_type = if openmetrics { crate::metrics::OPENMETRICS } else { crate::metrics::TEXT };
    ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
}

// ---- lb-api's JSON shapes, from the live pool ----

impl From<&Pool> for PoolJson {
    fn from(pool: &Pool) -> Self {
        PoolJson {
            pattern: pool.config.pattern.clone(),
            mode: pool.config.mode,
            strategy: pool.config.strategy,
            hash_key: pool.config.hash_key.clone(),
            retries: pool.config.retries,
            retry_on_5xx: pool.config.retry_on_5xx,
            retry_body_limit: pool.config.retry_body_limit,
            timeouts: pool.config.timeouts.clone(),
            health_check: pool.config.health_check.clone(),
            expose_backend: pool.config.expose_backend,
            allow_trace: pool.config.allow_trace,
            status: pool.status().as_str(),
            backends: pool.backends.iter().map(|b| BackendJson::from(b.as_ref())).collect(),
        }
    }
}

impl From<&Backend> for BackendJson {
    fn from(b: &Backend) -> Self {
        let health = b.health();
        BackendJson {
            ip: b.addr().ip().to_string(),
            port: b.addr().port(),
            url_path: b.config.url_path.clone(),
            weight: b.config.weight,
            address: b.addr().to_string(),
            status: b.status_name(),
            draining: b.is_draining(),
            inflight: b.inflight(),
            consecutive_failures: health.consecutive_failures,
            consecutive_passes: health.consecutive_passes,
            last_check_ms: health.last_check_ms,
            last_error: health.last_error,
        }
    }
}

/// What a change answers with: the pool or backend as it now is, or as it was when removed.
#[derive(Serialize)]
#[serde(untagged)]
enum AppliedJson {
    Pool(PoolJson),
    Backend(BackendJson),
    Replaced { pools: usize, backends: usize },
}

impl From<Applied> for AppliedJson {
    fn from(applied: Applied) -> Self {
        match applied {
            Applied::PoolAdded(pool) | Applied::PoolChanged(pool) | Applied::PoolRemoved(pool) => {
                AppliedJson::Pool(PoolJson::from(pool.as_ref()))
            }
            Applied::BackendAdded { backend, .. }
            | Applied::BackendChanged { backend, .. }
            | Applied::BackendRemoved { backend, .. } => AppliedJson::Backend(BackendJson::from(backend.as_ref())),
            Applied::Replaced { pools, backends } => AppliedJson::Replaced { pools, backends },
        }
    }
}

// ---- handlers: parse, apply, answer (control logs each change) ----

type Control = State<Arc<ControlPlane>>;

/// Applies `change` and answers with what it applied to.
async fn apply(control: &ControlPlane, change: Change) -> Answer<Json<AppliedJson>> {
    Ok(Json(control.apply(change).await?.into()))
}

async fn list_pools(State(control): Control) -> Json<Vec<PoolJson>> {
    Json(control.pools().await.iter().map(|p| PoolJson::from(p.as_ref())).collect())
}

async fn add_pool(
    State(control): Control,
    body: Result<Bytes, BytesRejection>,
) -> Answer<(StatusCode, Json<AppliedJson>)> {
    let mut body: serde_json::Map<String, serde_json::Value> = json_body(body)?;
    let pattern = match body.remove("pattern") {
        Some(serde_json::Value::String(p)) => p,
        Some(_) => return Err(bad_request("pattern must be a string")),
        None => return Err(bad_request("missing field `pattern`")),
    };
    let settings: PoolSettings =
        serde_json::from_value(body.into()).map_err(|e| bad_request(format!("invalid JSON body: {e}")))?;
    Ok((StatusCode::CREATED, apply(&control, Change::AddPool { pattern, settings }).await?))
}

async fn get_pool(State(control): Control, q: Result<Query<PatternQuery>, QueryRejection>) -> Answer<Json<PoolJson>> {
    let q = query(q)?;
    Ok(Json(PoolJson::from(control.pool(&q.pattern).await?.as_ref())))
}

async fn update_pool(
    State(control): Control,
    q: Result<Query<PatternQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<Json<AppliedJson>> {
    let q = query(q)?;
    let settings: PoolSettings = json_body(body)?;
    if settings.is_empty() {
        return Err(bad_request("nothing to change: give one or more pool settings"));
    }
    apply(&control, Change::UpdatePool { pattern: q.pattern, settings }).await
}

async fn remove_pool(
    State(control): Control,
    q: Result<Query<PatternQuery>, QueryRejection>,
) -> Answer<Json<AppliedJson>> {
    apply(&control, Change::RemovePool { pattern: query(q)?.pattern }).await
}

async fn pool_health(
    State(control): Control,
    q: Result<Query<PatternQuery>, QueryRejection>,
) -> Answer<Json<HealthJson>> {
    let q = query(q)?;
    let pool = control.pool(&q.pattern).await?;
    Ok(Json(HealthJson {
        pattern: pool.config.pattern.clone(),
        status: pool.status().as_str(),
        backends: pool.backends.iter().map(|b| BackendJson::from(b.as_ref())).collect(),
    }))
}

async fn add_backend(
    State(control): Control,
    q: Result<Query<PatternQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<(StatusCode, Json<AppliedJson>)> {
    let q = query(q)?;
    let body: NewBackend = json_body(body)?;
    let addr = parse_addr(&body.ip, body.port).map_err(bad_request)?;
    let backend =
        BackendConfig { addr, url_path: body.url_path.unwrap_or_else(|| "/".into()), weight: body.weight.unwrap_or(1) };
    Ok((StatusCode::CREATED, apply(&control, Change::AddBackend { pattern: q.pattern, backend }).await?))
}

async fn update_backend(
    State(control): Control,
    q: Result<Query<BackendQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<Json<AppliedJson>> {
    let q = query(q)?;
    let change: BackendChange = json_body(body)?;
    if change.draining.is_none() && change.weight.is_none() {
        return Err(bad_request("nothing to change: give draining and/or weight"));
    }
    let addr = parse_addr(&q.ip, q.port).map_err(bad_request)?;
    apply(&control, Change::UpdateBackend { pattern: q.pattern, addr, change }).await
}

async fn remove_backend(
    State(control): Control,
    q: Result<Query<BackendQuery>, QueryRejection>,
) -> Answer<Json<AppliedJson>> {
    let q = query(q)?;
    let addr = parse_addr(&q.ip, q.port).map_err(bad_request)?;
    apply(&control, Change::RemoveBackend { pattern: q.pattern, addr, reason: Removal::Admin }).await
}

// ---- the whole state: export and import (replaces everything, atomically) ----

async fn export_state(State(control): Control) -> Json<lb_api::StateJson> {
    Json(control::state::export(&control.pools().await))
}

async fn import_state(State(control): Control, body: Result<Bytes, BytesRejection>) -> Answer<Json<AppliedJson>> {
    let state: lb_api::StateJson = json_body(body)?;
    apply(&control, control::state::import(state)?).await
}
