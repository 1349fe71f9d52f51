//! Power of two choices: of two random usable backends, the one with fewer requests in flight
//! per unit of weight. Nearly as good as least-connections at spreading load, with no scan and
//! no lock.

use std::sync::Arc;

use super::{first_usable, less_loaded, Pick, Selector};
use crate::pool::backend::Backend;

#[derive(Debug, Default)]
pub struct PowerOfTwoChoices;

impl Selector for PowerOfTwoChoices {
    fn pick(&self, backends: &[Arc<Backend>], pick: &Pick<'_>) -> Option<usize> {
        let n = backends.len();
        let a = first_usable(n, fastrand::usize(..n.max(1)), pick.usable)?;
        if n == 1 {
            return Some(a);
        }
        // A second draw among the others; unusable ones are skipped forward.
        let offset = 1 + fastrand::usize(..n - 1);
        let b = first_usable(n, (a + offset) % n, &|i| i != a && (pick.usable)(i)).unwrap_or(a);
        Some(if less_loaded(&backends[b], &backends[a]) { b } else { a })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::{assert_shares, backends, histogram};

    #[test]
    fn spreads_evenly_when_idle() {
        let b = backends(4);
        assert_shares(&histogram(&PowerOfTwoChoices, &b, &|_| true, 40_000), &[1; 4], 0.1);
    }

    #[test]
    fn avoids_the_busier_backend() {
        let b = backends(2);
        let _busy: Vec<_> = (0..5).map(|_| b[0].start_request()).collect();
        assert_eq!(histogram(&PowerOfTwoChoices, &b, &|_| true, 1000), vec![0, 1000]);
    }
}
