//! A histogram the request path can observe into without a lock.
//!
//! prometheus-client's own `Histogram` keeps its buckets behind a `RwLock` and takes it for
//! writing on every `observe`; two workers observing every request would contend on it. This
//! one is a fixed array of atomic bucket counters and an atomic sum (in nanoseconds, so it
//! needs no float CAS loop): an observation is a short search over the bounds and two relaxed
//! `fetch_add`s. It implements prometheus-client's `EncodeMetric`, so the crate still does
//! registry, families and both text encodings. A scrape reads the buckets and then the sum
//! without a snapshot across them: under load `_sum` may include an observation the buckets
//! do not yet show (as Prometheus's Go client allows); at rest they agree exactly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Bucket upper bounds in seconds: 0.25 ms to 10 s, about 1-2.5-5 per decade.
pub const BOUNDS: [f64; 15] =
    [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// [`BOUNDS`] in nanoseconds, what `observe` compares.
const BOUNDS_NS: [u64; 15] = [
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

#[derive(Debug, Default)]
struct Inner {
    /// Observations per bucket, not cumulative; the last is `+Inf`'s own.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

/// A lock-free histogram of durations over [`BOUNDS`]; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Histogram(Arc<Inner>);

impl Histogram {
    pub fn new() -> Histogram {
        Histogram::default()
    }

    /// Counts one duration.
    #[inline]
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // The first bound at or above the value: Prometheus buckets are `le`.
        let i = BOUNDS_NS.partition_point(|&bound| bound < ns);
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.0.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observations so far.
    #[cfg(test)]
    fn count(&self) -> u64 {
        self.0.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = [(0.0, 0); BOUNDS.len() + 1];
        for (i, slot) in buckets.iter_mut().enumerate() {
            *slot = (BOUNDS.get(i).copied().unwrap_or(f64::INFINITY), self.0.buckets[i].load(Ordering::Relaxed));
        }
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        // The encoder makes the buckets cumulative.
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_on_a_bound_is_in_that_bucket() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(250));
        h.observe(Duration::from_micros(251));
        h.observe(Duration::from_secs(11));
        h.observe(Duration::ZERO);
        let counts: Vec<u64> = h.0.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        assert_eq!(counts[0], 2);
        assert_eq!(counts[1], 1);
        assert_eq!(counts[BOUNDS.len()], 1);
        assert_eq!(h.count(), 4);
        assert_eq!(h.0.sum_ns.load(Ordering::Relaxed), 250_000 + 251_000 + 11_000_000_000);
    }

    #[test]
    fn bounds_agree() {
        for (s, ns) in BOUNDS.iter().zip(BOUNDS_NS) {
            assert_eq!((s * 1e9).round() as u64, ns);
        }
    }
}
