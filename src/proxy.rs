//! Proxy mode: forward a request to a backend and stream the response back; on failure, try
//! another backend when [`retry`] allows, or answer `502`, `504` or `408`.
//!
//! How a request reaches a backend (which client, which connection) is [`upstream`]'s; here is
//! the loop around it: pick a backend, send, and on an error decide from its kind.
//!
//! Blame: a failure counts against a backend's health only when the backend is at fault (it
//! refused or reset the connection, sent no response head within `response_ms` or an invalid
//! one, or stopped sending its body). A head that is only too large does not count: a client
//! can provoke it. A client whose body is malformed gets `400`, one that stops sending it
//! `408`, one that goes away a closed connection: none of it counts. Answers lb writes itself
//! name neither the backend nor what failed; the debug log does.
//!
//! Deadlines: the client's body may pause up to the client body timeout between reads,
//! however long it takes in all; `response_ms` runs from the end of the body (from sending,
//! for a body lb holds) to the response head, and while a body streams it also bounds how long
//! the backend may leave it unread; the backend's body may pause up to the backend body
//! timeout.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use http::header::HeaderValue;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{header, Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::access_log::Note;
use crate::body::{Body, Stall};
use crate::forwarded;
use crate::forwarded::{Peer, Via};
use crate::health::FailureReporter;
use crate::pool::{Backend, Pool};
use crate::response::{answer, no_backend};
use crate::retry::{self, Failure, Tried};
use crate::timer::{Deadline, Elapsed};
use crate::upstream::{self, ClientFault, ErrorKind, RequestBody, Upload};

/// How long either side may pause in the middle of a body.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeouts {
    /// Between reads of a client's request body (`--client-body-timeout`).
    pub client: Duration,
    /// Between reads of a backend's response body (`--backend-body-timeout`).
    pub backend: Duration,
}

/// Forwards requests; one per data plane.
pub struct Proxy {
    failures: FailureReporter,
    timeouts: BodyTimeouts,
    via: Arc<Via>,
}

impl Proxy {
    pub fn new(failures: FailureReporter, timeouts: BodyTimeouts, via: Arc<Via>) -> Self {
        Proxy { failures, timeouts, via }
    }

    /// Sends `req` to a backend of `pool`, retrying on others as the pool allows, and answers
    /// with the response, or with `502`, `503` or `504`; `note` learns each attempt's backend.
    pub async fn forward(&self, pool: &Pool, req: Request<Incoming>, client: &Peer, note: &mut Note) -> Response<Body> {
        let (mut parts, incoming) = req.into_parts();
        let key = pool.key(&parts.headers, client.addr.ip());
        let mut tried = Tried::default();
        let Some((mut index, mut backend)) = pool.pick(key, &tried) else {
            pool.metrics.no_backend();
            return no_backend(pool);
        };
        let config = &pool.config;
        let response_timeout = Duration::from_millis(config.timeouts.response_ms);
        let body = match RequestBody::new(incoming, config.retry_body_limit, self.timeouts.client).await {
            Ok(body) => body,
            Err(fault) => return client_failed(fault),
        };
        let client_version = parts.version;
        // hyper's server keeps an HTTP/1.0 connection open only if the response says so.
        let keep_alive_10 = client_version == Version::HTTP_10
            && forwarded::tokens(&parts.headers, &header::CONNECTION).any(|t| t.eq_ignore_ascii_case("keep-alive"));
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
            note.attempt(backend.addr());
            let inflight = backend.start_request();
            let Some(attempt_body) = body.attempt() else {
                return bad_gateway(pool, backend, "the request body was already sent");
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
            let sent = backend.metrics.sending();
            let (failure, next) = match respond_within(response_timeout, &body, upstream::send(to, req)).await {
                Ok(Ok(response)) => {
                    backend.metrics.responded(sent, response.status());
                    let failure = Failure::Status(response.status());
                    let retry = config.retry_on_5xx
                        && retries_left > 0
                        && retry::may_retry(failure, &parts.method, body.replayable(), true);
                    // The backend's own answer goes to the client unless another backend is
                    // really there to try.
                    match retry.then(|| next_attempt(pool, key, &tried)).flatten() {
                        Some(next) => (failure, next),
                        None => return self.respond(response, backend, inflight, client_version, keep_alive_10, pool),
                    }
                }
                Ok(Err(e)) if e.kind() == ErrorKind::ClientBody => {
                    backend.metrics.failed(sent, StatusCode::BAD_REQUEST);
                    tracing::debug!("pool {} backend {}: {e}", config.pattern, backend.addr());
                    return client_failed(e.client_fault().unwrap_or(ClientFault::Gone));
                }
                Ok(Err(e)) => {
                    backend.metrics.failed(sent, StatusCode::BAD_GATEWAY);
                    let cause = e.to_string();
                    tracing::debug!("pool {} backend {}: proxy error: {cause}", config.pattern, backend.addr());
                    if counts_against_backend(&e) {
                        self.failures.report(&config.pattern, backend, cause.clone());
                    }
                    let failure = failure(e.kind());
                    let retry = retries_left > 0
                        && retry::may_retry(failure, &parts.method, body.replayable(), config.retry_on_5xx);
                    match retry.then(|| next_attempt(pool, key, &tried)).flatten() {
                        Some(next) => (failure, next),
                        None => return bad_gateway(pool, backend, &cause),
                    }
                }
                Err(Elapsed) => {
                    backend.metrics.failed(sent, StatusCode::GATEWAY_TIMEOUT);
                    let cause = format!("no response within {response_timeout:?}");
                    self.failures.report(&config.pattern, backend, cause.clone());
                    return gateway_timeout(pool, backend, &cause);
                }
            };
            drop(inflight);
            pool.metrics.retried(failure);
            tracing::debug!("pool {}: retrying {} on {} after {failure:?}", config.pattern, parts.uri, next.1.addr());
            retries_left -= 1;
            (index, backend) = next;
        }
    }
}

impl Proxy {
    /// The backend's response as it goes to the client: headers for the client, lb's status
    /// line (HTTP/1.1), and a body watched for a backend that stops sending it.
    fn respond(
        &self,
        response: http::Response<upstream::ResponseBody>,
        backend: &Arc<Backend>,
        inflight: crate::pool::InflightGuard,
        client_version: Version,
        keep_alive_10: bool,
        pool: &Pool,
    ) -> Response<Body> {
        let stall = (!response.body().is_buffered()).then(|| {
            let (failures, pattern, backend) = (self.failures.clone(), pool.config.pattern.clone(), backend.clone());
            let timeout = self.timeouts.backend;
            Stall::new(timeout, move || {
                let cause = format!("response body stalled for {timeout:?}");
                tracing::debug!("pool {pattern} backend {}: {cause}", backend.addr());
                failures.report(&pattern, &backend, cause);
            })
        });
        let mut response = response.map(|body| Body::Backend { body, _inflight: inflight, stall });
        *response.version_mut() = Version::HTTP_11;
        let status = response.status();
        let server = pool.config.expose_backend.then_some(&backend.server_header);
        forwarded::response_for(status, response.headers_mut(), client_version, server);
        if keep_alive_10 {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        }
        response
    }
}

/// Waits for `send`'s response head, `timeout` after the request body went out: for a body
/// lb holds, from now; for a streamed one, from its end. While it streams, the backend must
/// also read it: a backend that leaves it unread for `timeout` while the client has more to
/// give times out too. A client that stalls is the stream's to cut off (the attempt then fails
/// with [`ErrorKind::ClientBody`]).
async fn respond_within<F: Future>(timeout: Duration, body: &RequestBody, send: F) -> Result<F::Output, Elapsed> {
    // One async layer for both cases, as `timer::timeout` is: the send future is large, and
    // each layer moves it once more.
    let mut send = pin!(send);
    let mut deadline = Deadline::after(timeout);
    let streamed = !body.replayable();
    let mut ended = false;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = send.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        if !streamed {
            return std::pin::Pin::new(&mut deadline).poll(cx).map(|()| Err(Elapsed));
        }
        loop {
            match body.upload(cx.waker()) {
                // The attempt fails with the client's fault soon.
                Some(Upload::Failed(_)) => return Poll::Pending,
                Some(Upload::Done(at)) if !ended => {
                    ended = true;
                    deadline.reset(at + timeout);
                }
                _ => {}
            }
            if std::pin::Pin::new(&mut deadline).poll(cx).is_pending() {
                return Poll::Pending;
            }
            match body.upload(cx.waker()) {
                Some(Upload::Sending(last_read)) => {
                    let now = Instant::now();
                    let next = if body.waiting_on_client() { now + timeout } else { last_read + timeout };
                    if next <= now {
                        return Poll::Ready(Err(Elapsed));
                    }
                    deadline.reset(next);
                }
                Some(Upload::Failed(_)) => return Poll::Pending,
                Some(Upload::Done(_)) if !ended => {}
                _ => return Poll::Ready(Err(Elapsed)),
            }
        }
    })
    .await
}

/// The answer to a client whose body failed: `408` for one that stopped sending it, `400`
/// otherwise (a client that went away reads no answer). The connection closes after it: what
/// is left of the body cannot be told from the next request.
fn client_failed(fault: ClientFault) -> Response<Body> {
    let mut response = match fault {
        ClientFault::Stalled => answer(StatusCode::REQUEST_TIMEOUT, "408 request timeout: the request body stopped\n"),
        ClientFault::Malformed => answer(StatusCode::BAD_REQUEST, "400 bad request: malformed request body\n"),
        ClientFault::Gone => answer(StatusCode::BAD_REQUEST, "400 bad request: incomplete request body\n"),
    };
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The backend for a retry: one this request has not tried, if the pool's budget allows.
fn next_attempt<'p>(pool: &'p Pool, key: u64, tried: &Tried) -> Option<(usize, &'p Arc<Backend>)> {
    let next = pool.pick(key, tried)?;
    if !pool.budget.try_retry() {
        pool.metrics.budget_exhausted();
        return None;
    }
    Some(next)
}

/// How an attempt that got no response failed, for [`retry`]: a connection that could not be
/// made sent nothing.
fn failure(kind: ErrorKind) -> Failure {
    match kind {
        ErrorKind::Connect => Failure::Connect,
        ErrorKind::Closed | ErrorKind::Invalid | ErrorKind::ClientBody => Failure::BeforeResponse,
    }
}

/// Does a failure before any response count against the backend's health? An invalid
/// response does (on either client), unless it is only too large: a client can provoke that
/// (a backend echoing a huge request header). The client's own body failing never does.
fn counts_against_backend(e: &upstream::Error) -> bool {
    match e.kind() {
        ErrorKind::Connect | ErrorKind::Closed => true,
        ErrorKind::Invalid => !e.too_large(),
        ErrorKind::ClientBody => false,
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

/// `502`: the cause goes to the log, not to the client (nor the backend, unless the pool
/// `expose_backend`s).
fn bad_gateway(pool: &Pool, backend: &Backend, cause: &str) -> Response<Body> {
    tracing::debug!("backend {}: 502: {cause}", backend.addr());
    let mut response = answer(StatusCode::BAD_GATEWAY, "502 bad gateway\n");
    if pool.config.expose_backend {
        forwarded::server(response.headers_mut(), Some(&backend.server_header));
    }
    response
}

/// `504`: the cause goes to the log, not to the client (as for [`bad_gateway`]).
fn gateway_timeout(pool: &Pool, backend: &Backend, cause: &str) -> Response<Body> {
    tracing::debug!("backend {}: 504: {cause}", backend.addr());
    let mut response = answer(StatusCode::GATEWAY_TIMEOUT, "504 gateway timeout\n");
    if pool.config.expose_backend {
        forwarded::server(response.headers_mut(), Some(&backend.server_header));
    }
    response
}
