//! HTTP/1's deadlines around request heads, through hyper's header-read timer.
//!
//! hyper arms its header-read timer whenever it starts waiting for a request head, including on
//! an idle keep-alive connection, so by itself one timeout would be both the keep-alive idle
//! time and the time to send a head. [`HeadTimer`] is that timer for one connection and tells
//! the two apart by the connection's [`Reads`]: while nothing has arrived since the wait began
//! the connection is idle, with `--keep-alive-timeout` (on an idle deadline, so it is closed
//! first at the connection limit); from the first read on, the head must be complete within
//! `--header-read-timeout`. The first head shares the deadline detection had, counted from
//! accept.
//!
//! Per request this costs what hyper's timer did before (one boxed sleep) plus a read of the
//! counter: no clock read, nothing armed when the head comes in one read.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::io::Reads;
use crate::timer::Deadline;

/// One connection's header-read timer (hyper asks it for nothing else on a server connection).
#[derive(Debug, Clone)]
pub struct HeadTimer(Arc<Clock>);

#[derive(Debug)]
struct Clock {
    reads: Arc<Reads>,
    /// Until the first head is in, it is bound by the deadline set at accept.
    first: AtomicBool,
    first_deadline: Instant,
    keep_alive: Duration,
    header: Duration,
}

impl HeadTimer {
    /// For a connection accepted with `first_deadline` for its first head, whose reads are
    /// counted in `reads`; hyper must be given `header` as its header-read timeout.
    pub fn new(reads: Arc<Reads>, first_deadline: Instant, keep_alive: Duration, header: Duration) -> HeadTimer {
        HeadTimer(Arc::new(Clock { reads, first: AtomicBool::new(true), first_deadline, keep_alive, header }))
    }

    fn head(&self, deadline: Instant) -> HeadSleep {
        let clock = &self.0;
        if clock.first.load(Ordering::Relaxed) {
            clock.first.store(false, Ordering::Relaxed);
            return HeadSleep {
                clock: clock.clone(),
                reads: 0,
                idle: false,
                deadline: Deadline::at(clock.first_deadline),
            };
        }
        // hyper asks for its wait's start + the header-read timeout.
        let began = deadline.checked_sub(clock.header).unwrap_or(deadline);
        let idle = began.checked_add(clock.keep_alive).unwrap_or(deadline);
        HeadSleep { clock: clock.clone(), reads: clock.reads.get(), idle: true, deadline: Deadline::idle_at(idle) }
    }
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline::after(duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.head(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        *sleep = self.sleep_until(new_deadline);
    }
}

/// hyper's wait for one request head.
struct HeadSleep {
    clock: Arc<Clock>,
    /// The connection's read count when the idle wait began.
    reads: u32,
    idle: bool,
    deadline: Deadline,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // hyper polls this after each read that left the head incomplete.
        if this.idle && this.clock.reads.get() != this.reads {
            this.idle = false;
            this.deadline = Deadline::after(this.clock.header);
        }
        Pin::new(&mut this.deadline).poll(cx)
    }
}

impl hyper::rt::Sleep for HeadSleep {}
