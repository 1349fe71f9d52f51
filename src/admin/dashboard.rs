//! `GET /dashboard`: a live page of lb's pools and backends, in the binary (no CDN, no build
//! step): `dashboard.html`, `dashboard.js` and `dashboard.css` beside this file, embedded with
//! `include_str!`.
//!
//! The page is a shell that holds no data: the script asks for the admin token (kept in the
//! tab's `sessionStorage`, sent as `Authorization: Bearer`, never put in a URL) and polls
//! `/v1/pools` and `/metrics` with it once a second. So the three assets are the only paths the
//! guard lets through without the token ([`is_asset`]); `Host` and `Origin` are still checked.
//!
//! Served with a Content-Security-Policy that allows scripts, styles and fetches from the
//! admin's own origin only: no inline script or style, no frames, no forms posting anywhere,
//! so a label value that slipped into the markup could still run nothing.

use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const HTML: &str = include_str!("dashboard.html");
const JS: &str = include_str!("dashboard.js");
const CSS: &str = include_str!("dashboard.css");

/// The page's paths and what each serves: the only paths [`is_asset`] names.
const ASSETS: [(&str, &str, &str); 3] = [
    ("/dashboard", "text/html; charset=utf-8", HTML),
    ("/dashboard.js", "text/javascript; charset=utf-8", JS),
    ("/dashboard.css", "text/css; charset=utf-8", CSS),
];

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src data:; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Whether a request is for one of the page's assets, which need no token: a `GET` or `HEAD`
/// of exactly one of their paths (no other method, nothing below them).
pub(super) fn is_asset(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD) && ASSETS.iter().any(|(p, _, _)| *p == path)
}

/// The routes of the page's assets, to merge into the admin router.
pub(super) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, &(path, kind, body)| {
        router.route(path, get(move || async move { asset(kind, body) }))
    })
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut answer = body.into_response();
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_assets_are_open() {
        for path in ["/dashboard", "/dashboard.js", "/dashboard.css"] {
            assert!(is_asset(&Method::GET, path) && is_asset(&Method::HEAD, path), "{path}");
            assert!(!is_asset(&Method::POST, path), "{path}");
        }
        for path in ["/dashboard/", "/dashboard.html", "/v1/pools", "/metrics", "/dashboardx", "/", ""] {
            assert!(!is_asset(&Method::GET, path), "{path}");
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        assert!(HTML.contains(r#"<script src="/dashboard.js" defer></script>"#));
        assert!(!HTML.contains("<script>") && !HTML.contains("<style") && !HTML.contains(" style="));
        assert!(!JS.contains("innerHTML") && !JS.contains("outerHTML") && !JS.contains("insertAdjacentHTML"));
    }
}
