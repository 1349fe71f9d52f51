//! Waiting on a condition, with a deadline instead of a sleep.

use std::time::{Duration, Instant};

/// How long anything in a test may take to come up or change.
pub const DEADLINE: Duration = Duration::from_secs(20);

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
