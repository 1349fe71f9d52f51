//! A connection to a backend of lb's own client and one exchange on it: connect, write the
//! request, read the response head. The request's own task does all of it, in
//! [`send`](super::send) (see the [module docs](super)); the body is then read from the same
//! connection by [`ResponseBody`](super::ResponseBody).

use std::io;

use bytes::{Bytes, BytesMut};
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec::{parse_head, Head, INLINE_BODY};
use super::{Error, Target};

/// A connection to a backend, with what lb has read from it and not yet used.
pub(super) struct Conn {
    pub(super) target: Target,
    pub(super) stream: TcpStream,
    pub(super) read: BytesMut,
    pub(super) write: Vec<u8>,
}

/// A new connection to `target`.
pub(super) async fn connect(target: &Target) -> Result<Conn, Error> {
    let stream = match tokio::time::timeout(target.connect_timeout, TcpStream::connect(target.addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(Error::connect(e)),
        Err(_) => {
            let why = format!("connect timed out after {:?}", target.connect_timeout);
            return Err(Error::connect(io::Error::new(io::ErrorKind::TimedOut, why)));
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(Conn { target: *target, stream, read: BytesMut::with_capacity(4096), write: Vec::with_capacity(512) })
}

/// A failed exchange; `stale`: it failed the way a connection the backend had already closed
/// fails (the write failed, or EOF or a reset came before any byte of a response).
pub(super) struct Failed {
    pub(super) error: Error,
    pub(super) stale: bool,
}

/// Writes the request already encoded in `conn.write` (and a `body` too large to go with it),
/// then reads the response head.
pub(super) async fn exchange(conn: &mut Conn, method: &Method, body: Option<&Bytes>) -> Result<Head, Failed> {
    let written = async {
        conn.stream.write_all(&conn.write).await?;
        match body {
            Some(body) if body.len() > INLINE_BODY => conn.stream.write_all(body).await,
            _ => Ok(()),
        }
    };
    if let Err(e) = written.await {
        return Err(Failed { error: Error::io(e), stale: true });
    }
    let head_request = *method == Method::HEAD;
    loop {
        match parse_head(&mut conn.read, head_request) {
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {}
            Err(error) => return Err(Failed { error, stale: false }),
        }
        conn.read.reserve(4096);
        match conn.stream.read_buf(&mut conn.read).await {
            Ok(0) if conn.read.is_empty() => return Err(Failed { error: Error::closed(), stale: true }),
            Ok(0) => {
                let error = Error::invalid("connection closed in the middle of the head");
                return Err(Failed { error, stale: false });
            }
            Ok(_) => {}
            Err(e) => {
                let stale = conn.read.is_empty() && e.kind() == io::ErrorKind::ConnectionReset;
                return Err(Failed { error: Error::io(e), stale });
            }
        }
    }
}
