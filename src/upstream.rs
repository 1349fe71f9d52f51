//! lb's own HTTP/1.1 client to backends, for requests whose body lb holds whole (no body, or a
//! small one already read): the common case of a load balancer.
//!
//! hyper's pooled client sends each request through a channel to a separate task that owns the
//! connection, and answers through another: two task wake-ups, a pool lock and a hashed pool key
//! per request. Here the request's own task writes the request, reads the response head, and
//! the response body reads straight from the socket as the client's connection asks for it.
//! Idle connections wait in a per-thread pool (workers are threads with their own runtimes, so
//! a connection never changes thread and the pool needs no lock); the response gives its
//! connection back the moment its body is read to the end, which for a small body is before
//! lb even starts writing the response to the client.
//!
//! Requests whose body is still streaming in, or larger than [`MAX_BODY`], go through hyper's
//! client instead ([`crate::proxy`]), which reads the response while the request body is still
//! being sent.
//!
//! Framing follows RFC 9112: a response to `HEAD`, a `1xx` (skipped, except `101`), `204` and
//! `304` have no body; then `Transfer-Encoding` (chunked last, else read until close), then
//! `Content-Length` (conflicting values are an error), else read until close. A connection goes
//! back to the pool only after a complete, keep-alive response with nothing after it.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::{Frame, SizeHint};
use rustc_hash::FxHashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::forwarded;

/// Largest response head lb reads from a backend (about what hyper's client allows).
const MAX_HEAD: usize = 400 * 1024;
/// Largest request body written in one piece with the head.
const INLINE_BODY: usize = 8 * 1024;
/// Largest held body lb's client sends; it writes the request whole before reading the
/// response, so larger ones go through hyper's client, which reads while it writes.
pub const MAX_BODY: usize = 64 * 1024;
/// Buffers larger than this are not kept with an idle connection.
const KEEP_BUFFER: usize = 16 * 1024;
/// Why a head over [`MAX_HEAD`] is refused.
const TOO_LARGE: &str = "head larger than 400 KiB";
/// Most headers in a response head (hyper's limit too).
const MAX_HEADERS: usize = 100;
/// Largest chunk-size line, and largest trailer section, of a chunked body.
const MAX_CHUNK_LINE: usize = 4096;
/// How much a body read asks the socket for at once.
const READ_SIZE: usize = 16 * 1024;
/// Idle connections kept per backend and worker thread.
const MAX_IDLE_PER_BACKEND: usize = 1024;
/// How often each worker drops idle connections past their idle timeout; also the precision
/// of that timeout.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Why an exchange with a backend failed.
#[derive(Debug)]
pub enum Error {
    /// No connection: refused, unreachable, or not within the connect timeout.
    Connect(io::Error),
    /// The connection failed before the whole response head arrived.
    Io(io::Error),
    /// The backend closed the connection before the whole response head arrived.
    Closed,
    /// The response head is not HTTP/1.x lb can forward.
    Invalid(&'static str),
}

impl Error {
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect(_))
    }

    /// The backend answered, with something lb cannot forward.
    pub fn is_invalid(&self) -> bool {
        matches!(self, Error::Invalid(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect(e) | Error::Io(e) => write!(f, "{e}"),
            Error::Closed => f.write_str("connection closed before the response"),
            Error::Invalid(why) => write!(f, "invalid response: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// A connection to a backend, with what lb has read from it and not yet used.
struct Conn {
    target: Target,
    stream: TcpStream,
    read: BytesMut,
    write: Vec<u8>,
}

/// A request ready to go: method and target, headers, and the whole body.
pub struct Request<'a> {
    pub method: &'a Method,
    /// Origin-form target: path and query.
    pub target: &'a str,
    pub headers: &'a HeaderMap,
    /// `Host` for a request that has none (the backend's `ip:port`).
    pub default_host: &'a str,
    pub body: Option<&'a Bytes>,
}

/// Where and how to connect.
#[derive(Clone, Copy)]
pub struct Target {
    pub addr: SocketAddr,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Sends `req` to `target` over an idle pooled connection or a new one, and answers with the
/// response head; its body streams from the connection.
///
/// A pooled connection the backend closed while it sat idle fails before any byte of a
/// response (the write fails, or the read meets EOF or a reset). An idempotent request is
/// then sent once more, on a new connection, as Go's transport does, without it counting as a
/// failure of the backend; any other failure is the caller's to judge (retries, health).
pub async fn send(target: Target, req: Request<'_>) -> Result<Response<ResponseBody>, Error> {
    let idempotent = crate::retry::is_idempotent(req.method);
    let mut pooled = checkout(target.addr, !idempotent);
    loop {
        let reused = pooled.is_some();
        let mut conn = match pooled.take() {
            Some(conn) => conn,
            None => connect(&target).await?,
        };
        conn.target = target;
        encode(&mut conn.write, &req);
        match exchange(&mut conn, &req).await {
            Ok(head) => return Ok(respond(conn, head)),
            Err(failed) if reused && idempotent && failed.stale => continue,
            Err(failed) => return Err(failed.error),
        }
    }
}

async fn connect(target: &Target) -> Result<Conn, Error> {
    let stream = match tokio::time::timeout(target.connect_timeout, TcpStream::connect(target.addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(Error::Connect(e)),
        Err(_) => {
            let why = format!("connect timed out after {:?}", target.connect_timeout);
            return Err(Error::Connect(io::Error::new(io::ErrorKind::TimedOut, why)));
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(Conn { target: *target, stream, read: BytesMut::with_capacity(4096), write: Vec::with_capacity(512) })
}

/// Writes the request head (and body) in HTTP/1.1 wire form.
fn encode(out: &mut Vec<u8>, req: &Request<'_>) {
    out.clear();
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !req.headers.contains_key(header::HOST) {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(req.default_host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in req.headers {
        // lb frames the body itself, and has already answered any `Expect: 100-continue`.
        if req.body.is_some() && (name == header::CONTENT_LENGTH || name == header::EXPECT) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(body) = req.body {
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
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// A failed exchange; `stale`: it failed the way a connection the backend had already closed
/// fails (the write failed, or EOF or a reset came before any byte of a response).
struct Failed {
    error: Error,
    stale: bool,
}

async fn exchange(conn: &mut Conn, req: &Request<'_>) -> Result<Head, Failed> {
    let written = async {
        conn.stream.write_all(&conn.write).await?;
        match req.body {
            Some(body) if body.len() > INLINE_BODY => conn.stream.write_all(body).await,
            _ => Ok(()),
        }
    };
    if let Err(e) = written.await {
        return Err(Failed { error: Error::Io(e), stale: true });
    }
    let head_request = *req.method == Method::HEAD;
    loop {
        match parse_head(&mut conn.read, head_request) {
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {}
            Err(error) => return Err(Failed { error, stale: false }),
        }
        conn.read.reserve(4096);
        match conn.stream.read_buf(&mut conn.read).await {
            Ok(0) if conn.read.is_empty() => return Err(Failed { error: Error::Closed, stale: true }),
            Ok(0) => {
                let error = Error::Invalid("connection closed in the middle of the head");
                return Err(Failed { error, stale: false });
            }
            Ok(_) => {}
            Err(e) => {
                let stale = conn.read.is_empty() && e.kind() == io::ErrorKind::ConnectionReset;
                return Err(Failed { error: Error::Io(e), stale });
            }
        }
    }
}

/// Parses a complete response head off the front of `buf`, skipping interim `1xx` responses;
/// `None` until the head is complete.
fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, Error> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut slots);
        let len = match parsed.parse(buf) {
            Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => return Err(Error::Invalid(TOO_LARGE)),
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(Error::Invalid(TOO_LARGE)),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(Error::Invalid("more than 100 headers")),
            Err(_) => return Err(Error::Invalid("malformed head")),
        };
        let code = parsed.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| Error::Invalid("bad status code"))?;
        if status.is_informational() {
            if code == 101 {
                return Err(Error::Invalid("protocol switch (lb does not forward upgrades)"));
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
                .map_err(|_| Error::Invalid("bad header name"))?;
            let value = HeaderValue::from_maybe_shared(head.slice(start as usize..end as usize))
                .map_err(|_| Error::Invalid("bad header value"))?;
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
        let last = headers.get_all(header::TRANSFER_ENCODING).iter().next_back();
        let chunked = last
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        return Ok(if chunked { Framing::Chunked } else { Framing::UntilClose });
    }
    if !seen.content_length {
        return Ok(Framing::UntilClose);
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value.to_str().map_err(|_| Error::Invalid("bad content-length"))?.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::Invalid("bad content-length"));
            }
            let n: u64 = part.parse().map_err(|_| Error::Invalid("bad content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::Invalid("conflicting content-length values"));
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

fn respond(mut conn: Conn, head: Head) -> Response<ResponseBody> {
    let body = match head.framing {
        // The whole body is often in the first read already: the connection goes back now.
        Framing::Length(n) if conn.read.len() as u64 >= n => {
            let whole = conn.read.split_to(n as usize).freeze();
            if head.keep_alive && conn.read.is_empty() {
                checkin(conn);
            }
            ResponseBody::whole(whole)
        }
        framing => {
            let state = match framing {
                Framing::Length(n) => State::Length(n),
                Framing::Chunked => State::Chunked(Chunk::Size),
                Framing::UntilClose => State::UntilClose,
            };
            ResponseBody { conn: Some(conn), state, keep_alive: head.keep_alive, whole: None }
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    response
}

/// A backend's response body, read from its connection as the client takes it.
pub struct ResponseBody {
    conn: Option<Conn>,
    state: State,
    keep_alive: bool,
    /// A body that was read whole with the head.
    whole: Option<Bytes>,
}

enum State {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this much left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one; how many bytes so far.
    Trailers(usize),
}

/// The body failed after the head: the backend closed early or broke the framing.
#[derive(Debug)]
pub struct BodyError(&'static str);

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "backend response body: {}", self.0)
    }
}

impl std::error::Error for BodyError {}

impl ResponseBody {
    fn whole(body: Bytes) -> Self {
        let whole = (!body.is_empty()).then_some(body);
        ResponseBody { conn: None, state: State::Done, keep_alive: false, whole }
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
        let buf = &mut conn.read;
        loop {
            match &mut self.state {
                State::Done => return Ok(None),
                State::Length(0) => {
                    self.finish();
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
                        self.finish();
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
                                Ok(Some(Err(BodyError("chunk size line too long"))))
                            } else {
                                Err(())
                            };
                        };
                        let Some(size) = chunk_size(&buf[..end]) else {
                            return Ok(Some(Err(BodyError("bad chunk size"))));
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
                            return Ok(Some(Err(BodyError("no CRLF after chunk data"))));
                        }
                        buf.advance(2);
                        *chunk = Chunk::Size;
                    }
                    Chunk::Trailers(seen) => {
                        // Trailers are dropped: lb does not forward them.
                        let Some(end) = find_crlf(buf) else {
                            return if seen + buf.len() > MAX_CHUNK_LINE {
                                Ok(Some(Err(BodyError("trailers too long"))))
                            } else {
                                Err(())
                            };
                        };
                        if seen + end + 2 > MAX_CHUNK_LINE {
                            return Ok(Some(Err(BodyError("trailers too long"))));
                        }
                        buf.advance(end + 2);
                        if end == 0 {
                            self.finish();
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

impl http_body::Body for ResponseBody {
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
                        return Poll::Ready((!ended).then_some(Err(BodyError("connection closed early"))));
                    }
                    Ok(_) => {}
                    Err(_) => {
                        this.state = State::Done;
                        this.conn = None;
                        return Poll::Ready(Some(Err(BodyError("connection failed"))));
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

// ---- the per-thread pool of idle connections ----

struct Idle {
    conn: Conn,
    expires: Instant,
}

/// Whether this thread pools connections: only a data-plane worker does (see [`install`]),
/// while its runtime runs.
#[derive(Clone, Copy, PartialEq)]
enum Pooling {
    No,
    /// The worker's sweeper is running; the time of its last sweep, so that idle deadlines need
    /// no clock read per request.
    Yes(Instant),
}

thread_local! {
    /// Backend addresses come from the admin, not from clients, so there is no hash flooding to
    /// defend against, and SipHash (twice per request, for checkout and checkin) was 2% of lb's
    /// instructions per proxied request: Fx's multiply-rotate is enough.
    static IDLE: RefCell<FxHashMap<SocketAddr, Vec<Idle>>> = RefCell::new(FxHashMap::default());
    static POOLING: Cell<Pooling> = const { Cell::new(Pooling::No) };
}

/// Lets this thread keep idle connections to backends, with a sweeper on the current runtime
/// that closes them as their idle timeout passes. A data-plane worker calls it on its
/// current-thread runtime, where every connection it opens stays on this thread; the pool goes
/// when that runtime shuts down. Elsewhere (a multi-threaded runtime) it does nothing, and
/// each request gets a new connection.
pub fn install() {
    POOLING.with(|pooling| {
        if pooling.get() != Pooling::No {
            return;
        }
        if let Some(runtime) = crate::timer::current_thread_runtime() {
            runtime.spawn(sweep(SweeperGuard));
            pooling.set(Pooling::Yes(Instant::now()));
        }
    })
}

fn pooling() -> Pooling {
    POOLING.with(Cell::get)
}

/// The most recently used idle connection to `addr` that is still open. `careful`: make sure
/// with a system call that the backend has not closed it (for requests that cannot be sent
/// twice); otherwise trust the readiness the runtime last saw.
fn checkout(addr: SocketAddr, careful: bool) -> Option<Conn> {
    let Pooling::Yes(now) = pooling() else { return None };
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        while let Some(Idle { mut conn, expires }) = list.pop() {
            if expires <= now {
                continue;
            }
            // A FIN (or anything else) the runtime has seen makes the connection readable;
            // this is a system call only when readiness is set. The runtime may not have
            // polled for events since the backend closed: `careful` covers that.
            match conn.stream.try_read_buf(&mut conn.read) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                _ => continue,
            }
            if careful && !still_open(&conn.stream) {
                continue;
            }
            return Some(conn);
        }
        None
    })
}

/// Asks the kernel whether the peer has closed or sent anything (`MSG_PEEK`, non-blocking).
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::uninit()];
    let peeked = socket2::SockRef::from(stream).recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT);
    matches!(peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

fn checkin(mut conn: Conn) {
    let Pooling::Yes(now) = pooling() else { return };
    // An idle connection keeps small buffers, not the largest message it ever carried.
    if conn.write.capacity() > KEEP_BUFFER {
        conn.write = Vec::with_capacity(512);
    }
    if conn.read.capacity() > KEEP_BUFFER {
        conn.read = BytesMut::with_capacity(4096);
    }
    // An idle timeout too large to add means "as long as the pool holds it".
    let expires = now.checked_add(conn.target.idle_timeout).unwrap_or(now + Duration::from_secs(1 << 30));
    let _ = IDLE.try_with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(conn.target.addr).or_default();
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push(Idle { conn, expires });
        }
    });
}

/// Closes this thread's idle connections as their idle timeout passes (to within one sweep),
/// and keeps the thread's coarse clock.
async fn sweep(_guard: SweeperGuard) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now = Instant::now();
        POOLING.with(|p| p.set(Pooling::Yes(now)));
        IDLE.with(|idle| {
            idle.borrow_mut().retain(|_, list| {
                list.retain(|i| i.expires > now);
                !list.is_empty()
            })
        });
    }
}

/// Dropped with the sweeper when its runtime shuts down: the pooled connections belong to that
/// runtime and go with it, and a later runtime on this thread starts afresh.
struct SweeperGuard;

impl Drop for SweeperGuard {
    fn drop(&mut self) {
        let _ = POOLING.try_with(|p| p.set(Pooling::No));
        let _ = IDLE.try_with(RefCell::take);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_addresses_spread_over_the_low_bits_of_their_hash() {
        use std::hash::BuildHasher;
        let hasher = rustc_hash::FxBuildHasher;
        let mut buckets = std::collections::HashSet::new();
        for i in 0..=255u8 {
            let addr = SocketAddr::from(([10, 0, 0, i], 8080));
            buckets.insert(hasher.hash_one(addr) & 1023);
        }
        assert!(buckets.len() > 200, "256 addresses of a /24 in {} of 1024 buckets", buckets.len());
        let mut ports = std::collections::HashSet::new();
        for port in 8000..8256u16 {
            ports.insert(hasher.hash_one(SocketAddr::from(([127, 0, 0, 1], port))) & 1023);
        }
        assert!(ports.len() > 200, "256 ports of one host in {} of 1024 buckets", ports.len());
    }

    fn head(text: &str, head_request: bool) -> Result<Option<Head>, Error> {
        parse_head(&mut BytesMut::from(text), head_request)
    }

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

    #[test]
    fn framing_follows_rfc_9112() {
        let framing = |text: &str, head_request| head(text, head_request).unwrap().unwrap().framing;
        assert_eq!(framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false), Framing::Length(5));
        assert_eq!(framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true), Framing::Length(0));
        assert_eq!(framing("HTTP/1.1 204 No Content\r\n\r\n", false), Framing::Length(0));
        assert_eq!(framing("HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n", false), Framing::Length(0));
        let both = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: gzip, chunked\r\n\r\n";
        assert_eq!(framing(both, false), Framing::Chunked, "transfer-encoding wins over content-length");
        assert!(!head(both, false).unwrap().unwrap().headers.contains_key(header::CONTENT_LENGTH));
        assert_eq!(framing("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", false), Framing::UntilClose);
        assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n", false), Framing::UntilClose);
        assert_eq!(framing("HTTP/1.1 200 OK\r\ncontent-length: 7, 7\r\n\r\n", false), Framing::Length(7));
        assert!(matches!(head("HTTP/1.1 200 OK\r\ncontent-length: 7, 8\r\n\r\n", false), Err(Error::Invalid(_))));
        assert!(matches!(head("HTTP/1.1 200 OK\r\ncontent-length: +7\r\n\r\n", false), Err(Error::Invalid(_))));
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
        assert!(matches!(head("HTTP/1.1 101 Switching\r\n\r\n", false), Err(Error::Invalid(_))));
        assert!(matches!(head("HTTP/9 200 OK\r\n\r\n", false), Err(Error::Invalid(_))));
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
            target: "/p?q=1",
            headers: &headers,
            default_host: "10.0.0.1:80",
            body: Some(&body),
        };
        let mut out = Vec::new();
        encode(&mut out, &req);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "PUT /p?q=1 HTTP/1.1\r\nhost: 10.0.0.1:80\r\nx-a: 1\r\ncontent-length: 3\r\n\r\nabc"
        );
    }
}
