//! Proxy mode: forward a request to one backend over a pooled keep-alive connection and stream
//! the response back. Bodies stream both ways; nothing is buffered whole.

use std::net::SocketAddr;
use std::time::Duration;

use http::uri::{PathAndQuery, Scheme, Uri};
use http::{header, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::body::Body;
use crate::control::FailureReporter;
use crate::data_plane::{answer, no_backend};
use crate::forwarded;
use crate::pool::Pool;

/// How long to wait for a backend to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an idle keep-alive connection to a backend is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The upstream client, one per data plane: its connection pool is shared by every pool.
pub struct Proxy {
    client: Client<HttpConnector, Incoming>,
    failures: FailureReporter,
}

impl Proxy {
    pub fn new(failures: FailureReporter) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(connector);
        Proxy { client, failures }
    }

    /// Sends `req` to a backend of `pool` and answers with its response, or with `502`/`503`.
    pub async fn forward(
        &self,
        pool: &Pool,
        mut req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<Body> {
        let Some(backend) = pool.pick() else {
            return no_backend(pool);
        };
        let inflight = backend.start_request();
        let client_version = req.version();

        let path = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
        let path = backend.upstream_path(path);
        let host = match req.headers().get(header::HOST) {
            Some(host) => Some(host.clone()),
            None => req.uri().authority().and_then(|a| a.as_str().parse().ok()),
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(backend.authority.clone());
        parts.path_and_query = match PathAndQuery::try_from(path) {
            Ok(p) => Some(p),
            Err(_) => return answer(StatusCode::BAD_REQUEST, "400 bad request: unusable path\n"),
        };
        *req.uri_mut() = Uri::from_parts(parts).expect("scheme, authority and path make a URI");
        *req.version_mut() = Version::HTTP_11;
        forwarded::request(req.headers_mut(), client_version, client.ip(), host);

        match self.client.request(req).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                parts.version = client_version;
                forwarded::response(&mut parts.headers, client_version, &backend.server_header);
                Response::from_parts(
                    parts,
                    Body::Upstream {
                        body,
                        _inflight: inflight,
                    },
                )
            }
            Err(e) => {
                let cause = root_cause(&e);
                tracing::debug!(
                    "pool {} backend {}: proxy error: {cause}",
                    pool.config.pattern,
                    backend.addr()
                );
                // Failed before any response: counts against the backend's health.
                self.failures
                    .report(&pool.config.pattern, backend, cause.clone());
                let mut response = answer(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "502 bad gateway: backend {} failed: {cause}\n",
                        backend.addr()
                    ),
                );
                response.headers_mut().insert(
                    &forwarded::X_FORWARDED_SERVER,
                    backend.server_header.clone(),
                );
                response
            }
        }
    }
}

/// The innermost error: "Connection refused", not "client error (Connect)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
