//! lb's own HTTP/1.1 client to backends (`lb::upstream`), against scripted backends: raw TCP
//! servers on loopback that read the request bytes and write canned responses, whole or in
//! awkward pieces. Each test runs on one thread, as a worker does: the idle pool is per thread,
//! so reuse shows as the number of connections a backend accepted.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw_backend::{find, Backend, Wire};
use http::uri::Authority;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use lb::upstream::{self, AttemptBody, BodyError, Error, ErrorKind, ResponseBody, Target};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// How long any one test may take.
const LIMIT: Duration = Duration::from_secs(10);

/// `Host` the client sends when the request has none.
const DEFAULT_HOST: &str = "backend.test:8080";

/// Runs a test's body within [`LIMIT`].
async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, test).await.expect("test did not finish within its time limit")
}

// ---- the client side ----

fn target(addr: SocketAddr) -> Target {
    Target { addr, connect_timeout: Duration::from_secs(2), idle_timeout: Duration::from_secs(60) }
}

/// Sends `method path` with no headers and no body.
async fn send(addr: SocketAddr, method: Method, path: &str) -> Result<Response<ResponseBody>, Error> {
    send_with(target(addr), &method, path, &HeaderMap::new(), None).await
}

async fn send_with(
    to: Target,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Option<&Bytes>,
) -> Result<Response<ResponseBody>, Error> {
    // As a data-plane worker does: this test's current-thread runtime pools connections.
    upstream::install();
    let authority = Authority::from_static(DEFAULT_HOST);
    let target = path.parse().expect("an origin-form target");
    let body = body.map_or(AttemptBody::Empty, |body| AttemptBody::Held(Some(body.clone())));
    let request = upstream::Request { method, target: &target, headers, authority: &authority, body: &body };
    upstream::send(to, request).await
}

/// The whole body, or the error it ended with.
async fn body(response: Response<ResponseBody>) -> Result<Bytes, BodyError> {
    response.into_body().collect().await.map(|collected| collected.to_bytes())
}

/// `GET path`: it must succeed; the status and the whole body.
async fn get(addr: SocketAddr, path: &str) -> (StatusCode, Bytes) {
    let response = send(addr, Method::GET, path).await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status();
    (status, body(response).await.unwrap_or_else(|e| panic!("GET {path}: body: {e}")))
}

/// `len` bytes of a pattern that shows a misplaced or missing slice.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// The error of a send that must fail.
fn failed(result: Result<Response<ResponseBody>, Error>) -> Error {
    match result {
        Err(e) => e,
        Ok(r) => panic!("expected an error, got {}", r.status()),
    }
}

/// Why a response was invalid; the send must have failed that way.
fn invalid_reason(result: Result<Response<ResponseBody>, Error>) -> String {
    match result {
        Err(e) if e.kind() == ErrorKind::Invalid => {
            let message = e.to_string();
            message.strip_prefix("invalid response: ").unwrap_or_else(|| panic!("{message}")).to_owned()
        }
        Err(e) => panic!("expected an invalid response, got error {e:?}"),
        Ok(r) => panic!("expected an invalid response, got {}", r.status()),
    }
}

/// The kind of the I/O error behind `e`, if one is.
fn io_kind(e: &Error) -> Option<std::io::ErrorKind> {
    std::error::Error::source(e)?.downcast_ref::<std::io::Error>().map(|io| io.kind())
}

/// A backend answering the requests on each connection with `responses`, one each, in order.
async fn answering_in_order(responses: &'static [&'static [u8]]) -> Backend {
    Backend::start(move |mut peer| async move {
        for response in responses {
            peer.request().await;
            peer.send(response).await;
        }
    })
    .await
}

// ---- Content-Length bodies ----

#[tokio::test]
async fn content_length_body_read_whole_with_the_head() {
    bounded(async {
        let backend = Backend::answering(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Multi: a\r\nx-multi: b\r\nServer: s\r\n\r\nhello world"[..],
        )
        .await;
        let response = send(backend.addr, Method::GET, "/").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), Version::HTTP_11);
        let multi: Vec<_> = response.headers().get_all("x-multi").iter().collect();
        assert_eq!(multi, ["a", "b"]);
        assert_eq!(response.headers()["server"], "s");
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "11");
        assert_eq!(response.body().size_hint().exact(), Some(11));
        assert_eq!(body(response).await.unwrap(), "hello world");

        assert_eq!(get(backend.addr, "/again").await, (StatusCode::OK, Bytes::from_static(b"hello world")));
        assert_eq!(backend.accepted(), 1, "the second request reuses the connection");
    })
    .await;
}

#[tokio::test]
async fn content_length_body_of_one_mib_in_many_writes() {
    bounded(async {
        let body_bytes = pattern(1024 * 1024);
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body_bytes.len()
        )
        .into_bytes();
        let head_len = response.len();
        response.extend_from_slice(&body_bytes);
        // Cut inside the status line, inside a header name, just before the blank line, right
        // after the head, then through the body at uneven offsets, one byte before its end.
        let mut cuts = vec![4, 20, head_len - 2, head_len, head_len + 1, head_len + 7];
        let mut at = head_len + 7;
        for step in [4093, 65_536, 1, 100_000, 16_385, 250_000, 3, 333_333] {
            at += step;
            cuts.push(at);
        }
        cuts.push(response.len() - 1);
        let response = Arc::new(response);
        let backend = Backend::start(move |mut peer| {
            let (response, cuts) = (response.clone(), cuts.clone());
            async move {
                while peer.request().await.is_some() {
                    peer.send_pieces(&response, &cuts).await;
                }
            }
        })
        .await;

        for path in ["/big", "/big-again"] {
            let response = send(backend.addr, Method::GET, path).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.body().size_hint().exact(), Some(body_bytes.len() as u64));
            let got = body(response).await.unwrap();
            assert_eq!(got.len(), body_bytes.len());
            assert!(got == body_bytes, "the body came back altered");
        }
        assert_eq!(backend.accepted(), 1, "a body read to its end gives the connection back");
    })
    .await;
}

#[tokio::test]
async fn repeated_equal_content_lengths_and_zero_length_bodies_are_fine() {
    bounded(async {
        let backend = answering_in_order(&[
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 201 Created\r\ncontent-length: 007\r\n\r\ncreated",
        ])
        .await;
        assert_eq!(get(backend.addr, "/1").await, (StatusCode::OK, Bytes::from_static(b"hello")));
        assert_eq!(get(backend.addr, "/2").await, (StatusCode::OK, Bytes::new()));
        assert_eq!(get(backend.addr, "/3").await, (StatusCode::CREATED, Bytes::from_static(b"created")));
        assert_eq!(backend.accepted(), 1);
    })
    .await;
}

// ---- chunked bodies ----

const CHUNKED_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
/// Extensions, uppercase hex, whitespace before an extension, and trailers.
const CHUNKED_BODY: &[u8] = b"5;ext=1\r\nhello\r\n\
    1A\r\nabcdefghijklmnopqrstuvwxyz\r\n\
    3 ; a=b;c=\"d\"\r\nxyz\r\n\
    0\r\nX-Trailer: t\r\nX-Other: o\r\n\r\n";
const CHUNKED_DECODED: &[u8] = b"helloabcdefghijklmnopqrstuvwxyzxyz";

#[tokio::test]
async fn chunked_body_with_extensions_uppercase_hex_and_trailers() {
    bounded(async {
        let backend = Backend::answering([CHUNKED_HEAD, CHUNKED_BODY].concat()).await;
        let response = send(backend.addr, Method::GET, "/").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::TRANSFER_ENCODING], "chunked");
        assert_eq!(body(response).await.unwrap(), CHUNKED_DECODED);
        // The trailers were read to their end: the next response parses on the same connection.
        assert_eq!(get(backend.addr, "/again").await.1, CHUNKED_DECODED);
        assert_eq!(backend.accepted(), 1);
    })
    .await;
}

#[tokio::test]
async fn chunked_body_cut_at_awkward_boundaries() {
    bounded(async {
        let response = [CHUNKED_HEAD, CHUNKED_BODY].concat();
        let at = |needle: &[u8]| find(&response, needle).unwrap();
        let cuts = vec![
            CHUNKED_HEAD.len(),     // head alone
            CHUNKED_HEAD.len() + 1, // "5" | ";ext=1"
            at(b"=1\r\n") + 3,      // between CR and LF of a size line
            at(b"hello") + 2,       // inside chunk data
            at(b"hello") + 5,       // between data and its CRLF
            at(b"hello") + 6,       // between that CR and LF
            at(b"1A\r\n") + 1,      // inside the size line: "1" | "A"
            at(b"xyz\r\n0") + 3,    // between the last data and its CRLF
            at(b"0\r\nX-T") + 1,    // "0" | CRLF
            at(b"X-Trailer") + 4,   // inside a trailer
            at(b": o\r\n") + 4,     // between CR and LF of the last trailer
            response.len() - 2,     // between the last trailer and the final CRLF
            response.len() - 1,     // between the final CR and LF
        ];
        let backend = Backend::start(move |mut peer| {
            let (response, cuts) = (response.clone(), cuts.clone());
            async move {
                while peer.request().await.is_some() {
                    peer.send_pieces(&response, &cuts).await;
                }
            }
        })
        .await;
        assert_eq!(get(backend.addr, "/1").await.1, CHUNKED_DECODED);
        assert_eq!(get(backend.addr, "/2").await.1, CHUNKED_DECODED);
        assert_eq!(backend.accepted(), 1);
    })
    .await;
}

#[tokio::test]
async fn chunked_response_dripped_one_byte_at_a_time() {
    bounded(async {
        let backend = Backend::start(|mut peer| async move {
            while peer.request().await.is_some() {
                peer.drip(&[CHUNKED_HEAD, CHUNKED_BODY].concat()).await;
            }
        })
        .await;
        assert_eq!(get(backend.addr, "/1").await.1, CHUNKED_DECODED);
        assert_eq!(get(backend.addr, "/2").await.1, CHUNKED_DECODED);
        assert_eq!(backend.accepted(), 1);
    })
    .await;
}

#[tokio::test]
async fn large_chunked_body_in_uneven_writes() {
    bounded(async {
        let data = pattern(300 * 1024);
        let mut wire = CHUNKED_HEAD.to_vec();
        let mut at = 0;
        let mut size = 1;
        while at < data.len() {
            let n = size.min(data.len() - at);
            wire.extend_from_slice(format!("{n:X}\r\n").as_bytes());
            wire.extend_from_slice(&data[at..at + n]);
            wire.extend_from_slice(b"\r\n");
            at += n;
            size = size * 3 + 7;
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let cuts: Vec<usize> = (1..wire.len()).step_by(7_777).skip(1).collect();
        let backend = Backend::start(move |mut peer| {
            let (wire, cuts) = (wire.clone(), cuts.clone());
            async move {
                while peer.request().await.is_some() {
                    peer.send_pieces(&wire, &cuts).await;
                }
            }
        })
        .await;
        for path in ["/1", "/2"] {
            let got = get(backend.addr, path).await.1;
            assert!(got == data, "the chunked body came back altered ({} bytes, want {})", got.len(), data.len());
        }
        assert_eq!(backend.accepted(), 1);
    })
    .await;
}

#[tokio::test]
async fn transfer_encoding_chunked_wins_over_content_length() {
    bounded(async {
        let backend = Backend::answering(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..],
        )
        .await;
        assert_eq!(get(backend.addr, "/").await.1, "hello");
    })
    .await;
}

// ---- bodies read until close ----

#[tokio::test]
async fn body_read_until_close_and_the_connection_is_not_reused() {
    bounded(async {
        let data = pattern(100_000);
        let body_data = data.clone();
        let backend = Backend::start(move |mut peer| {
            let data = body_data.clone();
            async move {
                if peer.request().await.is_some() {
                    peer.send(b"HTTP/1.1 200 OK\r\nServer: old\r\n\r\nfirst bytes ").await;
                    peer.send_pieces(&data, &[1, 10, 5_000, 70_000]).await;
                }
                // Then the connection closes: that ends the body.
            }
        })
        .await;
        let response = send(backend.addr, Method::GET, "/").await.unwrap();
        assert_eq!(response.body().size_hint().exact(), None);
        let got = body(response).await.unwrap();
        assert_eq!(&got[..12], b"first bytes ");
        assert!(got[12..] == data, "the body came back altered");

        assert_eq!(get(backend.addr, "/again").await.1.len(), 12 + data.len());
        assert_eq!(backend.accepted(), 2, "a connection whose end ended the body is not reused");
    })
    .await;
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_an_invalid_response() {
    bounded(async {
        let backend = Backend::start(|mut peer| async move {
            if let Some(request) = peer.request().await {
                // lb decodes only `chunked`: passing these bytes on would hand the client lb's
                // framing of the backend's coding.
                let coding = if request.starts_with(b"GET /a ") { "gzip" } else { "gzip, chunked" };
                let response =
                    format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {coding}\r\n\r\n2\r\nnot gzip\r\n0\r\n\r\n");
                peer.send(response.as_bytes()).await;
            }
        })
        .await;
        for path in ["/a", "/b"] {
            let e = failed(send(backend.addr, Method::GET, path).await);
            assert_eq!(e.kind(), ErrorKind::Invalid, "{path}: {e}");
        }
        assert_eq!(backend.accepted(), 2, "the connection of an invalid response is not reused");
    })
    .await;
}

// ---- responses without a body ----

/// A backend answering `HEAD` with `head_response` and anything else with `ok`.
async fn answering_head_with(head_response: &'static [u8]) -> Backend {
    Backend::start(move |mut peer| async move {
        while let Some(request) = peer.request().await {
            if request.starts_with(b"HEAD ") {
                peer.send(head_response).await;
            } else {
                peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
            }
        }
    })
    .await
}

#[tokio::test]
async fn head_response_has_no_body_and_keeps_the_connection() {
    bounded(async {
        let backend = answering_head_with(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n").await;
        let response = send(backend.addr, Method::HEAD, "/").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "100", "the length of what a GET would get");
        assert!(response.body().is_end_stream());
        assert_eq!(body(response).await.unwrap(), "");
        assert_eq!(get(backend.addr, "/").await.1, "ok");

        // A chunked HEAD response has no body either.
        let chunked = answering_head_with(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").await;
        let response = send(chunked.addr, Method::HEAD, "/").await.unwrap();
        assert_eq!(body(response).await.unwrap(), "");
        assert_eq!(get(chunked.addr, "/").await.1, "ok");

        assert_eq!(backend.accepted(), 1);
        assert_eq!(chunked.accepted(), 1);
    })
    .await;
}

#[tokio::test]
async fn no_content_and_not_modified_have_no_body() {
    bounded(async {
        let backend = answering_in_order(&[
            b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\nETag: \"x\"\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast",
        ])
        .await;
        assert_eq!(get(backend.addr, "/204").await, (StatusCode::NO_CONTENT, Bytes::new()));
        assert_eq!(get(backend.addr, "/304").await, (StatusCode::NOT_MODIFIED, Bytes::new()));
        assert_eq!(get(backend.addr, "/304-chunked").await, (StatusCode::NOT_MODIFIED, Bytes::new()));
        // Had the client taken any of the above as having a body, this would not parse.
        assert_eq!(get(backend.addr, "/200").await, (StatusCode::OK, Bytes::from_static(b"last")));
        assert_eq!(backend.accepted(), 1);
    })
    .await;
}

// ---- interim responses ----

#[tokio::test]
async fn interim_responses_before_the_final_one_are_skipped() {
    bounded(async {
        let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n";
        let last = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let backend = Backend::start(move |mut peer| async move {
            // The interim responses alone, then with the final one, then all of it cut at odd places.
            peer.request().await;
            peer.send(interim).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
            peer.send(last).await;
            peer.request().await;
            let all = [&interim[..], &last[..]].concat();
            peer.send(&all).await;
            peer.request().await;
            peer.send_pieces(&all, &[10, 24, 30, interim.len() + 5]).await;
        })
        .await;
        for path in ["/1", "/2", "/3"] {
            let response = send(backend.addr, Method::GET, path).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert!(!response.headers().contains_key(header::LINK), "interim headers stay with the interim response");
            assert_eq!(body(response).await.unwrap(), "ok");
        }
        assert_eq!(backend.accepted(), 1);
    })
    .await;
}

#[tokio::test]
async fn switching_protocols_is_refused() {
    bounded(async {
        let backend = Backend::answering(
            &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"[..],
        )
        .await;
        let why = invalid_reason(send(backend.addr, Method::GET, "/").await);
        assert!(why.contains("protocol switch"), "{why}");
    })
    .await;
}

// ---- keep-alive ----

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    bounded(async {
        let backend = Backend::answering(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]).await;
        for i in 0..5 {
            assert_eq!(get(backend.addr, &format!("/{i}")).await.1, "ok");
        }
        assert_eq!(backend.accepted(), 1);
        let want: Vec<(usize, String)> = (0..5).map(|i| (0, format!("GET /{i} HTTP/1.1"))).collect();
        assert_eq!(backend.request_lines(), want);
    })
    .await;
}

#[tokio::test]
async fn connection_close_response_is_not_reused() {
    bounded(async {
        for response in [
            &b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"[..],
            &b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nok"[..],
            &b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"[..],
        ] {
            // The backend keeps its side open: only the client's choice shows.
            let backend = Backend::answering(response).await;
            assert_eq!(get(backend.addr, "/1").await.1, "ok");
            assert_eq!(get(backend.addr, "/2").await.1, "ok");
            assert_eq!(backend.accepted(), 2, "{}", String::from_utf8_lossy(response));
            backend.wait("the client closed the first connection", |s| s.ended >= 1).await;
        }
    })
    .await;
}

#[tokio::test]
async fn http_1_0_response_is_not_reused() {
    bounded(async {
        let backend =
            Backend::answering(&b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"[..]).await;
        assert_eq!(get(backend.addr, "/1").await.1, "ok");
        assert_eq!(get(backend.addr, "/2").await.1, "ok");
        assert_eq!(backend.accepted(), 2);
        backend.wait("the client closed the first connection", |s| s.ended >= 1).await;
    })
    .await;
}

#[tokio::test]
async fn body_dropped_before_its_end_does_not_give_the_connection_back() {
    bounded(async {
        let backend = Backend::start(|mut peer| async move {
            if peer.index == 0 {
                peer.request().await;
                peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello").await;
                peer.until_closed().await;
            } else {
                while peer.request().await.is_some() {
                    peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                }
            }
        })
        .await;
        let mut response = send(backend.addr, Method::GET, "/").await.unwrap();
        let frame = response.body_mut().frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "hello");
        drop(response);
        backend.wait("the client closed the connection it gave up on", |s| s.ended >= 1).await;
        assert_eq!(get(backend.addr, "/").await.1, "ok");
        assert_eq!(backend.accepted(), 2);
    })
    .await;
}

#[tokio::test]
async fn bytes_after_the_body_prevent_reuse() {
    bounded(async {
        let backend = Backend::start(|mut peer| async move {
            if peer.request().await.is_some() {
                match peer.index {
                    // Whole with the head, then something that is no part of any response.
                    0 => peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n").await,
                    // The body streams, and its last read carries more.
                    1 => {
                        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nok").await;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        peer.send(b"ok+extra").await;
                    }
                    _ => peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await,
                }
                peer.until_closed().await;
            }
        })
        .await;
        assert_eq!(get(backend.addr, "/1").await.1, "ok");
        assert_eq!(get(backend.addr, "/2").await.1, "okok");
        assert_eq!(get(backend.addr, "/3").await.1, "ok");
        assert_eq!(backend.accepted(), 3);
        backend.wait("the client closed both connections", |s| s.ended >= 2).await;
    })
    .await;
}

#[tokio::test]
async fn idle_connection_past_its_idle_timeout_is_closed_and_not_reused() {
    bounded(async {
        let backend = Backend::answering(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]).await;
        let to = Target { idle_timeout: Duration::from_millis(200), ..target(backend.addr) };
        let get_ok = || async {
            let response = send_with(to, &Method::GET, "/", &HeaderMap::new(), None).await.unwrap();
            assert_eq!(body(response).await.unwrap(), "ok");
        };
        get_ok().await;
        get_ok().await;
        assert_eq!(backend.accepted(), 1, "reused within its idle timeout");
        // The idle timeout holds to within one sweep of the pool (a second): the client closes
        // the connection on its own some time after it expired.
        backend.wait("the client closed the expired connection", |s| s.ended >= 1).await;
        get_ok().await;
        assert_eq!(backend.accepted(), 2, "not reused past its idle timeout: {:?}", backend.request_lines());
    })
    .await;
}

// ---- stale idle connections ----

/// A backend that answers the first request on each connection, then closes the connection
/// once `close` is notified (the client has read the answer), and notifies `closed`.
async fn closes_when_told(close: Arc<Notify>, closed: Arc<Notify>) -> Backend {
    Backend::start(move |mut peer| {
        let (close, closed) = (close.clone(), closed.clone());
        async move {
            if peer.request().await.is_some() {
                peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
            }
            close.notified().await;
            drop(peer);
            closed.notify_one();
        }
    })
    .await
}

/// `GET /1` to a [`closes_when_told`] backend, which then closes that connection while it sits
/// idle in the pool; then `method /2` (a POST with a body): its result.
///
/// With `noticed`, the runtime polls its I/O driver before the second request, which sees the
/// FIN already there. Without, the caller runs this in a task of its own, as lb runs requests:
/// woken by the close, it runs right away, likely before the driver is polled again, and the
/// second request goes on the closed connection. (A test's own future is polled only after
/// the driver is, so it would notice every time.)
async fn after_idle_close(
    addr: SocketAddr,
    close: Arc<Notify>,
    closed: Arc<Notify>,
    method: Method,
    noticed: bool,
) -> Result<Bytes, Error> {
    assert_eq!(get(addr, "/1").await.1, "ok");
    close.notify_one();
    closed.notified().await;
    if noticed {
        // Any sleep parks the runtime, which polls the driver.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let payload = Bytes::from_static(b"payload");
    let held = (method == Method::POST).then_some(&payload);
    match send_with(target(addr), &method, "/2", &HeaderMap::new(), held).await {
        Ok(response) => Ok(body(response).await.unwrap()),
        Err(e) => Err(e),
    }
}

#[tokio::test]
async fn get_after_the_backend_closed_the_idle_connection_succeeds_on_a_new_one() {
    bounded(async {
        for noticed in [true, false] {
            let (close, closed) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
            let backend = closes_when_told(close.clone(), closed.clone()).await;
            let second = after_idle_close(backend.addr, close.clone(), closed, Method::GET, noticed);
            // Noticed or not before sending, no error comes out: a GET is sent again.
            let result = if noticed { second.await } else { tokio::spawn(second).await.unwrap() };
            close.notify_one();
            assert_eq!(result.unwrap_or_else(|e| panic!("noticed {noticed}: {e}")), "ok");
            assert_eq!(backend.accepted(), 2);
            let want = [(0, "GET /1 HTTP/1.1".to_owned()), (1, "GET /2 HTTP/1.1".to_owned())];
            assert_eq!(backend.request_lines(), want, "noticed {noticed}");
        }
    })
    .await;
}

#[tokio::test]
async fn post_after_the_backend_closed_the_idle_connection_goes_on_a_new_one_once_noticed() {
    bounded(async {
        let (close, closed) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let backend = closes_when_told(close.clone(), closed.clone()).await;
        let result = after_idle_close(backend.addr, close.clone(), closed, Method::POST, true).await;
        close.notify_one();
        assert_eq!(result.expect("the closed connection was noticed before the POST went on it"), "ok");
        assert_eq!(backend.accepted(), 2);
        assert_eq!(backend.request_lines(), [(0, "GET /1 HTTP/1.1".to_owned()), (1, "POST /2 HTTP/1.1".to_owned())]);
    })
    .await;
}

#[tokio::test]
async fn post_racing_the_backend_closing_the_idle_connection_is_never_sent_twice() {
    bounded(async {
        let (close, closed) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let backend = closes_when_told(close.clone(), closed.clone()).await;
        let result =
            tokio::spawn(after_idle_close(backend.addr, close.clone(), closed, Method::POST, false)).await.unwrap();
        close.notify_one();
        let posts = backend.request_lines().iter().filter(|(_, l)| l.starts_with("POST ")).count();
        match result {
            // Noticed in time after all: sent once, on a new connection.
            Ok(got) => {
                assert_eq!(got, "ok");
                assert_eq!(posts, 1);
                assert_eq!(backend.accepted(), 2);
            }
            // Sent on the closed connection (what happens here in practice): an error, and
            // never sent again.
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Closed, "{e:?}");
                assert_eq!(posts, 0, "the backend had closed that connection");
                assert_eq!(backend.accepted(), 1, "the POST was not sent again on a new connection");
            }
        }
    })
    .await;
}

/// A backend that, on its first connection, answers the first request, then reads the second
/// and closes without an answer; it answers everything on later connections.
async fn closes_after_reading_the_second_request() -> Backend {
    Backend::start(|mut peer| async move {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        if peer.index == 0 {
            peer.request().await;
            peer.send(ok).await;
            peer.request().await;
            return;
        }
        while peer.request().await.is_some() {
            peer.send(ok).await;
        }
    })
    .await
}

#[tokio::test]
async fn idempotent_request_on_a_reused_connection_closed_without_answer_is_sent_again() {
    bounded(async {
        for method in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE, Method::OPTIONS] {
            let backend = closes_after_reading_the_second_request().await;
            assert_eq!(get(backend.addr, "/1").await.1, "ok");
            let response = send(backend.addr, method.clone(), "/2").await.unwrap_or_else(|e| panic!("{method}: {e}"));
            assert_eq!(response.status(), StatusCode::OK);
            let line = format!("{method} /2 HTTP/1.1");
            assert_eq!(
                backend.request_lines(),
                [(0, "GET /1 HTTP/1.1".to_owned()), (0, line.clone()), (1, line)],
                "{method}: sent again on a new connection"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn non_idempotent_request_on_a_reused_connection_closed_without_answer_is_not_sent_again() {
    bounded(async {
        for method in [Method::POST, Method::PATCH] {
            let backend = closes_after_reading_the_second_request().await;
            assert_eq!(get(backend.addr, "/1").await.1, "ok");
            let payload = Bytes::from_static(b"once");
            let result = send_with(target(backend.addr), &method, "/2", &HeaderMap::new(), Some(&payload)).await;
            assert!(
                matches!(&result, Err(e) if e.kind() == ErrorKind::Closed),
                "{method}: {:?}",
                result.map(|r| r.status())
            );
            assert_eq!(
                backend.request_lines(),
                [(0, "GET /1 HTTP/1.1".to_owned()), (0, format!("{method} /2 HTTP/1.1"))]
            );
            assert_eq!(backend.accepted(), 1, "{method}: no second connection");
        }
    })
    .await;
}

// ---- errors ----

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    bounded(async {
        let addr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let e = failed(send(addr, Method::GET, "/").await);
        assert_eq!(e.kind(), ErrorKind::Connect, "{e:?}");
        assert_eq!(io_kind(&e), Some(std::io::ErrorKind::ConnectionRefused), "{e:?}");
    })
    .await;
}

#[tokio::test]
async fn connect_timeout_is_a_connect_error() {
    bounded(async {
        // A listener that never accepts, its accept queue filled: Linux drops further SYNs, so
        // a connect neither succeeds nor fails until the client gives up.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
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
        let to = Target { connect_timeout: Duration::from_millis(300), ..target(addr) };
        let started = Instant::now();
        let e = failed(send_with(to, &Method::GET, "/", &HeaderMap::new(), None).await);
        assert_eq!(e.kind(), ErrorKind::Connect, "{e:?}");
        assert_eq!(io_kind(&e), Some(std::io::ErrorKind::TimedOut), "{e:?}");
        assert!(e.to_string().contains("connect timed out"), "{e}");
        assert!(started.elapsed() >= Duration::from_millis(300));
        drop(listener);
    })
    .await;
}

#[tokio::test]
async fn backend_closing_without_an_answer_is_closed() {
    bounded(async {
        let backend = Backend::start(|mut peer| async move {
            peer.request().await;
        })
        .await;
        let e = failed(send(backend.addr, Method::GET, "/").await);
        assert_eq!(e.kind(), ErrorKind::Closed, "{e:?}");
        assert_eq!(e.to_string(), "connection closed before the response");
        assert_eq!(backend.accepted(), 1, "a new connection that fails is not tried again");
    })
    .await;
}

#[tokio::test]
async fn backend_closing_in_the_middle_of_the_head_is_invalid() {
    bounded(async {
        let backend = Backend::start(|mut peer| async move {
            if peer.request().await.is_some() {
                peer.send(b"HTTP/1.1 200 OK\r\nContent-Le").await;
            }
        })
        .await;
        let why = invalid_reason(send(backend.addr, Method::GET, "/").await);
        assert_eq!(why, "connection closed in the middle of the head");
        assert_eq!(backend.accepted(), 1);
    })
    .await;
}

/// A backend that answers each connection's first request with the next of `responses`.
async fn answering_in_turn(responses: Vec<Vec<u8>>) -> Backend {
    let responses = Arc::new(responses);
    Backend::start(move |mut peer| {
        let responses = responses.clone();
        async move {
            if peer.request().await.is_some() {
                peer.send(&responses[peer.index]).await;
                peer.until_closed().await;
            }
        }
    })
    .await
}

#[tokio::test]
async fn malformed_heads_are_invalid() {
    bounded(async {
        let cases: Vec<(&[u8], &str)> = vec![
            (b"HTTP/1.1 abc OK\r\n\r\n", "malformed head"),
            (b"HTTP/1.1 20 OK\r\n\r\n", "malformed head"),
            (b"HTTP/2.0 200 OK\r\n\r\n", "malformed head"),
            (b"hello world\r\n\r\n", "malformed head"),
            (b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n", "malformed head"),
            (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "malformed head"),
            (b"HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n", "bad status code"),
        ];
        let backend = answering_in_turn(cases.iter().map(|(r, _)| r.to_vec()).collect()).await;
        for (response, want) in &cases {
            let why = invalid_reason(send(backend.addr, Method::GET, "/").await);
            assert_eq!(why, *want, "{}", String::from_utf8_lossy(response));
        }
        assert_eq!(backend.accepted(), cases.len(), "every connection with a bad head was dropped");
    })
    .await;
}

#[tokio::test]
async fn conflicting_or_bad_content_lengths_are_invalid() {
    bounded(async {
        let cases: Vec<(&[u8], &str)> = vec![
            (b"Content-Length: 5\r\nContent-Length: 6\r\n", "conflicting content-length values"),
            (b"Content-Length: 5, 6\r\n", "conflicting content-length values"),
            (b"Content-Length: 5\r\nContent-Length: 5, 7\r\n", "conflicting content-length values"),
            (b"Content-Length: abc\r\n", "bad content-length"),
            (b"Content-Length: -1\r\n", "bad content-length"),
            (b"Content-Length: +5\r\n", "bad content-length"),
            (b"Content-Length: 1 2\r\n", "bad content-length"),
            (b"Content-Length: 5,\r\n", "bad content-length"),
            (b"Content-Length:\r\n", "bad content-length"),
            (b"Content-Length: 99999999999999999999999\r\n", "bad content-length"),
        ];
        let responses = cases.iter().map(|(h, _)| [&b"HTTP/1.1 200 OK\r\n"[..], h, b"\r\nhello"].concat()).collect();
        let backend = answering_in_turn(responses).await;
        for (headers, want) in &cases {
            let why = invalid_reason(send(backend.addr, Method::GET, "/").await);
            assert_eq!(why, *want, "{}", String::from_utf8_lossy(headers));
        }
    })
    .await;
}

/// A response head of about `len` bytes in a few large headers (well under 100 of them).
fn big_head(len: usize) -> Vec<u8> {
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    let mut i = 0;
    while head.len() < len {
        let n = (len - head.len()).clamp(1, 30_000);
        head.extend_from_slice(format!("X-Big-{i}: ").as_bytes());
        head.extend(std::iter::repeat_n(b'a', n));
        head.extend_from_slice(b"\r\n");
        i += 1;
    }
    head
}

#[tokio::test]
async fn head_larger_than_400_kib_is_invalid() {
    bounded(async {
        // A head that never ends, and one that does but is far too large.
        let endless = big_head(500 * 1024);
        let mut whole = big_head(500 * 1024);
        whole.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
        let backend = answering_in_turn(vec![endless, whole]).await;
        for _ in 0..2 {
            let why = invalid_reason(send(backend.addr, Method::GET, "/").await);
            assert_eq!(why, "head larger than 400 KiB");
        }
    })
    .await;
}

#[tokio::test]
async fn head_just_under_400_kib_is_fine() {
    bounded(async {
        let mut head = big_head(390 * 1024);
        head.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
        let backend = Backend::answering(head).await;
        assert_eq!(get(backend.addr, "/").await.1, "ok");
    })
    .await;
}

#[tokio::test]
async fn head_larger_than_400_kib_arriving_in_two_parts_is_invalid() {
    bounded(async {
        let mut head = big_head(420_000);
        head.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
        let backend = Backend::start(move |mut peer| {
            let head = head.clone();
            async move {
                if peer.request().await.is_some() {
                    // The client takes in the first 408,000 bytes, grows its buffer because less
                    // than 4 KiB is free, then reads the rest in one go.
                    peer.send_pieces(&head, &[408_000]).await;
                    peer.until_closed().await;
                }
            }
        })
        .await;
        let result = send(backend.addr, Method::GET, "/").await;
        if let Ok(response) = &result {
            let head_len: usize = response.headers().iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
            panic!("a head of about {head_len} bytes was accepted, past the 400 KiB limit");
        }
        assert_eq!(invalid_reason(result), "head larger than 400 KiB");
    })
    .await;
}

#[tokio::test]
async fn more_than_100_headers_is_invalid_and_100_is_fine() {
    bounded(async {
        let head_with = |n: usize| {
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..n - 1 {
                head.extend_from_slice(format!("X-H{i}: {i}\r\n").as_bytes());
            }
            head.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
            head
        };
        let hundred = Backend::answering(head_with(100)).await;
        let response = send(hundred.addr, Method::GET, "/").await.unwrap();
        assert_eq!(response.headers().len(), 100);
        assert_eq!(body(response).await.unwrap(), "ok");

        let too_many = Backend::answering(head_with(101)).await;
        assert_eq!(invalid_reason(send(too_many.addr, Method::GET, "/").await), "more than 100 headers");
    })
    .await;
}

/// A backend that answers with `response` (which may be cut at `cuts`), then closes.
async fn answering_then_closing(response: &'static [u8], cuts: &'static [usize]) -> Backend {
    Backend::start(move |mut peer| async move {
        if peer.request().await.is_some() {
            peer.send_pieces(response, cuts).await;
        }
    })
    .await
}

/// The error a body ends with; it must end with one.
async fn body_error(backend: &Backend) -> String {
    let response = send(backend.addr, Method::GET, "/").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    match body(response).await {
        Err(e) => e.to_string(),
        Ok(got) => panic!("expected a body error, got a whole body: {got:?}"),
    }
}

#[tokio::test]
async fn truncated_content_length_body_is_a_body_error() {
    bounded(async {
        // With the head, and on a later read.
        let with_head = answering_then_closing(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", &[]).await;
        assert_eq!(body_error(&with_head).await, "backend response body: connection closed early");
        let later = answering_then_closing(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", &[38, 42]).await;
        assert_eq!(body_error(&later).await, "backend response body: connection closed early");
    })
    .await;
}

#[tokio::test]
async fn truncated_chunked_body_is_a_body_error() {
    bounded(async {
        for response in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: t\r\n",
        ] {
            let backend = answering_then_closing(response, &[]).await;
            assert_eq!(
                body_error(&backend).await,
                "backend response body: connection closed early",
                "{}",
                String::from_utf8_lossy(response)
            );
        }
    })
    .await;
}

#[tokio::test]
async fn bad_chunk_framing_is_a_body_error() {
    bounded(async {
        let cases: [(&[u8], &str); 5] = [
            (b"zz\r\nhello\r\n0\r\n\r\n", "bad chunk size"),
            (b"5x\r\nhello\r\n0\r\n\r\n", "bad chunk size"),
            (b"\r\nhello\r\n0\r\n\r\n", "bad chunk size"),
            (b"-5\r\nhello\r\n0\r\n\r\n", "bad chunk size"),
            (b"5\r\nhelloXX0\r\n\r\n", "no CRLF after chunk data"),
        ];
        for (chunks, want) in cases {
            let backend = Backend::answering([CHUNKED_HEAD, chunks].concat()).await;
            assert_eq!(body_error(&backend).await, format!("backend response body: {want}"));
        }
    })
    .await;
}

#[tokio::test]
async fn endless_chunk_size_line_is_a_body_error() {
    bounded(async {
        let mut response = CHUNKED_HEAD.to_vec();
        response.extend_from_slice(b"5;");
        response.extend(std::iter::repeat_n(b'x', 8 * 1024));
        let backend = Backend::start(move |mut peer| {
            let response = response.clone();
            async move {
                if peer.request().await.is_some() {
                    peer.send(&response).await;
                    peer.until_closed().await;
                }
            }
        })
        .await;
        assert_eq!(body_error(&backend).await, "backend response body: chunk size line too long");
    })
    .await;
}

// ---- the request on the wire ----

#[tokio::test]
async fn request_head_on_the_wire() {
    bounded(async {
        let backend = Backend::answering(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]).await;
        let mut headers = HeaderMap::new();
        headers.insert("x-one", HeaderValue::from_static("1"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b, c"));
        headers.insert(header::USER_AGENT, HeaderValue::from_static("test/1"));
        let response = send_with(target(backend.addr), &Method::GET, "/a/b?c=d&e", &headers, None).await.unwrap();
        assert_eq!(body(response).await.unwrap(), "ok");

        let raw = &backend.raw_requests()[0];
        assert!(raw.ends_with(b"\r\n\r\n"), "no body after the head: {:?}", String::from_utf8_lossy(raw));
        let wire = Wire::parse(raw);
        assert_eq!(wire.line, "GET /a/b?c=d&e HTTP/1.1");
        assert_eq!(wire.values("host"), [DEFAULT_HOST], "the default host for a request that has none");
        assert_eq!(wire.values("x-one"), ["1"]);
        assert_eq!(wire.values("x-multi"), ["a", "b, c"]);
        assert_eq!(wire.values("user-agent"), ["test/1"]);
        assert!(wire.values("content-length").is_empty());
        assert_eq!(wire.headers.len(), 5, "nothing else: {:?}", wire.headers);
        assert!(wire.body.is_empty());
    })
    .await;
}

#[tokio::test]
async fn request_host_header_is_kept() {
    bounded(async {
        let backend = Backend::answering(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]).await;
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("example.com"));
        let response = send_with(target(backend.addr), &Method::DELETE, "/x", &headers, None).await.unwrap();
        assert_eq!(body(response).await.unwrap(), "ok");
        let wire = Wire::parse(&backend.raw_requests()[0]);
        assert_eq!(wire.line, "DELETE /x HTTP/1.1");
        assert_eq!(wire.values("host"), ["example.com"]);
        assert_eq!(wire.headers.len(), 1, "{:?}", wire.headers);
    })
    .await;
}

#[tokio::test]
async fn held_body_goes_with_its_own_content_length_and_no_expect() {
    bounded(async {
        let backend = Backend::answering(&b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"[..]).await;
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("example.com"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        // The client's own framing headers: lb frames the held body itself.
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        headers.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        let payload = Bytes::from_static(b"hello\r\n\r\nworld");
        let response =
            send_with(target(backend.addr), &Method::POST, "/submit", &headers, Some(&payload)).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(body(response).await.unwrap(), "");

        let wire = Wire::parse(&backend.raw_requests()[0]);
        assert_eq!(wire.line, "POST /submit HTTP/1.1");
        assert_eq!(wire.values("content-length"), [payload.len().to_string()]);
        assert!(wire.values("expect").is_empty());
        assert_eq!(wire.values("host"), ["example.com"]);
        assert_eq!(wire.values("content-type"), ["text/plain"]);
        assert_eq!(wire.headers.len(), 3, "{:?}", wire.headers);
        assert_eq!(wire.body, payload);

        // An empty held body still says so.
        let empty = Bytes::new();
        let response =
            send_with(target(backend.addr), &Method::PUT, "/empty", &HeaderMap::new(), Some(&empty)).await.unwrap();
        assert_eq!(body(response).await.unwrap(), "");
        let wire = Wire::parse(&backend.raw_requests()[1]);
        assert_eq!(wire.line, "PUT /empty HTTP/1.1");
        assert_eq!(wire.values("content-length"), ["0"]);
        assert!(wire.body.is_empty());
        assert_eq!(backend.accepted(), 1);
    })
    .await;
}

// ---- runtimes ----

#[test]
fn a_new_runtime_on_the_same_thread_gets_no_dead_connection() {
    // A plain-threads backend, as the runtimes come and go.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = [0u8; 4096];
                // Every read is a whole request here: small ones, one at a time.
                while let Ok(1..) = stream.read(&mut buf) {
                    if stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
                        return;
                    }
                }
            });
        }
    });
    for round in 0..2 {
        // As in a program (or a test) that runs one runtime after another on its main thread.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(bounded(async {
            let payload = Bytes::from_static(b"payload");
            let response = send_with(target(addr), &Method::POST, "/", &HeaderMap::new(), Some(&payload))
                .await
                .unwrap_or_else(|e| panic!("runtime {round}: {e:?}"));
            assert_eq!(body(response).await.unwrap(), "ok");
        }));
    }
}

// ---- review follow-ups ----

/// A backend that answers the first request on each of its first `answered` connections, then
/// reads every other request and closes without an answer.
async fn answers_first_then_closes(answered: usize) -> Backend {
    Backend::start(move |mut peer| async move {
        if peer.index < answered && peer.request().await.is_some() {
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        }
        peer.request().await;
    })
    .await
}

#[tokio::test]
async fn a_stale_connection_is_resent_once_on_a_new_connection_not_on_every_pooled_one() {
    bounded(async {
        let backend = answers_first_then_closes(2).await;
        // Two connections in the pool.
        let (a, b) = tokio::join!(send(backend.addr, Method::GET, "/a"), send(backend.addr, Method::GET, "/b"));
        let (a, b) = (body(a.unwrap()).await.unwrap(), body(b.unwrap()).await.unwrap());
        assert_eq!((a.as_ref(), b.as_ref()), (&b"ok"[..], &b"ok"[..]));
        assert_eq!(backend.accepted(), 2);

        let error = failed(send(backend.addr, Method::GET, "/again").await);
        assert_eq!(error.kind(), ErrorKind::Closed, "{error:?}");
        assert_eq!(error.to_string(), "connection closed before the response", "EOF, not a reset");
        let again: Vec<usize> =
            backend.request_lines().into_iter().filter(|(_, line)| line.contains("/again")).map(|(c, _)| c).collect();
        assert_eq!(again.len(), 2, "sent on one pooled connection, then once on a new one: {again:?}");
        assert_eq!(again[1], 2, "the resend went on a new connection");
        assert_eq!(backend.accepted(), 3);
    })
    .await;
}

#[tokio::test]
async fn a_body_larger_than_the_inline_limit_is_sent_exactly() {
    bounded(async {
        let backend = Backend::answering(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]).await;
        for len in [8 * 1024, 8 * 1024 + 1, 40_000, upstream::MAX_BODY] {
            let payload = Bytes::from(pattern(len));
            let response =
                send_with(target(backend.addr), &Method::PUT, "/put", &HeaderMap::new(), Some(&payload)).await;
            assert_eq!(body(response.unwrap()).await.unwrap(), "ok");
        }
        let bodies: Vec<Vec<u8>> =
            backend.raw_requests().iter().map(|raw| raw[find(raw, b"\r\n\r\n").unwrap() + 4..].to_vec()).collect();
        assert_eq!(bodies.len(), 4);
        for (body, len) in bodies.iter().zip([8 * 1024, 8 * 1024 + 1, 40_000, upstream::MAX_BODY]) {
            assert_eq!(body, &pattern(len));
        }
        assert_eq!(backend.accepted(), 1, "one connection for all");
    })
    .await;
}

#[tokio::test]
async fn trailer_section_past_its_limit_is_a_body_error() {
    bounded(async {
        let mut response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n".to_vec();
        for i in 0..200 {
            response.extend_from_slice(format!("X-Trailer-{i}: {}\r\n", "t".repeat(20)).as_bytes());
        }
        response.extend_from_slice(b"\r\n");
        let backend = Backend::answering(response).await;
        let response = send(backend.addr, Method::GET, "/").await.unwrap();
        assert!(body(response).await.is_err(), "7 KiB of trailers, past the 4 KiB limit");
    })
    .await;
}

#[tokio::test]
async fn chunk_extension_with_a_control_byte_is_a_body_error() {
    bounded(async {
        let backend = Backend::answering(
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=\x01\r\nok\r\n0\r\n\r\n"[..],
        )
        .await;
        let response = send(backend.addr, Method::GET, "/").await.unwrap();
        assert!(body(response).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn a_response_with_both_transfer_encoding_and_content_length_loses_the_length_and_the_connection() {
    bounded(async {
        let backend = Backend::answering(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..],
        )
        .await;
        let response = send(backend.addr, Method::GET, "/").await.unwrap();
        assert!(!response.headers().contains_key(header::CONTENT_LENGTH));
        assert_eq!(body(response).await.unwrap(), "hello");
        assert_eq!(get(backend.addr, "/").await.1, "hello");
        assert_eq!(backend.accepted(), 2, "not reused");
    })
    .await;
}
