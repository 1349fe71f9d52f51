//! Backends in the test process that speak raw HTTP/1.1 and misbehave on purpose.

use std::net::SocketAddr;
use std::sync::Arc;

/// How a [`FaultyBackend`] misbehaves on every path but `/healthz` (which passes).
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Reads the whole request, then closes the connection without a response.
    Reset,
    /// Answers with this status.
    Status(u16),
}

/// A raw-TCP backend that passes health checks and fails requests, counting them.
pub struct FaultyBackend {
    pub addr: SocketAddr,
    /// Requests received, health checks excluded.
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
    /// Connections that carried at least one of those requests.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyBackend {
    pub async fn start(fault: Fault) -> FaultyBackend {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (counter, conn_counter) = (requests.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else { return };
                let (counter, conn_counter) = (counter.clone(), conn_counter.clone());
                tokio::spawn(async move {
                    let mut counted = false;
                    loop {
                        // One request: the head, then a Content-Length body.
                        let mut buf = Vec::new();
                        let head_end = loop {
                            let mut chunk = [0u8; 4096];
                            let n = match conn.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            buf.extend_from_slice(&chunk[..n]);
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap_or(0));
                        while buf.len() < head_end + length {
                            let mut chunk = [0u8; 4096];
                            match conn.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        if head.starts_with("get /healthz ") {
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if conn.write_all(ok).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if !std::mem::replace(&mut counted, true) {
                            conn_counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        match fault {
                            Fault::Reset => return,
                            Fault::Status(code) => {
                                let r = format!("HTTP/1.1 {code} Fault\r\ncontent-length: 5\r\n\r\nfault");
                                if conn.write_all(r.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        FaultyBackend { addr, requests, connections, task }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl From<&FaultyBackend> for SocketAddr {
    fn from(backend: &FaultyBackend) -> SocketAddr {
        backend.addr
    }
}

impl Drop for FaultyBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}
