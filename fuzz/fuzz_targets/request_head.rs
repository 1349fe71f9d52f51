//! Bytes from a client, as lb's data plane reads them: hyper's server (HTTP/1, or HTTP/2 with
//! prior knowledge, as `data_plane` serves both) parses the request heads, and each request goes
//! through what lb does with a head before a backend is involved: routing over a table of
//! representative patterns, the stickiness key, redirect mode's answer, proxy mode's forwarded
//! headers and upstream path, and the 301/405/404 answers.
//!
//! First the bytes go through lb's HTTP/1 framing check (`conn::framing`), a parser of hostile
//! bytes of its own: it must not panic, must give the verdict of the whole input over any split
//! of it (cut where the input's last bytes say), and a refused request's bytes before its cut
//! never hold its whole head. hyper then gets what lb would give it: the bytes before the cut.

#![no_main]

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock};

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use lb::fuzzing::{
    answer, check_request, forwarded_request, host_from_target, moved, not_allowed, redirect_answer, Body,
    FramingScanner, FramingVerdict, Peer, RetryBudget, Tried, Via,
};
use lb::pool::{Backend, BackendConfig, BackendState, HashKey, Mode, Pool, PoolConfig, Strategy};
use lb::routing::{Pattern, Route, Routes};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Enough for a few pipelined requests; more only slows the fuzzer down.
const MAX_INPUT: usize = 16 * 1024;

/// `(pattern, mode, strategy, hash key, backend url_path)`: every pattern form, both modes, and
/// the strategies whose key reads the request.
const POOLS: &[(&str, Mode, Strategy, &str, &str)] = &[
    ("/", Mode::Proxy, Strategy::RoundRobin, "client_ip", "/"),
    ("/api/", Mode::Proxy, Strategy::ConsistentHash, "header:x-user", "/v2/"),
    ("GET /items/{id}", Mode::Proxy, Strategy::ConsistentHash, "cookie:session", "/"),
    ("POST /items/{id}", Mode::Redirect, Strategy::P2c, "client_ip", "/"),
    ("/files/{path...}", Mode::Proxy, Strategy::LeastConn, "client_ip", "/static"),
    ("/exact/{$}", Mode::Proxy, Strategy::Random, "client_ip", "/"),
    ("example.com/", Mode::Redirect, Strategy::ConsistentHash, "client_ip", "/base/"),
    ("example.com/a/{x}/b/", Mode::Proxy, Strategy::RoundRobin, "client_ip", "/"),
    ("DELETE /admin/{user}/", Mode::Proxy, Strategy::RoundRobin, "client_ip", "/"),
    ("/tree/", Mode::Proxy, Strategy::RoundRobin, "client_ip", "/"),
    ("/%61b%2Fc", Mode::Proxy, Strategy::RoundRobin, "client_ip", "/"),
    ("CONNECT proxy.test/", Mode::Proxy, Strategy::RoundRobin, "client_ip", "/"),
    ("HEAD /only-head", Mode::Redirect, Strategy::RoundRobin, "client_ip", "/x?"),
];

static ROUTES: LazyLock<Routes> = LazyLock::new(|| {
    Routes::new(POOLS.iter().enumerate().map(|(i, &(pattern, mode, strategy, key, url_path))| {
        let parsed = Pattern::parse(pattern).expect("a valid pattern");
        let mut config = PoolConfig::new(parsed.to_string());
        config.mode = mode;
        config.strategy = strategy;
        config.hash_key = key.parse::<HashKey>().expect("a valid hash key");
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9000 + i as u16);
        let backend =
            Backend::new(BackendConfig { addr, url_path: url_path.into(), weight: 1 }, BackendState::default());
        (parsed, Arc::new(Pool::new(config, vec![Arc::new(backend)], Arc::new(RetryBudget::new(0.2, 10)))))
    }))
});

static PEER: LazyLock<Peer> = LazyLock::new(|| Peer::new("127.0.0.1:40000".parse().unwrap()));
static VIA: LazyLock<Via> = LazyLock::new(Via::new);

thread_local! {
    static RUNTIME: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
}

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(MAX_INPUT)];
    let data = match framing(data) {
        FramingVerdict::Refuse { cut, .. } => &data[..cut as usize],
        FramingVerdict::Clean | FramingVerdict::GaveUp => data,
    };
    LazyLock::force(&ROUTES);
    RUNTIME.with(|rt| rt.block_on(exchange(data)));
});

/// lb's framing check over `data`, whole and split into reads.
fn framing(data: &[u8]) -> FramingVerdict {
    let whole = FramingScanner::default().scan(data);
    // Up to four cuts, each from two of the last bytes, so the fuzzer steers them too.
    let mut cuts: Vec<usize> = data
        .rchunks(2)
        .take(4)
        .map(|pair| pair.iter().fold(0usize, |n, &b| n << 8 | usize::from(b)) % (data.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut scanner = FramingScanner::default();
    let mut split = FramingVerdict::Clean;
    let mut from = 0;
    for cut in cuts.into_iter().chain([data.len()]) {
        split = scanner.scan(&data[from..cut]);
        if split != FramingVerdict::Clean {
            break;
        }
        from = cut;
    }
    assert_eq!(split, whole, "a split changed the verdict");
    if let FramingVerdict::Refuse { head, at, cut, .. } = whole {
        assert!(head < cut && cut <= at && at < data.len() as u64, "{head} {cut} {at}");
        let before = &data[head as usize..cut as usize];
        assert!(!before.windows(2).any(|w| w == b"\n\n") && !before.windows(4).any(|w| w == b"\r\n\r\n"));
    }
    whole
}

/// Serves one connection that sends `data` and then closes its side.
async fn exchange(data: &[u8]) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(8192);
    builder.http2().max_header_list_size(8192);
    let service = service_fn(|req| async move { Ok::<_, Infallible>(handle(req)) });
    let conn = builder.serve_connection(TokioIo::new(server), service);
    let (mut read, mut write) = tokio::io::split(client);
    let send = async move {
        let _ = write.write_all(data).await;
        let _ = write.shutdown().await;
    };
    let receive = async move {
        let mut sink = [0u8; 4096];
        while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let (_, _, _) = tokio::join!(conn, send, receive);
}

/// What `DataPlane::handle` does with a request's head, up to the point a backend is needed:
/// lb's checks before routing (its own answers to what it refuses), then the route.
fn handle(mut req: Request<Incoming>) -> Response<Body> {
    if req.uri().authority().is_some() {
        host_from_target(&mut req);
    }
    let host = match check_request(&req, &VIA) {
        Ok(checked) => checked.host.to_owned(),
        Err(refused) => return refused.response(),
    };
    let pool = match ROUTES.route(req.method().as_str(), &host, req.uri().path(), req.uri().query()) {
        Route::Matched { value, params } => {
            for (name, value) in params.iter() {
                assert_eq!(params.get(name).as_deref(), Some(&*value), "wildcard {name}");
            }
            value.clone()
        }
        Route::Redirect(location) => return moved(location),
        Route::MethodNotAllowed { allow } => return not_allowed(allow),
        Route::NotFound => return answer(StatusCode::NOT_FOUND, "404 page not found\n"),
    };
    match pool.config.mode {
        Mode::Redirect => redirect_answer(&pool, &req, PEER.addr.ip()),
        Mode::Proxy => {
            let (mut parts, _body) = req.into_parts();
            let key = pool.key(&parts.headers, PEER.addr.ip());
            let (_, backend) = pool.pick(key, &Tried::default()).expect("a usable backend");
            let host = match parts.headers.get(header::HOST) {
                Some(host) => Some(host.clone()),
                None => parts.uri.authority().and_then(|a| a.as_str().parse::<HeaderValue>().ok()),
            };
            forwarded_request(&mut parts.headers, parts.version, &PEER.forwarded_for, host, &VIA);
            assert!(!parts.headers.contains_key(header::CONNECTION), "hop-by-hop headers stay behind");
            assert!(!parts.headers.contains_key(header::TRANSFER_ENCODING), "hop-by-hop headers stay behind");
            let pq = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
            let _ = PathAndQuery::try_from(backend.upstream_path(pq));
            answer(StatusCode::OK, "ok\n")
        }
    }
}
