//! Child processes: the workspace binaries, the lines they print, signals and exits.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::DEADLINE;

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
    /// Collects the lines of `reader`, also sending each to `tx`.
    pub fn collect(reader: impl std::io::Read + Send + 'static, tx: Option<mpsc::Sender<String>>) -> Lines {
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
pub fn wait_line<T>(rx: &mpsc::Receiver<String>, what: &str, mut ready: impl FnMut(&str) -> Option<T>) -> T {
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

/// The address after `marker` in `line`.
pub fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
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

/// Runs lb (`cmd`) to completion: it must exit 1 with one `lb: error:` line, which is returned.
/// Bounded: an lb that wrongly starts is killed at the deadline, failing the test.
pub fn refused(cmd: &mut Command) -> String {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut pipe, &mut text).map(|_| text)
    });
    let status = wait_exit(&mut child);
    let stderr = reader.join().unwrap().unwrap();
    assert_eq!(status.code(), Some(1), "lb should have refused to start:\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("lb: error:")).collect();
    assert_eq!(errors.len(), 1, "want one error line:\n{stderr}");
    errors[0].to_owned()
}
