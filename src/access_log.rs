//! The access log (`--access-log PATH`, `--access-log-format combined|json`): one line per
//! request lb answered, written off the request path.
//!
//! A request's line is formatted on its worker when its response body is done (or dropped:
//! the client went away) and appended to that worker's buffer, a thread-local like
//! [`timer`](crate::timer)'s wheel, so nothing on the request path takes a lock. The worker
//! hands a buffer to the one writer thread when it holds [`BATCH`] bytes, and a flush task
//! hands over the rest every [`FLUSH_EVERY`] while lines come. The writer may fall behind (a
//! slow disk, a full pipe): at most [`MAX_QUEUED`] bytes wait for it, and a buffer that would
//! go beyond is dropped, its lines counted in [`dropped`] (never a request kept waiting).
//!
//! With the log off nothing of this runs: [`AccessLog::begin`] answers `None` at its first
//! branch, and the body's wrapper only passes polls through.
//!
//! `SIGHUP` makes the writer reopen the file ([`AccessLog::reopen`]): rename it, send
//! `SIGHUP`, and lines from then on go to a new file at the path.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Frame, SizeHint};

use crate::body::BoxError;
use crate::pool::{Mode, Pool};
use crate::request_id::RequestIds;

/// A worker hands its buffer to the writer once it holds this many bytes.
const BATCH: usize = 32 * 1024;
/// And at least this often while it holds any.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Bytes handed to the writer and not written yet, at most; beyond, lines are dropped.
const MAX_QUEUED: usize = 4 << 20;
/// How long lb waits at shutdown for the writer to write what it was handed.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Lines dropped since lb started because the writer could not keep up (or could not write),
/// in this process: `lb_access_log_dropped_total`.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Kept by [`metrics`](crate::metrics), which exports it.
use crate::metrics::ACCESS_LOG_DROPPED as DROPPED;

/// How lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Apache's and nginx's `combined`, with lb's fields appended.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

/// The access log as the data plane holds it: off, or the way to the writer.
#[derive(Clone, Default)]
pub struct AccessLog(Option<Arc<Shared>>);

/// What workers and the writer share.
struct Shared {
    format: Format,
    to_writer: SyncSender<Batch>,
    /// Bytes and lines handed over, not written yet.
    queued: AtomicUsize,
    queued_lines: AtomicU64,
    /// Set by [`AccessLog::reopen`], taken by the writer.
    reopen: AtomicBool,
    /// Set by [`Writer::close`]: the writer ends once it wrote what it holds.
    closing: AtomicBool,
    /// Lines are being dropped; cleared when the writer catches up, so the warning comes once
    /// per episode.
    dropping: AtomicBool,
}

/// Some lines, as a worker hands them over.
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

/// The writer thread, held by the daemon to close it at shutdown.
pub struct Writer {
    shared: Arc<Shared>,
    done: Receiver<u64>,
}

impl AccessLog {
    /// Opens (creates, appends to) `path`, `-` for stdout, and starts the writer thread.
    pub fn open(path: &Path, format: Format) -> Result<(AccessLog, Writer), String> {
        let out = Out::open(path).map_err(|e| format!("cannot open access log {}: {e}", path.display()))?;
        let (to_writer, batches) = mpsc::sync_channel(MAX_QUEUED / BATCH * 4);
        let shared = Arc::new(Shared {
            format,
            to_writer,
            queued: AtomicUsize::new(0),
            queued_lines: AtomicU64::new(0),
            reopen: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            dropping: AtomicBool::new(false),
        });
        let (finished, done) = mpsc::channel();
        let writer_shared = shared.clone();
        std::thread::Builder::new()
            .name("lb-access-log".into())
            .spawn(move || {
                let written = write_lines(&writer_shared, out, &batches);
                let _ = finished.send(written);
            })
            .map_err(|e| format!("cannot start the access log's writer thread: {e}"))?;
        Ok((AccessLog(Some(shared.clone())), Writer { shared, done }))
    }

    /// What a request's line needs from its head, taken before the request goes on; `None`
    /// with the log off.
    pub fn begin<B>(&self, req: &Request<B>, client: SocketAddr, ids: &RequestIds) -> Option<Box<Pending>> {
        let log = self.0.as_ref()?;
        let headers = req.headers();
        Some(Box::new(Pending {
            log: log.clone(),
            started: Instant::now(),
            time: SystemTime::now(),
            client,
            method: req.method().clone(),
            target: req.uri().clone(),
            version: req.version(),
            referer: headers.get(header::REFERER).cloned(),
            user_agent: headers.get(header::USER_AGENT).cloned(),
            id: ids.of(headers).cloned(),
            status: StatusCode::OK,
            note: Note::default(),
            bytes: 0,
        }))
    }

    /// Asks the writer to reopen its file (`SIGHUP`; nothing to do on stdout); `false` with
    /// the log off.
    pub fn reopen(&self) -> bool {
        let Some(shared) = &self.0 else { return false };
        shared.reopen.store(true, Ordering::Relaxed);
        // Wakes the writer; when the channel is full it wakes soon anyway.
        let _ = shared.to_writer.try_send(Batch { bytes: Vec::new(), lines: 0 });
        true
    }
}

/// What a request's answer says about where it went, filled in as it goes: the data plane
/// names the pool, the proxy each attempt's backend, redirect mode the backend chosen. Costs
/// a few stores with the log off.
#[derive(Default)]
pub struct Note {
    pub pool: Option<Arc<Pool>>,
    /// The backend of the last attempt, or the one a redirect chose.
    pub backend: Option<SocketAddr>,
    pub attempts: u32,
}

impl Note {
    /// One more attempt, at `backend`.
    pub fn attempt(&mut self, backend: SocketAddr) {
        self.backend = Some(backend);
        self.attempts += 1;
    }
}

/// A request whose line is not written yet.
pub struct Pending {
    log: Arc<Shared>,
    started: Instant,
    time: SystemTime,
    client: SocketAddr,
    method: Method,
    target: Uri,
    version: Version,
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    id: Option<HeaderValue>,
    status: StatusCode,
    note: Note,
    bytes: u64,
}

/// The body of every response lb sends ([`Body`](crate::body::Body), or HTTP/2's wrapper of
/// it): the body itself with the log off, and with it on, counting what it sends and writing
/// the request's line when it is done.
pub struct Logged<B> {
    body: B,
    pending: Option<Box<Pending>>,
}

impl<B> Logged<B> {
    /// `response` as it goes out; with `pending`, its line is written when its body is done.
    pub fn wrap(response: Response<B>, pending: Option<Box<Pending>>, note: Note) -> Response<Logged<B>> {
        let pending = pending.map(|mut pending| {
            pending.status = response.status();
            pending.note = note;
            pending
        });
        response.map(|body| Logged { body, pending })
    }
}

impl<B: http_body::Body<Data = Bytes, Error = BoxError> + Unpin> http_body::Body for Logged<B> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let (Some(pending), Poll::Ready(Some(Ok(frame)))) = (&mut this.pending, &polled) {
            if let Some(data) = frame.data_ref() {
                pending.bytes += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> Drop for Logged<B> {
    /// The body is done, or the client went away: the request's line.
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            let mut line = Vec::with_capacity(256);
            pending.format(&mut line);
            push(&pending.log, line);
        }
    }
}

thread_local! {
    /// This thread's lines not handed to the writer yet.
    static BUFFER: RefCell<Buffer> = const { RefCell::new(Buffer { log: None, bytes: Vec::new(), lines: 0, flusher: false }) };
}

struct Buffer {
    /// Whose lines these are (one process may run more than one lb, in tests).
    log: Option<Arc<Shared>>,
    bytes: Vec<u8>,
    lines: u64,
    /// A flush task runs on this thread.
    flusher: bool,
}

impl Buffer {
    fn hand_over(&mut self) {
        if let Some(log) = &self.log {
            if self.lines > 0 {
                let bytes = std::mem::replace(&mut self.bytes, Vec::with_capacity(BATCH + 1024));
                log.send(Batch { bytes, lines: std::mem::take(&mut self.lines) });
            }
        }
    }
}

/// Appends a line to this thread's buffer, handing it over when full; a thread with no event
/// loop hands it over at once.
fn push(log: &Arc<Shared>, line: Vec<u8>) {
    let runtime = tokio::runtime::Handle::try_current().ok();
    BUFFER.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        if !buffer.log.as_ref().is_some_and(|held| Arc::ptr_eq(held, log)) {
            buffer.hand_over();
            buffer.log = Some(log.clone());
        }
        buffer.bytes.extend_from_slice(&line);
        buffer.lines += 1;
        if buffer.bytes.len() >= BATCH || runtime.is_none() {
            buffer.hand_over();
        } else if !buffer.flusher {
            if let Some(runtime) = runtime {
                buffer.flusher = true;
                runtime.spawn(flush_while_lines_come());
            }
        }
    });
}

/// Hands this thread's buffer over every [`FLUSH_EVERY`], until a period brings no line.
async fn flush_while_lines_come() {
    loop {
        tokio::time::sleep(FLUSH_EVERY).await;
        let idle = BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            if buffer.lines == 0 {
                buffer.flusher = false;
                return true;
            }
            buffer.hand_over();
            false
        });
        if idle {
            return;
        }
    }
}

/// Hands this thread's lines to the writer now: a worker calls it when it stops serving.
pub fn flush() {
    BUFFER.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        buffer.hand_over();
        buffer.flusher = false;
    });
}

impl Shared {
    /// Gives `batch` to the writer, or drops and counts it when the writer is too far behind.
    fn send(&self, batch: Batch) {
        let (bytes, lines) = (batch.bytes.len(), batch.lines);
        // Counted before the writer can see it, so its count never goes below zero.
        let queued = self.queued.fetch_add(bytes, Ordering::Relaxed);
        self.queued_lines.fetch_add(lines, Ordering::Relaxed);
        let sent = queued + bytes <= MAX_QUEUED
            && match self.to_writer.try_send(batch) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            };
        if !sent {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
            self.queued_lines.fetch_sub(lines, Ordering::Relaxed);
            self.drop_lines(lines);
        }
    }

    fn drop_lines(&self, lines: u64) {
        DROPPED.fetch_add(lines, Ordering::Relaxed);
        if !self.dropping.swap(true, Ordering::Relaxed) {
            tracing::warn!("access log: the writer is falling behind; dropping lines ({} so far)", dropped());
        }
    }
}

/// Where lines go.
enum Out {
    Stdout,
    File { file: File, path: PathBuf },
}

impl Out {
    fn open(path: &Path) -> io::Result<Out> {
        if path == Path::new("-") {
            return Ok(Out::Stdout);
        }
        let file = File::options().create(true).append(true).open(path)?;
        Ok(Out::File { file, path: path.to_owned() })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Out::Stdout => {
                let mut stdout = io::stdout().lock();
                stdout.write_all(bytes)?;
                stdout.flush()
            }
            Out::File { file, .. } => file.write_all(bytes),
        }
    }
}

/// The writer thread: writes what workers hand over until closed; returns the lines written.
fn write_lines(shared: &Shared, mut out: Out, batches: &Receiver<Batch>) -> u64 {
    let mut written = 0u64;
    let mut failing = false;
    loop {
        if shared.reopen.swap(false, Ordering::Relaxed) {
            if let Out::File { path, .. } = &out {
                match Out::open(path) {
                    Ok(new) => {
                        tracing::info!("access log {} reopened", path.display());
                        out = new;
                    }
                    Err(e) => {
                        tracing::warn!("access log: cannot reopen {}: {e}; writing on to the old file", path.display())
                    }
                }
            }
        }
        let batch = match batches.recv_timeout(FLUSH_EVERY) {
            Ok(batch) => batch,
            Err(RecvTimeoutError::Timeout) if shared.closing.load(Ordering::Relaxed) => return written,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return written,
        };
        if batch.lines == 0 {
            continue;
        }
        match out.write_all(&batch.bytes) {
            Ok(()) => {
                written += batch.lines;
                if failing {
                    failing = false;
                    tracing::info!("access log: writing again");
                }
            }
            Err(e) => {
                if !failing {
                    failing = true;
                    tracing::warn!("access log: cannot write: {e}; dropping lines until it can");
                }
                DROPPED.fetch_add(batch.lines, Ordering::Relaxed);
            }
        }
        shared.queued.fetch_sub(batch.bytes.len(), Ordering::Relaxed);
        let left = shared.queued_lines.fetch_sub(batch.lines, Ordering::Relaxed) - batch.lines;
        if left == 0 && shared.dropping.swap(false, Ordering::Relaxed) {
            tracing::info!("access log: the writer caught up ({} lines dropped so far)", dropped());
        }
    }
}

impl Writer {
    /// Waits (up to 2 s) for the writer to write what it was handed, and logs what was
    /// written and dropped. Call once the workers stopped and [`flush`]ed.
    pub fn close(self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        let _ = self.shared.to_writer.try_send(Batch { bytes: Vec::new(), lines: 0 });
        match self.done.recv_timeout(CLOSE_WAIT) {
            Ok(written) => {
                tracing::info!("access log: {written} lines written, {} lines dropped", dropped());
            }
            Err(_) => {
                let unwritten = self.shared.queued_lines.load(Ordering::Relaxed);
                DROPPED.fetch_add(unwritten, Ordering::Relaxed);
                tracing::warn!("access log: the writer is stuck; {} lines dropped", dropped());
            }
        }
    }
}

impl Pending {
    /// The request's line, `\n` included. Written with no `fmt` machinery on the common path
    /// (numbers through `itoa`, the date cached per second): it runs once per request.
    fn format(&self, out: &mut Vec<u8>) {
        let duration_us = self.started.elapsed().as_micros();
        let target_text;
        let target = match (self.version, self.target.path_and_query()) {
            // HTTP/2's target has the scheme and authority of its pseudo-headers.
            (Version::HTTP_2, Some(pq)) => pq.as_str(),
            (_, Some(pq)) if self.target.authority().is_none() => pq.as_str(),
            _ => {
                target_text = self.target.to_string();
                &target_text
            }
        };
        let pool = self.note.pool.as_ref().map(|p| p.config.pattern.as_bytes());
        let mode = self.note.pool.as_ref().map(|p| match p.config.mode {
            Mode::Proxy => &b"proxy"[..],
            Mode::Redirect => b"redirect",
        });
        let id = self.id.as_ref().map(HeaderValue::as_bytes);
        let protocol: &[u8] = match self.version {
            Version::HTTP_09 => b"HTTP/0.9",
            Version::HTTP_10 => b"HTTP/1.0",
            Version::HTTP_2 => b"HTTP/2.0",
            Version::HTTP_3 => b"HTTP/3.0",
            _ => b"HTTP/1.1",
        };
        let mut numbers = itoa::Buffer::new();
        match self.log.format {
            Format::Combined => {
                // %h %l %u [%t] "%r" %>s %b "%{Referer}i" "%{User-agent}i", then lb's own.
                ip(self.client.ip(), out);
                out.extend_from_slice(b" - - [");
                clf_time(self.time, out);
                out.extend_from_slice(b"] \"");
                escape_clf(self.method.as_str().as_bytes(), out);
                out.push(b' ');
                escape_clf(target.as_bytes(), out);
                out.push(b' ');
                out.extend_from_slice(protocol);
                out.extend_from_slice(b"\" ");
                out.extend_from_slice(numbers.format(self.status.as_u16()).as_bytes());
                out.push(b' ');
                out.extend_from_slice(numbers.format(self.bytes).as_bytes());
                for value in [self.referer.as_ref(), self.user_agent.as_ref()] {
                    out.push(b' ');
                    quoted_clf(value.map(HeaderValue::as_bytes), out);
                }
                out.push(b' ');
                quoted_clf(pool, out);
                out.push(b' ');
                out.extend_from_slice(mode.unwrap_or(b"-"));
                out.push(b' ');
                match self.note.backend {
                    Some(backend) => socket_addr(backend, out),
                    None => out.push(b'-'),
                }
                out.push(b' ');
                out.extend_from_slice(numbers.format(self.note.attempts).as_bytes());
                out.push(b' ');
                millis(duration_us, out);
                out.push(b' ');
                quoted_clf(id, out);
            }
            Format::Json => {
                out.extend_from_slice(b"{\"time\":\"");
                rfc3339(self.time, out);
                out.extend_from_slice(b"\",\"client\":\"");
                ip(self.client.ip(), out);
                out.extend_from_slice(b"\",\"method\":");
                json_str(Some(self.method.as_str().as_bytes()), out);
                out.extend_from_slice(b",\"target\":");
                json_str(Some(target.as_bytes()), out);
                out.extend_from_slice(b",\"protocol\":\"");
                out.extend_from_slice(protocol);
                out.extend_from_slice(b"\",\"status\":");
                out.extend_from_slice(numbers.format(self.status.as_u16()).as_bytes());
                out.extend_from_slice(b",\"bytes\":");
                out.extend_from_slice(numbers.format(self.bytes).as_bytes());
                out.extend_from_slice(b",\"duration_ms\":");
                millis(duration_us, out);
                out.extend_from_slice(b",\"pool\":");
                json_str(pool, out);
                out.extend_from_slice(b",\"mode\":");
                json_str(mode, out);
                out.extend_from_slice(b",\"backend\":");
                match self.note.backend {
                    Some(backend) => {
                        out.push(b'"');
                        socket_addr(backend, out);
                        out.push(b'"');
                    }
                    None => out.extend_from_slice(b"null"),
                }
                out.extend_from_slice(b",\"attempts\":");
                out.extend_from_slice(numbers.format(self.note.attempts).as_bytes());
                out.extend_from_slice(b",\"request_id\":");
                json_str(id, out);
                out.extend_from_slice(b",\"referer\":");
                json_str(self.referer.as_ref().map(HeaderValue::as_bytes), out);
                out.extend_from_slice(b",\"user_agent\":");
                json_str(self.user_agent.as_ref().map(HeaderValue::as_bytes), out);
                out.push(b'}');
            }
        }
        out.push(b'\n');
    }
}

/// Microseconds as milliseconds with three decimals.
fn millis(us: u128, out: &mut Vec<u8>) {
    let mut numbers = itoa::Buffer::new();
    out.extend_from_slice(numbers.format(us / 1000).as_bytes());
    let frac = (us % 1000) as u16;
    out.extend_from_slice(&[b'.', b'0' + (frac / 100) as u8, b'0' + (frac / 10 % 10) as u8, b'0' + (frac % 10) as u8]);
}

/// An IP address as text; IPv4 without `fmt`.
fn ip(ip: IpAddr, out: &mut Vec<u8>) {
    match ip {
        IpAddr::V4(v4) => {
            let mut numbers = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(numbers.format(octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `ip:port`, or `[ip6]:port`.
fn socket_addr(addr: SocketAddr, out: &mut Vec<u8>) {
    if addr.is_ipv6() {
        out.push(b'[');
        ip(addr.ip(), out);
        out.push(b']');
    } else {
        ip(addr.ip(), out);
    }
    out.push(b':');
    out.extend_from_slice(itoa::Buffer::new().format(addr.port()).as_bytes());
}

/// `"value"`, escaped as nginx does, or `"-"`.
fn quoted_clf(value: Option<&[u8]>, out: &mut Vec<u8>) {
    out.push(b'"');
    match value {
        Some(value) => escape_clf(value, out),
        None => out.push(b'-'),
    }
    out.push(b'"');
}

/// Bytes written as they are in both formats: printable ASCII but `"` and `\`.
fn plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
}

/// nginx's escaping in the combined format: `"`, `\`, control bytes and bytes outside ASCII
/// as `\xHH`, so a line is one line and its quoted fields end at their quote.
fn escape_clf(mut value: &[u8], out: &mut Vec<u8>) {
    while !value.is_empty() {
        let run = value.iter().position(|&b| !plain(b)).unwrap_or(value.len());
        out.extend_from_slice(&value[..run]);
        let Some(&b) = value.get(run) else { return };
        out.extend_from_slice(&[b'\\', b'x', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        value = &value[run + 1..];
    }
}

/// A JSON string, or `null`. Bytes outside printable ASCII are written `\u00HH`, one per byte
/// (a header value may hold any byte, and a line must stay valid UTF-8).
fn json_str(value: Option<&[u8]>, out: &mut Vec<u8>) {
    let Some(mut value) = value else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'"');
    while !value.is_empty() {
        let run = value.iter().position(|&b| !plain(b)).unwrap_or(value.len());
        out.extend_from_slice(&value[..run]);
        let Some(&b) = value.get(run) else { break };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]),
        }
        value = &value[run + 1..];
    }
    out.push(b'"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Seconds since 1970 as a UTC date and time.
fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let secs = secs as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rest / 3600, rest / 60 % 60, rest % 60)
}

thread_local! {
    /// The last second this thread formatted, in both formats: most lines share theirs.
    static SECOND: RefCell<(u64, Vec<u8>, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new(), Vec::new())) };
}

/// Appends `time`'s second as Apache's `%t` (`clf`) or as RFC 3339 without fractions.
fn second(time: SystemTime, clf: bool, out: &mut Vec<u8>) -> u32 {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            const MONTHS: [&str; 12] =
                ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
            let (y, mo, d, h, mi, s) = civil(secs);
            cache.0 = secs;
            cache.1 = format!("{d:02}/{}/{y}:{h:02}:{mi:02}:{s:02} +0000", MONTHS[(mo - 1) as usize]).into_bytes();
            cache.2 = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}").into_bytes();
        }
        out.extend_from_slice(if clf { &cache.1 } else { &cache.2 });
    });
    since.subsec_micros()
}

/// `10/Oct/2000:13:55:36 +0000`, as Apache's `%t` (in UTC).
fn clf_time(time: SystemTime, out: &mut Vec<u8>) {
    second(time, true, out);
}

/// `2000-10-10T13:55:36.123456Z`.
fn rfc3339(time: SystemTime, out: &mut Vec<u8>) {
    let micros = second(time, false, out);
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.push(b'.');
    out.extend_from_slice(&digits);
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let mut out = Vec::new();
        clf_time(at(971_186_136), &mut out);
        assert_eq!(out, b"10/Oct/2000:13:55:36 +0000");
        let mut out = Vec::new();
        rfc3339(at(951_782_400), &mut out);
        assert_eq!(out, b"2000-02-29T00:00:00.000000Z");
        let mut out = Vec::new();
        rfc3339(at(0), &mut out);
        assert_eq!(out, b"1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn numbers_and_addresses() {
        let mut out = Vec::new();
        millis(12_034, &mut out);
        out.push(b' ');
        millis(7, &mut out);
        out.push(b' ');
        socket_addr("[::1]:8080".parse().unwrap(), &mut out);
        out.push(b' ');
        socket_addr("10.0.0.255:80".parse().unwrap(), &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "12.034 0.007 [::1]:8080 10.0.0.255:80");
    }

    #[test]
    fn escaping() {
        let hostile = b"a\"b\\c\td\n\xff\x7f";
        let mut out = Vec::new();
        escape_clf(hostile, &mut out);
        assert_eq!(out, br"a\x22b\x5cc\x09d\x0a\xff\x7f");
        let mut out = Vec::new();
        json_str(Some(hostile), &mut out);
        let parsed: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed, "a\"b\\c\td\n\u{ff}\u{7f}");
    }
}
