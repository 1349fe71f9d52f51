//! A connection to a backend and one exchange on it: connect, write the request, read the
//! response head. The request's own task does all of it (see the [module docs](super)); the
//! body is then read from the same connection by [`ResponseBody`].

use std::io;

use bytes::{Bytes, BytesMut};
use http::{Method, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::body::{respond, ResponseBody};
use super::codec::{encode, parse_head, Head, INLINE_BODY};
use super::idle::checkout;
use super::{Error, Request, Target};

/// A connection to a backend, with what lb has read from it and not yet used.
pub(super) struct Conn {
    pub(super) target: Target,
    pub(super) stream: TcpStream,
    pub(super) read: BytesMut,
    pub(super) write: Vec<u8>,
}

/// Sends `req` with its whole `body` to `target` over an idle pooled connection or a new one,
/// and answers with the response head; its body streams from the connection. A stale pooled
/// connection (see [`send`](super::send)) is replaced once by a new one for an idempotent
/// request.
pub(super) async fn send(
    target: Target,
    req: &Request<'_>,
    body: Option<&Bytes>,
) -> Result<Response<ResponseBody>, Error> {
    let idempotent = crate::retry::is_idempotent(req.method);
    let mut pooled = checkout(target.addr, !idempotent);
    loop {
        let reused = pooled.is_some();
        let mut conn = match pooled.take() {
            Some(conn) => conn,
            None => connect(&target).await?,
        };
        conn.target = target;
        encode(&mut conn.write, req, body);
        match exchange(&mut conn, req.method, body).await {
            Ok(head) => return Ok(respond(conn, head)),
            Err(failed) if reused && idempotent && failed.stale => continue,
            Err(failed) => return Err(failed.error),
        }
    }
}

async fn connect(target: &Target) -> Result<Conn, Error> {
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
struct Failed {
    error: Error,
    stale: bool,
}

async fn exchange(conn: &mut Conn, method: &Method, body: Option<&Bytes>) -> Result<Head, Failed> {
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
