//! Test scaffolding: real `lb`, `sample-web` and `lbctl` processes on loopback, a temp data dir,
//! and waits with deadlines instead of sleeps.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long anything in a test may take to come up or change.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Path of a workspace binary. `lb` comes from Cargo; the others are built by
/// `cargo test --workspace`, and built here once if this package is tested alone.
pub fn bin(name: &str) -> PathBuf {
    let lb = PathBuf::from(env!("CARGO_BIN_EXE_lb"));
    if name == "lb" {
        return lb;
    }
    let path = lb.with_file_name(name);
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if !lb.with_file_name("sample-web").exists() || !lb.with_file_name("lbctl").exists() {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-p", "sample-web", "-p", "lbctl"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building sample-web and lbctl failed");
        }
    });
    path
}

/// Lines a child printed, collected by a thread so its pipe never fills.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn collect(reader: impl std::io::Read + Send + 'static, tx: Option<mpsc::Sender<String>>) -> Lines {
        let lines = Lines::default();
        let store = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                if let Some(tx) = &tx {
                    let _ = tx.send(line.clone());
                }
                store.0.lock().unwrap().push(line);
            }
        });
        lines
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// Waits until `ready` finds what it wants in a line, or panics at the deadline.
fn wait_line<T>(rx: &mpsc::Receiver<String>, what: &str, mut ready: impl FnMut(&str) -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(v) = ready(&line) {
                    return v;
                }
            }
            Err(_) => panic!("no {what} within {DEADLINE:?}"),
        }
    }
}

fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// Sends a signal to a child.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a pid we spawned and have not reaped.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Waits for a child to exit, killing it at the deadline.
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("process did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running `sample-web`.
pub struct SampleWeb {
    child: Child,
    pub addr: SocketAddr,
    pub node: String,
}

impl SampleWeb {
    pub fn start(node: &str) -> SampleWeb {
        Self::start_on(node, 0)
    }

    pub fn start_on(node: &str, port: u16) -> SampleWeb {
        let mut child = Command::new(bin("sample-web"))
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--node", node])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sample-web starts");
        let (tx, rx) = mpsc::channel();
        Lines::collect(child.stdout.take().unwrap(), Some(tx));
        let addr = wait_line(&rx, "sample-web listening line", |l| addr_after(l, "listening on "));
        SampleWeb { child, addr, node: node.to_owned() }
    }

    pub fn ip(&self) -> String {
        self.addr.ip().to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops it and waits until it is gone, so its port refuses connections.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SampleWeb {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `lb` with its own temp data dir (kept across restarts of the same `Lb`).
pub struct Lb {
    child: Option<Child>,
    pub data: SocketAddr,
    pub admin: SocketAddr,
    pub dir: Arc<tempfile::TempDir>,
    pub stderr: Lines,
}

impl Lb {
    pub fn start() -> Lb {
        Self::start_in(Arc::new(tempfile::tempdir().unwrap()))
    }

    pub fn start_in(dir: Arc<tempfile::TempDir>) -> Lb {
        Self::start_with(dir, &[])
    }

    /// Starts lb with extra command-line arguments.
    pub fn start_with(dir: Arc<tempfile::TempDir>, args: &[&str]) -> Lb {
        let mut cmd = lb_command(dir.path());
        cmd.args(args);
        Self::spawn(cmd, dir)
    }

    /// Starts lb logging with this `LB_LOG` filter.
    pub fn start_logging(filter: &str) -> Lb {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut cmd = lb_command(dir.path());
        cmd.env("LB_LOG", filter);
        Self::spawn(cmd, dir)
    }

    fn spawn(mut cmd: Command, dir: Arc<tempfile::TempDir>) -> Lb {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("lb starts");
        let stderr = Lines::collect(child.stderr.take().unwrap(), None);
        let (tx, rx) = mpsc::channel();
        Lines::collect(child.stdout.take().unwrap(), Some(tx));
        let data = wait_line(&rx, "lb's data listening line", |l| addr_after(l, "data listening on "));
        let admin = wait_line(&rx, "lb's admin listening line", |l| addr_after(l, "admin listening on "));
        Lb { child: Some(child), data, admin, dir, stderr }
    }

    /// Stops lb with SIGTERM and returns its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("lb is running");
        signal(&child, libc::SIGTERM);
        wait_exit(&mut child)
    }

    /// Kills lb with SIGKILL, as a crash would.
    pub fn crash(&mut self) {
        let mut child = self.child.take().expect("lb is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Stops (SIGTERM) and starts again on the same data dir, with new ports.
    pub fn restart(mut self) -> Lb {
        assert!(self.stop().success(), "lb exited badly:\n{}", self.stderr.text());
        Lb::start_in(self.dir.clone())
    }

    pub fn child(&self) -> &Child {
        self.child.as_ref().expect("lb is running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.data)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Runs `lbctl --lb=<this lb's admin> args...`.
    pub fn lbctl(&self, args: &[&str]) -> Output {
        Command::new(bin("lbctl")).arg(format!("--lb={}", self.admin)).args(args).output().expect("lbctl runs")
    }

    /// Adds a pool through the admin API and asserts it was created.
    pub async fn add_pool(&self, pattern: &str, mode: &str) {
        let r = client()
            .post(self.admin_url("/v1/pools"))
            .json(&serde_json::json!({ "pattern": pattern, "mode": mode }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "add pool {pattern}: {}", r.text().await.unwrap());
    }

    /// Adds a backend through the admin API and asserts it was created.
    pub async fn add_backend(&self, pattern: &str, backend: &SampleWeb, url_path: &str) {
        let r = client()
            .post(self.admin_url("/v1/pool/backends"))
            .query(&[("pattern", pattern)])
            .json(&serde_json::json!({ "ip": backend.ip(), "port": backend.port(), "url_path": url_path }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "add backend {} to {pattern}: {}", backend.addr, r.text().await.unwrap());
    }
}

/// The command line tests start lb with. Two workers, so that every test also goes through the
/// hand-over of connections from the accepting worker to the other, and through two per-worker
/// backend connection pools.
pub fn lb_command(dir: &Path) -> Command {
    let mut cmd = Command::new(bin("lb"));
    cmd.args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--threads", "2", "--data-dir"])
        .arg(dir)
        .env("LB_LOG", "info");
    cmd
}

impl Drop for Lb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP client that shows redirects instead of following them.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().timeout(DEADLINE).build().unwrap()
}

/// `GET url` and the body as text, with the status.
pub async fn get(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Retries `check` until it returns `Some`, or panics at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < end, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
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

impl Drop for FaultyBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Lb {
    /// Adds pool `pattern` with these settings (JSON object fields besides the pattern).
    pub async fn add_pool_with(&self, pattern: &str, settings: serde_json::Value) {
        let mut body = settings;
        body["pattern"] = serde_json::json!(pattern);
        let r = client().post(self.admin_url("/v1/pools")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 201, "add pool {pattern}: {}", r.text().await.unwrap());
    }

    /// Adds any `ip:port` backend through the admin API and asserts it was created.
    pub async fn add_backend_addr(&self, pattern: &str, addr: SocketAddr, weight: u32) {
        let r = client()
            .post(self.admin_url("/v1/pool/backends"))
            .query(&[("pattern", pattern)])
            .json(&serde_json::json!({ "ip": addr.ip().to_string(), "port": addr.port(), "weight": weight }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "add backend {addr} to {pattern}: {}", r.text().await.unwrap());
    }
}

impl Lb {
    /// Removes backend `addr` from pool `pattern` through the admin API and asserts it went.
    pub async fn remove_backend(&self, pattern: &str, addr: SocketAddr) {
        let (ip, port) = (addr.ip().to_string(), addr.port().to_string());
        let r = client()
            .delete(self.admin_url("/v1/pool/backends"))
            .query(&[("pattern", pattern), ("ip", ip.as_str()), ("port", port.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "remove backend {addr} from {pattern}: {}", r.text().await.unwrap());
    }

    /// Sends `POST /echo` with the body "hello world" in two chunks (no Content-Length) over a
    /// raw connection, and returns the whole raw response.
    pub async fn post_chunked_echo(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(self.data).await.unwrap();
        conn.write_all(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
        let mut response = String::new();
        tokio::time::timeout(DEADLINE, conn.read_to_string(&mut response)).await.unwrap().unwrap();
        response
    }
}

impl Lb {
    /// `GET` an admin API path and its JSON answer.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        client().get(self.admin_url(path)).send().await.unwrap().json().await.unwrap()
    }

    /// Waits until the first backend of pool `/` has `n` requests in flight.
    pub async fn wait_inflight(&self, n: u64) {
        let url = self.admin_url("/v1/pool?pattern=/");
        eventually(&format!("{n} request(s) in flight"), || async {
            let pool: serde_json::Value = client().get(&url).send().await.ok()?.json().await.ok()?;
            (pool["backends"][0]["inflight"] == n).then_some(())
        })
        .await;
    }
}
