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
//! # Layout
//! - `codec`: the request on the wire, the response head parsed and its body's framing.
//! - `conn`: a connection to a backend and one exchange on it.
//! - `body`: the response body, read from its connection as the client takes it.
//! - `idle`: the per-thread pool of idle connections and its sweeper.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};

mod body;
mod codec;
mod conn;
mod idle;

pub use body::{BodyError, ResponseBody};
pub use conn::send;
pub use idle::install;

/// Largest held body lb's client sends; it writes the request whole before reading the
/// response, so larger ones go through hyper's client, which reads while it writes.
pub const MAX_BODY: usize = 64 * 1024;

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
