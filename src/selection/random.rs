//! Weighted random: each pick independent, in proportion to weight. A binary search over
//! cumulative weights, built once per backend set.

use std::sync::Arc;

use super::{first_usable, Pick, Selector};
use crate::pool::backend::Backend;

/// Draws to try before scanning for a usable backend, when many are unusable.
const DRAWS: usize = 8;

#[derive(Debug)]
pub struct WeightedRandom {
    /// `cumulative[i]` = sum of the weights of backends `0..=i`.
    cumulative: Vec<u64>,
}

impl WeightedRandom {
    pub fn new(backends: &[Arc<Backend>]) -> Self {
        let cumulative = backends
            .iter()
            .scan(0u64, |sum, b| {
                *sum += u64::from(b.config.weight.max(1));
                Some(*sum)
            })
            .collect();
        WeightedRandom { cumulative }
    }
}

impl Selector for WeightedRandom {
    fn pick(&self, backends: &[Arc<Backend>], pick: &Pick<'_>) -> Option<usize> {
        let total = *self.cumulative.last()?;
        for _ in 0..DRAWS {
            let r = fastrand::u64(..total);
            let i = self.cumulative.partition_point(|&c| c <= r);
            if (pick.usable)(i) {
                return Some(i);
            }
        }
        first_usable(backends.len(), fastrand::usize(..backends.len()), pick.usable)
    }
}
