//! HTTP/2's idle deadline: a connection with no open stream for `--h2-idle-timeout` is closed
//! gracefully (GOAWAY).
//!
//! hyper has no idle timeout for HTTP/2 servers and does not say how many streams are open, so
//! lb counts them: a stream is open from its request until its response body is done or
//! dropped ([`Tracked`]). The connection's task rechecks on its own deadline, so a stream's end
//! wakes nobody: with streams open it looks again one timeout later; with none, it waits on an
//! idle deadline for the time the last stream ended plus the timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::body::{Body, BoxError};
use crate::timer::Deadline;

/// The open streams of one connection.
#[derive(Debug)]
pub struct Streams {
    open: AtomicUsize,
    /// When the last stream ended, in nanoseconds after `born`.
    idle_since: AtomicU64,
    born: Instant,
}

impl Streams {
    pub fn new(born: Instant) -> Arc<Streams> {
        Arc::new(Streams { open: AtomicUsize::new(0), idle_since: AtomicU64::new(0), born })
    }

    /// A stream opens; it is open until the guard is dropped.
    pub fn open(self: &Arc<Self>) -> Open {
        self.open.fetch_add(1, Ordering::Relaxed);
        Open(self.clone())
    }

    fn idle_since(&self) -> u64 {
        self.idle_since.load(Ordering::Relaxed)
    }
}

/// One open stream.
#[derive(Debug)]
pub struct Open(Arc<Streams>);

impl Drop for Open {
    fn drop(&mut self) {
        let streams = &self.0;
        let now = u64::try_from(streams.born.elapsed().as_nanos()).unwrap_or(u64::MAX);
        streams.idle_since.fetch_max(now, Ordering::Relaxed);
        streams.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its stream counted as open.
pub struct Tracked {
    pub body: Body,
    /// Counts the stream as open until the body is dropped.
    pub _open: Open,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// When an HTTP/2 connection is due to close as idle.
pub struct IdleTimer {
    streams: Arc<Streams>,
    timeout: Duration,
    deadline: Deadline,
    /// `Some(idle_since)` when `deadline` is the idle one, armed for the quiet that began then.
    armed_for: Option<u64>,
}

impl IdleTimer {
    /// For a connection that opened at `streams`' birth, with no stream yet.
    pub fn new(streams: Arc<Streams>, timeout: Duration) -> IdleTimer {
        let deadline = Deadline::idle_at(streams.born + timeout);
        IdleTimer { streams, timeout, deadline, armed_for: Some(0) }
    }

    /// Ready when the connection has had no open stream for the timeout, or was picked to
    /// close as idle at the connection limit.
    pub fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if Pin::new(&mut self.deadline).poll(cx).is_pending() {
                return Poll::Pending;
            }
            let since = self.streams.idle_since();
            if self.streams.open.load(Ordering::Relaxed) == 0 {
                if self.armed_for == Some(since) {
                    return Poll::Ready(());
                }
                let at = self.streams.born + Duration::from_nanos(since) + self.timeout;
                self.deadline = Deadline::idle_at(at);
                self.armed_for = Some(since);
            } else {
                self.deadline = Deadline::after(self.timeout);
                self.armed_for = None;
            }
        }
    }
}
