//! Where the admin API listens: a TCP address, or a unix socket (`--admin unix:PATH`) that only
//! lb's own user may connect to (mode 0600).
//!
//! A unix socket is reached by no browser and no other machine, so it needs no token and no
//! `Host` check; an `Origin` is still refused, since no web page is the admin's own.
//!
//! Both are served alike: each connection's request head is read and checked by
//! [`head`](super::head) before hyper gets it, one request per connection.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite};

use super::head;

use crate::metrics::{Connection, Listener, Metrics};

/// `--admin`: `ip:port` or `unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for AdminAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.strip_prefix("unix:") {
            Some("") => Err("unix: needs a path (unix:/run/lb/admin.sock)".into()),
            Some(path) => Ok(AdminAddr::Unix(path.into())),
            None => s.parse().map(AdminAddr::Tcp).map_err(|_| format!("{s:?} is neither ip:port nor unix:PATH")),
        }
    }
}

impl fmt::Display for AdminAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminAddr::Tcp(addr) => write!(f, "{addr}"),
            AdminAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The bound admin listener, not serving yet.
#[derive(Debug)]
pub enum AdminListener {
    Tcp(std::net::TcpListener),
    /// The socket and its path, removed when serving ends.
    Unix(std::os::unix::net::UnixListener, PathBuf),
}

impl AdminListener {
    /// Binds `addr`. A unix socket path that exists is replaced only if it is a socket nobody
    /// listens on (left by an lb that crashed); anything else there is refused, never removed.
    pub fn bind(addr: &AdminAddr) -> Result<AdminListener, String> {
        match addr {
            AdminAddr::Tcp(addr) => {
                let listener = std::net::TcpListener::bind(addr)
                    .map_err(|e| format!("cannot listen on {addr} (admin API): {e}"))?;
                listener.set_nonblocking(true).map_err(|e| format!("cannot set up admin API listener: {e}"))?;
                Ok(AdminListener::Tcp(listener))
            }
            AdminAddr::Unix(path) => bind_unix(path).map(|l| AdminListener::Unix(l, path.clone())),
        }
    }

    /// The TCP address, with the real port when `--admin` asked for port 0.
    pub fn local_addr(&self) -> Result<Option<SocketAddr>, String> {
        match self {
            AdminListener::Tcp(l) => l.local_addr().map(Some).map_err(|e| e.to_string()),
            AdminListener::Unix(..) => Ok(None),
        }
    }

    /// What it is bound to, as `--admin` takes it.
    pub fn endpoint(&self) -> Result<AdminAddr, String> {
        match self {
            AdminListener::Tcp(l) => l.local_addr().map(AdminAddr::Tcp).map_err(|e| e.to_string()),
            AdminListener::Unix(_, path) => Ok(AdminAddr::Unix(path.clone())),
        }
    }

    /// Serves `router` until `stopped` resolves, on the current runtime, then waits for the
    /// requests under way; connections still waiting for a request head are closed at once.
    /// Each connection's request head is read by [`head`] first (one request per connection:
    /// see there). Its connections count in `metrics` as the admin listener's.
    pub async fn serve(
        self,
        router: Router,
        stopped: impl Future<Output = ()> + Send + 'static,
        metrics: Arc<Metrics>,
    ) -> Result<(), String> {
        let accepting = match &self {
            AdminListener::Tcp(l) => Accepting::Tcp(
                tokio::net::TcpListener::from_std(l.try_clone().map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?,
            ),
            AdminListener::Unix(l, _) => Accepting::Unix(
                tokio::net::UnixListener::from_std(l.try_clone().map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?,
            ),
        };
        let mut connections = tokio::task::JoinSet::new();
        let (stopping, _) = tokio::sync::watch::channel(false);
        let mut stopped = std::pin::pin!(stopped);
        loop {
            let accepted = tokio::select! {
                () = &mut stopped => break,
                accepted = accepting.accept(router.clone(), stopping.subscribe(), &metrics) => accepted,
            };
            while connections.try_join_next().is_some() {}
            match accepted {
                Ok(connection) => drop(connections.spawn(connection)),
                Err(e) => {
                    // Out of files, most likely: wait for some to close rather than spin.
                    tracing::warn!("admin API: cannot accept a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
        drop(accepting);
        let _ = stopping.send(true);
        while connections.join_next().await.is_some() {}
        Ok(())
    }
}

/// The admin listener on the runtime.
enum Accepting {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Accepting {
    /// Accepts a connection, and returns the future that serves it with `router` (see
    /// [`connection`] for `stopping`).
    async fn accept(
        &self,
        router: Router,
        stopping: tokio::sync::watch::Receiver<bool>,
        metrics: &Metrics,
    ) -> std::io::Result<Pin<Box<dyn Future<Output = ()> + Send>>> {
        Ok(match self {
            Accepting::Tcp(l) => {
                let (io, peer) = l.accept().await?;
                let counted = metrics.connection(Listener::Admin);
                Box::pin(connection(io, router.layer(axum::Extension(ConnectInfo(peer))), stopping, counted))
            }
            Accepting::Unix(l) => {
                let io = l.accept().await?.0;
                Box::pin(connection(io, router, stopping, metrics.connection(Listener::Admin)))
            }
        })
    }
}

/// Serves one admin connection: its request head is read and checked by [`head`], then the
/// request goes to hyper and `router`, the connection closed after the answer. Once `stopping`
/// turns true, a connection still waiting for its head is closed: no request is lost, and lb
/// does not wait for a client that may never send one. `_counted` keeps it in
/// `lb_connections_open` until it closes.
async fn connection(
    mut io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    router: Router,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    _counted: Connection,
) {
    let read = tokio::select! {
        read = head::read(&mut io) => read,
        _ = stopping.wait_for(|&stop| stop) => return,
    };
    match read {
        head::Head::Gone => {}
        head::Head::Refused(status, why) => head::refuse(&mut io, status, &why).await,
        head::Head::Request(read) => {
            let io = hyper_util::rt::TokioIo::new(head::Rewind::new(read, io));
            let service = hyper_util::service::TowerToHyperService::new(router);
            let served = hyper::server::conn::http1::Builder::new().keep_alive(false).serve_connection(io, service);
            if let Err(e) = served.await {
                tracing::debug!("admin connection: {e}");
            }
        }
    }
}

impl Drop for AdminListener {
    /// A unix socket's path goes with it, so the next lb binds it afresh.
    fn drop(&mut self) {
        if let AdminListener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds a unix socket at `path` with mode 0600: created under a umask that leaves only the
/// owner's bits (no moment at which another user could connect), then set to 0600 explicitly.
fn bind_unix(path: &Path) -> Result<std::os::unix::net::UnixListener, String> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(format!("cannot listen on unix:{shown} (admin API): it exists and is not a socket"));
        }
        Ok(_) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!("cannot listen on unix:{shown} (admin API): another process listens there"));
            }
            std::fs::remove_file(path).map_err(|e| format!("cannot replace the stale socket {shown}: {e}"))?;
        }
        Err(_) => {}
    }
    // SAFETY: umask(2) only swaps the process's file creation mask; it is restored at once.
    let old = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| format!("cannot listen on unix:{shown} (admin API): {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot make unix:{shown} private: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| format!("cannot set up admin API listener: {e}"))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_addresses_are_ip_port_or_unix_path() {
        assert_eq!("127.0.0.1:8081".parse(), Ok(AdminAddr::Tcp("127.0.0.1:8081".parse().unwrap())));
        assert_eq!("unix:/run/lb.sock".parse(), Ok(AdminAddr::Unix("/run/lb.sock".into())));
        assert!("unix:".parse::<AdminAddr>().is_err());
        assert!("localhost:8081".parse::<AdminAddr>().is_err());
        assert_eq!(AdminAddr::Unix("/a".into()).to_string(), "unix:/a");
    }

    #[test]
    fn a_unix_socket_is_private_and_replaces_only_a_stale_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let addr = AdminAddr::Unix(path.clone());
        let first = AdminListener::bind(&addr).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let err = AdminListener::bind(&addr).unwrap_err();
        assert!(err.contains("another process listens there"), "{err}");
        drop(first);
        assert!(!path.exists(), "removed with its listener");
        // A socket left behind by a crash (nobody listens) is replaced.
        let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(stale);
        drop(AdminListener::bind(&addr).unwrap());
        std::fs::write(&path, "not a socket").unwrap();
        let err = AdminListener::bind(&addr).unwrap_err();
        assert!(err.contains("exists and is not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
    }
}
