//! The streaming path: requests whose body lb does not hold whole (still arriving from the
//! client, or larger than [`MAX_BODY`](super::MAX_BODY)) go through hyper's pooled client,
//! which reads the response while the request body is still being sent. It costs more per
//! request than lb's own client (see the [module docs](super)); only these requests pay it.

use std::cell::RefCell;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Scheme, Uri};
use http::{Response, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustc_hash::FxHashMap;

use super::{AttemptBody, Cause, Error, ErrorKind, Request, ResponseBody, Target};

type Client = hyper_util::client::legacy::Client<HttpConnector, AttemptBody>;

thread_local! {
    /// Each worker thread's keep-alive clients, one per (connect, idle) timeouts in use. Per
    /// thread, so workers never contend for one connection pool's lock.
    static CLIENTS: RefCell<FxHashMap<(Duration, Duration), Client>> = RefCell::new(FxHashMap::default());
}

/// Sends `req` over this thread's pooled connections for `target`'s timeouts.
pub(super) async fn send(target: Target, req: Request<'_>) -> Result<Response<ResponseBody>, Error> {
    let request = request(&target, req);
    let response = CLIENTS.with(|clients| {
        let mut clients = clients.borrow_mut();
        let client = clients.entry((target.connect_timeout, target.idle_timeout)).or_insert_with(|| {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(target.connect_timeout));
            hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_idle_timeout(target.idle_timeout)
                .pool_timer(TokioTimer::new())
                .build(connector)
        });
        client.request(request)
    });
    match response.await {
        Ok(response) if !super::codec::transfer_coding_ok(response.headers()) => {
            Err(Error::invalid("a transfer coding lb does not decode"))
        }
        Ok(response) => Ok(response.map(ResponseBody::hyper)),
        // When the client's body failed, hyper's client gave up the request (and its connection)
        // because of it.
        Err(e) => Err(match req.body.client_fault() {
            Some(fault) => Error::client(fault),
            None => error(e),
        }),
    }
}

/// The request for hyper's client: an absolute URI to the backend, HTTP/1.1. The target and the
/// body are cheap clones (shared bytes, an `Arc`).
fn request(target: &Target, req: Request<'_>) -> http::Request<AttemptBody> {
    debug_assert_eq!(req.authority.as_str(), target.addr.to_string(), "hyper connects to the authority");
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(req.authority.clone());
    uri.path_and_query = Some(req.target.clone());
    let mut request = http::Request::new(req.body.clone());
    *request.method_mut() = req.method.clone();
    *request.uri_mut() = Uri::from_parts(uri).expect("scheme, authority and path make a URI");
    *request.version_mut() = Version::HTTP_11;
    let headers = request.headers_mut();
    *headers = req.headers.clone();
    // lb has answered any `Expect: 100-continue` itself (hyper's server sends its `100 Continue`
    // when the body is first read): the backend must not be asked again.
    headers.remove(header::EXPECT);
    // Without a framing header hyper's client sends a GET's (or HEAD's) body of unknown length
    // as no body at all: the client's chunked body must stay chunked.
    if req.body.unknown_length() && !headers.contains_key(header::CONTENT_LENGTH) {
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    }
    request
}

/// hyper's connect errors are [`ErrorKind::Connect`]; its parse errors (a malformed head,
/// or one too large, see [`Error::too_large`]) [`ErrorKind::Invalid`], as lb's own client
/// says of the same heads; every other one [`ErrorKind::Closed`].
fn error(e: hyper_util::client::legacy::Error) -> Error {
    let kind = if e.is_connect() {
        ErrorKind::Connect
    } else if parse_error(&e).is_some() {
        ErrorKind::Invalid
    } else {
        ErrorKind::Closed
    };
    Error { kind, cause: Cause::Hyper(Box::new(e)) }
}

/// The parse error of hyper's behind `e`, if that is what failed.
pub(super) fn parse_error(e: &hyper_util::client::legacy::Error) -> Option<&::hyper::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(hyper) = cause.downcast_ref::<::hyper::Error>() {
            return hyper.is_parse().then_some(hyper);
        }
        source = cause.source();
    }
    None
}
