//! What a request must be before lb routes it. hyper already refuses what cannot be parsed
//! (bad header bytes, obs-fold, differing `Content-Length`s, a `Transfer-Encoding` not ending in
//! `chunked`); here are the rules of RFC 9110/9112 that a careful proxy adds, each answered by
//! lb itself with a short text body and never forwarded:
//!
//! - `Host` (RFC 9112 3.2): missing in HTTP/1.1, repeated (even with the same value), or not a
//!   host with an optional port (userinfo, a path, spaces, a comma list, an empty value, a port
//!   that is not digits): `400`. An absolute-form target names the host: a `Host` header must
//!   name the same one (HAProxy's choice, the stricter), and for HTTP/2 `:authority` and `Host`
//!   must agree.
//! - Transfer codings: anything but a single `chunked` is `501` (lb decodes no other coding),
//!   `chunked` twice `400`.
//! - Methods: not an uppercase token (`get`) `400`; `TRACE` `405` (it would echo credentials
//!   back) unless its pool has `allow_trace` ([`trace`], after routing), and then `400` with
//!   content (RFC 9110 9.3.8: a client must not send any) and lb's own echo at `Max-Forwards:
//!   0`; `CONNECT` `405` (lb is no tunnel); `OPTIONS *` is lb's own `200` with `Allow`.
//! - Loops: a `Via` that carries this instance's own pseudonym ([`Via`]) means the request
//!   already passed through this lb: `508`.
//!
//! The common request (valid `Host`, a known-length body, no `Via`) costs one pass over its
//! header names, which replaces the `Host` lookup routing made before: no hashing, no allocation.

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

use crate::body::Body;
use crate::forwarded::Via;
use crate::response::answer;

/// The methods lb answers `OPTIONS *` with.
const ALLOW: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";

/// A request that passed the checks: the host to route by (without its port stripped), as the
/// client named it.
pub struct Checked<'a> {
    pub host: &'a str,
    /// A `TRACE`: its pool decides, with [`trace`].
    pub trace: bool,
}

/// Checks `req` before routing; `Err` is lb's own answer to it.
pub fn check<'a, B: http_body::Body>(req: &'a Request<B>, via: &Via) -> Result<Checked<'a>, Refused> {
    let mut host: Option<&HeaderValue> = None;
    let mut hosts = 0u32;
    let mut saw_via = false;
    for (name, value) in req.headers() {
        if name == header::HOST {
            hosts += 1;
            host = Some(value);
        } else if name == header::VIA {
            saw_via = true;
        }
    }
    if hosts > 1 {
        return Err(Refused::BadRequest("more than one Host header"));
    }
    if saw_via && via.seen_in(req.headers()) {
        return Err(Refused::Loop);
    }
    let host = match (host, req.uri().authority()) {
        (Some(value), authority) => {
            // A host is ASCII: checked first, then taken as text (faster than `to_str`'s
            // byte-by-byte check).
            let Some(value) = Some(value.as_bytes()).filter(|v| is_host(v)).and_then(|v| std::str::from_utf8(v).ok())
            else {
                return Err(Refused::BadRequest("invalid Host header"));
            };
            if let Some(authority) = authority {
                // HTTP/2's `:authority`, or an absolute-form target.
                if !authority.as_str().eq_ignore_ascii_case(value) {
                    return Err(Refused::BadRequest("Host header differs from the request target's host"));
                }
            }
            value
        }
        (None, Some(authority)) if req.version() == Version::HTTP_2 || req.version() == Version::HTTP_10 => {
            if !is_host(authority.as_str().as_bytes()) {
                return Err(Refused::BadRequest("invalid host in the request target"));
            }
            authority.as_str()
        }
        (None, None) if req.version() <= Version::HTTP_10 => "",
        (None, _) => return Err(Refused::BadRequest("missing Host header")),
    };
    let mut trace = false;
    match *req.method() {
        Method::GET | Method::HEAD | Method::POST | Method::PUT | Method::DELETE | Method::PATCH => {}
        Method::TRACE => trace = true,
        Method::CONNECT => return Err(Refused::Method("CONNECT")),
        Method::OPTIONS if req.uri().path() == "*" => return Err(Refused::OptionsStar),
        ref other if !is_method(other) => return Err(Refused::BadRequest("invalid method")),
        _ => {}
    }
    // hyper makes a chunked body, and only a chunked body, of unknown length.
    if req.body().size_hint().exact().is_none() {
        transfer_codings(req)?;
    }
    Ok(Checked { host, trace })
}

/// What becomes of a `TRACE` that [`check`] let through and routing matched to a pool:
/// `allowed` is the pool's `allow_trace`, `forwarded` whether the pool proxies it (rather than
/// redirecting it). `None`: it goes on; `Some`: lb's own answer. Refused (`405`) unless allowed;
/// with content, `400` (RFC 9110 9.3.8 forbids it, and a body is nothing to echo). A proxied
/// one obeys `Max-Forwards` (RFC 9110 7.6.2): at `0` lb is the last hop and echoes it itself,
/// otherwise the backend gets it one lower; a value that is not digits is `400`.
pub fn trace<B: http_body::Body>(req: &mut Request<B>, allowed: bool, forwarded: bool) -> Option<Response<Body>> {
    if !allowed {
        return Some(Refused::Method("TRACE").response());
    }
    if req.body().size_hint().exact() != Some(0) {
        return Some(Refused::BadRequest("TRACE with content").response());
    }
    let value = req.headers().get(header::MAX_FORWARDS).filter(|_| forwarded)?;
    let digits = value.as_bytes();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Some(Refused::BadRequest("invalid Max-Forwards").response());
    }
    // Digits are ASCII; a number too large for a u64 is as good as no limit.
    let hops = std::str::from_utf8(digits).ok().and_then(|d| d.parse::<u64>().ok()).unwrap_or(u64::MAX);
    if hops == 0 {
        return Some(trace_echo(req));
    }
    req.headers_mut().insert(header::MAX_FORWARDS, HeaderValue::from(hops - 1));
    None
}

/// lb's answer to a `TRACE` it is the last hop of: the request as it arrived (`message/http`),
/// without the headers that carry credentials (RFC 9110 9.3.8 says to leave them out).
fn trace_echo<B>(req: &Request<B>) -> Response<Body> {
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut text = format!("TRACE {target} {:?}\r\n", req.version()).into_bytes();
    for (name, value) in req.headers() {
        if [header::AUTHORIZATION, header::PROXY_AUTHORIZATION, header::COOKIE].contains(name) {
            continue;
        }
        text.extend_from_slice(name.as_str().as_bytes());
        text.extend_from_slice(b": ");
        text.extend_from_slice(value.as_bytes());
        text.extend_from_slice(b"\r\n");
    }
    text.extend_from_slice(b"\r\n");
    let mut response = answer(StatusCode::OK, text);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("message/http"));
    response
}

/// For a target with an authority (absolute-form, or HTTP/2's `:authority`): a `Host` header
/// that names the same host in other letter case is replaced by the target's authority, so
/// the backend gets exactly the host the target names. (One that names another host is refused
/// by [`check`].)
pub fn host_from_target<B>(req: &mut Request<B>) {
    let Some(authority) = req.uri().authority() else {
        return;
    };
    let Some(host) = req.headers().get(header::HOST) else {
        return;
    };
    if host.as_bytes() != authority.as_str().as_bytes()
        && host.as_bytes().eq_ignore_ascii_case(authority.as_str().as_bytes())
    {
        if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
            req.headers_mut().insert(header::HOST, value);
        }
    }
}

/// `Transfer-Encoding` must be exactly one `chunked` (hyper checked it ends with one).
fn transfer_codings<B>(req: &Request<B>) -> Result<(), Refused> {
    let mut codings = crate::forwarded::tokens(req.headers(), &header::TRANSFER_ENCODING);
    let mut chunked = 0;
    let mut other = false;
    for coding in &mut codings {
        if coding.eq_ignore_ascii_case("chunked") {
            chunked += 1;
        } else {
            other = true;
        }
    }
    if chunked > 1 {
        return Err(Refused::BadRequest("chunked applied more than once"));
    }
    if other {
        return Err(Refused::TransferCoding);
    }
    Ok(())
}

/// Which bytes may appear in a host name: RFC 3986's unreserved characters (no sub-delims: a
/// comma would make a list, and nobody names a host with `!` or `=`), and inside an IP literal's
/// brackets the hex digits, `:` and `.` of an address.
static NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_' || c == b'~';
        b += 1;
    }
    t
};

/// Is `host` `name[:port]` or `[ip6][:port]`, the port (if any) one to five digits? One pass
/// over the bytes: every request asks.
pub fn is_host(host: &[u8]) -> bool {
    let end = if host.first() == Some(&b'[') {
        let Some(close) = host.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = &host[1..close];
        if inner.is_empty() || !inner.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return false;
        }
        close + 1
    } else {
        let name = host.iter().position(|&b| !NAME[usize::from(b)]).unwrap_or(host.len());
        if name == 0 {
            return false;
        }
        name
    };
    match &host[end..] {
        [] => true,
        [b':', port @ ..] => (1..=5).contains(&port.len()) && port.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// Methods are uppercase tokens, as nginx requires (`get` is refused, not routed as a method
/// no pattern names).
fn is_method(method: &Method) -> bool {
    method.as_str().bytes().all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-')
}

/// Why lb answers a request itself; small, so the common `Ok` costs no large copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `400`, and why.
    BadRequest(&'static str),
    /// `501`: a transfer coding lb does not decode.
    TransferCoding,
    /// `405` for a method lb does not pass on.
    Method(&'static str),
    /// `OPTIONS *`: lb's own `200` with `Allow`.
    OptionsStar,
    /// `508`: the request already went through this lb.
    Loop,
}

impl Refused {
    /// lb's answer.
    pub fn response(self) -> Response<Body> {
        let (status, text) = match self {
            Refused::BadRequest(why) => (StatusCode::BAD_REQUEST, format!("400 bad request: {why}\n")),
            Refused::TransferCoding => {
                (StatusCode::NOT_IMPLEMENTED, "501 not implemented: transfer coding other than chunked\n".to_owned())
            }
            Refused::Method(method) => {
                (StatusCode::METHOD_NOT_ALLOWED, format!("405 method not allowed: lb refuses {method}\n"))
            }
            Refused::OptionsStar => (StatusCode::OK, String::new()),
            Refused::Loop => {
                (StatusCode::LOOP_DETECTED, "508 loop detected: this request already passed through lb\n".to_owned())
            }
        };
        let mut response = answer(status, text);
        if matches!(self, Refused::Method(_) | Refused::OptionsStar) {
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(ALLOW));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for good in ["a.example", "a.example:8080", "localhost:1", "127.0.0.1", "[::1]", "[::1]:80", "a_b-c~d"] {
            assert!(is_host(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            ":80",
            "a@b.example",
            "a/b",
            "a b",
            "a.example, b.example",
            "a.example:abc",
            "a.example:",
            "a.example:123456",
            "[::1",
            "[]",
            "[::1]x",
            "[::1]:",
            "[v1.x]",
            "a:1:2",
            "a\\b",
            "é.example",
        ] {
            assert!(!is_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn methods() {
        for good in ["GET", "DELETE", "PROPFIND", "M-SEARCH", "X_Y"] {
            assert!(is_method(&Method::from_bytes(good.as_bytes()).unwrap()), "{good}");
        }
        for bad in ["get", "Get", "G1", "G!T"] {
            assert!(!is_method(&Method::from_bytes(bad.as_bytes()).unwrap()), "{bad}");
        }
    }
}
