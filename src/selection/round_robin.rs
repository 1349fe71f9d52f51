//! Weighted smooth round robin, nginx's algorithm: with weights 5, 1, 1 the order is
//! a a b a c a a, not a a a a a b c.
//!
//! nginx runs it under a lock on every pick. Here the order is computed once per backend set and
//! walked with one atomic counter, so picks take no lock. Unusable backends are stepped over,
//! their turns going to whoever is next in the order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{Pick, Selector};
use crate::pool::backend::Backend;

/// Longest order computed; heavier weight sets are scaled down to fit (and keep their ratios
/// within rounding).
const MAX_ORDER: u64 = 1 << 16;

#[derive(Debug)]
pub struct SmoothRoundRobin {
    order: Vec<u32>,
    next: AtomicUsize,
}

impl SmoothRoundRobin {
    pub fn new(backends: &[Arc<Backend>]) -> Self {
        SmoothRoundRobin { order: smooth_order(&weights(backends)), next: AtomicUsize::new(0) }
    }
}

/// Backend weights, reduced by their greatest common divisor and scaled to fit [`MAX_ORDER`].
fn weights(backends: &[Arc<Backend>]) -> Vec<u64> {
    let mut w: Vec<u64> = backends.iter().map(|b| u64::from(b.config.weight.max(1))).collect();
    let g = w.iter().copied().reduce(gcd).unwrap_or(1);
    w.iter_mut().for_each(|x| *x /= g);
    let total: u64 = w.iter().sum();
    if total > MAX_ORDER {
        w.iter_mut().for_each(|x| *x = (*x * MAX_ORDER / total).max(1));
    }
    w
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// nginx's smooth weighted round robin, run for one full cycle.
fn smooth_order(weights: &[u64]) -> Vec<u32> {
    let total: i64 = weights.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, &w) in weights.iter().enumerate() {
            current[i] += w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        order.push(best as u32);
    }
    order
}

impl Selector for SmoothRoundRobin {
    fn pick(&self, backends: &[Arc<Backend>], pick: &Pick<'_>) -> Option<usize> {
        let len = self.order.len();
        if len == 0 || backends.is_empty() {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % len;
        let found = (start..len).chain(0..start).map(|i| self.order[i] as usize).find(|&i| (pick.usable)(i));
        // A walk over the whole order visits every backend, so `None` means none is usable.
        found.filter(|&i| i < backends.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::{backends, histogram, weighted};

    #[test]
    fn takes_turns_exactly() {
        let b = backends(3);
        assert_eq!(histogram(&SmoothRoundRobin::new(&b), &b, &|_| true, 300), vec![100, 100, 100]);
    }

    #[test]
    fn is_smooth_like_nginx() {
        assert_eq!(smooth_order(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        let b = weighted(&[5, 1, 1]);
        let s = SmoothRoundRobin::new(&b);
        let picks: Vec<usize> = (0..7).map(|_| s.pick(&b, &Pick { usable: &|_| true, key: 0 }).unwrap()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn heavy_weights_are_scaled_and_reduced() {
        assert_eq!(weights(&weighted(&[10, 20, 30])), [1, 2, 3]);
        let heavy = weights(&weighted(&[100_000, 50_000, 1]));
        assert!(heavy.iter().sum::<u64>() <= MAX_ORDER + 3, "{heavy:?}");
        assert_eq!(heavy[0], 2 * heavy[1]);
        assert_eq!(heavy[2], 1);
    }
}
