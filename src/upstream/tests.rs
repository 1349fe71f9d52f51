//! The kind of each [`Error`] and whether it was sent, on both paths, against scripted
//! backends on loopback: what proxy's retry and health decisions read.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, Method, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::*;

/// How long any one test may take.
const LIMIT: Duration = Duration::from_secs(10);

/// A backend that reads one request (head, then a `Content-Length` body) on each connection,
/// writes `answer` (maybe nothing) and closes.
async fn backend(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                read_request(&mut stream).await;
                let _ = stream.write_all(answer).await;
            });
        }
    });
    addr
}

async fn read_request(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                return;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// An address nothing listens on: connecting is refused.
fn refused() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A listener that never accepts, its accept queue filled: Linux drops further SYNs, so a
/// connect neither succeeds nor fails until the client gives up. Keep both until done.
async fn unanswered() -> (TcpListener, Vec<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    // Full once two connects in a row time out (one could be just slow).
    let mut timed_out = 0;
    while timed_out < 2 {
        assert!(queued.len() < 64, "the accept queue never filled up");
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                queued.push(stream);
                timed_out = 0;
            }
            Ok(Err(e)) => panic!("filling the accept queue: {e}"),
            Err(_) => timed_out += 1,
        }
    }
    (listener, queued)
}

fn target(addr: SocketAddr) -> Target {
    Target { addr, connect_timeout: Duration::from_secs(2), idle_timeout: Duration::from_secs(60) }
}

/// A body lb's own client sends: none.
fn own() -> AttemptBody {
    AttemptBody::Empty
}

/// A body only hyper's client sends: held, but larger than [`MAX_BODY`].
fn streamed() -> AttemptBody {
    AttemptBody::Held(Some(Bytes::from(vec![b'x'; MAX_BODY + 1])))
}

/// `PUT /` with `body` to `to`: it must fail; its error.
async fn failed(to: Target, body: AttemptBody) -> Error {
    let authority = Authority::try_from(to.addr.to_string()).unwrap();
    let headers = HeaderMap::new();
    let req = Request {
        method: &Method::PUT,
        target: &PathAndQuery::from_static("/"),
        headers: &headers,
        authority: &authority,
        body: &body,
    };
    let sent = tokio::time::timeout(LIMIT, send(to, req)).await.expect("an answer within the test's limit");
    sent.map(|r: Response<ResponseBody>| r.status()).expect_err("the send must fail")
}

fn through_hyper(e: &Error) -> bool {
    matches!(e.cause, Cause::Hyper(_))
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error_not_sent() {
    let addr = refused();
    for (body, hyper) in [(own(), false), (streamed(), true)] {
        let e = failed(target(addr), body).await;
        assert_eq!(through_hyper(&e), hyper, "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Connect, "{e:?}");
        assert!(!e.sent(), "{e:?}");
        assert!(e.to_string().starts_with("Connection refused"), "the innermost error: {e}");
    }
}

#[tokio::test]
async fn a_connect_timeout_is_a_connect_error_not_sent() {
    let (listener, _queued) = unanswered().await;
    let to = Target { connect_timeout: Duration::from_millis(300), ..target(listener.local_addr().unwrap()) };
    for (body, hyper) in [(own(), false), (streamed(), true)] {
        let started = Instant::now();
        let e = failed(to, body).await;
        assert_eq!(through_hyper(&e), hyper, "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Connect, "{e:?}");
        assert!(!e.sent(), "{e:?}");
        assert!(started.elapsed() >= Duration::from_millis(300), "{e}");
    }
}

#[tokio::test]
async fn a_backend_closing_before_it_answers_is_closed_and_sent() {
    let addr = backend(b"").await;
    for (body, hyper) in [(own(), false), (streamed(), true)] {
        let e = failed(target(addr), body).await;
        assert_eq!(through_hyper(&e), hyper, "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Closed, "{e:?}");
        assert!(e.sent(), "{e:?}");
    }
}

#[tokio::test]
async fn an_invalid_head_is_invalid_and_sent() {
    let addr = backend(b"HTTP/1.1 abc OK\r\n\r\n").await;
    let e = failed(target(addr), own()).await;
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e:?}");
    assert!(e.sent(), "the backend answered");
    assert_eq!(e.to_string(), "invalid response: malformed head");
}

#[tokio::test]
async fn an_invalid_head_through_hyper_is_invalid_as_through_lbs_own_client() {
    let addr = backend(b"HTTP/1.1 abc OK\r\n\r\n").await;
    let e = failed(target(addr), streamed()).await;
    assert!(through_hyper(&e), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e:?}");
    assert!(!e.too_large(), "{e:?}");
    assert!(e.sent(), "{e:?}");
}

#[tokio::test]
async fn a_head_only_too_large_is_told_apart_on_both_clients() {
    let mut huge = b"HTTP/1.1 200 OK\r\nx-echo: ".to_vec();
    huge.resize(huge.len() + 500 * 1024, b'a');
    huge.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
    let addr = backend(Box::leak(huge.into_boxed_slice())).await;
    for body in [own(), streamed()] {
        let e = failed(target(addr), body).await;
        assert_eq!(e.kind(), ErrorKind::Invalid, "{e:?}");
        assert!(e.too_large(), "{e:?}");
    }
    let e = failed(target(backend(b"HTTP/1.1 abc OK\r\n\r\n").await), own()).await;
    assert!(!e.too_large(), "{e:?}");
}
