//! Backend selection: a [`Selector`] per pool, built once per routing snapshot and asked for one
//! backend per request.
//!
//! A selector sees the whole backend list plus a `usable` predicate (healthy, not yet tried by
//! this request) instead of a pre-filtered list, so the request path never allocates to filter.
//! Selectors keep no per-backend state of their own: in-flight counts live on the
//! [`Backend`](crate::pool::Backend), which survives snapshot swaps.

mod p2c;
mod round_robin;

use std::sync::Arc;

pub use p2c::PowerOfTwoChoices;
pub use round_robin::RoundRobin;

use crate::pool::{Backend, Strategy};

/// Picks one backend for a request.
pub trait Selector: Send + Sync + 'static {
    /// The index of a backend for which `usable(index)` holds, or `None` when none does.
    fn pick(&self, backends: &[Arc<Backend>], usable: &dyn Fn(usize) -> bool) -> Option<usize>;
}

/// The selector for a pool's strategy.
pub fn build(strategy: Strategy) -> Box<dyn Selector> {
    match strategy {
        Strategy::P2c => Box::new(PowerOfTwoChoices),
        Strategy::RoundRobin => Box::new(RoundRobin::default()),
    }
}

/// The first usable index at or after `start`, wrapping around.
fn first_usable(len: usize, start: usize, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
    (start..len).chain(0..start).find(|&i| usable(i))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pool::BackendConfig;

    pub fn backends(n: usize) -> Vec<Arc<Backend>> {
        (0..n)
            .map(|i| {
                Arc::new(Backend::new(
                    BackendConfig {
                        addr: format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                        url_path: "/".into(),
                    },
                    crate::pool::BackendState::default(),
                ))
            })
            .collect()
    }

    /// Picks `rounds` times and counts how often each backend was chosen.
    pub fn histogram(
        s: &dyn Selector,
        b: &[Arc<Backend>],
        usable: &dyn Fn(usize) -> bool,
        rounds: usize,
    ) -> Vec<usize> {
        let mut counts = vec![0; b.len()];
        for _ in 0..rounds {
            counts[s.pick(b, usable).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn every_strategy_skips_unusable_and_reports_none() {
        for strategy in [Strategy::P2c, Strategy::RoundRobin] {
            let s = build(strategy);
            let b = backends(5);
            let counts = histogram(s.as_ref(), &b, &|i| i % 2 == 1, 1000);
            assert_eq!(
                counts[0] + counts[2] + counts[4],
                0,
                "{strategy}: {counts:?}"
            );
            assert!(counts[1] > 0 && counts[3] > 0, "{strategy}: {counts:?}");
            assert_eq!(s.pick(&b, &|_| false), None, "{strategy}");
            assert_eq!(s.pick(&[], &|_| true), None, "{strategy}");
        }
    }
}
