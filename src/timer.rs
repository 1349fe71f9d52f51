//! Deadlines for the request path, cheaper than tokio's timer.
//!
//! Every proxied request needs two: the client connection's header-read timeout (through
//! hyper's [`Timer`](hyper::rt::Timer)) and the backend's response timeout. Nearly all of
//! them are cancelled long before they expire, and tokio's timer pays for each with a clone of
//! the runtime handle and two trips through its driver's lock (arm, then cancel): about 5% of
//! lb's CPU per proxied request, measured by removing both.
//!
//! Here a deadline armed on a data-plane worker (a thread that called [`install`] on its
//! current-thread runtime) is a slot in that thread's slab: arming and cancelling take no lock
//! and no atomic operation. One sweeper task per worker wakes the expired ones, sleeping until
//! the earliest deadline it knows of and sweeping at most once per [`TICK`]. A deadline fires
//! no earlier than asked and at most about one `TICK` later. Anywhere else (other threads,
//! other runtimes, tests) it is a tokio sleep.
//!
//! A deadline may be marked *idle* ([`Deadline::idle_at`]): it guards a client connection that
//! is only waiting for the client (keep-alive between requests, an HTTP/2 connection with no
//! stream). [`close_idle`] expires the oldest of those on this thread at once, which is how lb
//! makes room for new clients at its connection limit; it scans the slab, which is fine for
//! something that happens only at the limit.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The least time between two sweeps of a thread's deadlines, and so about how late a deadline
/// may fire.
pub const TICK: Duration = Duration::from_millis(10);

/// A deadline too far away to represent is as good as never.
const FAR: Duration = Duration::from_secs(1 << 30);

/// Waits for `future` until `duration` has passed.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    let mut future = std::pin::pin!(future);
    let mut deadline = Deadline::after(duration);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        Pin::new(&mut deadline).poll(cx).map(|()| Err(Elapsed))
    })
    .await
}

/// A [`timeout`] expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// A future that completes once its instant has passed. It is armed when first polled (a
/// deadline that is never waited on costs nothing but its clock read) and cancelled when
/// dropped.
pub struct Deadline {
    at: Instant,
    state: State,
    /// [`close_idle`] may expire it early.
    idle: bool,
}

enum State {
    /// Not polled yet (or reset since).
    Unarmed,
    /// In the slab of the thread whose wheel has id `wheel`.
    Armed {
        wheel: u64,
        index: u32,
        generation: u32,
    },
    Expired,
    /// Not on a wheel's thread: tokio's timer.
    Tokio(Pin<Box<tokio::time::Sleep>>),
}

impl Deadline {
    pub fn after(duration: Duration) -> Self {
        let now = Instant::now();
        Deadline::at(now.checked_add(duration).unwrap_or(now + FAR))
    }

    pub fn at(at: Instant) -> Self {
        Deadline { at, state: State::Unarmed, idle: false }
    }

    /// A deadline of a connection that waits only for its client: [`close_idle`] may expire it
    /// before `at`.
    pub fn idle_at(at: Instant) -> Self {
        Deadline { at, state: State::Unarmed, idle: true }
    }

    /// Moves the deadline; it is armed again when next polled.
    pub fn reset(&mut self, at: Instant) {
        self.disarm();
        self.at = at;
        self.state = State::Unarmed;
    }

    fn disarm(&mut self) {
        if let State::Armed { wheel, index, generation } = self.state {
            // During thread exit the wheel may already be gone, and with it the slot. The waker
            // is dropped after the borrow ends.
            let _waker = with_wheel(wheel, |w| w.release(index, generation));
            self.state = State::Unarmed;
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.disarm();
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Expired => return Poll::Ready(()),
                State::Tokio(sleep) => return sleep.as_mut().poll(cx),
                State::Unarmed => {
                    let armed = WHEEL.with(|w| w.borrow_mut().as_mut().map(|w| w.arm(this.at, this.idle, cx.waker())));
                    match armed {
                        Some((state, sweeper)) => {
                            this.state = state;
                            // Woken after the borrow: a waker may run code that looks at the wheel.
                            if let Some(sweeper) = sweeper {
                                sweeper.wake();
                            }
                            return Poll::Pending;
                        }
                        None => this.state = State::Tokio(Box::pin(tokio::time::sleep_until(this.at.into()))),
                    }
                }
                State::Armed { wheel, index, generation } => {
                    let (wheel, index, generation) = (*wheel, *index, *generation);
                    match with_wheel(wheel, |w| w.poll(index, generation, cx.waker())) {
                        Some((expired, _replaced_waker)) => {
                            if expired {
                                this.state = State::Expired;
                                return Poll::Ready(());
                            }
                            return Poll::Pending;
                        }
                        // Polled where its wheel is not (the wheel's runtime has shut down):
                        // armed again, here, for the same instant.
                        None => this.state = State::Unarmed,
                    }
                }
            }
        }
    }
}

/// hyper sleeps on deadlines too ([`crate::conn`]'s header timer hands them out).
impl hyper::rt::Sleep for Deadline {}

// ---- the per-thread wheel ----

struct Slot {
    at: Instant,
    idle: bool,
    waker: Option<Waker>,
    /// Bumped each time the slot is released, so that a stale handle cannot touch its next
    /// occupant.
    generation: u32,
    state: SlotState,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum SlotState {
    Free,
    Armed,
    Expired,
}

struct Wheel {
    /// Tells this thread's wheel from an earlier one (a runtime that has shut down).
    id: u64,
    slots: Vec<Slot>,
    free: Vec<u32>,
    armed: usize,
    /// No armed deadline is earlier than this: the sweeper does not scan before.
    next_due: Instant,
    /// The sweeper, parked while nothing is armed.
    sweeper: Option<Waker>,
}

impl Wheel {
    /// Arms a slot; also returns the sweeper's waker when it must wake (nothing was armed, or
    /// this deadline is earlier than any it knows of).
    fn arm(&mut self, at: Instant, idle: bool, waker: &Waker) -> (State, Option<Waker>) {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let now = Instant::now();
                self.slots.push(Slot { at: now, idle: false, waker: None, generation: 0, state: SlotState::Free });
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 deadlines")
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.at = at;
        slot.idle = idle;
        slot.waker = Some(waker.clone());
        slot.state = SlotState::Armed;
        let state = State::Armed { wheel: self.id, index, generation: slot.generation };
        // The sweeper is parked (nothing was armed) or sleeping until a later deadline: it
        // must plan again.
        let wake = self.armed == 0 || at < self.next_due;
        self.next_due = if self.armed == 0 { at } else { self.next_due.min(at) };
        self.armed += 1;
        (state, if wake { self.sweeper.take() } else { None })
    }

    /// Has the deadline in this slot expired? If not, `waker` is the one to wake. Also returns
    /// a waker it replaced, for the caller to drop once the wheel is no longer borrowed.
    fn poll(&mut self, index: u32, generation: u32, waker: &Waker) -> (bool, Option<Waker>) {
        let slot = &mut self.slots[index as usize];
        if slot.generation != generation {
            return (true, None);
        }
        match slot.state {
            SlotState::Armed => {
                let replaced = match &slot.waker {
                    Some(w) if w.will_wake(waker) => None,
                    _ => slot.waker.replace(waker.clone()),
                };
                (false, replaced)
            }
            SlotState::Expired | SlotState::Free => (true, self.release(index, generation)),
        }
    }

    /// Frees the slot; returns its waker, for the caller to drop once the wheel is no longer
    /// borrowed.
    fn release(&mut self, index: u32, generation: u32) -> Option<Waker> {
        let slot = &mut self.slots[index as usize];
        if slot.generation != generation || slot.state == SlotState::Free {
            return None;
        }
        if slot.state == SlotState::Armed {
            self.armed -= 1;
        }
        slot.state = SlotState::Free;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        slot.waker.take()
    }

    /// Marks every armed deadline up to `now` expired; returns the wakers to wake.
    fn expire(&mut self, now: Instant, woken: &mut Vec<Waker>) {
        if now < self.next_due {
            return;
        }
        let mut next_due = now + FAR;
        for slot in &mut self.slots {
            if slot.state != SlotState::Armed {
                continue;
            }
            if slot.at <= now {
                slot.state = SlotState::Expired;
                self.armed -= 1;
                woken.extend(slot.waker.take());
            } else {
                next_due = next_due.min(slot.at);
            }
        }
        self.next_due = next_due;
    }

    /// Expires up to `n` armed idle deadlines, those due first; returns the wakers to wake.
    fn expire_idle(&mut self, n: usize, woken: &mut Vec<Waker>) {
        let mut idle: Vec<(Instant, usize)> = (self.slots.iter().enumerate())
            .filter(|(_, slot)| slot.idle && slot.state == SlotState::Armed)
            .map(|(i, slot)| (slot.at, i))
            .collect();
        if idle.len() > n {
            idle.select_nth_unstable(n);
            idle.truncate(n);
        }
        for (_, i) in idle {
            let slot = &mut self.slots[i];
            slot.state = SlotState::Expired;
            self.armed -= 1;
            woken.extend(slot.waker.take());
        }
    }
}

/// Expires at once up to `n` of this thread's idle deadlines ([`Deadline::idle_at`]), those that
/// would fire first, and returns how many it expired; none on a thread without a wheel.
pub fn close_idle(n: usize) -> usize {
    let mut woken = Vec::new();
    let _ = WHEEL.try_with(|w| {
        if let Some(w) = w.borrow_mut().as_mut() {
            w.expire_idle(n, &mut woken);
        }
    });
    let closed = woken.len();
    // Woken outside the borrow, as the sweeper does.
    woken.into_iter().for_each(Waker::wake);
    closed
}

thread_local! {
    /// This thread's wheel, from [`install`] until its runtime shuts down.
    static WHEEL: RefCell<Option<Wheel>> = const { RefCell::new(None) };
}

static WHEEL_IDS: AtomicU64 = AtomicU64::new(1);

/// Gives this thread a wheel, swept by a task on the current runtime, for the deadlines armed on
/// it from now on; a data-plane worker calls it once, on its current-thread runtime (with time
/// enabled), and the wheel goes when that runtime shuts down. Elsewhere (a multi-threaded
/// runtime, whose tasks move between threads) it does nothing, and deadlines are tokio sleeps.
pub fn install() {
    let Some(runtime) = current_thread_runtime() else { return };
    let id = WHEEL_IDS.fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
    let wheel = Wheel { id, slots: Vec::new(), free: Vec::new(), armed: 0, next_due: now + FAR, sweeper: None };
    // A wheel installed before on this thread is replaced: its sweeper stops, and its deadlines
    // are armed again here when next polled.
    let replaced = WHEEL.with(|w| w.borrow_mut().replace(wheel));
    replaced.into_iter().flat_map(Wheel::into_wakers).for_each(Waker::wake);
    runtime.spawn(sweep(Guard(id)));
}

/// The runtime this code runs on, if it is a current-thread one: only there do a task's
/// futures stay on one thread, as a per-thread wheel or pool needs.
pub(crate) fn current_thread_runtime() -> Option<tokio::runtime::Handle> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    (runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread).then_some(runtime)
}

/// Runs `f` on this thread's wheel if it is the one with id `id`; `None` if the thread has
/// another wheel, none, or is exiting.
fn with_wheel<R>(id: u64, f: impl FnOnce(&mut Wheel) -> R) -> Option<R> {
    WHEEL.try_with(|w| w.borrow_mut().as_mut().filter(|w| w.id == id).map(f)).ok().flatten()
}

impl Wheel {
    /// Takes every waker out, expiring what was armed.
    fn into_wakers(mut self) -> Vec<Waker> {
        self.slots.iter_mut().filter_map(|slot| slot.waker.take()).collect()
    }
}

/// Expires this thread's deadlines as they pass; ends when its wheel is gone.
///
/// It sleeps until the earliest deadline it knows of (woken sooner when an earlier one is
/// armed), and sweeps at most once per [`TICK`]: under steady load, where the earliest deadline
/// is cancelled and replaced long before it is due, that is one wasted sweep per timeout period
/// instead of a wake-up every tick; with nothing armed it does not wake at all.
async fn sweep(guard: Guard) {
    let mut woken = Vec::new();
    let mut last_sweep = Instant::now();
    loop {
        // Parked while nothing is armed; then, the earliest deadline armed.
        let due = std::future::poll_fn(|cx| {
            let planned = with_wheel(guard.0, |w| {
                if w.armed == 0 {
                    w.sweeper = Some(cx.waker().clone());
                    return None;
                }
                Some(w.next_due)
            });
            match planned {
                Some(None) => Poll::Pending,
                Some(Some(due)) => Poll::Ready(Some(due)),
                None => Poll::Ready(None),
            }
        })
        .await;
        let Some(due) = due else { return };
        let until = due.max(last_sweep + TICK);
        let mut sleep = std::pin::pin!(tokio::time::sleep_until(until.into()));
        let slept = std::future::poll_fn(|cx| {
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            let waiting = with_wheel(guard.0, |w| {
                // Still the plan: wait, to be woken by the timer or by an earlier deadline.
                let still = w.armed > 0 && w.next_due >= due;
                if still {
                    w.sweeper = Some(cx.waker().clone());
                }
                still
            });
            // Otherwise an earlier deadline, nothing armed any more, or the wheel gone: plan
            // again.
            if waiting == Some(true) {
                Poll::Pending
            } else {
                Poll::Ready(false)
            }
        })
        .await;
        if !slept {
            continue;
        }
        let now = Instant::now();
        last_sweep = now;
        with_wheel(guard.0, |w| w.expire(now, &mut woken));
        // Woken outside the borrow: a waker may run code that arms or drops a deadline.
        woken.drain(..).for_each(Waker::wake);
    }
}

/// Dropped with the sweeper when its runtime shuts down (or the sweeper fails): the wheel goes
/// with it. The deadlines still armed on it are woken, and armed again elsewhere when next
/// polled, rather than left waiting for a sweep that will not come.
struct Guard(u64);

impl Drop for Guard {
    fn drop(&mut self) {
        let gone = WHEEL.try_with(|w| {
            let mut w = w.borrow_mut();
            if w.as_ref().is_some_and(|w| w.id == self.0) {
                w.take()
            } else {
                None
            }
        });
        if let Ok(Some(gone)) = gone {
            gone.into_wakers().into_iter().for_each(Waker::wake);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `test` as a data-plane worker runs: a current-thread runtime with a wheel.
    fn on_worker<F: Future<Output = ()>>(test: impl FnOnce() -> F) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            install();
            test().await
        });
    }

    fn armed() -> usize {
        WHEEL.with(|w| w.borrow().as_ref().map_or(0, |w| w.armed))
    }

    fn installed() -> bool {
        WHEEL.with(|w| w.borrow().is_some())
    }

    /// Polls once; true if pending.
    async fn pending(d: &mut Deadline) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *d).poll(cx).is_pending())).await
    }

    #[test]
    fn a_deadline_never_fires_early() {
        on_worker(|| async {
            assert!(installed());
            for ms in [0, 1, 15, 40] {
                let start = Instant::now();
                Deadline::after(Duration::from_millis(ms)).await;
                assert!(start.elapsed() >= Duration::from_millis(ms), "{ms} ms fired after {:?}", start.elapsed());
            }
            assert_eq!(armed(), 0);
        });
    }

    #[test]
    fn timeout_gives_the_output_or_elapsed() {
        on_worker(|| async {
            assert_eq!(timeout(Duration::from_secs(30), async { 7 }).await, Ok(7));
            let never = std::future::pending::<()>();
            assert_eq!(timeout(Duration::from_millis(20), never).await, Err(Elapsed));
            let slow = tokio::time::sleep(Duration::from_millis(20));
            assert_eq!(timeout(Duration::from_secs(30), slow).await, Ok(()));
            assert_eq!(armed(), 0, "finished timeouts leave nothing armed");
        });
    }

    #[test]
    fn cancelled_deadlines_free_their_slots_for_reuse() {
        on_worker(|| async {
            for _ in 0..3 {
                let mut many: Vec<Deadline> = (0..100).map(|_| Deadline::after(Duration::from_secs(60))).collect();
                for d in &mut many {
                    assert!(pending(d).await);
                }
                assert_eq!(armed(), 100);
                drop(many);
                assert_eq!(armed(), 0);
            }
            let slots = WHEEL.with(|w| w.borrow().as_ref().unwrap().slots.len());
            assert_eq!(slots, 100, "slots are reused, not added");
        });
    }

    #[test]
    fn many_deadlines_each_fire_once_at_their_time() {
        on_worker(|| async {
            let start = Instant::now();
            let waits = (0..200u64).map(|i| async move {
                let ms = i % 50;
                Deadline::after(Duration::from_millis(ms)).await;
                assert!(start.elapsed() >= Duration::from_millis(ms));
            });
            join_all(waits).await;
            assert_eq!(armed(), 0);
        });
    }

    #[test]
    fn an_earlier_deadline_wakes_a_sweeper_sleeping_for_a_later_one() {
        on_worker(|| async {
            let mut late = Deadline::after(Duration::from_secs(3600));
            assert!(pending(&mut late).await);
            // Let the sweeper go to sleep until the hour is up.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let start = Instant::now();
            let soon = timeout(Duration::from_millis(30), std::future::pending::<()>());
            let fired = tokio::time::timeout(Duration::from_secs(30), soon).await;
            assert_eq!(fired, Ok(Err(Elapsed)), "the 30 ms deadline fired, well before the hour");
            assert!(start.elapsed() >= Duration::from_millis(30));
            assert!(pending(&mut late).await, "and the hour is still pending");
            drop(late);
            assert_eq!(armed(), 0);
            // Armed again after everything was cancelled: the sweeper parked, and wakes.
            let start = Instant::now();
            Deadline::after(Duration::from_millis(15)).await;
            assert!(start.elapsed() >= Duration::from_millis(15));
        });
    }

    #[test]
    fn reset_moves_an_armed_deadline() {
        on_worker(|| async {
            let mut d = Deadline::after(Duration::from_secs(60));
            assert!(pending(&mut d).await);
            let start = Instant::now();
            d.reset(start + Duration::from_millis(20));
            assert_eq!(armed(), 0, "reset disarms until the next poll");
            (&mut d).await;
            assert!(start.elapsed() >= Duration::from_millis(20));
            d.reset(Instant::now() + Duration::from_secs(60));
            let still = timeout(Duration::from_millis(30), &mut d).await;
            assert_eq!(still, Err(Elapsed), "a deadline reset to later waits again");
        });
    }

    #[test]
    fn without_a_wheel_it_is_a_tokio_sleep() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        runtime.block_on(async {
            install();
            assert!(!installed(), "a multi-threaded runtime gets no wheel");
            let start = Instant::now();
            assert_eq!(timeout(Duration::from_millis(20), std::future::pending::<()>()).await, Err(Elapsed));
            assert!(start.elapsed() >= Duration::from_millis(20));
        });
        let plain = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        plain.block_on(async {
            assert!(!installed(), "only a worker that installs one has a wheel");
            assert_eq!(timeout(Duration::from_millis(5), std::future::pending::<()>()).await, Err(Elapsed));
        });
    }

    #[test]
    fn a_deadline_whose_runtime_is_gone_fires_at_its_time_elsewhere() {
        let start = Instant::now();
        let mut d = Deadline::after(Duration::from_millis(60));
        on_worker(|| async {
            assert!(pending(&mut d).await);
        });
        assert!(!installed(), "the wheel went with its runtime");
        let plain = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        plain.block_on(async {
            assert_eq!(timeout(Duration::from_secs(30), &mut d).await, Ok(()), "it does not hang");
        });
        assert!(start.elapsed() >= Duration::from_millis(60), "nor fire early: {:?}", start.elapsed());
    }

    #[test]
    fn a_deadline_polled_on_another_thread_is_not_early() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let owner = std::thread::spawn(move || {
            on_worker(|| async move {
                let mut d = Deadline::after(Duration::from_secs(3600));
                assert!(pending(&mut d).await);
                tx.send(d).unwrap();
                // Keeps this wheel (and its runtime) alive while the other thread polls.
                tokio::task::spawn_blocking(move || done_rx.recv()).await.unwrap().ok();
            })
        });
        let mut d = rx.recv().unwrap();
        on_worker(|| async {
            let early = tokio::time::timeout(Duration::from_millis(100), &mut d).await;
            assert!(early.is_err(), "an hour-long deadline fired on another thread");
        });
        done_tx.send(()).unwrap();
        owner.join().unwrap();
    }

    #[test]
    fn a_runtime_without_time_fails_loudly_instead_of_hanging() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let outcome = std::panic::catch_unwind(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
                runtime.block_on(async {
                    install();
                    timeout(Duration::from_millis(20), std::future::pending::<()>()).await
                })
            });
            let _ = tx.send(outcome.is_err());
        });
        let panicked = rx.recv_timeout(Duration::from_secs(30)).expect("no hang");
        assert!(panicked, "tokio's own panic about timers being disabled");
    }

    #[test]
    fn close_idle_expires_the_oldest_idle_deadlines_only() {
        on_worker(|| async {
            let now = Instant::now();
            let mut busy = Deadline::at(now + Duration::from_secs(1));
            let mut idle: Vec<Deadline> =
                (0..4).map(|i| Deadline::idle_at(now + Duration::from_secs(60 - i))).collect();
            assert!(pending(&mut busy).await);
            for d in &mut idle {
                assert!(pending(d).await);
            }
            assert_eq!(close_idle(2), 2);
            let fired: Vec<bool> = join_results(&mut idle).await;
            assert_eq!(fired, [false, false, true, true], "the two due first");
            assert!(pending(&mut busy).await, "a deadline not marked idle stays");
            assert_eq!(close_idle(10), 2);
            assert_eq!(close_idle(10), 0);
            assert_eq!(armed(), 1);
        });
    }

    async fn join_results(deadlines: &mut [Deadline]) -> Vec<bool> {
        let mut fired = Vec::new();
        for d in deadlines {
            fired.push(!pending(d).await);
        }
        fired
    }

    /// Runs the futures concurrently on this task (no extra crate for `join_all`).
    async fn join_all<F: Future<Output = ()>>(futures: impl Iterator<Item = F>) {
        let mut futures: Vec<Pin<Box<F>>> = futures.map(Box::pin).collect();
        std::future::poll_fn(|cx| {
            futures.retain_mut(|f| f.as_mut().poll(cx).is_pending());
            if futures.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}
