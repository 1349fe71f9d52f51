//! Proxy mode: forward a request to a backend over a pooled keep-alive connection and stream
//! the response back; on failure, try another backend when [`retry`](crate::retry) allows.
//!
//! Response bodies stream. A request body of known length within the pool's
//! `retry_body_limit` is held: such a request (up to [`upstream::MAX_BODY`], or with no body)
//! goes out whole through lb's own client, and an idempotent one can be replayed. Other
//! bodies stream through hyper's client; a streamed body can still be sent to another backend
//! when the first connection failed before reading it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::uri::{PathAndQuery, Scheme, Uri};
use http::{header, Method, Request, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::ResponseFuture;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::Body;
use crate::forwarded;
use crate::forwarded::Peer;
use crate::health::FailureReporter;
use crate::pool::{Backend, InflightGuard, Pool, Timeouts};
use crate::response::{answer, no_backend};
use crate::retry::{self, Failure, Tried};
use crate::timer;
use crate::upstream;

type Client = hyper_util::client::legacy::Client<HttpConnector, UpstreamBody>;

thread_local! {
    /// Each worker thread's keep-alive clients, one per (connect, idle) timeouts in use. Per
    /// thread, so workers never contend for one connection pool's lock.
    static CLIENTS: RefCell<HashMap<(u64, u64), Client>> = RefCell::new(HashMap::new());
}

/// Sends `req` over this thread's pooled connections for a pool's timeouts.
fn send(timeouts: &Timeouts, req: Request<UpstreamBody>) -> ResponseFuture {
    CLIENTS.with(|clients| {
        let mut clients = clients.borrow_mut();
        let client = clients.entry((timeouts.connect_ms, timeouts.idle_ms)).or_insert_with(|| {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(Duration::from_millis(timeouts.connect_ms)));
            hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_millis(timeouts.idle_ms))
                .pool_timer(TokioTimer::new())
                .build(connector)
        });
        client.request(req)
    })
}

/// Forwards requests; one per data plane.
pub struct Proxy {
    failures: FailureReporter,
}

impl Proxy {
    pub fn new(failures: FailureReporter) -> Self {
        Proxy { failures }
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
        let body = match RequestBody::new(incoming, config.retry_body_limit, config.timeouts.response_ms).await {
            Ok(body) => body,
            Err(status) => return answer(status, format!("{status}: could not read the request body\n")),
        };
        let client_version = parts.version;
        let host = match parts.headers.get(header::HOST) {
            Some(host) => Some(host.clone()),
            None => parts.uri.authority().and_then(|a| a.as_str().parse().ok()),
        };
        forwarded::request(&mut parts.headers, client_version, &client.forwarded_for, host);
        let response_timeout = Duration::from_millis(config.timeouts.response_ms);
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
            let sent = if let Some(held) = attempt_body.whole() {
                let req = upstream::Request {
                    method: &parts.method,
                    target: target.as_str(),
                    headers: &parts.headers,
                    default_host: backend.authority.as_str(),
                    body: held,
                };
                let to = upstream::Target {
                    addr: backend.config.addr,
                    connect_timeout: Duration::from_millis(config.timeouts.connect_ms),
                    idle_timeout: Duration::from_millis(config.timeouts.idle_ms),
                };
                let sent = timer::timeout(response_timeout, upstream::send(to, req)).await;
                sent.map(|r| r.map(Sent::Own).map_err(SendError::Own))
            } else {
                let upstream_req = upstream_request(&parts, backend, target, attempt_body);
                let sent = timer::timeout(response_timeout, send(&config.timeouts, upstream_req)).await;
                sent.map(|r| r.map(Sent::Hyper).map_err(SendError::Hyper))
            };
            let (failure, next) = match sent {
                Ok(Ok(response)) => {
                    let status = response.status();
                    let failure = Failure::Status(status);
                    let retry = config.retry_on_5xx && retries_left > 0 && body.may_retry(failure, &parts.method, true);
                    // The backend's own answer goes to the client unless another backend is
                    // really there to try.
                    match retry.then(|| next_attempt(pool, key, &tried)).flatten() {
                        Some(next) => (failure, next),
                        None => {
                            let mut response = response.into_body(inflight);
                            *response.version_mut() = client_version;
                            forwarded::response(response.headers_mut(), client_version, &backend.server_header);
                            return response;
                        }
                    }
                }
                Ok(Err(e)) => {
                    let cause = e.cause();
                    tracing::debug!("pool {} backend {}: proxy error: {cause}", config.pattern, backend.addr());
                    // Failed before any response: counts against the backend's health, unless
                    // the backend did answer, with something lb cannot forward (a head too
                    // large, say, which a client can provoke).
                    if !e.is_invalid_response() {
                        self.failures.report(&config.pattern, backend, cause.clone());
                    }
                    let failure = if e.is_connect() { Failure::Connect } else { Failure::BeforeResponse };
                    let retry = retries_left > 0 && body.may_retry(failure, &parts.method, config.retry_on_5xx);
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
                    return answer(
                        StatusCode::REQUEST_TIMEOUT,
                        format!("408 request timeout: the request body did not arrive within {response_timeout:?}\n"),
                    );
                }
                Err(_elapsed) => {
                    let cause = format!("no response within {response_timeout:?}");
                    self.failures.report(&config.pattern, backend, cause.clone());
                    let mut response = answer(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!("504 gateway timeout: backend {} sent {cause}\n", backend.addr()),
                    );
                    response.headers_mut().insert(&forwarded::X_FORWARDED_SERVER, backend.server_header.clone());
                    return response;
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

/// A backend's response, from either client.
enum Sent {
    Own(Response<upstream::ResponseBody>),
    Hyper(Response<Incoming>),
}

impl Sent {
    fn status(&self) -> StatusCode {
        match self {
            Sent::Own(r) => r.status(),
            Sent::Hyper(r) => r.status(),
        }
    }

    /// The response for the client; the request stays in flight until its body is dropped.
    fn into_body(self, inflight: InflightGuard) -> Response<Body> {
        match self {
            Sent::Own(r) => r.map(|body| Body::Own { body, _inflight: inflight }),
            Sent::Hyper(r) => r.map(|body| Body::Upstream { body, _inflight: inflight }),
        }
    }
}

/// Why an attempt got no response, from either client.
enum SendError {
    Own(upstream::Error),
    Hyper(hyper_util::client::legacy::Error),
}

impl SendError {
    fn is_connect(&self) -> bool {
        match self {
            SendError::Own(e) => e.is_connect(),
            SendError::Hyper(e) => e.is_connect(),
        }
    }

    fn is_invalid_response(&self) -> bool {
        matches!(self, SendError::Own(e) if e.is_invalid())
    }

    /// The innermost error: "Connection refused", not "client error (Connect)".
    fn cause(&self) -> String {
        match self {
            SendError::Own(e) => e.to_string(),
            SendError::Hyper(e) => root_cause(e),
        }
    }
}

/// The origin-form target (path and query) of one attempt at `backend`, for either client;
/// `None` when the joined path is not a valid URI path.
fn upstream_target(parts: &Parts, backend: &Backend) -> Option<PathAndQuery> {
    let pq = match parts.uri.path_and_query() {
        // `http://host?x=1` and an HTTP/2 `:path` of `?x=1` have an empty path: the
        // origin-form target is `/?x=1`.
        Some(pq) if pq.as_str().starts_with('?') => PathAndQuery::try_from(format!("/{pq}")).ok()?,
        // The common case: a cheap clone of what hyper parsed.
        Some(pq) => pq.clone(),
        None => PathAndQuery::from_static("/"),
    };
    if backend.config.url_path == "/" {
        return Some(pq);
    }
    PathAndQuery::try_from(backend.upstream_path(pq.as_str())).ok()
}

/// The request for one attempt at `backend` through hyper's client: the client's request,
/// re-aimed at `target`.
fn upstream_request(
    parts: &Parts,
    backend: &Backend,
    target: PathAndQuery,
    body: UpstreamBody,
) -> Request<UpstreamBody> {
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(backend.authority.clone());
    uri.path_and_query = Some(target);
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = Uri::from_parts(uri).expect("scheme, authority and path make a URI");
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = parts.headers.clone();
    req
}

fn bad_gateway(backend: &Backend, cause: &str) -> Response<Body> {
    let mut response =
        answer(StatusCode::BAD_GATEWAY, format!("502 bad gateway: backend {} failed: {cause}\n", backend.addr()));
    response.headers_mut().insert(&forwarded::X_FORWARDED_SERVER, backend.server_header.clone());
    response
}

/// The innermost error: "Connection refused", not "client error (Connect)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// A client's request body, as lb holds it across attempts.
enum RequestBody {
    Empty,
    /// Received whole: replayable.
    Held(Bytes),
    /// Streamed: sendable again only while no attempt has read from it.
    Streamed(Arc<Mutex<Stream>>),
}

/// A client's body being streamed to a backend, shared by the attempts that may send it.
pub struct Stream {
    body: Incoming,
    /// Some attempt read from it: it cannot be sent again.
    started: bool,
    /// The last read found nothing yet: lb is waiting on the client.
    waiting: bool,
}

impl RequestBody {
    /// Holds small bodies (known length within `limit`), which lb's own client sends whole and
    /// an idempotent request may replay; streams everything else.
    async fn new(body: Incoming, limit: u64, read_timeout_ms: u64) -> Result<Self, StatusCode> {
        use http_body::Body as _;
        if body.is_end_stream() {
            return Ok(RequestBody::Empty);
        }
        let small = body.size_hint().exact().is_some_and(|n| n <= limit);
        if small {
            let read = timer::timeout(Duration::from_millis(read_timeout_ms), body.collect()).await;
            return match read {
                Ok(Ok(collected)) => Ok(RequestBody::Held(collected.to_bytes())),
                Ok(Err(_)) => Err(StatusCode::BAD_REQUEST),
                Err(_) => Err(StatusCode::REQUEST_TIMEOUT),
            };
        }
        Ok(RequestBody::Streamed(Arc::new(Mutex::new(Stream { body, started: false, waiting: false }))))
    }

    /// The body for the next attempt, or `None` if it is gone.
    fn attempt(&self) -> Option<UpstreamBody> {
        match self {
            RequestBody::Empty => Some(UpstreamBody::Empty),
            RequestBody::Held(bytes) => Some(UpstreamBody::Held(Some(bytes.clone()))),
            RequestBody::Streamed(stream) => {
                let started = stream.lock().unwrap_or_else(|e| e.into_inner()).started;
                (!started).then(|| UpstreamBody::Streamed(stream.clone()))
            }
        }
    }

    /// Is lb still waiting for the client to send more of the body?
    fn waiting_on_client(&self) -> bool {
        match self {
            RequestBody::Streamed(stream) => {
                let stream = stream.lock().unwrap_or_else(|e| e.into_inner());
                stream.waiting
            }
            RequestBody::Empty | RequestBody::Held(_) => false,
        }
    }

    /// May an attempt that failed this way be made again with this body?
    fn may_retry(&self, failure: Failure, method: &Method, retry_on_5xx: bool) -> bool {
        let replayable = !matches!(self, RequestBody::Streamed(_));
        retry::may_retry(failure, method, replayable, retry_on_5xx)
    }
}

/// The body of one attempt's request.
pub enum UpstreamBody {
    Empty,
    Held(Option<Bytes>),
    Streamed(Arc<Mutex<Stream>>),
}

impl UpstreamBody {
    /// The whole body, when lb holds it and its own client may send it (`Some(None)`: no
    /// body); `None` for a body that streams or is too large for that client.
    fn whole(&self) -> Option<Option<&Bytes>> {
        match self {
            UpstreamBody::Empty | UpstreamBody::Held(None) => Some(None),
            UpstreamBody::Held(Some(bytes)) if bytes.len() <= upstream::MAX_BODY => Some(Some(bytes)),
            UpstreamBody::Held(Some(_)) | UpstreamBody::Streamed(_) => None,
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpstreamBody::Empty => Poll::Ready(None),
            UpstreamBody::Held(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            UpstreamBody::Streamed(stream) => {
                let mut stream = stream.lock().unwrap_or_else(|e| e.into_inner());
                stream.started = true;
                let polled = Pin::new(&mut stream.body).poll_frame(cx);
                stream.waiting = polled.is_pending();
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Empty => true,
            UpstreamBody::Held(bytes) => bytes.is_none(),
            UpstreamBody::Streamed(stream) => stream.lock().unwrap_or_else(|e| e.into_inner()).body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Held(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            UpstreamBody::Streamed(stream) => stream.lock().unwrap_or_else(|e| e.into_inner()).body.size_hint(),
        }
    }
}
