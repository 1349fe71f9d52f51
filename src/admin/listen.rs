//! Where the admin API listens: a TCP address, or a unix socket (`--admin unix:PATH`) that only
//! lb's own user may connect to (mode 0600).
//!
//! A unix socket is reached by no browser and no other machine, so it needs no token and no
//! `Host` check; an `Origin` is still refused, since no web page is the admin's own.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use axum::serve::ListenerExt;
use axum::Router;

use crate::metrics::{Counted, Listener, Metrics};

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

    /// Serves `router` until `stopped` resolves, on the current runtime; its connections count
    /// in `metrics` as the admin listener's.
    pub async fn serve(
        self,
        router: Router,
        stopped: impl Future<Output = ()> + Send + 'static,
        metrics: Arc<Metrics>,
    ) -> Result<(), String> {
        let served: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match &self {
            AdminListener::Tcp(l) => {
                let l = tokio::net::TcpListener::from_std(l.try_clone().map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
                // `tap_io` for axum's `ConnectInfo<SocketAddr>`, which it gives any tapped listener.
                let l = Counted::new(l, metrics, Listener::Admin).tap_io(|_| {});
                let app = router.into_make_service_with_connect_info::<SocketAddr>();
                Box::pin(axum::serve(l, app).with_graceful_shutdown(stopped).into_future())
            }
            AdminListener::Unix(l, _) => {
                let l = tokio::net::UnixListener::from_std(l.try_clone().map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
                let l = Counted::new(l, metrics, Listener::Admin);
                Box::pin(axum::serve(l, router.into_make_service()).with_graceful_shutdown(stopped).into_future())
            }
        };
        served.await.map_err(|e| format!("admin API failed: {e}"))
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
