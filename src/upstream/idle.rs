//! The per-thread pool of idle connections to backends, with its sweeper.
//!
//! Workers are threads with their own runtimes, so a connection never changes thread and the
//! pool needs no lock. A thread pools only once it called [`super::install`] on its
//! current-thread runtime; the pool goes with that runtime.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustc_hash::FxHashMap;
use tokio::net::TcpStream;

use super::conn::Conn;

/// Buffers larger than this are not kept with an idle connection.
const KEEP_BUFFER: usize = 16 * 1024;
/// Idle connections kept per backend and worker thread.
const MAX_IDLE_PER_BACKEND: usize = 1024;
/// How often each worker drops idle connections past their idle timeout; also the precision
/// of that timeout.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

struct Idle {
    conn: Conn,
    expires: Instant,
}

/// Whether this thread pools connections: only a data-plane worker does (see [`super::install`]),
/// while its runtime runs.
#[derive(Clone, Copy, PartialEq)]
enum Pooling {
    No,
    /// The worker's sweeper is running; the time of its last sweep, so that idle deadlines need
    /// no clock read per request.
    Yes(Instant),
}

thread_local! {
    /// Backend addresses come from the admin, not from clients, so there is no hash flooding to
    /// defend against, and SipHash (twice per request, for checkout and checkin) was 2% of lb's
    /// instructions per proxied request: Fx's multiply-rotate is enough.
    static IDLE: RefCell<FxHashMap<SocketAddr, Vec<Idle>>> = RefCell::new(FxHashMap::default());
    static POOLING: Cell<Pooling> = const { Cell::new(Pooling::No) };
}

/// Starts pooling on this thread if its runtime is a current-thread one (see
/// [`super::install`]).
pub(super) fn install() {
    POOLING.with(|pooling| {
        if pooling.get() != Pooling::No {
            return;
        }
        if let Some(runtime) = crate::timer::current_thread_runtime() {
            runtime.spawn(sweep(SweeperGuard));
            pooling.set(Pooling::Yes(Instant::now()));
        }
    })
}

fn pooling() -> Pooling {
    POOLING.with(Cell::get)
}

/// The most recently used idle connection to `addr` that is still open. `careful`: make sure
/// with a system call that the backend has not closed it (for requests that cannot be sent
/// twice); otherwise trust the readiness the runtime last saw.
pub(super) fn checkout(addr: SocketAddr, careful: bool) -> Option<Conn> {
    let Pooling::Yes(now) = pooling() else { return None };
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        while let Some(Idle { mut conn, expires }) = list.pop() {
            if expires <= now {
                continue;
            }
            // A FIN (or anything else) the runtime has seen makes the connection readable;
            // this is a system call only when readiness is set. The runtime may not have
            // polled for events since the backend closed: `careful` covers that.
            match conn.stream.try_read_buf(&mut conn.read) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                _ => continue,
            }
            if careful && !still_open(&conn.stream) {
                continue;
            }
            return Some(conn);
        }
        None
    })
}

/// Asks the kernel whether the peer has closed or sent anything (`MSG_PEEK`, non-blocking).
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::uninit()];
    let peeked = socket2::SockRef::from(stream).recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT);
    matches!(peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

pub(super) fn checkin(mut conn: Conn) {
    let Pooling::Yes(now) = pooling() else { return };
    // An idle connection keeps small buffers, not the largest message it ever carried.
    if conn.write.capacity() > KEEP_BUFFER {
        conn.write = Vec::with_capacity(512);
    }
    if conn.read.capacity() > KEEP_BUFFER {
        conn.read = BytesMut::with_capacity(4096);
    }
    // An idle timeout too large to add means "as long as the pool holds it".
    let expires = now.checked_add(conn.target.idle_timeout).unwrap_or(now + Duration::from_secs(1 << 30));
    let _ = IDLE.try_with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(conn.target.addr).or_default();
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push(Idle { conn, expires });
        }
    });
}

/// Closes this thread's idle connections as their idle timeout passes (to within one sweep),
/// and keeps the thread's coarse clock.
async fn sweep(_guard: SweeperGuard) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now = Instant::now();
        POOLING.with(|p| p.set(Pooling::Yes(now)));
        IDLE.with(|idle| {
            idle.borrow_mut().retain(|_, list| {
                list.retain(|i| i.expires > now);
                !list.is_empty()
            })
        });
    }
}

/// Dropped with the sweeper when its runtime shuts down: the pooled connections belong to that
/// runtime and go with it, and a later runtime on this thread starts afresh.
struct SweeperGuard;

impl Drop for SweeperGuard {
    fn drop(&mut self) {
        let _ = POOLING.try_with(|p| p.set(Pooling::No));
        let _ = IDLE.try_with(RefCell::take);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_addresses_spread_over_the_low_bits_of_their_hash() {
        use std::hash::BuildHasher;
        let hasher = rustc_hash::FxBuildHasher;
        let mut buckets = std::collections::HashSet::new();
        for i in 0..=255u8 {
            let addr = SocketAddr::from(([10, 0, 0, i], 8080));
            buckets.insert(hasher.hash_one(addr) & 1023);
        }
        assert!(buckets.len() > 200, "256 addresses of a /24 in {} of 1024 buckets", buckets.len());
        let mut ports = std::collections::HashSet::new();
        for port in 8000..8256u16 {
            ports.insert(hasher.hash_one(SocketAddr::from(([127, 0, 0, 1], port))) & 1023);
        }
        assert!(ports.len() > 200, "256 ports of one host in {} of 1024 buckets", ports.len());
    }
}
