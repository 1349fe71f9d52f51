//! lb: an L7 HTTP load balancer.
//!
//! Requests arrive on the data port, are routed to a pool by a Go `ServeMux`-style pattern, and
//! are either proxied to one of the pool's backends or redirected there. Pools and backends live
//! in a sled store and are changed through the admin API; the admin API's JSON types and Go's
//! duration grammar live in the `lb-api` crate, shared with lbctl.
//!
//! # Layout
//! Modules form layers, and every import points down (`tests/layers.rs` checks it). Bottom
//! first:
//! - [`timer`]: the request path's deadlines; [`retry`]: when a failed attempt may be tried on
//!   another backend, and the retry budget; [`forwarded`]: the headers that cross the proxy and
//!   the client's [`forwarded::Peer`]; [`metrics`]: the families behind `GET /metrics` and the
//!   per-pool and per-backend handles the request path counts on; [`request_id`]: keep,
//!   replace or make a request's ID.
//! - [`pool`]: the nouns. `pool::config` (what an admin says of a pool) and `pool::backend` (a
//!   backend and its health record) sit below [`selection`] (how a pool picks a backend); the
//!   live `Pool` and the partial changes (`pool::change`) sit above it.
//! - [`routing`]: patterns and the immutable [`routing::Routes`] snapshot that picks a pool.
//! - [`store`]: sled trees and the record codec; schema migrations live in `lb-migrations`.
//! - [`upstream`]: the one client to backends (lb's own HTTP/1.1 client for held bodies, hyper's
//!   for streaming ones) and its errors; [`body`]: the body of every response lb sends;
//!   [`response`]: the answers lb writes itself.
//! - [`health`]: checks, the status state machine, and failure reports from the data path.
//! - [`request`]: what a request must be before lb routes it (Host, framing, methods, loops).
//! - [`access_log`]: one line per request, from per-worker buffers through one writer thread.
//! - [`conn`]: a client connection's protocol detection and its deadlines in every phase.
//! - [`redirect`] and [`proxy`]: the two modes; [`data_plane`]: workers, the accept loop, the
//!   connection limit and per-request dispatch.
//! - [`control`]: the only writer, through one `apply(Change)`: store first, then a new
//!   routing snapshot.
//! - [`admin`]: the JSON admin API; [`daemon`]: flags, binding, serving and shutdown.
//!
//! Modules are `pub` only where tests, benchmarks or the binary need them; this map is for
//! lb's engineers (`cargo doc --document-private-items`), so it links private modules too.
#![allow(rustdoc::private_intra_doc_links)]

pub(crate) mod access_log;
pub(crate) mod admin;
pub(crate) mod body;
pub(crate) mod conn;
pub(crate) mod control;
pub mod daemon;
pub(crate) mod data_plane;
pub(crate) mod forwarded;
pub(crate) mod health;
pub(crate) mod metrics;
pub mod pool;
pub(crate) mod proxy;
pub(crate) mod redirect;
pub(crate) mod request;
pub(crate) mod request_id;
pub(crate) mod response;
pub(crate) mod retry;
pub mod routing;
pub mod selection;
pub(crate) mod store;
pub(crate) mod timer;
pub mod upstream;

/// For fuzz targets only (`fuzz/`, see its README): thin wrappers over lb's internals that are
/// not otherwise public, so the targets reach the code lb runs on hostile bytes without the rest
/// of lb having to be public for them. Not an API: it changes with those internals.
#[doc(hidden)]
pub mod fuzzing {
    use bytes::{Bytes, BytesMut};

    use crate::upstream::body::State;
    use crate::upstream::codec::{self, Framing};

    pub use crate::body::Body;
    pub use crate::conn::framing::{Refusal as FramingRefusal, Scanner as FramingScanner, Verdict as FramingVerdict};
    pub use crate::forwarded::{request as forwarded_request, Peer, Via};
    pub use crate::redirect::answer as redirect_answer;
    pub use crate::request::{check as check_request, host_from_target, Checked, Refused};
    pub use crate::response::{answer, moved, not_allowed};
    pub use crate::retry::{RetryBudget, Tried};
    pub use crate::store::codec::{decode_backend, decode_pool, encode_backend, encode_pool};

    /// A backend's response head as lb's own client parsed it.
    pub struct ResponseHead {
        pub status: http::StatusCode,
        pub headers: http::HeaderMap,
        pub keep_alive: bool,
        /// How many body bytes follow, `None` for chunked or read-until-close.
        pub length: Option<u64>,
        /// The decoder of the body that follows.
        pub body: BodyDecoder,
    }

    /// `upstream::codec::parse_head`: a complete head off the front of `buf`, `Ok(None)` until
    /// it is complete, `Err` with lb's reason for a malformed one.
    pub fn parse_response_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<ResponseHead>, String> {
        let head = codec::parse_head(buf, head_request).map_err(|e| e.to_string())?;
        Ok(head.map(|head| ResponseHead {
            status: head.status,
            headers: head.headers,
            keep_alive: head.keep_alive,
            length: match head.framing {
                Framing::Length(n) => Some(n),
                Framing::Chunked | Framing::UntilClose => None,
            },
            body: BodyDecoder(State::of(head.framing)),
        }))
    }

    /// lb's own client's body decoder (`Content-Length`, chunked, until close), without the
    /// connection it reads from.
    pub struct BodyDecoder(State);

    /// One step of a [`BodyDecoder`].
    #[derive(Debug)]
    pub enum Decoded {
        Data(Bytes),
        /// The body ended; what follows in the buffer is not its.
        End,
        /// More bytes are needed.
        More,
        /// The framing is broken: lb's reason.
        Broken(String),
    }

    impl BodyDecoder {
        /// The next step over what `buf` holds; decoded bytes are taken off its front.
        pub fn next(&mut self, buf: &mut BytesMut) -> Decoded {
            match self.0.next(buf) {
                Ok(Some(Ok(frame))) => {
                    frame.into_data().map_or(Decoded::Broken("a non-data frame".into()), Decoded::Data)
                }
                Ok(Some(Err(e))) => Decoded::Broken(e.to_string()),
                Ok(None) => Decoded::End,
                Err(()) => Decoded::More,
            }
        }

        /// Whether the body was read to its end.
        pub fn is_done(&self) -> bool {
            matches!(self.0, State::Done)
        }
    }
}
