//! Backends in the test process that speak raw HTTP/1.1 over loopback: a [`Backend`] runs a
//! script on each connection it accepts, reading the request bytes and writing canned
//! responses, whole or in awkward pieces (tests/upstream_client.rs scripts dozens), and
//! records what it saw. [`FaultyBackend`] is one such script, for lb end to end.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::DEADLINE;

/// What a backend saw: connections accepted and ended, and each request with the index of the
/// connection it came on.
#[derive(Default)]
pub struct Seen {
    pub accepted: usize,
    pub ended: usize,
    pub requests: Vec<(usize, Vec<u8>)>,
}

/// A raw-TCP backend that runs a script on each connection it accepts.
pub struct Backend {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl Backend {
    /// Starts a backend running `script` on every accepted connection; the connection closes
    /// when the script returns (unless the script already dropped it).
    pub async fn start<F, Fut>(script: F) -> Backend
    where
        F: Fn(Peer) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let index = {
                    let mut seen = log.lock().unwrap();
                    seen.accepted += 1;
                    seen.accepted - 1
                };
                let run = script(Peer { index, stream, buf: Vec::new(), seen: log.clone() });
                let log = log.clone();
                tokio::spawn(async move {
                    run.await;
                    log.lock().unwrap().ended += 1;
                });
            }
        });
        Backend { addr, seen, task }
    }

    /// A backend answering every request on every connection with `response`.
    pub async fn answering(response: impl Into<Bytes>) -> Backend {
        let response: Bytes = response.into();
        Backend::start(move |mut peer| {
            let response = response.clone();
            async move {
                while peer.request().await.is_some() {
                    peer.send(&response).await;
                }
            }
        })
        .await
    }

    /// Looks at what the backend saw so far.
    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.seen(|s| s.accepted)
    }

    /// Request lines received, each with the index of its connection.
    pub fn request_lines(&self) -> Vec<(usize, String)> {
        self.seen(|s| s.requests.iter().map(|(i, raw)| (*i, request_line(raw))).collect())
    }

    /// The raw bytes of every request received.
    pub fn raw_requests(&self) -> Vec<Vec<u8>> {
        self.seen(|s| s.requests.iter().map(|(_, raw)| raw.clone()).collect())
    }

    /// Waits until `done` holds for what the backend saw, or panics at the deadline.
    pub async fn wait(&self, what: &str, done: impl Fn(&Seen) -> bool) {
        let end = Instant::now() + DEADLINE;
        loop {
            if self.seen(&done) {
                return;
            }
            assert!(Instant::now() < end, "backend: {what}: not within {DEADLINE:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

impl From<&Backend> for SocketAddr {
    fn from(backend: &Backend) -> SocketAddr {
        backend.addr
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The backend's side of one connection.
pub struct Peer {
    /// Which of the backend's connections this is, counting from 0.
    pub index: usize,
    stream: TcpStream,
    /// Read past the last whole request.
    buf: Vec<u8>,
    seen: Arc<Mutex<Seen>>,
}

impl Peer {
    /// Reads one whole request (head, then a `Content-Length` body) and logs it; `None` once
    /// the client closed the connection.
    pub async fn request(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().expect("numeric content-length"));
                let total = end + 4 + length;
                if self.buf.len() >= total {
                    let request: Vec<u8> = self.buf.drain(..total).collect();
                    self.seen.lock().unwrap().requests.push((self.index, request.clone()));
                    return Some(request);
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Waits until the client closes the connection (reading and dropping anything it sends).
    pub async fn until_closed(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        while let Ok(1..) = self.stream.read(&mut chunk).await {}
    }

    /// Writes `bytes` (a client that went away is not the backend's problem).
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// Writes `bytes` cut at the offsets `cuts`, pausing between pieces so that the client
    /// likely reads them apart. Only the coverage depends on the pauses: the client must get
    /// the same result however the pieces arrive.
    pub async fn send_pieces(&mut self, bytes: &[u8], cuts: &[usize]) {
        let mut start = 0;
        for &cut in cuts.iter().chain([bytes.len()].iter()) {
            assert!(start <= cut && cut <= bytes.len(), "cuts must be in order and within the bytes");
            self.send(&bytes[start..cut]).await;
            start = cut;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Writes `bytes` one byte at a time.
    pub async fn drip(&mut self, bytes: &[u8]) {
        let cuts: Vec<usize> = (1..bytes.len()).collect();
        self.send_pieces(bytes, &cuts).await;
    }
}

/// Where `needle` first occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The first line of a raw request.
pub fn request_line(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).lines().next().unwrap_or_default().to_owned()
}

/// A request as it went over the wire.
pub struct Wire {
    pub line: String,
    /// Header lines in order: name (as sent) and value.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Wire {
    /// Splits a raw request into its line, headers and body.
    pub fn parse(raw: &[u8]) -> Wire {
        let end = find(raw, b"\r\n\r\n").expect("a request head");
        let head = std::str::from_utf8(&raw[..end]).expect("an ASCII head");
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap().to_owned();
        let headers = lines
            .map(|l| {
                let (name, value) = l.split_once(": ").unwrap_or_else(|| panic!("header line {l:?}"));
                (name.to_owned(), value.to_owned())
            })
            .collect();
        Wire { line, headers, body: raw[end + 4..].to_vec() }
    }

    /// Values of header `name` (case-insensitive), in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
}

/// How a [`FaultyBackend`] misbehaves on every path but `/healthz` (which passes).
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Reads the whole request, then closes the connection without a response.
    Reset,
    /// Answers with this status.
    Status(u16),
}

/// A raw backend that passes health checks and fails requests, counting them.
pub struct FaultyBackend {
    pub addr: SocketAddr,
    backend: Backend,
}

impl FaultyBackend {
    pub async fn start(fault: Fault) -> FaultyBackend {
        let backend = Backend::start(move |mut peer| async move {
            while let Some(request) = peer.request().await {
                if is_health_check(&request) {
                    peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                    continue;
                }
                match fault {
                    Fault::Reset => return,
                    Fault::Status(code) => {
                        let response = format!("HTTP/1.1 {code} Fault\r\ncontent-length: 5\r\n\r\nfault");
                        peer.send(response.as_bytes()).await;
                    }
                }
            }
        })
        .await;
        FaultyBackend { addr: backend.addr, backend }
    }

    /// Requests received, health checks excluded.
    pub fn requests(&self) -> usize {
        self.backend.seen(|s| s.requests.iter().filter(|(_, raw)| !is_health_check(raw)).count())
    }

    /// Connections that carried at least one of those requests.
    pub fn connections(&self) -> usize {
        self.backend.seen(|s| {
            let carried = s.requests.iter().filter(|(_, raw)| !is_health_check(raw)).map(|(conn, _)| *conn);
            carried.collect::<HashSet<usize>>().len()
        })
    }
}

impl From<&FaultyBackend> for SocketAddr {
    fn from(backend: &FaultyBackend) -> SocketAddr {
        backend.addr
    }
}

/// Whether a raw request is lb's health check (the default path).
fn is_health_check(raw: &[u8]) -> bool {
    request_line(raw).starts_with("GET /healthz ")
}
