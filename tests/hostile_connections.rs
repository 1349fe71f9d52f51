//! Clients that hold connections without using them: silent, a partial HTTP/2 preface, idle
//! HTTP/2, a client that stops reading, and more connections than lb takes. Each gets its
//! connection closed on a deadline while everybody else is served.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw_backend::Backend;
use common::{eventually, Lb, SampleWeb, DEADLINE};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn lb_with(args: &[&str]) -> Lb {
    Lb::start_with(Arc::new(tempfile::tempdir().unwrap()), args)
}

async fn proxying_to_sample_web(lb: &Lb) -> SampleWeb {
    let web = SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &web, json!({})).await;
    web
}

/// Reads until lb closes the connection (EOF or reset); panics at the deadline.
async fn until_closed(conn: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    });
    closed.await.expect("lb closes the connection");
    got
}

/// One `GET /` with `Connection: close` on a new raw connection; the whole response.
async fn get_raw(data: SocketAddr) -> String {
    let mut conn = TcpStream::connect(data).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    String::from_utf8_lossy(&until_closed(&mut conn).await).into_owned()
}

#[tokio::test]
async fn silent_connections_are_closed_at_the_header_deadline_while_others_are_served() {
    let timeout = Duration::from_millis(1500);
    let lb = lb_with(&["--header-read-timeout", "1500ms"]);
    let _web = proxying_to_sample_web(&lb).await;
    let data = lb.data;

    let silent = (0..500).map(|_| {
        tokio::spawn(async move {
            // Before connect: lb may accept before this task runs again.
            let opened = Instant::now();
            let mut conn = TcpStream::connect(data).await.unwrap();
            let got = until_closed(&mut conn).await;
            (opened.elapsed(), got)
        })
    });
    let silent: Vec<_> = silent.collect();
    // Meanwhile, real clients are served, on new connections and kept-alive ones.
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < timeout {
        let response = get_raw(data).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let (status, body) = common::get(&lb.url("/")).await;
        assert_eq!(status, 200, "{body}");
        served += 2;
    }
    assert!(served >= 4, "only {served} requests served in {timeout:?}");
    for task in silent {
        let (after, got) = task.await.unwrap();
        assert!(got.is_empty(), "lb sent {:?} to a client that said nothing", String::from_utf8_lossy(&got));
        assert!(after >= timeout - Duration::from_millis(50), "closed after only {after:?}");
        assert!(after < timeout + Duration::from_secs(3), "closed only after {after:?}");
    }
}

#[tokio::test]
async fn a_partial_http2_preface_is_closed_at_the_header_deadline() {
    let lb = lb_with(&["--header-read-timeout", "300ms"]);
    for sent in [
        &b"PRI * HTTP/2.0\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x06\x04",
    ] {
        let mut conn = TcpStream::connect(lb.data).await.unwrap();
        let opened = Instant::now();
        conn.write_all(sent).await.unwrap();
        until_closed(&mut conn).await;
        let after = opened.elapsed();
        assert!(after >= Duration::from_millis(250), "{sent:?}: closed after only {after:?}");
        assert!(after < Duration::from_secs(5), "{sent:?}: closed only after {after:?}");
    }
}

#[tokio::test]
async fn a_first_head_counts_from_accept_and_a_trickled_one_from_its_first_byte() {
    let lb = lb_with(&["--header-read-timeout", "600ms", "--keep-alive-timeout", "30s"]);
    let _web = proxying_to_sample_web(&lb).await;
    // The first head: sent slowly, it is cut off 600 ms after connect.
    let mut conn = TcpStream::connect(lb.data).await.unwrap();
    let opened = Instant::now();
    for piece in [&b"GET / HT"[..], b"TP/1.1\r\n", b"Host: x\r\n"] {
        conn.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    until_closed(&mut conn).await;
    let after = opened.elapsed();
    assert!(after < Duration::from_secs(3), "closed only after {after:?}");

    // After a response, the connection may idle longer than the header-read timeout (it is
    // kept by the keep-alive timeout) ...
    let mut conn = TcpStream::connect(lb.data).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // ... and a head begun then must still be done within the header-read timeout.
    conn.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let begun = Instant::now();
    let got = until_closed(&mut conn).await;
    assert!(got.is_empty() || got.starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(&got));
    let after = begun.elapsed();
    assert!(after >= Duration::from_millis(550), "closed after only {after:?}");
    assert!(after < Duration::from_secs(3), "closed only after {after:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_keep_alive_timeout() {
    let lb = lb_with(&["--keep-alive-timeout", "700ms"]);
    let _web = proxying_to_sample_web(&lb).await;
    let mut conn = TcpStream::connect(lb.data).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let idle = Instant::now();
    let got = until_closed(&mut conn).await;
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    let after = idle.elapsed();
    assert!(after >= Duration::from_millis(650), "closed after only {after:?}");
    assert!(after < Duration::from_secs(4), "closed only after {after:?}");
}

/// An HTTP/2 prior-knowledge client on `data`: its request handle and the connection's task,
/// which ends when lb closes the connection.
async fn h2_client(
    data: SocketAddr,
) -> (hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>>, tokio::task::JoinHandle<()>) {
    let stream = TcpStream::connect(data).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    (
        send,
        tokio::spawn(async move {
            let _ = conn.await;
        }),
    )
}

#[tokio::test]
async fn an_idle_http2_connection_gets_its_goaway_after_the_h2_idle_timeout() {
    let lb = lb_with(&["--h2-idle-timeout", "800ms"]);
    let _web = proxying_to_sample_web(&lb).await;
    let (mut send, conn) = h2_client(lb.data).await;
    let request = http::Request::get(lb.url("/")).body(http_body_util::Empty::new()).unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    assert!(body.starts_with(b"Hello web from node a"), "{body:?}");
    let idle = Instant::now();
    tokio::time::timeout(DEADLINE, conn).await.expect("lb closes the idle connection").unwrap();
    let after = idle.elapsed();
    assert!(after >= Duration::from_millis(700), "closed after only {after:?}");
    assert!(after < Duration::from_secs(5), "closed only after {after:?}");
}

#[tokio::test]
async fn an_http2_stream_in_flight_keeps_its_connection_past_the_idle_timeout() {
    let lb = lb_with(&["--h2-idle-timeout", "300ms"]);
    let _web = proxying_to_sample_web(&lb).await;
    let (mut send, conn) = h2_client(lb.data).await;
    let request = http::Request::get(lb.url("/slow?ms=1200")).body(http_body_util::Empty::new()).unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    http_body_util::BodyExt::collect(response.into_body()).await.unwrap();
    // Not idle while the stream was open: the connection takes the next request.
    let request = http::Request::get(lb.url("/")).body(http_body_util::Empty::new()).unwrap();
    let response = send.send_request(request).await.expect("the connection is still open");
    assert_eq!(response.status(), 200);
    tokio::time::timeout(DEADLINE, conn).await.expect("then closed as idle").unwrap();
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_after_the_send_timeout() {
    let lb = lb_with(&["--send-timeout", "500ms", "--threads", "1"]);
    const BODY: usize = 64 << 20;
    let mut response = format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\n\r\n").into_bytes();
    response.resize(response.len() + BODY, b'x');
    let response = Bytes::from(response);
    // Set when the big response's write ends: it cannot complete while the client reads nothing.
    let big_sent = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = big_sent.clone();
    let big = Backend::start(move |mut peer| {
        let (response, sent) = (response.clone(), sent.clone());
        async move {
            while let Some(request) = peer.request().await {
                if request.starts_with(b"GET /healthz ") {
                    peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                } else {
                    peer.send(&response).await;
                    sent.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    })
    .await;
    lb.add_pool("/big", json!({})).await;
    lb.add_backend("/big", &big, json!({})).await;
    let _web = SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &_web, json!({})).await;

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(lb.data).await.unwrap();
    stalled.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    big.wait("the request", |s| s.requests.iter().any(|(_, r)| r.starts_with(b"GET /big "))).await;
    // The worker this client is on keeps serving others.
    let (status, _) = common::get(&lb.url("/")).await;
    assert_eq!(status, 200);
    // lb gives up on the client, and with it on the backend connection mid-body.
    eventually("lb to drop the backend connection mid-body", || async {
        big_sent.load(std::sync::atomic::Ordering::Relaxed).then_some(())
    })
    .await;
    let got = until_closed(&mut stalled).await;
    assert!(got.len() < BODY, "the whole body arrived");
    let (status, _) = common::get(&lb.url("/")).await;
    assert_eq!(status, 200);
}

/// CPU time (user + system) lb's process has used.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// One request on a kept-alive raw connection; asserts a 200 and leaves the connection open.
async fn request_on(conn: &mut TcpStream, path: &str) {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let answered = tokio::time::timeout(DEADLINE, async {
        loop {
            let n = conn.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the response: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
            if got.windows(b"Hello web from node".len()).any(|w| w == b"Hello web from node") {
                return;
            }
        }
    });
    answered.await.expect("an answer");
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
}

#[tokio::test]
async fn at_the_connection_limit_lb_closes_idle_connections_first_and_serves_the_busy_ones() {
    let lb = lb_with(&["--max-connections", "4"]);
    let _web = proxying_to_sample_web(&lb).await;
    // Two idle keep-alive connections and two with a request in flight: lb is at its limit.
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(lb.data).await.unwrap();
        request_on(&mut conn, "/").await;
        idle.push(conn);
    }
    let data = lb.data;
    let busy: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                let mut conn = TcpStream::connect(data).await.unwrap();
                conn.write_all(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
                String::from_utf8_lossy(&until_closed(&mut conn).await).into_owned()
            })
        })
        .collect();
    lb.wait_inflight(2).await;

    // A new client is served: lb closed the idle ones to make room for it.
    let response = get_raw(lb.data).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    for mut conn in idle {
        assert!(until_closed(&mut conn).await.is_empty());
    }
    for busy in busy {
        let response = busy.await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "a busy connection was cut: {response}");
    }
}

#[tokio::test]
async fn at_the_connection_limit_lb_waits_without_spinning_and_recovers() {
    let lb = lb_with(&["--max-connections", "4"]);
    let _web = proxying_to_sample_web(&lb).await;
    let pid = lb.pid();
    // Four clients in the middle of a request head: none is idle, so none is closed.
    let mut holding = Vec::new();
    for _ in 0..4 {
        let mut conn = TcpStream::connect(lb.data).await.unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        holding.push(conn);
    }
    // More clients wait in the listener's backlog.
    let data = lb.data;
    let waiting: Vec<_> = (0..8).map(|_| tokio::spawn(get_raw(data))).collect();
    eventually("lb to be at its limit", || async {
        let mut probe = TcpStream::connect(data).await.ok()?;
        probe.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.ok()?;
        let mut buf = [0u8; 1];
        let answered = tokio::time::timeout(Duration::from_millis(300), probe.read(&mut buf)).await;
        answered.is_err().then_some(())
    })
    .await;
    let (cpu, wall) = (cpu_time(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_time(pid) - cpu;
    let share = used.as_secs_f64() / wall.elapsed().as_secs_f64();
    assert!(share < 0.2, "lb used {used:?} of CPU in a second at its limit");
    assert!(waiting.iter().all(|w| !w.is_finished()), "a client past the limit was served");

    // The holders finish their heads, and everyone is served.
    for conn in &mut holding {
        conn.write_all(b"Host: x\r\nConnection: close\r\n\r\n").await.unwrap();
    }
    for mut conn in holding {
        let response = until_closed(&mut conn).await;
        assert!(response.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&response));
    }
    for waiting in waiting {
        let response = waiting.await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    let (status, _) = common::get(&lb.url("/")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn out_of_file_descriptors_lb_backs_off_instead_of_spinning_and_recovers() {
    let lb = Lb::start_with_open_files(&["--max-connections", "10000", "--header-read-timeout", "30s"], 128);
    let _web = proxying_to_sample_web(&lb).await;
    let pid = lb.pid();
    // Silent clients, more than lb has file descriptors for: its accepts fail.
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(TcpStream::connect(lb.data).await.unwrap());
    }
    let failures = || lb.stderr.text().matches("accept failed").count();
    eventually("accept to fail", || async { (failures() > 0).then_some(()) }).await;
    let (cpu, wall, logged) = (cpu_time(pid), Instant::now(), failures());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_time(pid) - cpu;
    let share = used.as_secs_f64() / wall.elapsed().as_secs_f64();
    assert!(share < 0.2, "lb used {used:?} of CPU in a second out of file descriptors");
    assert!(failures() - logged <= 3, "accept failures logged again and again:\n{}", lb.stderr.text());

    // Once the clients go, lb accepts again.
    drop(silent);
    eventually("lb to answer again", || async {
        let mut conn = TcpStream::connect(lb.data).await.ok()?;
        conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.ok()?;
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(2), conn.read_to_end(&mut answer)).await.ok()?.ok()?;
        answer.starts_with(b"HTTP/1.1 ").then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_limit_flags_are_one_line_errors() {
    let bad = [
        ["--keep-alive-timeout", "soon"],
        ["--h2-idle-timeout", "0"],
        ["--send-timeout", "1 minute"],
        ["--max-connections", "0"],
        ["--max-connections", "many"],
    ];
    for args in bad {
        let dir = tempfile::tempdir().unwrap();
        let out = common::lb_command(dir.path()).args(args).stderr(std::process::Stdio::piped()).output().unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains("error:") && stderr.contains(args[0]), "{args:?}: {stderr}");
    }
}
