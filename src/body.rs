//! The body of every response lb sends: a backend's body streamed through, or a short body lb
//! wrote itself. One concrete type keeps the data path free of boxing.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::pool::InflightGuard;
use crate::upstream;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response lb sends.
pub enum Body {
    /// A backend's response body, from either of [`upstream`]'s clients; the request counts as
    /// in flight until it is dropped.
    Backend { body: upstream::ResponseBody, _inflight: InflightGuard },
    /// A body lb wrote; `None` once sent.
    Full(Option<Bytes>),
}

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
            Body::Backend { body, .. } => Pin::new(body).poll_frame(cx).map_err(Into::into),
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
