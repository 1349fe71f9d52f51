//! A running `sample-web` process.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use super::process::{addr_after, bin, wait_line, Lines};

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

impl From<&SampleWeb> for SocketAddr {
    fn from(web: &SampleWeb) -> SocketAddr {
        web.addr
    }
}

impl Drop for SampleWeb {
    fn drop(&mut self) {
        self.kill();
    }
}
