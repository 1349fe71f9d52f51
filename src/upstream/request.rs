//! The client's request body as lb holds it across attempts ([`RequestBody`]), and the body of
//! one attempt ([`AttemptBody`]), which [`send`](super::send) takes.
//!
//! Small bodies (known length within the pool's `retry_body_limit`) are read first: lb's own
//! client sends them whole and an idempotent request may replay them on another backend.
//! Everything else streams, and can still be sent to another backend while no attempt has read
//! from it (a connection that could not be made).
//!
//! A body that fails on the client's side is the client's fault, never the backend's: the
//! stream records how it failed ([`ClientFault`]), so that an attempt that failed because of it
//! is an [`ErrorKind::ClientBody`](super::ErrorKind::ClientBody). A client that sends nothing
//! for the body timeout is cut off; one that keeps sending is not, however long it takes.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::MAX_BODY;
use crate::timer::{self, Deadline};

/// A client's request body, as lb holds it across attempts.
pub enum RequestBody {
    Empty,
    /// Received whole: replayable.
    Held(Bytes),
    /// Streamed: sendable again only while no attempt has read from it.
    Streamed(Arc<Mutex<Stream>>),
}

/// How a client's body failed: the client's fault, not the backend's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// Broken framing (a bad chunk size, a missing CRLF...): `400`.
    Malformed,
    /// The client closed or reset its connection before the body's end.
    Gone,
    /// Nothing arrived for the body timeout: `408`.
    Stalled,
}

impl fmt::Display for ClientFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientFault::Malformed => "the client's request body is malformed",
            ClientFault::Gone => "the client went away during its request body",
            ClientFault::Stalled => "the client stopped sending its request body",
        })
    }
}

/// The error an attempt's body gives the client that sends it.
#[derive(Debug)]
pub struct ClientBodyError(pub ClientFault);

impl fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ClientBodyError {}

/// How far a streamed body got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// Still going out; the time of the last read of it (by the backend's connection).
    Sending(Instant),
    /// Read to its end.
    Done(Instant),
    Failed(ClientFault),
}

/// A client's body being streamed to a backend, shared by the attempts that may send it.
pub struct Stream {
    body: Incoming,
    /// Some attempt read from it: it cannot be sent again.
    started: bool,
    upload: Upload,
    /// How long the client may send nothing.
    idle_timeout: Duration,
    /// Armed while lb waits on the client; reset when data came since.
    idle: Option<Deadline>,
    /// Data came since `idle` was armed.
    moved: bool,
    /// The last read found nothing yet: lb is waiting on the client.
    waiting: bool,
    /// The attempt waiting for the upload to end (its response deadline starts then).
    waiter: Option<Waker>,
}

impl Stream {
    fn end(&mut self, upload: Upload) {
        self.upload = upload;
        self.idle = None;
        if let Some(waiter) = self.waiter.take() {
            waiter.wake();
        }
    }
}

fn lock(stream: &Mutex<Stream>) -> MutexGuard<'_, Stream> {
    stream.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a failed read of the client's body says about the client: hyper's decoder reports
/// broken framing as invalid data or input, and everything else (EOF, a reset) means the
/// client is gone.
fn fault(e: &hyper::Error) -> ClientFault {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return match io.kind() {
                io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => ClientFault::Malformed,
                _ => ClientFault::Gone,
            };
        }
        source = cause.source();
    }
    if e.is_parse() {
        ClientFault::Malformed
    } else {
        ClientFault::Gone
    }
}

impl RequestBody {
    /// Holds small bodies (known length within `limit`), each read waiting at most
    /// `idle_timeout` for more; streams everything else, with the same inactivity limit.
    pub async fn new(body: Incoming, limit: u64, idle_timeout: Duration) -> Result<Self, ClientFault> {
        if body.is_end_stream() {
            return Ok(RequestBody::Empty);
        }
        let small = body.size_hint().exact().is_some_and(|n| n <= limit);
        if small {
            return hold(body, idle_timeout).await.map(RequestBody::Held);
        }
        let stream = Stream {
            body,
            started: false,
            upload: Upload::Sending(Instant::now()),
            idle_timeout,
            idle: None,
            moved: false,
            waiting: false,
            waiter: None,
        };
        Ok(RequestBody::Streamed(Arc::new(Mutex::new(stream))))
    }

    /// The body for the next attempt, or `None` if it is gone.
    pub fn attempt(&self) -> Option<AttemptBody> {
        match self {
            RequestBody::Empty => Some(AttemptBody::Empty),
            RequestBody::Held(bytes) => Some(AttemptBody::Held(Some(bytes.clone()))),
            RequestBody::Streamed(stream) => {
                let started = lock(stream).started;
                (!started).then(|| AttemptBody::Streamed(stream.clone()))
            }
        }
    }

    /// How far a streamed body got (`None` for a body lb holds); while it is still sending,
    /// `waiter` is woken when it ends.
    pub fn upload(&self, waiter: &Waker) -> Option<Upload> {
        let RequestBody::Streamed(stream) = self else { return None };
        let mut stream = lock(stream);
        if matches!(stream.upload, Upload::Sending(_)) && !stream.waiter.as_ref().is_some_and(|w| w.will_wake(waiter)) {
            stream.waiter = Some(waiter.clone());
        }
        Some(stream.upload)
    }

    /// Is lb waiting on the client for more of a streamed body (the backend reads it all)?
    pub fn waiting_on_client(&self) -> bool {
        match self {
            RequestBody::Streamed(stream) => lock(stream).waiting,
            RequestBody::Empty | RequestBody::Held(_) => false,
        }
    }

    /// Does lb hold the whole body, so that a request sent once can be sent again?
    pub fn replayable(&self) -> bool {
        !matches!(self, RequestBody::Streamed(_))
    }
}

/// Reads a small body whole, giving up when nothing arrives for `idle_timeout`. Most come in
/// one frame, kept as it is; more are copied together.
async fn hold(mut body: Incoming, idle_timeout: Duration) -> Result<Bytes, ClientFault> {
    let mut first: Option<Bytes> = None;
    let mut more: Option<BytesMut> = None;
    loop {
        let frame = match timer::timeout(idle_timeout, body.frame()).await {
            Err(_) => return Err(ClientFault::Stalled),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(fault(&e)),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        match (&mut first, &mut more) {
            (None, _) => first = Some(data),
            (Some(first), None) => {
                let mut joined = BytesMut::with_capacity(first.len() + data.len());
                joined.extend_from_slice(first);
                joined.extend_from_slice(&data);
                more = Some(joined);
            }
            (Some(_), Some(joined)) => joined.extend_from_slice(&data),
        }
        if body.is_end_stream() {
            break;
        }
    }
    Ok(match more {
        Some(joined) => joined.freeze(),
        None => first.unwrap_or_default(),
    })
}

/// The body of one attempt's request.
#[derive(Clone)]
pub enum AttemptBody {
    Empty,
    Held(Option<Bytes>),
    Streamed(Arc<Mutex<Stream>>),
}

impl AttemptBody {
    /// The whole body, when lb holds it and its own client may send it (`Some(None)`: no
    /// body); `None` for a body that streams or is too large for that client.
    pub(super) fn whole(&self) -> Option<Option<&Bytes>> {
        match self {
            AttemptBody::Empty | AttemptBody::Held(None) => Some(None),
            AttemptBody::Held(Some(bytes)) if bytes.len() <= MAX_BODY => Some(Some(bytes)),
            AttemptBody::Held(Some(_)) | AttemptBody::Streamed(_) => None,
        }
    }

    /// How the client's side of a streamed body failed, if it did.
    pub(super) fn client_fault(&self) -> Option<ClientFault> {
        match self {
            AttemptBody::Streamed(stream) => match lock(stream).upload {
                Upload::Failed(fault) => Some(fault),
                Upload::Sending(_) | Upload::Done(_) => None,
            },
            AttemptBody::Empty | AttemptBody::Held(_) => None,
        }
    }

    /// Is this a streamed body of unknown length (chunked from the client)?
    pub(super) fn unknown_length(&self) -> bool {
        match self {
            AttemptBody::Streamed(stream) => lock(stream).body.size_hint().exact().is_none(),
            AttemptBody::Empty | AttemptBody::Held(_) => false,
        }
    }
}

impl http_body::Body for AttemptBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            AttemptBody::Empty => Poll::Ready(None),
            AttemptBody::Held(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            AttemptBody::Streamed(stream) => poll_stream(&mut lock(stream), cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AttemptBody::Empty => true,
            AttemptBody::Held(bytes) => bytes.is_none(),
            AttemptBody::Streamed(stream) => {
                let mut stream = lock(stream);
                let end = stream.body.is_end_stream();
                if end && matches!(stream.upload, Upload::Sending(_)) {
                    stream.end(Upload::Done(Instant::now()));
                }
                end
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            AttemptBody::Empty => SizeHint::with_exact(0),
            AttemptBody::Held(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            AttemptBody::Streamed(stream) => lock(stream).body.size_hint(),
        }
    }
}

/// Reads the client's body for the backend's connection, noting how far it got.
fn poll_stream(stream: &mut Stream, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
    stream.started = true;
    match stream.upload {
        Upload::Failed(fault) => return Poll::Ready(Some(Err(ClientBodyError(fault)))),
        Upload::Done(_) => return Poll::Ready(None),
        Upload::Sending(_) => {}
    }
    let polled = Pin::new(&mut stream.body).poll_frame(cx);
    stream.waiting = polled.is_pending();
    match polled {
        Poll::Ready(Some(Ok(frame))) => {
            let now = Instant::now();
            stream.moved = true;
            if stream.body.is_end_stream() {
                stream.end(Upload::Done(now));
            } else {
                stream.upload = Upload::Sending(now);
            }
            Poll::Ready(Some(Ok(frame)))
        }
        Poll::Ready(None) => {
            stream.end(Upload::Done(Instant::now()));
            Poll::Ready(None)
        }
        Poll::Ready(Some(Err(e))) => {
            let fault = fault(&e);
            tracing::debug!("client body failed: {e}");
            stream.end(Upload::Failed(fault));
            Poll::Ready(Some(Err(ClientBodyError(fault))))
        }
        Poll::Pending => {
            let timeout = stream.idle_timeout;
            stream.upload = Upload::Sending(Instant::now());
            // Armed when lb first waits, and again (a clock read) only when data came since.
            if std::mem::take(&mut stream.moved) || stream.idle.is_none() {
                stream.idle = Some(Deadline::after(timeout));
            }
            let idle = stream.idle.as_mut().expect("armed above");
            if Pin::new(idle).poll(cx).is_ready() {
                stream.end(Upload::Failed(ClientFault::Stalled));
                return Poll::Ready(Some(Err(ClientBodyError(ClientFault::Stalled))));
            }
            Poll::Pending
        }
    }
}
