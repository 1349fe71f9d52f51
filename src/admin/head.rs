//! The admin API reads each request head itself before hyper sees it, so that a head hyper
//! would refuse with an empty `400` or `431` (a garbage line, a NUL in a header, bare LF line
//! ends, a head too large, a slow one) gets lb's `{"error": ...}` like every other refusal.
//!
//! A head that passes is handed to hyper with the bytes read so far put back in front
//! ([`Rewind`]). Only the first request of a connection is read here, so the admin API serves
//! one request per connection (hyper answers it with `Connection: close`): a handshake per
//! admin call is nothing beside the store's fsyncs, and it needs no parser that follows bodies
//! to find the next head.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Largest request head (request line and headers) the admin API reads.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most headers in a request, as hyper's default.
const MAX_HEADERS: usize = 100;
/// How long a client may take to send its request head, from accept.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refused client's further bytes are read (and dropped) after the answer, so that
/// closing with unread input (which sends a reset) does not destroy the answer before the
/// client reads it; and how many at most.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// What reading a request head came to.
pub enum Head {
    /// A whole head that hyper will accept: every byte read so far.
    Request(Bytes),
    /// A head that is refused with this status and message.
    Refused(StatusCode, String),
    /// The client closed or sent nothing in time: there is nobody to answer.
    Gone,
}

/// Reads the first request head from `io`, within [`HEAD_TIMEOUT`].
pub async fn read(io: &mut (impl AsyncRead + Unpin)) -> Head {
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    let mut buf = Vec::with_capacity(4096);
    loop {
        let before = buf.len();
        let read = tokio::time::timeout_at(deadline, io.read_buf(&mut buf)).await;
        match read {
            Err(_) if buf.is_empty() => return Head::Gone,
            Err(_) => {
                return Head::Refused(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the request head did not arrive within {}s", HEAD_TIMEOUT.as_secs()),
                )
            }
            Ok(Err(_)) => return Head::Gone,
            Ok(Ok(0)) if buf.is_empty() => return Head::Gone,
            Ok(Ok(0)) => {
                return Head::Refused(
                    StatusCode::BAD_REQUEST,
                    "the connection ended in the middle of the request head".into(),
                )
            }
            Ok(Ok(_)) => {}
        }
        // A head can only end, and a line only be judged, at a line feed: a client that
        // trickles bytes costs one scan of what it sent, not one per read.
        if !buf[before..].contains(&b'\n') {
            if buf.len() >= MAX_HEAD {
                return Head::Refused(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    format!("request head larger than {MAX_HEAD} bytes"),
                );
            }
            continue;
        }
        match check(&buf) {
            Ok(Some(_)) => return Head::Request(buf.into()),
            Ok(None) => {}
            Err((status, why)) => return Head::Refused(status, why),
        }
    }
}

/// Checks the head at the start of `buf`: `Some(length)` once it is whole and acceptable,
/// `None` while it may still become so, or why it is refused.
pub fn check(buf: &[u8]) -> Result<Option<usize>, (StatusCode, String)> {
    let too_large =
        || (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, format!("request head larger than {MAX_HEAD} bytes"));
    let bad = |why: &str| (StatusCode::BAD_REQUEST, format!("malformed request: {why}"));
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => return Err(too_large()),
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(too_large()),
        Ok(httparse::Status::Partial) => {
            // httparse waits for a line end before it judges a line: a bare LF is refused as
            // soon as it arrives rather than at the end of the head.
            return if bare_lf(buf) { Err(bad("a line ends in LF without CR")) } else { Ok(None) };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err((StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, format!("more than {MAX_HEADERS} headers")))
        }
        Err(httparse::Error::Version) => return Err(bad("the admin API speaks HTTP/1.0 and HTTP/1.1 only")),
        Err(e) => return Err(bad(&e.to_string())),
    };
    if bare_lf(&buf[..len]) {
        return Err(bad("a line ends in LF without CR"));
    }
    let target = request.path.unwrap_or_default();
    if axum::http::Uri::try_from(target).is_err() {
        return Err(bad(&format!("request target {:?} is not a URI", target.escape_debug().to_string())));
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            // One number, once: as the data port's framing check (`conn::framing`) and hyper
            // read it (hyper refuses `2, 2`, with an empty 400 this module exists to replace).
            let value = header.value.trim_ascii();
            let parsed = (!value.is_empty() && value.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(value).ok()?.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| bad("Content-Length is not a number"))?;
            if length.is_some() {
                return Err(bad("Content-Length twice"));
            }
            length = Some(parsed);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || !header.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(bad("the admin API takes Transfer-Encoding: chunked only"));
            }
            chunked = true;
        }
    }
    if chunked && length.is_some() {
        return Err(bad("both Content-Length and Transfer-Encoding"));
    }
    if chunked && request.version != Some(1) {
        return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
    }
    Ok(Some(len))
}

/// Does a line of `head` end in LF alone?
fn bare_lf(head: &[u8]) -> bool {
    head.iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// Answers a refused head with `{"error": why}` and closes the connection.
pub async fn refuse(io: &mut (impl AsyncRead + AsyncWrite + Unpin), status: StatusCode, why: &str) {
    let body = serde_json::to_vec(&lb_api::ErrorJson { error: why.to_owned() }).expect("an error serializes");
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    // One write: a second small one could wait for the first one's ACK (Nagle).
    let answer = [head.as_bytes(), &body].concat();
    let answered = async {
        io.write_all(&answer).await?;
        io.shutdown().await
    };
    if tokio::time::timeout(LINGER, answered).await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = [0; 8192];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// A connection whose first bytes were read already: they are read again first.
pub struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Rewind { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_hyper_would_refuse_are_refused_with_a_reason() {
        let status = |head: &[u8]| check(head).map_err(|(s, _)| s.as_u16());
        let whole = b"GET /v1/pools HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(status(whole), Ok(Some(whole.len())));
        assert_eq!(status(b"GET /v1/pools HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        assert_eq!(status(b"garbage\r\n\r\n"), Err(400));
        assert_eq!(status(b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"), Err(400));
        assert_eq!(status(b"GET / HTTP/1.1\nHost: a\n\n"), Err(400));
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\n"), Err(400), "refused before the head ends");
        assert_eq!(status(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Err(400));
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"), Err(400));
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), Err(400));
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\n"), Err(400));
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n"), Err(400));
        assert_eq!(status(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), Err(400));
        assert_eq!(status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n"), Err(400));
        let mut large = b"GET / HTTP/1.1\r\nX: ".to_vec();
        large.resize(MAX_HEAD, b'a');
        assert_eq!(status(&large), Err(431));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X{i}: a\r\n")).collect();
        assert_eq!(status(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()), Err(431));
    }
}
