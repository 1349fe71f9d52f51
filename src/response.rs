//! The answers lb writes itself rather than a backend: short plain-text errors, `503` for a pool
//! with no usable backend, `405` with `Allow`, and the router's `307`s. Used by the data plane
//! and both modes, so they sit below all three.

use http::header::{self, HeaderValue, LOCATION, RETRY_AFTER};
use http::{Response, StatusCode};

use crate::body::Body;
use crate::pool::Pool;

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

pub fn not_allowed(allow: String) -> Response<Body> {
    let mut response = answer(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    if let Ok(allow) = HeaderValue::try_from(allow) {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

/// The router's redirect (to add a trailing slash, or to the cleaned path): `307`, as Go 1.27's
/// `ServeMux` answers, so the method and body survive. `location` comes from the router, which
/// escapes it and never starts it with `//`.
pub fn moved(location: String) -> Response<Body> {
    let mut response = answer(StatusCode::TEMPORARY_REDIRECT, "");
    if let Ok(location) = HeaderValue::try_from(location) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}
