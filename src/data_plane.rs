//! The data port: accept connections, route each request through the current snapshot, and hand
//! it to its pool's mode. Reads routing snapshots only; never waits on the control plane.
//!
//! At `--max-connections` the acceptor stops accepting (the listener's backlog holds the rest),
//! asks every worker to close its oldest idle connections ([`conn`](crate::conn)), and resumes
//! as connections end. Accept errors (out of file descriptors) back off, doubling up to a
//! second, instead of spinning.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};

use crate::access_log::{AccessLog, Logged, Note};
use crate::body::Body;
use crate::conn::detect::Undetected;
use crate::conn::h2::{IdleTimer, Streams, Tracked};
use crate::conn::head::HeadTimer;
use crate::conn::{detect, ClientIo, Protocol};
use crate::forwarded::{Peer, Via};
use crate::health::FailureReporter;
use crate::metrics::Metrics;
use crate::pool::{Mode, Pool};
use crate::proxy::{BodyTimeouts, Proxy};
use crate::redirect;
use crate::request;
use crate::request_id::RequestIds;
use crate::response::{answer, moved, not_allowed};
use crate::routing::{Route, Routes};

/// What a client connection may take from lb; the README's "Security and limits" lists them.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// From accept to the end of the first request head (protocol detection included), and
    /// from the first byte of each later head to its end: slow clients cannot hold a connection
    /// (and its memory) by sending nothing or trickling headers.
    pub header_read_timeout: Duration,
    /// Larger request heads are refused with `431`.
    pub max_header_bytes: usize,
    /// How long an HTTP/1 connection may wait for its next request.
    pub keep_alive_timeout: Duration,
    /// How long an HTTP/2 connection may go without an open stream before its GOAWAY.
    pub h2_idle_timeout: Duration,
    /// How long a write to a client may make no progress (a client that stops reading).
    pub send_timeout: Duration,
    /// Client connections lb holds at most; at the limit it stops accepting.
    pub max_connections: usize,
    /// How long either side may pause in the middle of a proxied body.
    pub body_timeouts: BodyTimeouts,
}

/// How many idle connections each worker closes when the acceptor is at the connection limit.
const CLOSE_IDLE_BATCH: usize = 16;
/// How often the acceptor, waiting at the connection limit, asks again for idle connections to
/// close (connections that were busy may have gone idle since).
const AT_LIMIT_RECHECK: Duration = Duration::from_millis(250);
/// The longest back-off after a failed accept.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// What the acceptor sends a worker.
pub enum Handed {
    /// A connection for it to serve.
    Connection(std::net::TcpStream, SocketAddr),
    /// Close up to this many idle client connections: lb is at its connection limit.
    CloseIdle(usize),
}

/// Where a worker's connections come from.
pub enum Source {
    /// The listening socket (non-blocking): this worker accepts for all.
    Listener(std::net::TcpListener),
    /// Connections the accepting worker handed over.
    Inbox(mpsc::UnboundedReceiver<Handed>),
}

/// A [`Source`] registered with the worker's event loop.
enum Connections {
    Listener(TcpListener),
    Inbox(mpsc::UnboundedReceiver<Handed>),
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
        let served = self.runtime.block_on(async {
            let source = match source {
                Source::Listener(listener) => Connections::Listener(TcpListener::from_std(listener)?),
                Source::Inbox(inbox) => Connections::Inbox(inbox),
            };
            plane.serve(self.index, source, workers, shutdown, grace).await;
            Ok(())
        });
        // Requests still open after `grace` end with the runtime, and their access log lines
        // land in this thread's buffer as they do: hand them over after it, not before.
        drop(self.runtime);
        crate::access_log::flush();
        served
    }
}

/// The data plane's workers as the acceptor sees them: how to reach each, and how many
/// connections each serves.
///
/// One acceptor that hands connections out keeps the workers evenly loaded; worker threads
/// racing to accept on one shared socket leave it to whichever wakes first (measured: all 64
/// of wrk's connections on one of two workers).
pub struct Workers {
    inboxes: Vec<Option<mpsc::UnboundedSender<Handed>>>,
    load: Vec<AtomicUsize>,
    /// A connection ended: the acceptor, if waiting at the connection limit, looks again.
    gone: Notify,
}

impl Workers {
    /// `n` workers: worker 0 accepts (its source is the listener), the others get an inbox.
    pub fn new(n: usize) -> (Arc<Workers>, Vec<mpsc::UnboundedReceiver<Handed>>) {
        let mut inboxes = vec![None];
        let mut receivers = Vec::with_capacity(n.saturating_sub(1));
        for _ in 1..n {
            let (tx, rx) = mpsc::unbounded_channel();
            inboxes.push(Some(tx));
            receivers.push(rx);
        }
        let load = (0..n.max(1)).map(|_| AtomicUsize::new(0)).collect();
        (Arc::new(Workers { inboxes, load, gone: Notify::new() }), receivers)
    }

    /// Client connections served by all workers.
    fn connections(&self) -> usize {
        self.load.iter().map(|l| l.load(Ordering::Relaxed)).sum()
    }

    /// A connection of worker `index` ended.
    fn ended(&self, index: usize) {
        self.load[index].fetch_sub(1, Ordering::Relaxed);
        self.gone.notify_one();
    }

    /// Asks every worker to close up to `n` of its idle connections; the acceptor, which has
    /// no inbox and calls this, does it at once.
    fn close_idle(&self, n: usize) {
        for inbox in self.inboxes.iter().flatten() {
            let _ = inbox.send(Handed::CloseIdle(n));
        }
        crate::timer::close_idle(n);
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
            Ok(stream) => match inbox.send(Handed::Connection(stream, client)) {
                Ok(()) => return None,
                // That worker is gone (lb is stopping): serve it here.
                Err(mpsc::error::SendError(handed)) => {
                    let Handed::Connection(stream, _) = handed else { return None };
                    TcpStream::from_std(stream)
                }
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
    /// Each connection's copy gets its own [`HeadTimer`].
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// This instance's name in `Via`, to tell a request that looped back.
    via: Arc<Via>,
    metrics: Arc<Metrics>,
    access_log: AccessLog,
    request_ids: RequestIds,
}

impl DataPlane {
    pub fn new(
        routes: Arc<ArcSwap<Routes>>,
        failures: FailureReporter,
        limits: ClientLimits,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut http1 = http1::Builder::new();
        http1.header_read_timeout(limits.header_read_timeout).max_buf_size(limits.max_header_bytes.max(8192));
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2.timer(TokioTimer::new()).max_header_list_size(limits.max_header_bytes as u32);
        let via = Arc::new(Via::new());
        tracing::debug!("Via pseudonym {}", via.pseudonym());
        let proxy = Proxy::new(failures, limits.body_timeouts, via.clone());
        let (access_log, request_ids) = (AccessLog::default(), RequestIds::default());
        DataPlane { routes, proxy, limits, http1, http2, via, metrics, access_log, request_ids }
    }

    /// With this access log, and request IDs in this header.
    pub fn observed(self, access_log: AccessLog, request_ids: RequestIds) -> Self {
        DataPlane { access_log, request_ids, ..self }
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
        let (stop, stopped) = watch::channel(false);
        let mut shutdown = pin!(shutdown);
        let mut backoff = Duration::ZERO;
        loop {
            let (stream, client) = match &mut source {
                Connections::Listener(listener) => {
                    if workers.connections() >= self.limits.max_connections {
                        tracing::debug!("at the connection limit ({}): closing idle ones", self.limits.max_connections);
                        workers.close_idle(CLOSE_IDLE_BATCH);
                        tokio::select! {
                            biased;
                            () = &mut shutdown => break,
                            () = workers.gone.notified() => {}
                            () = tokio::time::sleep(AT_LIMIT_RECHECK) => {}
                        }
                        continue;
                    }
                    tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((stream, client)) => {
                                backoff = Duration::ZERO;
                                match workers.hand_over(index, stream, client) {
                                    Some(mine) => mine,
                                    None => continue,
                                }
                            }
                            Err(e) => {
                                // Out of file descriptors and the like: back off instead of
                                // spinning, and make room.
                                if backoff.is_zero() {
                                    tracing::warn!("accept failed: {e}; backing off");
                                }
                                backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                                workers.close_idle(CLOSE_IDLE_BATCH);
                                tokio::select! {
                                    () = &mut shutdown => break,
                                    () = tokio::time::sleep(backoff) => {}
                                }
                                continue;
                            }
                        },
                        () = &mut shutdown => break,
                    }
                }
                Connections::Inbox(inbox) => tokio::select! {
                    handed = inbox.recv() => match handed {
                        Some(Handed::Connection(stream, client)) => match TcpStream::from_std(stream) {
                            Ok(stream) => (stream, client),
                            Err(e) => {
                                workers.ended(index);
                                tracing::warn!(%client, "cannot take over a connection: {e}");
                                continue;
                            }
                        },
                        Some(Handed::CloseIdle(n)) => {
                            crate::timer::close_idle(n);
                            continue;
                        }
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
            let first_deadline = Instant::now() + self.limits.header_read_timeout;
            let io = ClientIo::new(stream, self.limits.send_timeout);
            let (plane, workers, stopped) = (self.clone(), workers.clone(), stopped.clone());
            tokio::spawn(async move {
                let _counted = plane.metrics.connection(crate::metrics::Listener::Data);
                plane.connection(io, client, first_deadline, stopped).await;
                workers.ended(index);
            });
        }
        drop(source);
        drop(stopped);
        let _ = stop.send(true);
        if tokio::time::timeout(grace, stop.closed()).await.is_err() {
            tracing::warn!("requests still in flight after {grace:?}; closing them");
        }
    }

    /// Serves one client connection until it ends, or until `stopped` turns true and its
    /// requests in flight are done.
    async fn connection(
        self: Arc<Self>,
        mut io: ClientIo,
        client: SocketAddr,
        first_deadline: Instant,
        mut stopped: watch::Receiver<bool>,
    ) {
        let detected = tokio::select! {
            biased;
            detected = detect(&mut io, first_deadline) => detected,
            _ = stopped.wait_for(|&s| s) => return,
        };
        let protocol = match detected {
            Ok(protocol) => protocol,
            Err(Undetected::Timeout) => {
                return tracing::debug!(%client, "closed: no request within the header-read timeout");
            }
            Err(Undetected::Closed) => return,
            Err(Undetected::Io(e)) => return tracing::debug!(%client, "connection ended: {e}"),
        };
        // Borrows `stopped`, which lives until the connection ends: the worker waits for every
        // receiver to go.
        let mut stopping = pin!(async {
            let _ = stopped.wait_for(|&s| s).await;
        });
        let conn = Arc::new((self.clone(), Peer::new(client)));
        let served = match protocol {
            Protocol::Http1 => {
                let timer = HeadTimer::new(
                    io.reads(),
                    first_deadline,
                    self.limits.keep_alive_timeout,
                    self.limits.header_read_timeout,
                );
                let service = service_fn(move |req| {
                    let conn = conn.clone();
                    async move { Ok::<_, Infallible>(conn.0.serve_request(req, &conn.1, |body| body).await) }
                });
                let mut http1 = self.http1.clone();
                let mut served = pin!(http1.timer(timer).serve_connection(TokioIo::new(io), service));
                let mut closing = false;
                std::future::poll_fn(|cx| {
                    if !closing && stopping.as_mut().poll(cx).is_ready() {
                        closing = true;
                        served.as_mut().graceful_shutdown();
                    }
                    served.as_mut().poll(cx)
                })
                .await
            }
            Protocol::Http2 => {
                let streams = Streams::new(first_deadline - self.limits.header_read_timeout);
                let mut idle = IdleTimer::new(streams.clone(), self.limits.h2_idle_timeout);
                let service = service_fn(move |req| {
                    let conn = conn.clone();
                    let open = streams.open();
                    async move {
                        let tracked = |body| Tracked { body, _open: open };
                        Ok::<_, Infallible>(conn.0.serve_request(req, &conn.1, tracked).await)
                    }
                });
                let mut served = pin!(self.http2.serve_connection(TokioIo::new(io), service));
                let mut closing = false;
                std::future::poll_fn(|cx| {
                    if !closing && (stopping.as_mut().poll(cx).is_ready() || idle.poll_idle(cx).is_ready()) {
                        closing = true;
                        served.as_mut().graceful_shutdown();
                    }
                    served.as_mut().poll(cx)
                })
                .await
            }
        };
        if let Err(e) = served {
            tracing::debug!(%client, "connection ended: {e}");
        }
    }

    /// Serves one request: gives it its ID ([`request_id`](crate::request_id)), answers it,
    /// and with the access log on, wraps the body (by `wrap` first) to log it when it is done.
    /// lb's debug lines about the request carry its ID.
    async fn serve_request<B>(
        &self,
        mut req: Request<Incoming>,
        client: &Peer,
        wrap: impl FnOnce(Body) -> B,
    ) -> Response<Logged<B>> {
        self.request_ids.assign(req.headers_mut());
        let pending = self.access_log.begin(&req, client.addr, &self.request_ids);
        let mut note = Note::default();
        let response = if tracing::enabled!(tracing::Level::DEBUG) {
            let id = self.request_ids.of(req.headers()).and_then(|id| id.to_str().ok()).unwrap_or("-");
            let span = tracing::debug_span!("request", id = %id);
            // Boxed, so that the future of every request stays as small as without it.
            Box::pin(tracing::Instrument::instrument(self.handle(req, client, &mut note), span)).await
        } else {
            self.handle(req, client, &mut note).await
        };
        Logged::wrap(response.map(wrap), pending, note)
    }

    /// Answers one request: lb's own answer to one it refuses ([`request::check`]), else its
    /// pool's; counted in its pool's metrics (or `pool=""`) once its response head is ready;
    /// `note` learns where it went.
    pub async fn handle(&self, mut req: Request<Incoming>, client: &Peer, note: &mut Note) -> Response<Body> {
        let started = self.metrics.on().then(Instant::now);
        let (pool, trace) = match self.route(&mut req) {
            Ok(routed) => routed,
            Err(own) => {
                if let Some(started) = started {
                    self.metrics.unrouted().answered(own.status(), started.elapsed());
                }
                return own;
            }
        };
        let traced = if trace {
            let proxied = pool.config.mode == Mode::Proxy;
            request::trace(&mut req, pool.config.allow_trace, proxied)
        } else {
            None
        };
        let response = match traced {
            Some(own) => own,
            None => match pool.config.mode {
                Mode::Proxy => self.proxy.forward(&pool, req, client, note).await,
                Mode::Redirect => {
                    let mut response = redirect::answer_noting(&pool, &req, client.addr.ip(), note);
                    self.request_ids.answer_with(req.headers(), response.headers_mut());
                    response
                }
            },
        };
        if let Some(started) = started {
            pool.metrics.answered(response.status(), started.elapsed());
        }
        note.pool = Some(pool);
        response
    }

    /// The pool `req` goes to (and whether it is a TRACE), or lb's own answer to it. Not
    /// async: an async layer here would move the request's (large) future once more. The answer
    /// is returned by value, as `handle` returns it: boxing it would allocate.
    #[allow(clippy::result_large_err)]
    fn route(&self, req: &mut Request<Incoming>) -> Result<(Arc<Pool>, bool), Response<Body>> {
        if req.uri().authority().is_some() {
            request::host_from_target(req);
        }
        let (host, trace) = match request::check(req, &self.via) {
            Ok(checked) => (checked.host, checked.trace),
            Err(refused) => return Err(refused.response()),
        };
        let routes = self.routes.load();
        match routes.route(req.method().as_str(), host, req.uri().path(), req.uri().query()) {
            Route::Matched { value: pool, params } => {
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let values: Vec<String> = params.iter().map(|(name, value)| format!("{name}={value}")).collect();
                    tracing::debug!("{} {} -> pool {} {}", req.method(), req.uri(), params.pattern(), values.join(" "));
                }
                Ok((pool.clone(), trace))
            }
            // As before pools could allow it: a TRACE no pool takes is lb's `405`.
            _ if trace => Err(request::Refused::Method("TRACE").response()),
            Route::Redirect(location) => Err(moved(location)),
            Route::MethodNotAllowed { allow } => Err(not_allowed(allow)),
            Route::NotFound => Err(answer(StatusCode::NOT_FOUND, "404 page not found\n")),
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
                let Ok(Handed::Connection(stream, addr)) = inbox.try_recv() else { panic!("a handed-over connection") };
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
