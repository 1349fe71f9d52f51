//! lb's client to backends: [`send`] takes one attempt's request and a backend and answers with
//! the backend's response head, or an [`Error`] that says what failed and whether the request
//! may have reached the backend. It picks the path itself:
//!
//! - No body, or a body lb holds whole of up to [`MAX_BODY`] (the common case of a load
//!   balancer): lb's own HTTP/1.1 client. hyper's pooled client sends each request through a
//!   channel to a separate task that owns the connection, and answers through another: two
//!   task wake-ups, a pool lock and a hashed pool key per request. Here the request's own task
//!   writes the request, reads the response head, and the response body reads straight from
//!   the socket as the client's connection asks for it. Idle connections wait in a per-thread
//!   pool (workers are threads with their own runtimes, so a connection never changes thread
//!   and the pool needs no lock); the response gives its connection back the moment its body
//!   is read to the end, which for a small body is before lb even starts writing the response
//!   to the client.
//! - A body still streaming in from the client, or larger than [`MAX_BODY`]: hyper's client,
//!   which reads the response while the request body is still being sent.
//!
//! # Layout
//! - `request`: the client's request body as lb holds it across attempts, and one attempt's.
//! - `codec`: the request on the wire, the response head parsed and its body's framing.
//! - `conn`: a connection of lb's own client and one exchange on it; [`send`] runs its loop.
//! - `body`: the response body, from either client.
//! - `idle`: the per-thread pool of idle connections and its sweeper.
//! - `hyper`: the streaming path through hyper's client.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, Method, Response};

pub(crate) mod body;
pub(crate) mod codec;
mod conn;
mod hyper;
mod idle;
mod request;
#[cfg(test)]
mod tests;

pub use body::{BodyError, ResponseBody};
pub use request::{AttemptBody, ClientBodyError, ClientFault, RequestBody, Stream, Upload};

/// Largest held body lb's client sends; it writes the request whole before reading the
/// response, so larger ones go through hyper's client, which reads while it writes.
pub const MAX_BODY: usize = 64 * 1024;

/// One attempt's request: what goes to the backend, borrowed from the caller (a small value:
/// the future of [`send`] holds it, and futures are moved).
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a Method,
    /// Origin-form target: path and query.
    pub target: &'a PathAndQuery,
    /// The headers as they go to the backend; lb's own client frames a held body itself (its
    /// own `Content-Length`, no `Expect`).
    pub headers: &'a HeaderMap,
    /// The backend's `ip:port`: the `Host` of a request that has none, and where hyper's client
    /// connects (it goes by the URI), so it must name [`Target::addr`].
    pub authority: &'a Authority,
    /// The body as lb holds it; it decides the path (see the [module docs](self)).
    pub body: &'a AttemptBody,
}

/// Where and how to connect.
#[derive(Clone, Copy)]
pub struct Target {
    pub addr: SocketAddr,
    /// To open a connection; a timeout is an [`ErrorKind::Connect`].
    pub connect_timeout: Duration,
    /// How long an unused connection to the backend is kept.
    pub idle_timeout: Duration,
}

/// Sends `req` to `target` and answers with the response head; its body streams from the
/// backend as the caller reads it.
///
/// With lb's own client, a pooled connection the backend closed while it sat idle fails before
/// any byte of a response (the write fails, or the read meets EOF or a reset). An idempotent
/// request is then sent once more, on a new connection, as Go's transport does, without it
/// counting as a failure of the backend; any other failure is the caller's to judge (retries,
/// health).
pub async fn send(target: Target, req: Request<'_>) -> Result<Response<ResponseBody>, Error> {
    let Some(body) = req.body.whole() else {
        return hyper::send(target, req).await;
    };
    // lb's own client, written out here rather than in a function of its own: every async
    // layer makes the request's future larger, and futures are moved.
    let idempotent = crate::retry::is_idempotent(req.method);
    let mut pooled = idle::checkout(target.addr, !idempotent);
    loop {
        let reused = pooled.is_some();
        let mut conn = match pooled.take() {
            Some(conn) => conn,
            None => conn::connect(&target).await?,
        };
        conn.target = target;
        codec::encode(&mut conn.write, &req, body);
        match conn::exchange(&mut conn, req.method, body).await {
            Ok(head) => return Ok(body::respond(conn, head)),
            Err(failed) if reused && idempotent && failed.stale => continue,
            Err(failed) => return Err(failed.error),
        }
    }
}

/// Lets this thread keep idle connections to backends, with a sweeper on the current runtime
/// that closes them as their idle timeout passes. A data-plane worker calls it on its
/// current-thread runtime, where every connection it opens stays on this thread; the pool goes
/// when that runtime shuts down. Elsewhere (a multi-threaded runtime) it does nothing, and
/// each request gets a new connection. hyper's clients need no setup: each thread makes its own
/// when it first needs one.
pub fn install() {
    idle::install();
}

/// Why an attempt got no response. Callers decide from its [`kind`](Error::kind) and whether it
/// was [`sent`](Error::sent); its `Display` is for logs and `502` bodies.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    cause: Cause,
}

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No connection: refused, unreachable, or not within the connect timeout.
    Connect,
    /// The connection failed or was closed before the whole response head arrived.
    Closed,
    /// The backend answered with a response head lb cannot forward: malformed, a transfer
    /// coding lb does not decode, a protocol switch, or one only [too large](Error::too_large).
    Invalid,
    /// The client's request body failed while it streamed to the backend (see
    /// [`Error::client_fault`]): the client's fault, not the backend's. The backend connection
    /// that carried part of it is closed, never reused.
    ClientBody,
}

/// What to tell a person.
#[derive(Debug)]
enum Cause {
    Io(io::Error),
    /// EOF before any byte of a response.
    Closed,
    Invalid(&'static str),
    /// An [`ErrorKind::Invalid`] head that is only larger than lb reads.
    TooLarge(&'static str),
    Client(ClientFault),
    /// Boxed: hyper's error is large, and every result of the request path carries the room
    /// for an error.
    Hyper(Box<hyper_util::client::legacy::Error>),
}

impl Error {
    /// What failed: proxy decides retries and health from it.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the request may have reached the backend (all of it, or part): everything but a
    /// connection that could not be made.
    pub fn sent(&self) -> bool {
        self.kind != ErrorKind::Connect
    }

    /// An [`ErrorKind::Invalid`] head that is only too large (over lb's or hyper's limit, in
    /// bytes or headers): a client can provoke it (a backend that echoes a huge request
    /// header), so unlike other invalid heads it is not the backend's fault.
    pub fn too_large(&self) -> bool {
        match &self.cause {
            Cause::TooLarge(_) => true,
            Cause::Hyper(e) => hyper::parse_error(e).is_some_and(::hyper::Error::is_parse_too_large),
            _ => false,
        }
    }

    /// How the client's body failed, for an [`ErrorKind::ClientBody`].
    pub fn client_fault(&self) -> Option<ClientFault> {
        match self.cause {
            Cause::Client(fault) => Some(fault),
            _ => None,
        }
    }

    fn client(fault: ClientFault) -> Self {
        Error { kind: ErrorKind::ClientBody, cause: Cause::Client(fault) }
    }

    fn connect(e: io::Error) -> Self {
        Error { kind: ErrorKind::Connect, cause: Cause::Io(e) }
    }

    fn io(e: io::Error) -> Self {
        Error { kind: ErrorKind::Closed, cause: Cause::Io(e) }
    }

    fn closed() -> Self {
        Error { kind: ErrorKind::Closed, cause: Cause::Closed }
    }

    fn invalid(why: &'static str) -> Self {
        Error { kind: ErrorKind::Invalid, cause: Cause::Invalid(why) }
    }

    fn too_large_head(why: &'static str) -> Self {
        Error { kind: ErrorKind::Invalid, cause: Cause::TooLarge(why) }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Cause::Io(e) => write!(f, "{e}"),
            Cause::Closed => f.write_str("connection closed before the response"),
            Cause::Invalid(why) | Cause::TooLarge(why) => write!(f, "invalid response: {why}"),
            Cause::Client(fault) => write!(f, "{fault}"),
            Cause::Hyper(e) => {
                // The innermost error: "Connection refused", not "client error (Connect)".
                let mut cause: &(dyn std::error::Error + 'static) = &**e;
                while let Some(source) = cause.source() {
                    cause = source;
                }
                write!(f, "{cause}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            Cause::Io(e) => Some(e),
            Cause::Hyper(e) => Some(&**e),
            Cause::Closed | Cause::Invalid(_) | Cause::TooLarge(_) | Cause::Client(_) => None,
        }
    }
}
