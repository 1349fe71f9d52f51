//! Redirect mode: answer `307 Temporary Redirect` to the chosen backend, so the client repeats
//! the same method and body there itself.

use http::header::{HeaderValue, CACHE_CONTROL, LOCATION};
use http::uri::PathAndQuery;
use std::net::IpAddr;

use http::{Request, Response, StatusCode};

use crate::access_log::Note;
use crate::body::Body;
use crate::forwarded::X_FORWARDED_SERVER;
use crate::pool::Pool;
use crate::response::{self, no_backend};
use crate::retry::Tried;

/// The redirect for `req` in `pool`, or `503` when no backend is usable. Sick and draining
/// backends are never chosen; `consistent_hash` pools send the same client to the same backend.
pub fn answer<B>(pool: &Pool, req: &Request<B>, client: IpAddr) -> Response<Body> {
    answer_noting(pool, req, client, &mut Note::default())
}

/// [`answer`], telling `note` the backend chosen.
pub fn answer_noting<B>(pool: &Pool, req: &Request<B>, client: IpAddr, note: &mut Note) -> Response<Body> {
    let key = pool.key(req.headers(), client);
    let Some((_, backend)) = pool.pick(key, &Tried::default()) else {
        pool.metrics.no_backend();
        return no_backend(pool);
    };
    note.backend = Some(backend.addr());
    let path = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
    let mut location = String::with_capacity(backend.origin.len() + backend.config.url_path.len() + path.len() + 1);
    location.push_str(&backend.origin);
    backend.push_upstream_path(&mut location, path);
    let Ok(location) = HeaderValue::try_from(location) else {
        return response::answer(StatusCode::BAD_REQUEST, "400 bad request: unusable path\n");
    };
    backend.metrics.redirected();
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    let headers = response.headers_mut();
    headers.insert(LOCATION, location);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if pool.config.expose_backend {
        headers.insert(&X_FORWARDED_SERVER, backend.server_header.clone());
    }
    response
}
