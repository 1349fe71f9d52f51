//! Consistent hashing on a ketama ring: each backend owns 160 points per unit of weight, placed
//! by hashing its address, so adding or removing one backend moves only the keys on its points,
//! about 1/N of them. A request's key (client IP, a header or a cookie) finds the first point at
//! or after it; unusable backends are skipped by walking on. Sticky in proxy and redirect mode.

use std::sync::Arc;

use super::{Pick, Selector};
use crate::pool::backend::Backend;

/// Ring points per unit of weight, as ketama uses.
const POINTS_PER_WEIGHT: u32 = 160;
/// Most points one backend gets, however heavy.
const MAX_POINTS: u32 = 16_000;

#[derive(Debug)]
pub struct ConsistentHash {
    /// (point, backend index), sorted by point.
    ring: Vec<(u64, u32)>,
}

impl ConsistentHash {
    pub fn new(backends: &[Arc<Backend>]) -> Self {
        let mut ring = Vec::new();
        for (i, b) in backends.iter().enumerate() {
            let points = b.config.weight.max(1).saturating_mul(POINTS_PER_WEIGHT).min(MAX_POINTS);
            let addr = b.addr().to_string();
            for p in 0..points {
                ring.push((hash_bytes(format!("{addr}-{p}").as_bytes()), i as u32));
            }
        }
        ring.sort_unstable();
        ConsistentHash { ring }
    }
}

impl Selector for ConsistentHash {
    fn pick(&self, backends: &[Arc<Backend>], pick: &Pick<'_>) -> Option<usize> {
        let n = self.ring.len();
        if n == 0 || backends.is_empty() {
            return None;
        }
        let start = self.ring.partition_point(|&(point, _)| point < pick.key) % n;
        let mut last = u32::MAX;
        for &(_, i) in self.ring[start..].iter().chain(&self.ring[..start]) {
            if i != last && (pick.usable)(i as usize) {
                return Some(i as usize);
            }
            last = i;
        }
        None
    }
}

/// A stable 64-bit hash (FNV-1a, then murmur3's finalizer for avalanche). Stable across
/// builds and machines, so every lb instance maps a key to the same backend.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::{assert_shares, backends, histogram};

    fn owners(b: &[Arc<Backend>], keys: &[u64]) -> Vec<std::net::SocketAddr> {
        let ring = ConsistentHash::new(b);
        keys.iter().map(|&key| b[ring.pick(b, &Pick { usable: &|_| true, key }).unwrap()].addr()).collect()
    }

    #[test]
    fn the_same_key_gets_the_same_backend() {
        let b = backends(10);
        let ring = ConsistentHash::new(&b);
        let first = ring.pick(&b, &Pick { usable: &|_| true, key: 12345 });
        assert!((0..100).all(|_| ring.pick(&b, &Pick { usable: &|_| true, key: 12345 }) == first));
    }

    #[test]
    fn spreads_keys_evenly() {
        let b = backends(8);
        assert_shares(&histogram(&ConsistentHash::new(&b), &b, &|_| true, 80_000), &[1; 8], 0.25);
    }

    #[test]
    fn adding_or_removing_one_backend_moves_about_one_nth_of_keys() {
        let keys: Vec<u64> = (0..20_000u64).map(|k| hash_bytes(&k.to_le_bytes())).collect();
        let ten = backends(10);
        let before = owners(&ten, &keys);
        // Remove the 4th backend: only its keys move (about 1/10).
        let nine: Vec<_> = ten.iter().enumerate().filter(|(i, _)| *i != 3).map(|(_, b)| b.clone()).collect();
        let after = owners(&nine, &keys);
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert!(before.iter().zip(&after).all(|(a, b)| a == b || *a == ten[3].addr()));
        let share = moved as f64 / keys.len() as f64;
        assert!((0.05..0.15).contains(&share), "removing 1 of 10 moved {share:.3} of keys");
        // Add an 11th: only keys that now land on it move (about 1/11).
        let eleven = backends(11);
        let after = owners(&eleven, &keys);
        assert!(before.iter().zip(&after).all(|(a, b)| a == b || *b == eleven[10].addr()));
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count() as f64 / keys.len() as f64;
        assert!((0.045..0.14).contains(&moved), "adding 1 to 10 moved {moved:.3} of keys");
    }

    #[test]
    fn hash_is_stable() {
        // Pinned: a change here would re-shuffle every sticky client of every deployment.
        assert_eq!(hash_bytes(b"127.0.0.1:8082-0"), 0x397f_a658_989c_4d7e);
        assert_eq!(hash_bytes(b""), 0xefd0_1f60_ba99_2926);
    }
}
