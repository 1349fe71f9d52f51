//! The client's socket as hyper reads and writes it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::framing::{Refusal, Scanner, Verdict};
use crate::timer::Deadline;

/// Room for what [`detect`](fn@super::detect) reads before handing the connection to hyper: the
/// HTTP/2 preface (24 bytes), the first frame's header (9) and a SETTINGS payload of up to 16
/// settings.
pub const PREFIX: usize = 24 + 9 + 16 * 6;

/// A client's TCP stream, with:
/// - the bytes protocol detection read first, handed back before the socket's (no allocation:
///   they sit in the connection's own state);
/// - a send deadline: a write that makes no progress for `send_timeout` fails, and hyper
///   closes the connection. It is armed only when a write returns `Pending`; a write that
///   completes at once costs one branch;
/// - a count of reads that returned bytes, shared with [`head`](super::head)'s timer, which
///   tells an idle keep-alive connection from one whose next head has begun;
/// - on HTTP/1, the [`framing`](super::framing) check of every byte hyper reads, and lb's own
///   `400` to a request it refuses.
pub struct ClientIo {
    stream: TcpStream,
    prefix: [u8; PREFIX],
    start: usize,
    end: usize,
    send_timeout: Duration,
    stalled: Option<Deadline>,
    reads: Arc<Reads>,
    /// `None` on HTTP/2, and once the scanner gave up or refused.
    scanner: Option<Scanner>,
    refusing: Option<Refusing>,
}

/// A request the scanner refused: hyper holds the start of its head, which never completes.
/// Once hyper has written everything before it and waits for the rest of that head, lb writes
/// its `400`, shuts its side down, and reads (and drops) what the client still sends, up to
/// [`DRAIN`] bytes, so that closing does not reset the connection under the answer; then the
/// read fails and hyper drops the connection. hyper's header-read timer bounds the wait.
struct Refusing {
    why: Refusal,
    phase: Phase,
}

enum Phase {
    /// hyper's own writes are not all out yet.
    Waiting,
    Writing(usize),
    Draining(usize),
}

/// What lb reads of a refused client before it closes.
const DRAIN: usize = 64 * 1024;

/// How many reads of a connection returned bytes; written by its [`ClientIo`] only.
#[derive(Debug, Default)]
pub struct Reads(AtomicU32);

impl Reads {
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    /// One writer: a load and a store, not a locked read-modify-write.
    fn bump(&self) {
        self.0.store(self.get().wrapping_add(1), Ordering::Relaxed);
    }
}

impl ClientIo {
    pub fn new(stream: TcpStream, send_timeout: Duration) -> ClientIo {
        ClientIo {
            stream,
            prefix: [0; PREFIX],
            start: 0,
            end: 0,
            send_timeout,
            stalled: None,
            reads: Arc::default(),
            scanner: None,
            refusing: None,
        }
    }

    /// Checks the framing of every request from here on (an HTTP/1 connection).
    pub(super) fn check_requests(&mut self) {
        self.scanner = Some(Scanner::default());
    }

    /// The read count [`head`](super::head)'s timer watches.
    pub fn reads(&self) -> Arc<Reads> {
        self.reads.clone()
    }

    /// The bytes read ahead so far.
    pub(super) fn prefix(&self) -> &[u8] {
        &self.prefix[self.start..self.end]
    }

    /// Reads more of the prefix from the socket, up to `upto` bytes in all; `Ok(0)` at EOF.
    pub(super) fn poll_read_ahead(&mut self, cx: &mut Context<'_>, upto: usize) -> Poll<io::Result<usize>> {
        let upto = upto.min(PREFIX);
        if self.end >= upto {
            return Poll::Ready(Ok(0));
        }
        let mut buf = ReadBuf::new(&mut self.prefix[self.end..upto]);
        match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                self.end += n;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// A write returned `Pending`: waits on the send deadline (armed now if it is not yet).
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.send_timeout;
        let deadline = self.stalled.get_or_insert_with(|| Deadline::after(timeout));
        match Pin::new(deadline).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("client read nothing for {timeout:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn written<T>(&mut self, written: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match written {
            Poll::Pending => self.stalled(cx),
            ready => {
                if self.stalled.is_some() {
                    self.stalled = None;
                }
                ready
            }
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.refusing.is_some() {
            return this.poll_refuse(cx);
        }
        let before = buf.filled().len();
        if this.start < this.end {
            let n = buf.remaining().min(this.end - this.start);
            buf.put_slice(&this.prefix[this.start..this.start + n]);
            this.start += n;
        } else {
            let read = Pin::new(&mut this.stream).poll_read(cx, buf);
            if !matches!(read, Poll::Ready(Ok(()))) || buf.filled().len() == before {
                return read;
            }
            this.reads.bump();
        }
        let Some(scanner) = this.scanner.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let offset = scanner.offset();
        match scanner.scan(&buf.filled()[before..]) {
            Verdict::Clean => Poll::Ready(Ok(())),
            Verdict::GaveUp => {
                this.scanner = None;
                Poll::Ready(Ok(()))
            }
            Verdict::Refuse { why, cut, .. } => {
                this.scanner = None;
                // hyper gets the refused request up to `cut`, never its whole head, and some
                // of its head is in hyper's buffer: with a part of a head there, hyper reads
                // again only to complete it, once it is done with the requests before.
                if cut < offset {
                    // The whole head went to hyper in an earlier read: its decoder refuses
                    // the body.
                    return Poll::Ready(Ok(()));
                }
                let keep = (cut - offset).min((buf.filled().len() - before) as u64) as usize;
                buf.set_filled(before + keep);
                this.refusing = Some(Refusing { why, phase: Phase::Waiting });
                if keep == 0 {
                    return this.poll_refuse(cx);
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl ClientIo {
    /// hyper reads to complete the head of a refused request: answers it (see [`Refusing`]).
    fn poll_refuse(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let Some(refusing) = self.refusing.as_mut() else {
                return Poll::Ready(Err(io::ErrorKind::InvalidData.into()));
            };
            match refusing.phase {
                Phase::Waiting => {
                    // A write of hyper's returned Pending: its buffer still holds an answer to
                    // a request before the refused one. Wake when the socket takes more.
                    if self.stalled.is_some() {
                        if self.stream.poll_write_ready(cx).is_ready() {
                            cx.waker().wake_by_ref();
                        }
                        return Poll::Pending;
                    }
                    refusing.phase = Phase::Writing(0);
                }
                Phase::Writing(sent) => {
                    let answer = refusing.why.response();
                    if sent == answer.len() {
                        let _ = Pin::new(&mut self.stream).poll_shutdown(cx);
                        refusing.phase = Phase::Draining(0);
                        continue;
                    }
                    let written = Pin::new(&mut self.stream).poll_write(cx, &answer[sent..]);
                    match self.written(written, cx) {
                        Poll::Ready(Ok(n)) if n > 0 => {
                            if let Some(refusing) = self.refusing.as_mut() {
                                refusing.phase = Phase::Writing(sent + n);
                            }
                        }
                        Poll::Ready(Ok(_)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Phase::Draining(drained) => {
                    let mut sink = [0u8; 2048];
                    let mut read = ReadBuf::new(&mut sink);
                    match Pin::new(&mut self.stream).poll_read(cx, &mut read) {
                        Poll::Ready(Ok(())) if !read.filled().is_empty() && drained < DRAIN => {
                            refusing.phase = Phase::Draining(drained + read.filled().len());
                        }
                        Poll::Pending => return Poll::Pending,
                        _ => {
                            let why = refusing.why.reason();
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("request refused (400): {why}"),
                            )));
                        }
                    }
                }
            }
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.written(written, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.written(written, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
