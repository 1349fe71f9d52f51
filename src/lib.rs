//! lb: an L7 HTTP load balancer.
//!
//! Requests arrive on the data port, are routed to a pool by a Go `ServeMux`-style pattern, and
//! are either proxied to one of the pool's backends or redirected there. Pools and backends live
//! in a sled store and are changed through the admin API.
//!
//! # Layout
//! - [`pool`]: the nouns: `Pool`, `Backend`, `Mode`, `Strategy`, statuses.
//! - [`routing`]: patterns and the immutable `RoutingTable` that picks a pool.
//! - [`selection`]: how a pool picks a backend (`p2c`, `round_robin`, `random`, `least_conn`,
//!   `consistent_hash`); [`retry`] decides when a failed attempt is tried on another.
//! - [`data_plane`]: the accept loop and per-request dispatch; [`proxy`] and [`redirect`] are
//!   the two modes, [`forwarded`] owns the headers that cross the proxy, [`body`] the response
//!   body type; [`upstream`] is lb's own HTTP/1.1 client to backends, [`timer`] the request
//!   path's deadlines.
//! - [`control`]: the only writer: store first, then a new routing snapshot.
//! - [`store`]: sled trees and the record codec; schema migrations live in `lb-migrations`.
//! - [`health`]: health checks.
//! - [`admin`]: the JSON admin API.
//! - [`daemon`]: flags, start-up, runtimes and shutdown.

pub mod admin;
pub mod body;
pub mod control;
pub mod daemon;
pub mod data_plane;
pub mod forwarded;
pub mod health;
pub mod pool;
pub mod proxy;
pub mod redirect;
pub mod response;
pub mod retry;
pub mod routing;
pub mod selection;
pub mod store;
pub mod timer;
pub mod upstream;

/// For fuzz targets only (`fuzz/`, see its README): thin wrappers over lb's internals that are
/// not otherwise public, so the targets reach the code lb runs on hostile bytes without the rest
/// of lb having to be public for them. Not an API: it changes with those internals.
#[doc(hidden)]
pub mod fuzzing {
    use bytes::{Bytes, BytesMut};

    use crate::upstream::body::State;
    use crate::upstream::codec::{self, Framing};

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
