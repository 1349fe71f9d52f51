//! The one place that decides whether a failed proxied attempt may be tried again on another
//! backend, and how many retries a pool may spend.
//!
//! - A connection that could not be made (refused, connect timeout) sent nothing: always retry.
//! - After the request went out, retry only idempotent methods whose body lb still holds
//!   (empty, or received whole within the pool's `retry_body_limit`).
//! - `retry_on_5xx` pools also retry such requests when a backend answers 502, 503 or 504.
//! - Nothing is retried once any byte of the response went to the client: lb only decides
//!   before it forwards response headers.
//! - A [`RetryBudget`] keeps retries from multiplying an outage.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use http::{Method, StatusCode};

/// Most retries a pool may ask for: each is another backend tried for one request.
pub const MAX_RETRIES: u32 = 10;

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection: nothing was sent.
    Connect,
    /// Sent, then the connection failed before response headers.
    BeforeResponse,
    /// The backend answered 502, 503 or 504.
    Status(StatusCode),
}

/// Methods that mean the same when repeated (RFC 9110 9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE)
}

/// Is a status one that `retry_on_5xx` retries?
pub fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status, StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT)
}

/// May an attempt that failed this way be made again? `replayable`: lb holds the whole body.
pub fn may_retry(failure: Failure, method: &Method, replayable: bool, retry_on_5xx: bool) -> bool {
    match failure {
        Failure::Connect => true,
        Failure::BeforeResponse => replayable && is_idempotent(method),
        Failure::Status(status) => retry_on_5xx && is_retryable_status(status) && replayable && is_idempotent(method),
    }
}

/// The backends one request has tried, by index in its pool.
#[derive(Debug, Default)]
pub struct Tried {
    indices: [u32; MAX_RETRIES as usize + 1],
    len: usize,
}

impl Tried {
    pub fn contains(&self, index: usize) -> bool {
        self.indices[..self.len].contains(&(index as u32))
    }

    pub fn insert(&mut self, index: usize) {
        if self.len < self.indices.len() {
            self.indices[self.len] = index as u32;
            self.len += 1;
        }
    }
}

/// Seconds in the budget's sliding window.
const WINDOW: usize = 10;

/// Retries allowed: at most `ratio` of the requests seen over the last [`WINDOW`] seconds, plus
/// `floor_per_sec` per second so that a quiet pool can still retry. Lock-free: one bucket of
/// counters per second, reused round the window.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    floor_per_sec: u32,
    buckets: [Bucket; WINDOW],
}

#[derive(Debug, Default)]
struct Bucket {
    /// The second these counts are for.
    second: AtomicU64,
    requests: AtomicU32,
    retries: AtomicU32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget::new(0.2, 10)
    }
}

impl RetryBudget {
    pub fn new(ratio: f64, floor_per_sec: u32) -> Self {
        RetryBudget { ratio, floor_per_sec, buckets: Default::default() }
    }

    /// Counts a request (not its retries).
    pub fn record_request(&self) {
        self.record_request_at(now_sec());
    }

    /// Takes one retry from the budget, if any is left.
    pub fn try_retry(&self) -> bool {
        self.try_retry_at(now_sec())
    }

    fn bucket(&self, second: u64) -> &Bucket {
        let bucket = &self.buckets[second as usize % WINDOW];
        let seen = bucket.second.load(Ordering::Relaxed);
        if seen != second && bucket.second.compare_exchange(seen, second, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            // First use this second: forget what it counted a window ago. A count that lands
            // between the exchange and the reset is lost, which a budget can afford.
            bucket.requests.store(0, Ordering::Relaxed);
            bucket.retries.store(0, Ordering::Relaxed);
        }
        bucket
    }

    fn record_request_at(&self, second: u64) {
        self.bucket(second).requests.fetch_add(1, Ordering::Relaxed);
    }

    fn try_retry_at(&self, second: u64) -> bool {
        let (mut requests, mut retries) = (0u64, 0u64);
        for b in &self.buckets {
            if second.saturating_sub(b.second.load(Ordering::Relaxed)) < WINDOW as u64 {
                requests += u64::from(b.requests.load(Ordering::Relaxed));
                retries += u64::from(b.retries.load(Ordering::Relaxed));
            }
        }
        let allowed = self.ratio * requests as f64 + f64::from(self.floor_per_sec) * WINDOW as f64;
        if (retries as f64) < allowed {
            self.bucket(second).retries.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

/// Seconds since this process started (the budget only compares them).
fn now_sec() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs() + WINDOW as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_follows_idempotency_and_replayability() {
        let (get, post) = (Method::GET, Method::POST);
        assert!(may_retry(Failure::Connect, &post, false, false));
        assert!(may_retry(Failure::BeforeResponse, &get, true, false));
        assert!(!may_retry(Failure::BeforeResponse, &get, false, false), "body gone");
        assert!(!may_retry(Failure::BeforeResponse, &post, true, false), "not idempotent");
        let bad_gateway = Failure::Status(StatusCode::BAD_GATEWAY);
        assert!(!may_retry(bad_gateway, &get, true, false), "5xx only when asked");
        assert!(may_retry(bad_gateway, &get, true, true));
        assert!(!may_retry(bad_gateway, &post, true, true));
        assert!(!may_retry(Failure::Status(StatusCode::INTERNAL_SERVER_ERROR), &get, true, true));
        for m in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"] {
            assert!(is_idempotent(&m.parse().unwrap()), "{m}");
        }
        assert!(!is_idempotent(&Method::PATCH));
    }

    #[test]
    fn tried_remembers() {
        let mut t = Tried::default();
        t.insert(3);
        t.insert(7);
        assert!(t.contains(3) && t.contains(7) && !t.contains(4));
    }

    #[test]
    fn budget_allows_the_floor_then_a_fifth_of_requests() {
        let budget = RetryBudget::new(0.2, 1);
        let second = 100;
        // No requests: the floor, 1 per second over a 10 s window.
        let floor = (0..50).filter(|_| budget.try_retry_at(second)).count();
        assert_eq!(floor, 10);
        for _ in 0..1000 {
            budget.record_request_at(second);
        }
        let more = (0..500).filter(|_| budget.try_retry_at(second)).count();
        assert_eq!(more, 200, "20% of 1000 requests");
    }

    #[test]
    fn budget_forgets_after_the_window() {
        let budget = RetryBudget::new(0.2, 0);
        for _ in 0..100 {
            budget.record_request_at(50);
        }
        assert_eq!((0..100).filter(|_| budget.try_retry_at(50)).count(), 20);
        assert!(!budget.try_retry_at(55), "still within the window");
        assert!(!budget.try_retry_at(50 + WINDOW as u64), "the requests have aged out");
        for _ in 0..10 {
            budget.record_request_at(61);
        }
        assert_eq!((0..10).filter(|_| budget.try_retry_at(61)).count(), 2);
    }
}
