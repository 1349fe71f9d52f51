//! Power of two choices: of two random usable backends, the one with fewer requests in flight.
//! Nearly as good as least-connections at spreading load, with no global scan and no lock.

use std::sync::Arc;

use super::{first_usable, Selector};
use crate::pool::Backend;

#[derive(Debug, Default)]
pub struct PowerOfTwoChoices;

impl Selector for PowerOfTwoChoices {
    fn pick(&self, backends: &[Arc<Backend>], usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = backends.len();
        let a = first_usable(n, fastrand::usize(..n.max(1)), usable)?;
        if n == 1 {
            return Some(a);
        }
        // A second draw among the others; unusable ones are skipped forward.
        let offset = 1 + fastrand::usize(..n - 1);
        let b = first_usable(n, (a + offset) % n, &|i| i != a && usable(i)).unwrap_or(a);
        Some(if backends[b].inflight() < backends[a].inflight() {
            b
        } else {
            a
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::{backends, histogram};

    #[test]
    fn spreads_evenly_when_idle() {
        let b = backends(4);
        let counts = histogram(&PowerOfTwoChoices, &b, &|_| true, 40_000);
        for c in counts {
            assert!((8_000..12_000).contains(&c), "{c}");
        }
    }

    #[test]
    fn avoids_the_busier_backend() {
        let b = backends(2);
        let _busy: Vec<_> = (0..5).map(|_| b[0].start_request()).collect();
        let counts = histogram(&PowerOfTwoChoices, &b, &|_| true, 1000);
        assert_eq!(counts, vec![0, 1000]);
    }
}
