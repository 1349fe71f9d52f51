//! lb's own client on the wire: the request written in HTTP/1.1 form, and the response head
//! parsed with the framing of the body that follows it.
//!
//! Framing follows RFC 9112: a response to `HEAD`, a `1xx` (skipped, except `101`), `204` and
//! `304` have no body; then `Transfer-Encoding`, which must be a single `chunked` (any other
//! coding is one lb does not decode, and its framing bytes must not reach the client: the
//! response is invalid), then `Content-Length` (conflicting values are an error), else read
//! until close. A connection goes
//! back to the pool only after a complete, keep-alive response with nothing after it.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;

use super::{Error, Request};
use crate::forwarded;

/// Largest response head lb reads from a backend (about what hyper's client allows).
const MAX_HEAD: usize = 400 * 1024;
/// Largest request body written in one piece with the head.
pub(super) const INLINE_BODY: usize = 8 * 1024;
/// Why a head over [`MAX_HEAD`] is refused.
const TOO_LARGE: &str = "head larger than 400 KiB";
/// Most headers in a response head (hyper's limit too).
const MAX_HEADERS: usize = 100;

/// Writes the request head (and `body`, lb holds it whole) in HTTP/1.1 wire form.
pub(super) fn encode(out: &mut Vec<u8>, req: &Request<'_>, body: Option<&Bytes>) {
    out.clear();
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target.as_str().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !req.headers.contains_key(header::HOST) {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(req.authority.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in req.headers {
        // lb frames the body itself, and has already answered any `Expect: 100-continue`.
        if body.is_some() && (name == header::CONTENT_LENGTH || name == header::EXPECT) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(body) = body {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        // A small body goes in the same write as the head; a larger one is written from its
        // own buffer, not copied.
        if body.len() <= INLINE_BODY {
            out.extend_from_slice(body);
        }
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

/// A parsed response head; the body framing it announces.
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) framing: Framing,
    pub(crate) keep_alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// Parses a complete response head off the front of `buf`, skipping interim `1xx` responses;
/// `None` until the head is complete.
pub(crate) fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, Error> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut slots);
        let len = match parsed.parse(buf) {
            Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => return Err(Error::too_large_head(TOO_LARGE)),
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(Error::too_large_head(TOO_LARGE)),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(Error::too_large_head("more than 100 headers")),
            Err(_) => return Err(Error::invalid("malformed head")),
        };
        let code = parsed.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| Error::invalid("bad status code"))?;
        if status.is_informational() {
            if code == 101 {
                return Err(Error::invalid("protocol switch (lb does not forward upgrades)"));
            }
            buf.advance(len);
            continue;
        }
        let http10 = parsed.version == Some(0);
        // Names and values point into the head, which becomes shared bytes: values are not
        // copied, and well-known names are not even allocated.
        let base = buf.as_ptr() as usize;
        let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
        let count = parsed.headers.len();
        for (span, h) in spans.iter_mut().zip(parsed.headers.iter()) {
            let name = h.name.as_ptr() as usize - base;
            let value = h.value.as_ptr() as usize - base;
            *span = (name as u32, (name + h.name.len()) as u32, value as u32, (value + h.value.len()) as u32);
        }
        let head = buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(count);
        // Which of the headers that frame the message are there, noted on the way instead of
        // looked up (hashed) afterwards.
        let mut seen = Seen::default();
        for &(name_start, name_end, start, end) in &spans[..count] {
            let name = HeaderName::from_bytes(&head[name_start as usize..name_end as usize])
                .map_err(|_| Error::invalid("bad header name"))?;
            let value = HeaderValue::from_maybe_shared(head.slice(start as usize..end as usize))
                .map_err(|_| Error::invalid("bad header value"))?;
            seen.note(&name);
            headers.append(name, value);
        }
        let framing = framing(&headers, &seen, status, head_request)?;
        let close = seen.connection && forwarded::connection_close(&headers);
        let mut keep_alive = !http10 && !close && framing != Framing::UntilClose;
        if seen.transfer_encoding && seen.content_length {
            // The length is the chunked framing's, and lb may re-frame the body: the
            // Content-Length must not reach the client, and a backend that sends both is not
            // trusted with the connection afterwards (RFC 9112 section 6.3).
            headers.remove(header::CONTENT_LENGTH);
            keep_alive = false;
        }
        return Ok(Some(Head { status, headers, framing, keep_alive }));
    }
}

/// The headers of a response head that decide its framing and the connection's fate.
#[derive(Default)]
struct Seen {
    connection: bool,
    content_length: bool,
    transfer_encoding: bool,
}

impl Seen {
    fn note(&mut self, name: &HeaderName) {
        // Standard names compare by their tag: cheap.
        if name == header::CONNECTION {
            self.connection = true;
        } else if name == header::CONTENT_LENGTH {
            self.content_length = true;
        } else if name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
        }
    }
}

fn framing(headers: &HeaderMap, seen: &Seen, status: StatusCode, head_request: bool) -> Result<Framing, Error> {
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Length(0));
    }
    if seen.transfer_encoding {
        if !transfer_coding_ok(headers) {
            return Err(Error::invalid("a transfer coding lb does not decode"));
        }
        return Ok(Framing::Chunked);
    }
    if !seen.content_length {
        return Ok(Framing::UntilClose);
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value.to_str().map_err(|_| Error::invalid("bad content-length"))?.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::invalid("bad content-length"));
            }
            let n: u64 = part.parse().map_err(|_| Error::invalid("bad content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::invalid("conflicting content-length values"));
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// Is the response's `Transfer-Encoding` (if any) the one coding lb decodes, a single
/// `chunked`? Anything else (`gzip`, `gzip, chunked`, `chunked, chunked`) would reach the client
/// with lb's framing instead of the backend's coding.
pub(super) fn transfer_coding_ok(headers: &HeaderMap) -> bool {
    let mut codings = forwarded::tokens(headers, &header::TRANSFER_ENCODING);
    match codings.next() {
        None => !headers.contains_key(header::TRANSFER_ENCODING),
        Some(first) => first.eq_ignore_ascii_case("chunked") && codings.next().is_none(),
    }
}

#[cfg(test)]
mod tests {
    use http::uri::{Authority, PathAndQuery};
    use http::Method;

    use super::*;
    use crate::upstream::{AttemptBody, ErrorKind};

    fn head(text: &str, head_request: bool) -> Result<Option<Head>, Error> {
        parse_head(&mut BytesMut::from(text), head_request)
    }

    fn invalid(text: &str) -> bool {
        matches!(head(text, false), Err(e) if e.kind() == ErrorKind::Invalid)
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let framing = |text: &str, head_request| head(text, head_request).unwrap().unwrap().framing;
        assert_eq!(framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false), Framing::Length(5));
        assert_eq!(framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true), Framing::Length(0));
        assert_eq!(framing("HTTP/1.1 204 No Content\r\n\r\n", false), Framing::Length(0));
        assert_eq!(framing("HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n", false), Framing::Length(0));
        let both = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(framing(both, false), Framing::Chunked, "transfer-encoding wins over content-length");
        assert!(!head(both, false).unwrap().unwrap().headers.contains_key(header::CONTENT_LENGTH));
        assert_eq!(framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n", false), Framing::Chunked);
        for codings in ["gzip", "gzip, chunked", "chunked, chunked", "chunked, gzip", "", ","] {
            let text = format!("HTTP/1.1 200 OK\r\ntransfer-encoding: {codings}\r\n\r\n");
            assert!(invalid(&text), "transfer-encoding: {codings}");
        }
        let split = "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(invalid(split), "codings over two headers");
        assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n", false), Framing::UntilClose);
        assert_eq!(framing("HTTP/1.1 200 OK\r\ncontent-length: 7, 7\r\n\r\n", false), Framing::Length(7));
        assert!(invalid("HTTP/1.1 200 OK\r\ncontent-length: 7, 8\r\n\r\n"));
        assert!(invalid("HTTP/1.1 200 OK\r\ncontent-length: +7\r\n\r\n"));
    }

    #[test]
    fn keep_alive_unless_closed_or_old() {
        let keep = |text: &str| head(text, false).unwrap().unwrap().keep_alive;
        assert!(keep("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(!keep("HTTP/1.1 200 OK\r\nconnection: Close\r\ncontent-length: 0\r\n\r\n"));
        assert!(!keep("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(!keep("HTTP/1.1 200 OK\r\n\r\n"), "a body read until close ends the connection");
    }

    #[test]
    fn interim_responses_are_skipped_and_the_head_is_shared() {
        let mut buf =
            BytesMut::from("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nX-A: 1\r\nx-b: two\r\n\r\nbody");
        let created = parse_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(created.status, StatusCode::CREATED);
        assert_eq!(created.headers["x-a"], "1");
        assert_eq!(created.headers["x-b"], "two");
        assert_eq!(&buf[..], b"body", "the body stays in the buffer");
        assert!(head("HTTP/1.1 200 OK\r\ncontent-le", false).unwrap().is_none(), "partial");
        assert!(invalid("HTTP/1.1 101 Switching\r\n\r\n"));
        assert!(invalid("HTTP/9 200 OK\r\n\r\n"));
    }

    #[test]
    fn requests_are_encoded_with_the_held_body() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        headers.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        let body = Bytes::from_static(b"abc");
        let req = Request {
            method: &Method::PUT,
            target: &PathAndQuery::from_static("/p?q=1"),
            headers: &headers,
            authority: &Authority::from_static("10.0.0.1:80"),
            body: &AttemptBody::Held(Some(body.clone())),
        };
        let mut out = Vec::new();
        encode(&mut out, &req, Some(&body));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "PUT /p?q=1 HTTP/1.1\r\nhost: 10.0.0.1:80\r\nx-a: 1\r\ncontent-length: 3\r\n\r\nabc"
        );
    }
}
