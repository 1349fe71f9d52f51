//! The data port: accept connections, route each request through the current snapshot, and hand
//! it to its pool's mode. Reads routing snapshots only; never waits on the control plane.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::body::Body;
use crate::forwarded::{Peer, Via};
use crate::health::FailureReporter;
use crate::pool::Mode;
use crate::proxy::Proxy;
use crate::redirect;
use crate::request;
use crate::response::{answer, moved, not_allowed};
use crate::routing::{Route, Routes};

/// What a client connection may take from lb.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// Slow clients cannot hold a connection (and its memory) by trickling headers.
    pub header_read_timeout: Duration,
    /// Larger request heads are refused with `431`.
    pub max_header_bytes: usize,
}

/// Where a worker's connections come from.
pub enum Source {
    /// The listening socket (non-blocking): this worker accepts for all.
    Listener(std::net::TcpListener),
    /// Connections the accepting worker handed over.
    Inbox(mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>),
}

/// A [`Source`] registered with the worker's event loop.
enum Connections {
    Listener(TcpListener),
    Inbox(mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>),
}

/// One data-plane thread and what it keeps for itself, shared with no other worker (so nothing
/// on the request path takes a lock):
/// - its event loop, a current-thread runtime that only this thread runs;
/// - the wheel its requests' deadlines are kept on ([`timer::install`](crate::timer::install));
/// - its idle keep-alive connections to backends
///   ([`upstream::install`](crate::upstream::install));
/// - the hyper clients that stream large bodies to backends ([`proxy`](crate::proxy), made on
///   first use).
///
/// All but the runtime are thread-locals of their modules, so a `Worker` is not `Send`: it is
/// built on the thread that serves, and what it installed goes when its runtime shuts down.
pub struct Worker {
    index: usize,
    runtime: tokio::runtime::Runtime,
    _stays_on_this_thread: PhantomData<*const ()>,
}

impl Worker {
    /// Makes the calling thread worker `index` (0 accepts for all) with `runtime`, a
    /// current-thread runtime with I/O and time enabled, as its event loop.
    pub fn new(index: usize, runtime: tokio::runtime::Runtime) -> Worker {
        let _entered = runtime.enter();
        crate::timer::install();
        crate::upstream::install();
        Worker { index, runtime, _stays_on_this_thread: PhantomData }
    }

    /// Serves `plane` on connections from `source` until `shutdown` resolves, then stops taking
    /// connections and gives in-flight requests up to `grace` to finish. The worker given the
    /// listener accepts every connection and hands each to the worker serving the fewest
    /// (itself included). Fails only if the listener cannot join the event loop.
    pub fn serve(
        self,
        plane: Arc<DataPlane>,
        source: Source,
        workers: Arc<Workers>,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
    ) -> io::Result<()> {
        self.runtime.block_on(async {
            let source = match source {
                Source::Listener(listener) => Connections::Listener(TcpListener::from_std(listener)?),
                Source::Inbox(inbox) => Connections::Inbox(inbox),
            };
            plane.serve(self.index, source, workers, shutdown, grace).await;
            Ok(())
        })
    }
}

/// The data plane's workers as the acceptor sees them: how to reach each, and how many
/// connections each serves.
///
/// One acceptor that hands connections out keeps the workers evenly loaded; worker threads
/// racing to accept on one shared socket leave it to whichever wakes first (measured: all 64
/// of wrk's connections on one of two workers).
pub struct Workers {
    inboxes: Vec<Option<mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>>>,
    load: Vec<AtomicUsize>,
}

impl Workers {
    /// `n` workers: worker 0 accepts (its source is the listener), the others get an inbox.
    pub fn new(n: usize) -> (Arc<Workers>, Vec<mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>>) {
        let mut inboxes = vec![None];
        let mut receivers = Vec::with_capacity(n.saturating_sub(1));
        for _ in 1..n {
            let (tx, rx) = mpsc::unbounded_channel();
            inboxes.push(Some(tx));
            receivers.push(rx);
        }
        let load = (0..n.max(1)).map(|_| AtomicUsize::new(0)).collect();
        (Arc::new(Workers { inboxes, load }), receivers)
    }

    /// Gives a newly accepted connection to the least loaded worker; returns it if that is the
    /// acceptor `me` itself.
    fn hand_over(&self, me: usize, stream: TcpStream, client: SocketAddr) -> Option<(TcpStream, SocketAddr)> {
        let (least, _) = self
            .load
            .iter()
            .enumerate()
            .min_by_key(|(i, load)| (load.load(Ordering::Relaxed), *i != me))
            .expect("at least one worker");
        self.load[least].fetch_add(1, Ordering::Relaxed);
        let Some(inbox) = self.inboxes[least].as_ref().filter(|_| least != me) else {
            return Some((stream, client));
        };
        // Leaves this worker's event loop; the receiving worker registers it with its own.
        let unsent = match stream.into_std() {
            Ok(stream) => match inbox.send((stream, client)) {
                Ok(()) => return None,
                // That worker is gone (lb is stopping): serve it here.
                Err(mpsc::error::SendError((stream, _))) => TcpStream::from_std(stream),
            },
            Err(e) => Err(e),
        };
        self.load[least].fetch_sub(1, Ordering::Relaxed);
        match unsent {
            Ok(stream) => {
                self.load[me].fetch_add(1, Ordering::Relaxed);
                Some((stream, client))
            }
            Err(e) => {
                tracing::warn!(%client, "cannot hand a connection over: {e}");
                None
            }
        }
    }
}

/// Everything a request needs, shared by all connections.
pub struct DataPlane {
    routes: Arc<ArcSwap<Routes>>,
    proxy: Proxy,
    limits: ClientLimits,
    /// This instance's name in `Via`, to tell a request that looped back.
    via: Arc<Via>,
}

impl DataPlane {
    pub fn new(routes: Arc<ArcSwap<Routes>>, failures: FailureReporter, limits: ClientLimits) -> Self {
        let via = Arc::new(Via::new());
        tracing::debug!("Via pseudonym {}", via.pseudonym());
        DataPlane { routes, proxy: Proxy::new(failures, via.clone()), limits, via }
    }

    /// Worker `index`'s accept loop; see [`Worker::serve`].
    async fn serve(
        self: Arc<Self>,
        index: usize,
        mut source: Connections,
        workers: Arc<Workers>,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
    ) {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(crate::timer::HyperTimer)
            .header_read_timeout(self.limits.header_read_timeout)
            .max_buf_size(self.limits.max_header_bytes.max(8192));
        builder.http2().timer(TokioTimer::new()).max_header_list_size(self.limits.max_header_bytes as u32);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, client) = match &mut source {
                Connections::Listener(listener) => tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, client)) => match workers.hand_over(index, stream, client) {
                            Some(mine) => mine,
                            None => continue,
                        },
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    },
                    () = &mut shutdown => break,
                },
                Connections::Inbox(inbox) => tokio::select! {
                    handed = inbox.recv() => match handed {
                        Some((stream, client)) => match TcpStream::from_std(stream) {
                            Ok(stream) => (stream, client),
                            Err(e) => {
                                workers.load[index].fetch_sub(1, Ordering::Relaxed);
                                tracing::warn!(%client, "cannot take over a connection: {e}");
                                continue;
                            }
                        },
                        // The acceptor is gone: lb is stopping.
                        None => {
                            shutdown.as_mut().await;
                            break;
                        }
                    },
                    () = &mut shutdown => break,
                },
            };
            let _ = stream.set_nodelay(true);
            let conn = Arc::new((self.clone(), Peer::new(client)));
            let service = service_fn(move |req| {
                let conn = conn.clone();
                async move { Ok::<_, Infallible>(conn.0.handle(req, &conn.1).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
            let conn = graceful.watch(conn);
            let workers = workers.clone();
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%client, "connection ended: {e}");
                }
                workers.load[index].fetch_sub(1, Ordering::Relaxed);
            });
        }
        drop(source);
        if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
            tracing::warn!("requests still in flight after {grace:?}; closing them");
        }
    }

    /// Answers one request: lb's own answer to one it refuses ([`request::check`]), else its
    /// pool's.
    pub async fn handle(&self, mut req: Request<Incoming>, client: &Peer) -> Response<Body> {
        if req.uri().authority().is_some() {
            request::host_from_target(&mut req);
        }
        let pool = {
            let host = match request::check(&req, &self.via) {
                Ok(checked) => checked.host,
                Err(refused) => return refused.response(),
            };
            let routes = self.routes.load();
            match routes.route(req.method().as_str(), host, req.uri().path(), req.uri().query()) {
                Route::Matched { value: pool, params } => {
                    if tracing::enabled!(tracing::Level::DEBUG) {
                        let values: Vec<String> =
                            params.iter().map(|(name, value)| format!("{name}={value}")).collect();
                        tracing::debug!(
                            "{} {} -> pool {} {}",
                            req.method(),
                            req.uri(),
                            params.pattern(),
                            values.join(" ")
                        );
                    }
                    pool.clone()
                }
                Route::Redirect(location) => return moved(location),
                Route::MethodNotAllowed { allow } => return not_allowed(allow),
                Route::NotFound => return answer(StatusCode::NOT_FOUND, "404 page not found\n"),
            }
        };
        match pool.config.mode {
            Mode::Proxy => self.proxy.forward(&pool, req, client).await,
            Mode::Redirect => redirect::answer(&pool, &req, client.addr.ip()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real loopback connection, as the acceptor gets it.
    async fn accepted(listener: &TcpListener) -> (TcpStream, SocketAddr, std::net::TcpStream) {
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, addr) = listener.accept().await.unwrap();
        (stream, addr, client)
    }

    #[tokio::test]
    async fn connections_go_to_the_least_loaded_worker() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (workers, mut inboxes) = Workers::new(3);
        let mut clients = Vec::new();
        let mut kept = 0;
        for _ in 0..6 {
            let (stream, addr, client) = accepted(&listener).await;
            clients.push(client);
            if workers.hand_over(0, stream, addr).is_some() {
                kept += 1;
            }
        }
        let loads: Vec<usize> = workers.load.iter().map(|l| l.load(Ordering::Relaxed)).collect();
        assert_eq!(loads, [2, 2, 2]);
        assert_eq!(kept, 2, "the acceptor keeps its share");
        for inbox in &mut inboxes {
            for _ in 0..2 {
                let (stream, addr) = inbox.try_recv().expect("a handed-over connection");
                assert_eq!(stream.peer_addr().unwrap(), addr);
            }
            assert!(inbox.try_recv().is_err());
        }

        // A worker whose connections ended gets the next ones.
        workers.load[2].store(0, Ordering::Relaxed);
        let (stream, addr, _client) = accepted(&listener).await;
        assert!(workers.hand_over(0, stream, addr).is_none());
        assert!(inboxes[1].try_recv().is_ok(), "worker 2 was the least loaded");
    }

    #[tokio::test]
    async fn a_connection_for_a_worker_that_is_gone_stays_with_the_acceptor() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (workers, inboxes) = Workers::new(2);
        drop(inboxes);
        workers.load[0].store(5, Ordering::Relaxed);
        let (stream, addr, _client) = accepted(&listener).await;
        let (kept, kept_addr) = workers.hand_over(0, stream, addr).expect("served here");
        assert_eq!(kept.peer_addr().unwrap(), kept_addr);
        let loads: Vec<usize> = workers.load.iter().map(|l| l.load(Ordering::Relaxed)).collect();
        assert_eq!(loads, [6, 0]);
    }

    #[tokio::test]
    async fn a_single_worker_keeps_every_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (workers, inboxes) = Workers::new(1);
        assert!(inboxes.is_empty());
        for _ in 0..3 {
            let (stream, addr, _client) = accepted(&listener).await;
            assert!(workers.hand_over(0, stream, addr).is_some());
        }
        assert_eq!(workers.load[0].load(Ordering::Relaxed), 3);
    }
}
