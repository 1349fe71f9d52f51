//! The response body, from either client: hyper's, or lb's own, read from its connection as the
//! client takes it (`Content-Length`, chunked or until-close framing), the connection given back
//! to the idle pool the moment the body is read to its end.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::Response;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use super::codec::{Framing, Head};
use super::conn::Conn;
use super::idle::checkin;

/// Largest chunk-size line, and largest trailer section, of a chunked body.
const MAX_CHUNK_LINE: usize = 4096;
/// How much a body read asks the socket for at once.
const READ_SIZE: usize = 16 * 1024;

/// A backend's response body, from either client.
pub struct ResponseBody(Inner);

enum Inner {
    Own(Framed),
    Hyper(Incoming),
}

impl ResponseBody {
    pub(super) fn hyper(body: Incoming) -> Self {
        ResponseBody(Inner::Hyper(body))
    }

    /// Did the whole body come with the head (nothing more to wait for from the backend)?
    pub fn is_buffered(&self) -> bool {
        match &self.0 {
            Inner::Own(body) => body.conn.is_none(),
            Inner::Hyper(body) => http_body::Body::is_end_stream(body),
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.get_mut().0 {
            Inner::Own(body) => Pin::new(body).poll_frame(cx),
            Inner::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(|e| BodyError(Broken::Hyper(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Own(body) => body.is_end_stream(),
            Inner::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Own(body) => body.size_hint(),
            Inner::Hyper(body) => body.size_hint(),
        }
    }
}

/// The body failed after the head: the backend closed early or broke the framing.
#[derive(Debug)]
pub struct BodyError(Broken);

#[derive(Debug)]
enum Broken {
    /// Found by lb's own client.
    Framing(&'static str),
    Hyper(hyper::Error),
}

impl BodyError {
    fn framing(why: &'static str) -> Self {
        BodyError(Broken::Framing(why))
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Broken::Framing(why) => write!(f, "backend response body: {why}"),
            Broken::Hyper(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            Broken::Framing(_) => None,
            // hyper's error stands for itself here: its Display above, its source below.
            Broken::Hyper(e) => e.source(),
        }
    }
}

/// The response to a parsed head, its body read from `conn`.
pub(super) fn respond(mut conn: Conn, head: Head) -> Response<ResponseBody> {
    let body = match head.framing {
        // The whole body is often in the first read already: the connection goes back now.
        Framing::Length(n) if conn.read.len() as u64 >= n => {
            let whole = conn.read.split_to(n as usize).freeze();
            if head.keep_alive && conn.read.is_empty() {
                checkin(conn);
            }
            Framed::whole(whole)
        }
        framing => Framed { conn: Some(conn), state: State::of(framing), keep_alive: head.keep_alive, whole: None },
    };
    let mut response = Response::new(ResponseBody(Inner::Own(body)));
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    response
}

/// A response body read by lb's own client from its connection.
struct Framed {
    conn: Option<Conn>,
    state: State,
    keep_alive: bool,
    /// A body that was read whole with the head.
    whole: Option<Bytes>,
}

/// Where a body read by lb's own client is: what is left of it, as its framing counts.
pub(crate) enum State {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this much left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one; how many bytes so far.
    Trailers(usize),
}

impl Framed {
    fn whole(body: Bytes) -> Self {
        let whole = (!body.is_empty()).then_some(body);
        Framed { conn: None, state: State::Done, keep_alive: false, whole }
    }

    /// The body is read to its end: the connection goes back to the pool if it may.
    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(conn) = self.conn.take() {
            if self.keep_alive && conn.read.is_empty() {
                checkin(conn);
            }
        }
    }

    /// Reads more from the connection; `Ok(0)` at its end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(conn) = self.conn.as_mut() else { return Poll::Ready(Ok(0)) };
        conn.read.reserve(READ_SIZE);
        loop {
            ready!(conn.stream.poll_read_ready(cx))?;
            match conn.stream.try_read_buf(&mut conn.read) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    /// The next frame from what is buffered: `Some(frame)`, `None` at the end; `Err(())` when
    /// more must be read first.
    #[allow(clippy::result_unit_err)]
    fn next_buffered(&mut self) -> Result<Option<Result<Frame<Bytes>, BodyError>>, ()> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(None);
        };
        let was_done = matches!(self.state, State::Done);
        let next = self.state.next(&mut conn.read);
        if !was_done && matches!(self.state, State::Done) {
            self.finish();
        }
        next
    }
}

impl State {
    /// The start of a body framed so.
    pub(crate) fn of(framing: Framing) -> State {
        match framing {
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Size),
            Framing::UntilClose => State::UntilClose,
        }
    }

    /// The next frame of a body framed so, decoded off the front of `buf`, as
    /// [`Framed::next_buffered`] answers; the state is `Done` once the body has ended. No I/O,
    /// so the fuzz target `upstream_response` runs it on bytes alone.
    #[allow(clippy::result_unit_err)]
    pub(crate) fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Result<Frame<Bytes>, BodyError>>, ()> {
        loop {
            match self {
                State::Done => return Ok(None),
                State::Length(0) => {
                    *self = State::Done;
                    return Ok(None);
                }
                State::Length(left) => {
                    if buf.is_empty() {
                        return Err(());
                    }
                    let n = (*left).min(buf.len() as u64);
                    *left -= n;
                    let data = buf.split_to(n as usize).freeze();
                    if *left == 0 {
                        *self = State::Done;
                    }
                    return Ok(Some(Ok(Frame::data(data))));
                }
                State::UntilClose => {
                    if buf.is_empty() {
                        return Err(());
                    }
                    return Ok(Some(Ok(Frame::data(buf.split().freeze()))));
                }
                State::Chunked(chunk) => match *chunk {
                    Chunk::Size => {
                        let Some(end) = find_crlf(buf) else {
                            return if buf.len() > MAX_CHUNK_LINE {
                                Ok(Some(Err(BodyError::framing("chunk size line too long"))))
                            } else {
                                Err(())
                            };
                        };
                        let Some(size) = chunk_size(&buf[..end]) else {
                            return Ok(Some(Err(BodyError::framing("bad chunk size"))));
                        };
                        buf.advance(end + 2);
                        *chunk = if size == 0 { Chunk::Trailers(0) } else { Chunk::Data(size) };
                    }
                    Chunk::Data(left) => {
                        if buf.is_empty() {
                            return Err(());
                        }
                        let n = left.min(buf.len() as u64);
                        let data = buf.split_to(n as usize).freeze();
                        *chunk = if n == left { Chunk::DataEnd } else { Chunk::Data(left - n) };
                        return Ok(Some(Ok(Frame::data(data))));
                    }
                    Chunk::DataEnd => {
                        if buf.len() < 2 {
                            return Err(());
                        }
                        if &buf[..2] != b"\r\n" {
                            return Ok(Some(Err(BodyError::framing("no CRLF after chunk data"))));
                        }
                        buf.advance(2);
                        *chunk = Chunk::Size;
                    }
                    Chunk::Trailers(seen) => {
                        // Trailers are dropped: lb does not forward them.
                        let Some(end) = find_crlf(buf) else {
                            return if seen + buf.len() > MAX_CHUNK_LINE {
                                Ok(Some(Err(BodyError::framing("trailers too long"))))
                            } else {
                                Err(())
                            };
                        };
                        if seen + end + 2 > MAX_CHUNK_LINE {
                            return Ok(Some(Err(BodyError::framing("trailers too long"))));
                        }
                        buf.advance(end + 2);
                        if end == 0 {
                            *self = State::Done;
                            return Ok(None);
                        }
                        *chunk = Chunk::Trailers(seen + end + 2);
                    }
                },
            }
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// The size on a chunk-size line (hex digits, then optional whitespace and extensions).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return None;
    }
    let rest = &line[digits..];
    let rest_ok = rest.iter().find(|&&b| b != b' ' && b != b'\t').is_none_or(|&b| b == b';');
    // Extensions are ignored, but must be text: no CR, LF or other control bytes.
    if !rest_ok || rest.iter().any(|&b| b.is_ascii_control() && b != b'\t') {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&line[..digits]).ok()?, 16).ok()
}

impl http_body::Body for Framed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(whole) = this.whole.take() {
            return Poll::Ready(Some(Ok(Frame::data(whole))));
        }
        loop {
            match this.next_buffered() {
                Ok(frame) => return Poll::Ready(frame),
                Err(()) => match ready!(this.poll_fill(cx)) {
                    Ok(0) => {
                        let ended = matches!(this.state, State::UntilClose);
                        this.state = State::Done;
                        this.conn = None;
                        return Poll::Ready((!ended).then_some(Err(BodyError::framing("connection closed early"))));
                    }
                    Ok(_) => {}
                    Err(_) => {
                        this.state = State::Done;
                        this.conn = None;
                        return Poll::Ready(Some(Err(BodyError::framing("connection failed"))));
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.whole.is_none() && matches!(self.state, State::Done | State::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.whole, &self.state) {
            (Some(whole), _) => SizeHint::with_exact(whole.len() as u64),
            (None, State::Length(n)) => SizeHint::with_exact(*n),
            (None, State::Done) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"1a"), Some(26));
        assert_eq!(chunk_size(b"FF;name=value"), Some(255));
        assert_eq!(chunk_size(b"0 ; x"), Some(0));
        assert_eq!(chunk_size(b""), None);
        assert_eq!(chunk_size(b"-1"), None);
        assert_eq!(chunk_size(b"12 34"), None);
        assert_eq!(chunk_size(b"1000000000000000"), None, "more than 15 hex digits");
    }
}
