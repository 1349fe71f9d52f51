//! The body of every response lb sends: a backend's body streamed through, or a short body lb
//! wrote itself. One concrete type keeps the data path free of boxing.
//!
//! A backend's body that does not come whole with its head is watched: when the backend sends
//! nothing more for the body timeout, the body fails (the client's connection is closed, since
//! the head went out already) and the watcher's `on_stall` is told. The deadline is armed only
//! when a read finds nothing, and again only after data came: a body read whole costs nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::pool::InflightGuard;
use crate::timer::Deadline;
use crate::upstream;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response lb sends.
pub enum Body {
    /// A backend's response body, from either of [`upstream`]'s clients; the request counts as
    /// in flight until it is dropped. `stall` watches a body still to come from the backend.
    Backend { body: upstream::ResponseBody, _inflight: InflightGuard, stall: Option<Box<Stall>> },
    /// A body lb wrote; `None` once sent.
    Full(Option<Bytes>),
}

/// Watches a backend's body for a backend that stops sending it.
pub struct Stall {
    timeout: Duration,
    deadline: Option<Deadline>,
    /// Data came since the deadline was armed.
    moved: bool,
    on_stall: Option<Box<dyn FnOnce() + Send>>,
}

impl Stall {
    /// Fails the body when the backend sends nothing for `timeout`, after calling `on_stall`.
    pub fn new(timeout: Duration, on_stall: impl FnOnce() + Send + 'static) -> Box<Stall> {
        Box::new(Stall { timeout, deadline: None, moved: false, on_stall: Some(Box::new(on_stall)) })
    }
}

/// A backend sent nothing of its body for the body timeout.
#[derive(Debug)]
pub struct Stalled(Duration);

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the backend sent nothing of its response body for {:?}", self.0)
    }
}

impl std::error::Error for Stalled {}

impl Body {
    pub fn empty() -> Self {
        Body::Full(None)
    }

    pub fn text(text: impl Into<Bytes>) -> Self {
        Body::Full(Some(text.into()))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Backend { body, stall: None, .. } => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Body::Backend { body, stall: Some(stall), .. } => {
                let polled = Pin::new(body).poll_frame(cx);
                if polled.is_ready() {
                    stall.moved = true;
                    return polled.map_err(Into::into);
                }
                if std::mem::take(&mut stall.moved) || stall.deadline.is_none() {
                    stall.deadline = Some(Deadline::after(stall.timeout));
                }
                let deadline = stall.deadline.as_mut().expect("armed above");
                if Pin::new(deadline).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if let Some(on_stall) = stall.on_stall.take() {
                    on_stall();
                }
                Poll::Ready(Some(Err(Stalled(stall.timeout).into())))
            }
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Backend { body, .. } => body.is_end_stream(),
            Body::Full(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Backend { body, .. } => body.size_hint(),
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
