//! Round robin: each usable backend in turn, from one shared counter.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{first_usable, Selector};
use crate::pool::Backend;

#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Selector for RoundRobin {
    fn pick(&self, backends: &[Arc<Backend>], usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = backends.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        first_usable(n, start, usable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::{backends, histogram};

    #[test]
    fn takes_turns_exactly() {
        let b = backends(3);
        assert_eq!(
            histogram(&RoundRobin::default(), &b, &|_| true, 300),
            vec![100, 100, 100]
        );
    }
}
