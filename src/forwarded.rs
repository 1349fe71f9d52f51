//! The one place that decides which headers cross the proxy: hop-by-hop headers stay behind
//! (RFC 9110 section 7.6.1), and `X-Forwarded-*` and `Via` say who forwarded what.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The backend (`ip:port`) that served a response, on the responses of pools that
/// `expose_backend`; lb removes it from the others' (see [`server`]).
pub static X_FORWARDED_SERVER: HeaderName = HeaderName::from_static("x-forwarded-server");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

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

/// The names of [`hop_by_hop`], as a `Connection` header may list them.
const HOP_BY_HOP_NAMES: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers that describe one connection, not the message (RFC 9110 7.6.1, and Go's list).
fn hop_by_hop() -> [&'static HeaderName; 9] {
    [
        &header::CONNECTION,
        &PROXY_CONNECTION,
        &KEEP_ALIVE,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ]
}

/// The index of `name` in [`hop_by_hop`], if it is one. String comparison checks lengths
/// first, so most names cost nine length comparisons and no hashing.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    let name = name.as_str();
    HOP_BY_HOP_NAMES.iter().position(|h| *h == name)
}

/// Removes hop-by-hop headers, and those the `Connection` header names.
///
/// Most messages carry one hop-by-hop header (`Connection: keep-alive`) or none: one pass over
/// the names finds which are there, and only those are removed, instead of a hashed lookup of
/// each of the nine (that was 9% of lb's instructions per proxied request).
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // `Connection` is first in the list. Tokens that are hop-by-hop names themselves
    // (`keep-alive`, `upgrade`) go with the list below; any other token names a header.
    if present & 1 != 0 && !only_keep_alive(headers) {
        let named: Vec<HeaderName> = tokens(headers, &header::CONNECTION)
            .filter(|t| !HOP_BY_HOP_NAMES.iter().any(|h| t.eq_ignore_ascii_case(h)))
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (i, name) in hop_by_hop().into_iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// The comma-separated tokens of every `name` header (`Connection: keep-alive, X-A`), without
/// the spaces and tabs around them; empty list elements are skipped.
pub fn tokens<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',']))
        .map(|t| t.trim_matches(|c| c == ' ' || c == '\t'))
        .filter(|t| !t.is_empty())
}

/// Is every `Connection` header exactly `keep-alive`, as nearly every backend sends it? It then
/// names no header but one on the hop-by-hop list, and tokenizing it (over 400 instructions)
/// can be skipped.
fn only_keep_alive(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().all(|v| v.as_bytes().eq_ignore_ascii_case(b"keep-alive"))
}

/// Does a `Connection` header carry the `close` option?
pub fn connection_close(headers: &HeaderMap) -> bool {
    !only_keep_alive(headers) && tokens(headers, &header::CONNECTION).any(|t| t.eq_ignore_ascii_case("close"))
}

fn via(version: Version) -> HeaderValue {
    HeaderValue::from_static(match version {
        Version::HTTP_09 => "0.9 lb",
        Version::HTTP_10 => "1.0 lb",
        Version::HTTP_2 => "2 lb",
        Version::HTTP_3 => "3 lb",
        _ => "1.1 lb",
    })
}

/// This lb instance's name in the `Via` headers of the requests it forwards,
/// `lb-<8 random hex digits>`, drawn at start. A request whose `Via` already carries it went
/// through this instance before: a loop (a backend that is lb itself, or two lbs pointing at
/// each other), which the data plane answers `508` instead of forwarding again.
pub struct Via {
    pseudonym: String,
    /// `<version> <pseudonym>` for HTTP/1.0, 1.1 and 2, built once.
    values: [HeaderValue; 3],
}

impl Via {
    /// A fresh pseudonym.
    pub fn new() -> Via {
        Via::named(format!("lb-{:08x}", fastrand::u32(..)))
    }

    /// `pseudonym` must be a token (it is one of lb's own making).
    fn named(pseudonym: String) -> Via {
        let value = |v: &str| HeaderValue::try_from(format!("{v} {pseudonym}")).expect("a token is a valid header");
        Via { values: [value("1.0"), value("1.1"), value("2")], pseudonym }
    }

    pub fn pseudonym(&self) -> &str {
        &self.pseudonym
    }

    /// The `Via` element lb appends to a request it received as `version`.
    fn value(&self, version: Version) -> HeaderValue {
        let i = match version {
            Version::HTTP_09 | Version::HTTP_10 => 0,
            Version::HTTP_2 | Version::HTTP_3 => 2,
            _ => 1,
        };
        self.values[i].clone()
    }

    /// Does a `Via` header name this instance as one that received the message? Each element
    /// is `protocol received-by [comment]` (RFC 9110 7.6.3).
    pub fn seen_in(&self, headers: &HeaderMap) -> bool {
        tokens(headers, &header::VIA)
            .any(|element| element.split([' ', '\t']).filter(|w| !w.is_empty()).nth(1) == Some(self.pseudonym.as_str()))
    }
}

impl Default for Via {
    fn default() -> Self {
        Via::new()
    }
}

/// Prepares a client's request headers for the backend. `client_ip` is the client's address
/// as a header value; `host` is the host the client asked for (its `Host` header, or the URI
/// authority in HTTP/2), passed through unchanged; `via` is this lb's own [`Via`].
pub fn request(
    headers: &mut HeaderMap,
    version: Version,
    client_ip: &HeaderValue,
    host: Option<HeaderValue>,
    via: &Via,
) {
    remove_hop_by_hop(headers);
    append_forwarded_for(headers, client_ip);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    if let Some(host) = host {
        if !headers.contains_key(header::HOST) {
            headers.insert(header::HOST, host.clone());
        }
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    headers.append(header::VIA, via.value(version));
}

/// Names the backend that served a response in `X-Forwarded-Server`, or (`None`, a pool that
/// does not `expose_backend`) makes sure no such header reaches the client, not even one the
/// backend sent: one map operation either way, as the unconditional insert cost before.
pub fn server(headers: &mut HeaderMap, server: Option<&HeaderValue>) {
    match server {
        Some(server) => {
            headers.insert(X_FORWARDED_SERVER.clone(), server.clone());
        }
        None => {
            headers.remove(&X_FORWARDED_SERVER);
        }
    }
}

/// Prepares a backend's response headers for the client; `server` as in [`server`].
pub fn response(headers: &mut HeaderMap, version: Version, server: Option<&HeaderValue>) {
    remove_hop_by_hop(headers);
    headers.append(header::VIA, via(version));
    self::server(headers, server);
}

/// [`response`] for a response of `status`: a `426 Upgrade Required` keeps its `Upgrade`
/// header, which says what the client must upgrade to (RFC 9110 section 15.5.22).
pub fn response_for(status: StatusCode, headers: &mut HeaderMap, version: Version, server: Option<&HeaderValue>) {
    if status != StatusCode::UPGRADE_REQUIRED {
        return response(headers, version, server);
    }
    let upgrade: Vec<HeaderValue> = headers.get_all(header::UPGRADE).iter().cloned().collect();
    response(headers, version, server);
    for value in upgrade {
        headers.append(header::UPGRADE, value);
    }
}

/// Appends the client to `X-Forwarded-For`, folding earlier values into one header as Go does.
fn append_forwarded_for(headers: &mut HeaderMap, client_ip: &HeaderValue) {
    if !headers.contains_key(&X_FORWARDED_FOR) {
        headers.insert(X_FORWARDED_FOR.clone(), client_ip.clone());
        return;
    }
    let mut value = Vec::with_capacity(64);
    for prior in headers.get_all(&X_FORWARDED_FOR) {
        value.extend_from_slice(prior.as_bytes());
        value.extend_from_slice(b", ");
    }
    value.extend_from_slice(client_ip.as_bytes());
    if let Ok(value) = HeaderValue::from_bytes(&value) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = headers(&[
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "gzip"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "x"),
            ("x-kept", "yes"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn sets_forwarded_headers() {
        let mut h = headers(&[("x-forwarded-for", "10.0.0.1"), ("x-forwarded-for", "10.0.0.2"), ("host", "a.com")]);
        let via = Via::named("lb-0000abcd".into());
        request(
            &mut h,
            Version::HTTP_11,
            &HeaderValue::from_static("127.0.0.9"),
            Some(HeaderValue::from_static("a.com")),
            &via,
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 127.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.com");
        assert_eq!(h["host"], "a.com");
        assert_eq!(h["via"], "1.1 lb-0000abcd");
    }

    #[test]
    fn via_finds_this_instance_only_as_a_receiver() {
        let via = Via::named("lb-0000abcd".into());
        for (values, seen) in [
            (&["1.1 lb-0000abcd"][..], true),
            (&["1.0 proxy, 1.1  lb-0000abcd (lb)"], true),
            (&["1.1 other", "2 lb-0000abcd"], true),
            (&["1.1 lb-0000abce"], false),
            (&["1.1 other (lb-0000abcd)"], false),
            (&["lb-0000abcd"], false),
            (&["1.1 lb"], false),
        ] {
            let pairs: Vec<(&str, &str)> = values.iter().map(|v| ("via", *v)).collect();
            assert_eq!(via.seen_in(&headers(&pairs)), seen, "{values:?}");
        }
        assert_ne!(Via::new().pseudonym(), Via::new().pseudonym());
    }

    #[test]
    fn forwarded_for_is_the_client_when_nobody_forwarded_before() {
        let mut h = headers(&[("host", "a.com")]);
        request(&mut h, Version::HTTP_11, &HeaderValue::from_static("::1"), None, &Via::new());
        assert_eq!(h.get_all("x-forwarded-for").iter().collect::<Vec<_>>(), ["::1"]);
    }

    #[test]
    fn connection_tokens_remove_the_headers_they_name_wherever_they_are() {
        let mut h = headers(&[
            ("x-before", "1"),
            ("connection", "close"),
            ("connection", "X-Before, keep-alive,upgrade , x-after"),
            ("x-after", "2"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("x-kept", "yes"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"]);
    }

    #[test]
    fn the_names_match_the_list() {
        let names: Vec<&str> = hop_by_hop().iter().map(|h| h.as_str()).collect();
        assert_eq!(names, HOP_BY_HOP_NAMES);
        for (i, name) in hop_by_hop().into_iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i));
        }
        for other in ["host", "x-forwarded-for", "content-length", "connectionx", "tf", "upgrade1"] {
            assert_eq!(hop_by_hop_index(&HeaderName::from_static(other)), None, "{other}");
        }
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed() {
        for name in hop_by_hop() {
            let mut h = headers(&[(name.as_str(), "x"), (name.as_str(), "y"), ("x-kept", "yes")]);
            remove_hop_by_hop(&mut h);
            assert_eq!(h.len(), 1, "{name}: {h:?}");
        }
    }

    #[test]
    fn connection_close_is_found_among_the_tokens() {
        for (values, close) in [
            (&["keep-alive"][..], false),
            (&["Keep-Alive"], false),
            (&["close"], true),
            (&["Close"], true),
            (&["keep-alive", "close"], true),
            (&["keep-alive, close"], true),
            (&["x-close, closed"], false),
            (&[], false),
        ] {
            let pairs: Vec<(&str, &str)> = values.iter().map(|v| ("connection", *v)).collect();
            assert_eq!(connection_close(&headers(&pairs)), close, "{values:?}");
        }
    }

    #[test]
    fn keep_alive_alone_removes_only_hop_by_hop_headers() {
        let mut h = headers(&[("connection", "Keep-Alive"), ("keep-alive", "timeout=5"), ("x-kept", "yes")]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"]);
    }

    #[test]
    fn a_426_keeps_its_upgrade_header() {
        let server = HeaderValue::from_static("10.0.0.1:80");
        let mut h = headers(&[("upgrade", "TLS/1.3"), ("connection", "upgrade")]);
        response_for(StatusCode::UPGRADE_REQUIRED, &mut h, Version::HTTP_11, Some(&server));
        assert_eq!(h["upgrade"], "TLS/1.3");
        assert!(!h.contains_key("connection"));
        let mut h = headers(&[("upgrade", "TLS/1.3")]);
        response_for(StatusCode::OK, &mut h, Version::HTTP_11, Some(&server));
        assert!(!h.contains_key("upgrade"), "only a 426 keeps it");
    }

    #[test]
    fn the_backend_is_named_only_when_asked_and_never_by_the_backend_itself() {
        let server = HeaderValue::from_static("10.0.0.1:80");
        let mut h = headers(&[("x-forwarded-server", "internal.example:9000"), ("x-kept", "yes")]);
        response(&mut h, Version::HTTP_11, Some(&server));
        assert_eq!(h.get_all("x-forwarded-server").iter().collect::<Vec<_>>(), [&server]);
        let mut h = headers(&[("x-forwarded-server", "internal.example:9000"), ("x-kept", "yes")]);
        response(&mut h, Version::HTTP_11, None);
        assert!(!h.contains_key("x-forwarded-server"));
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn messages_without_hop_by_hop_headers_keep_all() {
        let mut h = headers(&[("host", "a.com"), ("x-a", "1"), ("accept", "*/*")]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 3);
    }
}
