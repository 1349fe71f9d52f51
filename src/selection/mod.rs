//! Backend selection: a [`Selector`] per pool, built from the pool's backends whenever they
//! change, and asked for one backend per request (and per retry).
//!
//! A selector sees the whole backend list plus a `usable` predicate (not sick, not draining, not
//! yet tried by this request) instead of a pre-filtered list, so the request path never
//! allocates to filter. Selectors keep no per-backend state of their own: in-flight counts live
//! on the [`Backend`], which survives snapshot swaps, so counts stay right while backends are
//! added and removed under traffic.

mod consistent_hash;
mod least_conn;
mod p2c;
mod random;
mod round_robin;

use std::sync::Arc;

pub use consistent_hash::{hash_bytes, ConsistentHash};
pub use least_conn::LeastConn;
pub use p2c::PowerOfTwoChoices;
pub use random::WeightedRandom;
pub use round_robin::SmoothRoundRobin;

use crate::pool::backend::Backend;
use crate::pool::config::Strategy;

/// What a selector may look at for one pick.
pub struct Pick<'a> {
    /// May this backend take the request?
    pub usable: &'a dyn Fn(usize) -> bool,
    /// The request's stickiness key, for [`ConsistentHash`]; 0 for the others.
    pub key: u64,
}

/// Picks one backend for a request.
pub trait Selector: Send + Sync + 'static {
    /// The index of a backend for which `pick.usable(index)` holds, or `None` when none does.
    fn pick(&self, backends: &[Arc<Backend>], pick: &Pick<'_>) -> Option<usize>;
}

/// The selector for a pool's strategy over these backends.
pub fn build(strategy: Strategy, backends: &[Arc<Backend>]) -> Box<dyn Selector> {
    match strategy {
        Strategy::P2c => Box::new(PowerOfTwoChoices),
        Strategy::RoundRobin => Box::new(SmoothRoundRobin::new(backends)),
        Strategy::Random => Box::new(WeightedRandom::new(backends)),
        Strategy::LeastConn => Box::new(LeastConn::default()),
        Strategy::ConsistentHash => Box::new(ConsistentHash::new(backends)),
    }
}

/// The first usable index at or after `start`, wrapping around.
fn first_usable(len: usize, start: usize, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
    (start..len).chain(0..start).find(|&i| usable(i))
}

/// Is `a` less loaded than `b`, in flight per unit of weight? Cross-multiplied: no division.
fn less_loaded(a: &Backend, b: &Backend) -> bool {
    (a.inflight() as u64) * u64::from(b.config.weight) < (b.inflight() as u64) * u64::from(a.config.weight)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pool::backend::{BackendConfig, BackendState};

    pub fn weighted(weights: &[u32]) -> Vec<Arc<Backend>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| {
                let addr = format!("127.0.0.1:{}", 1000 + i).parse().unwrap();
                Arc::new(Backend::new(BackendConfig { addr, url_path: "/".into(), weight }, BackendState::default()))
            })
            .collect()
    }

    pub fn backends(n: usize) -> Vec<Arc<Backend>> {
        weighted(&vec![1; n])
    }

    /// Picks `rounds` times (with random keys) and counts how often each backend was chosen.
    pub fn histogram(
        s: &dyn Selector,
        b: &[Arc<Backend>],
        usable: &dyn Fn(usize) -> bool,
        rounds: usize,
    ) -> Vec<usize> {
        let mut counts = vec![0; b.len()];
        for _ in 0..rounds {
            counts[s.pick(b, &Pick { usable, key: fastrand::u64(..) }).unwrap()] += 1;
        }
        counts
    }

    /// Asserts each count is within `tolerance` (a fraction) of its weight's share.
    pub fn assert_shares(counts: &[usize], weights: &[u32], tolerance: f64) {
        let total: usize = counts.iter().sum();
        let weight_sum: u32 = weights.iter().sum();
        for (i, (&c, &w)) in counts.iter().zip(weights).enumerate() {
            let want = total as f64 * f64::from(w) / f64::from(weight_sum);
            assert!(
                (c as f64 - want).abs() <= want * tolerance,
                "backend {i}: {c} picks, want about {want:.0}: {counts:?}"
            );
        }
    }

    const ALL: [Strategy; 5] =
        [Strategy::P2c, Strategy::RoundRobin, Strategy::Random, Strategy::LeastConn, Strategy::ConsistentHash];

    #[test]
    fn every_strategy_skips_unusable_and_reports_none() {
        for strategy in ALL {
            let b = backends(5);
            let s = build(strategy, &b);
            let counts = histogram(s.as_ref(), &b, &|i| i % 2 == 1, 2000);
            assert_eq!(counts[0] + counts[2] + counts[4], 0, "{strategy}: {counts:?}");
            assert!(counts[1] > 0 && counts[3] > 0, "{strategy}: {counts:?}");
            assert_eq!(s.pick(&b, &Pick { usable: &|_| false, key: 1 }), None, "{strategy}");
            let s = build(strategy, &[]);
            assert_eq!(s.pick(&[], &Pick { usable: &|_| true, key: 1 }), None, "{strategy}");
        }
    }

    #[test]
    fn every_strategy_respects_weights() {
        let weights = [1, 2, 5];
        for strategy in [Strategy::RoundRobin, Strategy::Random, Strategy::ConsistentHash] {
            let b = weighted(&weights);
            let s = build(strategy, &b);
            let tolerance = if strategy == Strategy::ConsistentHash { 0.25 } else { 0.1 };
            assert_shares(&histogram(s.as_ref(), &b, &|_| true, 40_000), &weights, tolerance);
        }
    }

    #[test]
    fn every_strategy_can_pick_any_one_left() {
        for strategy in ALL {
            let b = backends(100);
            let s = build(strategy, &b);
            for only in [0, 37, 99] {
                assert_eq!(s.pick(&b, &Pick { usable: &|i| i == only, key: 42 }), Some(only), "{strategy}");
            }
        }
    }
}
