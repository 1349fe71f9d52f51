//! The client's request body as lb holds it across attempts ([`RequestBody`]), and the body of
//! one attempt ([`AttemptBody`]), which [`send`](super::send) takes.
//!
//! Small bodies (known length within the pool's `retry_body_limit`) are read first: lb's own
//! client sends them whole and an idempotent request may replay them on another backend.
//! Everything else streams, and can still be sent to another backend while no attempt has read
//! from it (a connection that could not be made).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::MAX_BODY;
use crate::timer;

/// A client's request body, as lb holds it across attempts.
pub enum RequestBody {
    Empty,
    /// Received whole: replayable.
    Held(Bytes),
    /// Streamed: sendable again only while no attempt has read from it.
    Streamed(Arc<Mutex<Stream>>),
}

/// A client's body being streamed to a backend, shared by the attempts that may send it.
pub struct Stream {
    body: Incoming,
    /// Some attempt read from it: it cannot be sent again.
    started: bool,
    /// The last read found nothing yet: lb is waiting on the client.
    waiting: bool,
}

impl RequestBody {
    /// Holds small bodies (known length within `limit`), read within `read_timeout`; streams
    /// everything else. A body that fails to arrive is the client's fault: `400` or `408`.
    pub async fn new(body: Incoming, limit: u64, read_timeout: Duration) -> Result<Self, StatusCode> {
        use http_body::Body as _;
        if body.is_end_stream() {
            return Ok(RequestBody::Empty);
        }
        let small = body.size_hint().exact().is_some_and(|n| n <= limit);
        if small {
            let read = timer::timeout(read_timeout, body.collect()).await;
            return match read {
                Ok(Ok(collected)) => Ok(RequestBody::Held(collected.to_bytes())),
                Ok(Err(_)) => Err(StatusCode::BAD_REQUEST),
                Err(_) => Err(StatusCode::REQUEST_TIMEOUT),
            };
        }
        Ok(RequestBody::Streamed(Arc::new(Mutex::new(Stream { body, started: false, waiting: false }))))
    }

    /// The body for the next attempt, or `None` if it is gone.
    pub fn attempt(&self) -> Option<AttemptBody> {
        match self {
            RequestBody::Empty => Some(AttemptBody::Empty),
            RequestBody::Held(bytes) => Some(AttemptBody::Held(Some(bytes.clone()))),
            RequestBody::Streamed(stream) => {
                let started = stream.lock().unwrap_or_else(|e| e.into_inner()).started;
                (!started).then(|| AttemptBody::Streamed(stream.clone()))
            }
        }
    }

    /// Is lb still waiting for the client to send more of the body?
    pub fn waiting_on_client(&self) -> bool {
        match self {
            RequestBody::Streamed(stream) => {
                let stream = stream.lock().unwrap_or_else(|e| e.into_inner());
                stream.waiting
            }
            RequestBody::Empty | RequestBody::Held(_) => false,
        }
    }

    /// Does lb hold the whole body, so that a request sent once can be sent again?
    pub fn replayable(&self) -> bool {
        !matches!(self, RequestBody::Streamed(_))
    }
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
}

impl http_body::Body for AttemptBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            AttemptBody::Empty => Poll::Ready(None),
            AttemptBody::Held(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            AttemptBody::Streamed(stream) => {
                let mut stream = stream.lock().unwrap_or_else(|e| e.into_inner());
                stream.started = true;
                let polled = Pin::new(&mut stream.body).poll_frame(cx);
                stream.waiting = polled.is_pending();
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AttemptBody::Empty => true,
            AttemptBody::Held(bytes) => bytes.is_none(),
            AttemptBody::Streamed(stream) => stream.lock().unwrap_or_else(|e| e.into_inner()).body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            AttemptBody::Empty => SizeHint::with_exact(0),
            AttemptBody::Held(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            AttemptBody::Streamed(stream) => stream.lock().unwrap_or_else(|e| e.into_inner()).body.size_hint(),
        }
    }
}
