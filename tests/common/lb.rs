//! A running lb, as a process or in the test process, and what a test asks of its admin API.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::Parser as _;
use serde_json::{json, Value};

use super::process::{addr_after, bin, signal, wait_exit, wait_line, Lines};
use super::{client, eventually, DEADLINE};

/// The flags tests start lb with. Two workers, so that every test also goes through the
/// hand-over of connections from the accepting worker to the other, and through two per-worker
/// backend connection pools.
const FLAGS: [&str; 6] = ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--threads", "2"];

/// A running lb with its own temp data dir (kept across restarts of the same `Lb`): an `lb`
/// process ([`Lb::start`]) or lb inside the test process ([`Lb::in_process`]).
pub struct Lb {
    pub data: SocketAddr,
    pub admin: SocketAddr,
    pub dir: Arc<tempfile::TempDir>,
    /// What the process logged (in-process, nothing: the test installs no log subscriber).
    pub stderr: Lines,
    running: Option<Running>,
}

enum Running {
    Process(Child),
    /// `daemon::serve` on a thread of its own, until `stop` is sent or dropped.
    InProcess {
        stop: tokio::sync::oneshot::Sender<()>,
        serving: JoinHandle<Result<(), String>>,
    },
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

    /// Starts lb with extra command-line arguments and at most `files` open files (soft and
    /// hard limit, so that lb cannot raise it).
    pub fn start_with_open_files(args: &[&str], files: u64) -> Lb {
        use std::os::unix::process::CommandExt;
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut cmd = lb_command(dir.path());
        cmd.args(args);
        // SAFETY: between fork and exec the closure only calls setrlimit (async-signal-safe)
        // and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                let limit = libc::rlimit { rlim_cur: files, rlim_max: files };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
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
        Lb { data, admin, dir, stderr, running: Some(Running::Process(child)) }
    }

    /// Starts lb in this test process, with the flags of [`lb_command`]: `daemon::bind` on port
    /// 0, then `daemon::serve` on a thread of its own (which becomes worker 0) until
    /// [`Lb::stop`] or drop.
    pub fn in_process() -> Lb {
        Self::in_process_with(&[]).unwrap_or_else(|e| panic!("lb: error: {e}"))
    }

    /// [`Lb::in_process`] with extra command-line arguments (later ones win), or the error
    /// `daemon::bind` refused them with.
    pub fn in_process_with(extra: &[&str]) -> Result<Lb, String> {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut args: Vec<OsString> = ["lb"].iter().chain(&FLAGS).map(OsString::from).collect();
        args.extend([OsString::from("--data-dir"), dir.path().into()]);
        args.extend(extra.iter().map(OsString::from));
        let config = lb::daemon::Config::try_parse_from(args).map_err(|e| e.to_string())?;
        let bound = lb::daemon::bind(&config)?;
        let (data, admin) = (bound.data_addr(), bound.admin_addr().expect("a TCP admin API"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // The thread keeps the data dir until lb is done with it, even if the `Lb` goes first.
        let kept = dir.clone();
        let serving = std::thread::Builder::new()
            .name("lb-in-process".into())
            .spawn(move || {
                let served = lb::daemon::serve(bound, async {
                    let _ = stopped.await;
                });
                drop(kept);
                served
            })
            .unwrap();
        let running = Some(Running::InProcess { stop, serving });
        Ok(Lb { data, admin, dir, stderr: Lines::default(), running })
    }

    /// Stops lb gracefully (a process with SIGTERM, in-process with its shutdown future) and
    /// asserts it ended well: exit 0, or `serve` returned `Ok`.
    pub fn stop(&mut self) {
        match self.running.take().expect("lb is running") {
            Running::Process(mut child) => {
                signal(&child, libc::SIGTERM);
                let status = wait_exit(&mut child);
                assert!(status.success(), "lb exited with {status}:\n{}", self.stderr.text());
            }
            Running::InProcess { stop, serving } => {
                let _ = stop.send(());
                let end = Instant::now() + DEADLINE;
                while !serving.is_finished() {
                    assert!(Instant::now() < end, "in-process lb did not stop within {DEADLINE:?}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                let served = serving.join().expect("in-process lb panicked");
                assert_eq!(served, Ok(()), "in-process lb ended badly");
            }
        }
    }

    /// Kills the lb process with SIGKILL, as a crash would.
    pub fn crash(&mut self) {
        let Some(Running::Process(mut child)) = self.running.take() else { panic!("only an lb process can crash") };
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Stops the lb process (SIGTERM) and starts another on the same data dir, with new ports.
    pub fn restart(mut self) -> Lb {
        assert!(matches!(self.running, Some(Running::Process(_))), "only an lb process restarts");
        self.stop();
        Lb::start_in(self.dir.clone())
    }

    /// The lb process's id.
    pub fn pid(&self) -> u32 {
        let Some(Running::Process(child)) = &self.running else { panic!("only an lb process has a pid") };
        child.id()
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

    /// Adds `backend` (a [`SampleWeb`](super::SampleWeb), a raw backend or any address) to
    /// pool `pattern` through the admin API with `settings` (`url_path`, `weight`: `json!({})`
    /// for the defaults), asserts it was created, and returns the backend's JSON.
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

/// The command line tests start an lb process with (see [`FLAGS`]).
pub fn lb_command(dir: &Path) -> Command {
    let mut cmd = Command::new(bin("lb"));
    cmd.args(FLAGS).arg("--data-dir").arg(dir).env("LB_LOG", "info");
    cmd
}

impl Drop for Lb {
    /// Kills a process; tells lb in-process to stop, and lets it finish on its own thread.
    fn drop(&mut self) {
        if let Some(Running::Process(mut child)) = self.running.take() {
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
            .header("content-type", "application/json")
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
