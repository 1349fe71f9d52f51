//! The data port: accept connections, route each request through the current snapshot, and hand
//! it to its pool's mode. Reads routing snapshots only; never waits on the control plane.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue, LOCATION, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::body::Body;
use crate::control::{FailureReporter, Routes};
use crate::pool::{Mode, Pool};
use crate::proxy::Proxy;
use crate::redirect;
use crate::routing::Route;

/// What a client connection may take from lb.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// Slow clients cannot hold a connection (and its memory) by trickling headers.
    pub header_read_timeout: Duration,
    /// Larger request heads are refused with `431`.
    pub max_header_bytes: usize,
}

/// The client at the other end of a connection, as every request on it needs it.
pub struct Peer {
    pub addr: SocketAddr,
    /// The client's IP as `X-Forwarded-For` carries it, formatted once per connection.
    pub forwarded_for: HeaderValue,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Self {
        let forwarded_for = HeaderValue::try_from(addr.ip().to_string()).expect("an IP address is a valid header");
        Peer { addr, forwarded_for }
    }
}

/// Everything a request needs, shared by all connections.
pub struct DataPlane {
    routes: Arc<ArcSwap<Routes>>,
    proxy: Proxy,
    limits: ClientLimits,
}

impl DataPlane {
    pub fn new(routes: Arc<ArcSwap<Routes>>, failures: FailureReporter, limits: ClientLimits) -> Self {
        DataPlane { routes, proxy: Proxy::new(failures), limits }
    }

    /// Serves `listener` until `shutdown` resolves, then stops accepting and gives in-flight
    /// requests up to `grace` to finish.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>, grace: Duration) {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .max_buf_size(self.limits.max_header_bytes.max(8192));
        builder.http2().timer(TokioTimer::new()).max_header_list_size(self.limits.max_header_bytes as u32);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, client) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let conn = Arc::new((self.clone(), Peer::new(client)));
            let service = service_fn(move |req| {
                let conn = conn.clone();
                async move { Ok::<_, Infallible>(conn.0.handle(req, &conn.1).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%client, "connection ended: {e}");
                }
            });
        }
        drop(listener);
        if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
            tracing::warn!("requests still in flight after {grace:?}; closing them");
        }
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>, client: &Peer) -> Response<Body> {
        let pool = {
            let routes = self.routes.load();
            let host = match req.headers().get(header::HOST) {
                Some(h) => h.to_str().unwrap_or(""),
                None => req.uri().host().unwrap_or(""),
            };
            match routes.route(req.method().as_str(), host, req.uri().path(), req.uri().query()) {
                Route::Matched { value: pool, params } => {
                    if tracing::enabled!(tracing::Level::DEBUG) {
                        let values: Vec<String> =
                            params.iter().map(|(name, value)| format!("{name}={value}")).collect();
                        tracing::debug!(
                            "{} {} -> pool {} {}",
                            req.method(),
                            req.uri(),
                            params.pattern(),
                            values.join(" ")
                        );
                    }
                    pool.clone()
                }
                Route::Redirect(location) => return moved(location),
                Route::MethodNotAllowed { allow } => return not_allowed(allow),
                Route::NotFound => return answer(StatusCode::NOT_FOUND, "404 page not found\n"),
            }
        };
        match pool.config.mode {
            Mode::Proxy => self.proxy.forward(&pool, req, client).await,
            Mode::Redirect => redirect::answer(&pool, &req, client.addr.ip()),
        }
    }
}

/// A short plain-text answer written by lb itself.
pub fn answer(status: StatusCode, text: impl Into<bytes::Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::text(text));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// `503` for a pool with no usable backend: a client may come back soon.
pub fn no_backend(pool: &Pool) -> Response<Body> {
    let why = if pool.backends.is_empty() { "has no backends" } else { "has no healthy backend" };
    let mut response = answer(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("503 service unavailable: pool {} {why}\n", pool.config.pattern),
    );
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn not_allowed(allow: String) -> Response<Body> {
    let mut response = answer(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    if let Ok(allow) = HeaderValue::try_from(allow) {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

fn moved(location: String) -> Response<Body> {
    let mut response = answer(StatusCode::MOVED_PERMANENTLY, "");
    if let Ok(location) = HeaderValue::try_from(location) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}
