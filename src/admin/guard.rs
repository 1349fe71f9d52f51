//! Who may talk to the admin API, and in what form: the checks every request passes before a
//! handler sees it, in this order.
//!
//! 1. `Host` must name the admin listener (`ip:port`, `localhost:port` on loopback, any IP
//!    literal with the listener's port when it is bound to `0.0.0.0`/`[::]`) or a name given
//!    with `--admin-host`: `421` otherwise. An IP literal cannot be rebound, so DNS rebinding
//!    (an attacker's name resolving to lb's address) never gets past this.
//! 2. An `Origin`, when sent, must be the admin's own (`http://` or `https://` and an allowed
//!    host): `403` otherwise. Browsers send it on every cross-site write.
//! 3. With a token configured, `Authorization: Bearer TOKEN` (compared in constant time):
//!    `401` with `WWW-Authenticate: Bearer` otherwise, and the attempt is logged with the
//!    client's address (never the token).
//! 4. A `Content-Length` above the admin limit: `413`, before the body is read.
//! 5. Writes with a body (`POST`, `PATCH`, `PUT`) must say `Content-Type: application/json`:
//!    `415` otherwise. A form or `text/plain` is what a cross-site page can send without asking
//!    the browser's permission; JSON it cannot. A `DELETE` carries no body and needs no type (a
//!    page cannot send one cross-site without the browser asking first), but one that names
//!    a type other than JSON is `415` too.
//!
//! `/healthz` passes none of them: it is lb's liveness for monitors, and changes nothing.
//! The dashboard's page and assets (`GET /dashboard`, `/dashboard.js`, `/dashboard.css`, see
//! `dashboard.rs`) pass 1 and 2 but need no token: they hold no data, and the page must load
//! to ask for the token; everything it shows comes from endpoints that do need it.
//!
//! Cheap on purpose (a few header compares): it runs on the admin thread only, never on the
//! data path.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{dashboard, ApiError, MAX_BODY, MAX_STATE_BODY};

/// The admin API's bearer token. Its bytes never reach a log or a `Debug` print.
#[derive(Clone)]
pub struct Token(Box<[u8]>);

/// Shortest token lb accepts: a guessable token is no lock.
pub const MIN_TOKEN_LEN: usize = 16;

impl Token {
    /// A token as a file or `LB_ADMIN_TOKEN` holds it: surrounding whitespace (a file's final
    /// newline) is dropped; what is left must be at least [`MIN_TOKEN_LEN`] visible ASCII
    /// characters, which is what an `Authorization` header can carry.
    pub fn parse(text: &str) -> Result<Token, String> {
        let token = text.trim();
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!("the admin token must be at least {MIN_TOKEN_LEN} characters"));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the admin token must be visible ASCII characters, without spaces".into());
        }
        Ok(Token(token.as_bytes().into()))
    }

    /// Whether `given` is this token, in time that depends only on the token's length: every
    /// byte is compared, differences are folded together, and nothing branches on them. The
    /// length itself is no secret worth hiding (it is at least [`MIN_TOKEN_LEN`]).
    fn matches(&self, given: &[u8]) -> bool {
        let mut diff = u8::from(given.len() != self.0.len());
        for (i, want) in self.0.iter().enumerate() {
            diff |= want ^ given.get(i).copied().unwrap_or(0);
        }
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

/// What the guard lets in: the token, if any, and the hosts the admin API answers to.
#[derive(Debug, Clone)]
pub struct Access {
    token: Option<Token>,
    /// Allowed `Host` values, lowercase.
    hosts: Vec<String>,
    /// Bound to `0.0.0.0` or `[::]`: any IP literal with this port is the listener.
    any_ip_port: Option<u16>,
    /// On a unix socket: no browser or other machine reaches it, so `Host` is not checked.
    unix: bool,
}

impl Access {
    /// The access rules of an admin API listening on `listener`, with `token` and the extra
    /// host names of `--admin-host` (each `NAME` or `NAME:PORT`; a bare name also matches with
    /// the listener's port).
    pub fn new(listener: SocketAddr, token: Option<Token>, names: &[String]) -> Access {
        let port = listener.port();
        let mut hosts = vec![listener.to_string()];
        let ip = listener.ip();
        if ip.is_loopback() || ip.is_unspecified() {
            hosts.push(format!("localhost:{port}"));
        }
        for name in names {
            let name = name.to_ascii_lowercase();
            hosts.push(format!("{name}:{port}"));
            hosts.push(name);
        }
        Access { token, hosts, any_ip_port: ip.is_unspecified().then_some(port), unix: false }
    }

    /// The access rules of an admin API on a unix socket: the token, if any; every `Host`
    /// (clients send `localhost` or nothing useful); no `Origin`.
    pub fn unix(token: Option<Token>) -> Access {
        Access { token, hosts: Vec::new(), any_ip_port: None, unix: true }
    }

    /// Whether a token is required.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        if self.hosts.contains(&host) {
            return true;
        }
        match (self.any_ip_port, host.parse::<SocketAddr>()) {
            (Some(port), Ok(addr)) => addr.port() == port,
            _ => false,
        }
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let host = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
        host.is_some_and(|h| self.host_allowed(h))
    }
}

/// A refusal with its status and message, as every admin error is sent.
fn refuse(status: StatusCode, msg: impl Into<String>) -> Response {
    ApiError(status, msg.into()).into_response()
}

/// The middleware: the checks of the module doc, in order. `/healthz` is open to anyone, as
/// monitors call it by whatever name they know lb by: it changes nothing and tells only `ok`.
pub async fn guard(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let headers = req.headers();
    let host =
        headers.get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| req.uri().authority().map(|a| a.as_str()));
    match host {
        _ if access.unix => {}
        None => return refuse(StatusCode::MISDIRECTED_REQUEST, "the request has no Host header"),
        Some(host) if !access.host_allowed(host) => {
            let msg = format!("this admin API does not answer to host {host:?} (see lb --admin-host)");
            return refuse(StatusCode::MISDIRECTED_REQUEST, msg);
        }
        Some(_) => {}
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !access.origin_allowed(origin) {
            return refuse(StatusCode::FORBIDDEN, format!("requests from origin {origin:?} are not allowed"));
        }
    }
    if let Some(token) = access.token.as_ref().filter(|_| !dashboard::is_asset(req.method(), req.uri().path())) {
        if !token.matches(bearer(headers).unwrap_or_default()) {
            let client = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.to_string());
            let why = if headers.contains_key(header::AUTHORIZATION) { "a wrong token" } else { "no token" };
            tracing::warn!(
                "admin: {} {} from {} refused: {why}",
                req.method(),
                req.uri().path(),
                client.as_deref().unwrap_or("a unix socket client")
            );
            let mut answer = refuse(StatusCode::UNAUTHORIZED, "this admin API needs a bearer token (lbctl --token)");
            answer.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return answer;
        }
    }
    // A whole state (`PUT /v1/state`) may be larger than any other body.
    let limit = if req.uri().path() == "/v1/state" { MAX_STATE_BODY } else { MAX_BODY };
    if let Some(length) = headers.get(header::CONTENT_LENGTH) {
        if length.to_str().ok().and_then(|l| l.parse::<u64>().ok()).is_none_or(|l| l > limit as u64) {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, format!("request body over {} KiB", limit / 1024));
        }
    }
    let with_body = matches!(*req.method(), Method::POST | Method::PATCH | Method::PUT);
    let typed_delete = *req.method() == Method::DELETE && headers.contains_key(header::CONTENT_TYPE);
    if (with_body || typed_delete) && !is_json(headers) {
        return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "writes need Content-Type: application/json");
    }
    next.run(req).await
}

/// The token of an `Authorization: Bearer TOKEN` header (the scheme in any case).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| token.trim_ascii())
}

/// Whether the body says it is JSON: `application/json`, parameters (`; charset=utf-8`) allowed.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    value.split(';').next().is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether the admin API may listen on `addr` without a token: loopback only.
pub fn open_to(addr: IpAddr) -> bool {
    addr.is_loopback() || addr.to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_themselves() {
        let token = Token::parse("0123456789abcdef\n").unwrap();
        assert!(token.matches(b"0123456789abcdef"));
        for wrong in [&b""[..], b"0123456789abcdeF", b"0123456789abcde", b"0123456789abcdef0"] {
            assert!(!token.matches(wrong), "{wrong:?}");
        }
        assert!(Token::parse("short").is_err());
        assert!(Token::parse("0123456789 abcdef").is_err());
        assert_eq!(format!("{token:?}"), "Token(..)");
    }

    #[test]
    fn hosts_are_the_listener_localhost_and_given_names() {
        let access = Access::new("127.0.0.1:8081".parse().unwrap(), None, &["Admin.Example".into()]);
        for ok in ["127.0.0.1:8081", "localhost:8081", "LOCALHOST:8081", "admin.example", "admin.example:8081"] {
            assert!(access.host_allowed(ok), "{ok}");
        }
        for bad in ["127.0.0.1:8082", "evil.example:8081", "127.0.0.2:8081", "localhost", ""] {
            assert!(!access.host_allowed(bad), "{bad}");
        }
        assert!(access.origin_allowed("http://127.0.0.1:8081"));
        assert!(!access.origin_allowed("http://evil.example"));
        assert!(!access.origin_allowed("null"));
        let any = Access::new("0.0.0.0:8081".parse().unwrap(), None, &[]);
        assert!(any.host_allowed("10.1.2.3:8081") && any.host_allowed("[::1]:8081"));
        assert!(!any.host_allowed("10.1.2.3:8082") && !any.host_allowed("rebound.example:8081"));
    }

    #[test]
    fn only_loopback_is_open_without_a_token() {
        for ip in ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"] {
            assert!(open_to(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["0.0.0.0", "::", "10.0.0.1", "192.168.1.1"] {
            assert!(!open_to(ip.parse().unwrap()), "{ip}");
        }
    }
}
