//! A running lb and what a test asks of its admin API.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::Arc;

use super::process::{addr_after, bin, signal, wait_exit, wait_line, Lines};
use serde_json::{json, Value};

use super::{client, eventually, DEADLINE};
#[allow(unused_imports)] // for the docs
use super::{FaultyBackend, SampleWeb};

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

    /// Adds pool `pattern` through the admin API with `settings` (the JSON fields besides the
    /// pattern, as the README lists them: `json!({})` for the defaults), asserts it was
    /// created, and returns the pool's JSON.
    pub async fn add_pool(&self, pattern: &str, settings: Value) -> Value {
        let mut body = settings;
        body["pattern"] = json!(pattern);
        let r = client().post(self.admin_url("/v1/pools")).json(&body).send().await.unwrap();
        let status = r.status();
        let answer = r.text().await.unwrap();
        assert_eq!(status, 201, "add pool {pattern}: {answer}");
        serde_json::from_str(&answer).unwrap()
    }

    /// Adds `backend` (a [`SampleWeb`], a [`FaultyBackend`] or any address) to pool `pattern`
    /// through the admin API with `settings` (`url_path`, `weight`: `json!({})` for the
    /// defaults), asserts it was created, and returns the backend's JSON.
    pub async fn add_backend(&self, pattern: &str, backend: impl Into<SocketAddr>, settings: Value) -> Value {
        let addr = backend.into();
        let mut body = settings;
        body["ip"] = json!(addr.ip().to_string());
        body["port"] = json!(addr.port());
        let r = client().post(self.admin_url("/v1/pool/backends")).query(&[("pattern", pattern)]).json(&body);
        let r = r.send().await.unwrap();
        let status = r.status();
        let answer = r.text().await.unwrap();
        assert_eq!(status, 201, "add backend {addr} to {pattern}: {answer}");
        serde_json::from_str(&answer).unwrap()
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
