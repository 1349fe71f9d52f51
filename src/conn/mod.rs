//! A client connection from accept to close: which protocol it speaks, and a deadline in every
//! phase of it.
//!
//! - [`io`]: [`ClientIo`], the client's socket as hyper sees it: hands back the bytes
//!   detection read, and closes a connection whose client stops reading (`--send-timeout`).
//! - [`detect`](mod@detect): HTTP/1 or HTTP/2 (prior knowledge), read with a deadline: a client that sends
//!   nothing, or part of the HTTP/2 preface, is closed at `--header-read-timeout`.
//! - [`framing`]: HTTP/1 request framing checked on the raw bytes, before hyper parses them:
//!   what hyper would hide from lb's handler (`Content-Length` with `Transfer-Encoding`, two
//!   `Content-Length`s, a `#fragment`) is refused with `400`.
//! - [`head`]: HTTP/1's deadlines between and for request heads: `--keep-alive-timeout` while
//!   idle, `--header-read-timeout` from the first byte of a head.
//! - [`h2`]: HTTP/2's idle deadline (`--h2-idle-timeout`: no open stream for that long, GOAWAY).
//!
//! Idle connections (keep-alive, HTTP/2 without a stream) wait on deadlines marked idle
//! ([`Deadline::idle_at`](crate::timer::Deadline::idle_at)), so that at the connection limit
//! [`close_idle`](crate::timer::close_idle) closes them first.

pub mod detect;
pub mod framing;
pub mod h2;
pub mod head;
pub mod io;

pub use detect::{detect, Protocol};
pub use io::ClientIo;
