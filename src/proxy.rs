//! Proxy mode: forward a request to a backend and stream the response back; on failure, try
//! another backend when [`retry`](crate::retry) allows, or answer `502`, `504` or `408`.
//!
//! How a request reaches a backend (which client, which connection) is [`upstream`]'s; here is
//! the loop around it: pick a backend, send, and on an error decide from its kind.

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::Body;
use crate::forwarded;
use crate::forwarded::{Peer, Via};
use crate::health::FailureReporter;
use crate::pool::{Backend, Pool};
use crate::response::{answer, no_backend};
use crate::retry::{self, Failure, Tried};
use crate::timer;
use crate::upstream::{self, ErrorKind, RequestBody};

/// Forwards requests; one per data plane.
pub struct Proxy {
    failures: FailureReporter,
    via: Arc<Via>,
}

impl Proxy {
    pub fn new(failures: FailureReporter, via: Arc<Via>) -> Self {
        Proxy { failures, via }
    }

    /// Sends `req` to a backend of `pool`, retrying on others as the pool allows, and answers
    /// with the response, or with `502`, `503` or `504`.
    pub async fn forward(&self, pool: &Pool, req: Request<Incoming>, client: &Peer) -> Response<Body> {
        let (mut parts, incoming) = req.into_parts();
        let key = pool.key(&parts.headers, client.addr.ip());
        let mut tried = Tried::default();
        let Some((mut index, mut backend)) = pool.pick(key, &tried) else {
            return no_backend(pool);
        };
        let config = &pool.config;
        let response_timeout = Duration::from_millis(config.timeouts.response_ms);
        let body = match RequestBody::new(incoming, config.retry_body_limit, response_timeout).await {
            Ok(body) => body,
            Err(status) => return answer(status, format!("{status}: could not read the request body\n")),
        };
        let client_version = parts.version;
        let host = match parts.headers.get(header::HOST) {
            Some(host) => Some(host.clone()),
            None => parts.uri.authority().and_then(|a| a.as_str().parse().ok()),
        };
        forwarded::request(&mut parts.headers, client_version, &client.forwarded_for, host, &self.via);
        if config.retries > 0 {
            pool.budget.record_request();
        }

        let mut retries_left = config.retries;
        loop {
            tried.insert(index);
            let inflight = backend.start_request();
            let Some(attempt_body) = body.attempt() else {
                return bad_gateway(backend, "the request body was already sent");
            };
            let Some(target) = upstream_target(&parts, backend) else {
                return answer(StatusCode::BAD_REQUEST, "400 bad request: unusable path\n");
            };
            let req = upstream::Request {
                method: &parts.method,
                target: &target,
                headers: &parts.headers,
                authority: &backend.authority,
                body: &attempt_body,
            };
            let to = upstream::Target {
                addr: backend.config.addr,
                connect_timeout: Duration::from_millis(config.timeouts.connect_ms),
                idle_timeout: Duration::from_millis(config.timeouts.idle_ms),
            };
            let (failure, next) = match timer::timeout(response_timeout, upstream::send(to, req)).await {
                Ok(Ok(response)) => {
                    let failure = Failure::Status(response.status());
                    let retry = config.retry_on_5xx
                        && retries_left > 0
                        && retry::may_retry(failure, &parts.method, body.replayable(), true);
                    // The backend's own answer goes to the client unless another backend is
                    // really there to try.
                    match retry.then(|| next_attempt(pool, key, &tried)).flatten() {
                        Some(next) => (failure, next),
                        None => {
                            let mut response = response.map(|body| Body::Backend { body, _inflight: inflight });
                            *response.version_mut() = client_version;
                            forwarded::response(response.headers_mut(), client_version, &backend.server_header);
                            return response;
                        }
                    }
                }
                Ok(Err(e)) => {
                    let cause = e.to_string();
                    tracing::debug!("pool {} backend {}: proxy error: {cause}", config.pattern, backend.addr());
                    if counts_against_backend(e.kind()) {
                        self.failures.report(&config.pattern, backend, cause.clone());
                    }
                    let failure = failure(e.kind());
                    let retry = retries_left > 0
                        && retry::may_retry(failure, &parts.method, body.replayable(), config.retry_on_5xx);
                    match retry.then(|| next_attempt(pool, key, &tried)).flatten() {
                        Some(next) => (failure, next),
                        None => return bad_gateway(backend, &cause),
                    }
                }
                Err(_elapsed) if body.waiting_on_client() => {
                    // The backend is waiting for the body as much as lb is: the client's fault.
                    tracing::debug!(
                        "pool {}: {} body still coming after {response_timeout:?}",
                        config.pattern,
                        parts.uri
                    );
                    return request_timeout(response_timeout);
                }
                Err(_elapsed) => {
                    let cause = format!("no response within {response_timeout:?}");
                    self.failures.report(&config.pattern, backend, cause.clone());
                    return gateway_timeout(backend, &cause);
                }
            };
            drop(inflight);
            tracing::debug!("pool {}: retrying {} on {} after {failure:?}", config.pattern, parts.uri, next.1.addr());
            retries_left -= 1;
            (index, backend) = next;
        }
    }
}

/// The backend for a retry: one this request has not tried, if the pool's budget allows.
fn next_attempt<'p>(pool: &'p Pool, key: u64, tried: &Tried) -> Option<(usize, &'p Arc<Backend>)> {
    pool.pick(key, tried).filter(|_| pool.budget.try_retry())
}

/// How an attempt that got no response failed, for [`retry`]: a connection that could not be
/// made sent nothing.
fn failure(kind: ErrorKind) -> Failure {
    match kind {
        ErrorKind::Connect => Failure::Connect,
        ErrorKind::Closed | ErrorKind::Invalid => Failure::BeforeResponse,
    }
}

/// Does a failure before any response count against the backend's health? Not when the backend
/// did answer, with something lb cannot forward (a head too large, say, which a client can
/// provoke).
fn counts_against_backend(kind: ErrorKind) -> bool {
    match kind {
        ErrorKind::Connect | ErrorKind::Closed => true,
        ErrorKind::Invalid => false,
    }
}

/// The origin-form target (path and query) of one attempt at `backend`; `None` when the joined
/// path is not a valid URI path.
fn upstream_target(parts: &Parts, backend: &Backend) -> Option<PathAndQuery> {
    let pq = match parts.uri.path_and_query() {
        // `http://host?x=1` and an HTTP/2 `:path` of `?x=1` have an empty path: the
        // origin-form target is `/?x=1`.
        // (`PathAndQuery`'s `Display` already writes that `/`: format its text.)
        Some(pq) if pq.as_str().starts_with('?') => PathAndQuery::try_from(format!("/{}", pq.as_str())).ok()?,
        // The common case: a cheap clone of what hyper parsed.
        Some(pq) => pq.clone(),
        None => PathAndQuery::from_static("/"),
    };
    if backend.config.url_path == "/" {
        return Some(pq);
    }
    PathAndQuery::try_from(backend.upstream_path(pq.as_str())).ok()
}

fn bad_gateway(backend: &Backend, cause: &str) -> Response<Body> {
    let mut response =
        answer(StatusCode::BAD_GATEWAY, format!("502 bad gateway: backend {} failed: {cause}\n", backend.addr()));
    response.headers_mut().insert(&forwarded::X_FORWARDED_SERVER, backend.server_header.clone());
    response
}

fn gateway_timeout(backend: &Backend, cause: &str) -> Response<Body> {
    let mut response =
        answer(StatusCode::GATEWAY_TIMEOUT, format!("504 gateway timeout: backend {} sent {cause}\n", backend.addr()));
    response.headers_mut().insert(&forwarded::X_FORWARDED_SERVER, backend.server_header.clone());
    response
}

fn request_timeout(timeout: Duration) -> Response<Body> {
    answer(
        StatusCode::REQUEST_TIMEOUT,
        format!("408 request timeout: the request body did not arrive within {timeout:?}\n"),
    )
}
