//! Least connections: the usable backend with the fewest requests in flight per unit of weight,
//! ties broken round robin (the scan starts one further each pick). A full scan per pick: exact,
//! and cheap for the pool sizes it suits; p2c is the choice for very large pools.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{less_loaded, Pick, Selector};
use crate::pool::backend::Backend;

#[derive(Debug, Default)]
pub struct LeastConn {
    next: AtomicUsize,
}

impl Selector for LeastConn {
    fn pick(&self, backends: &[Arc<Backend>], pick: &Pick<'_>) -> Option<usize> {
        let n = backends.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<usize> = None;
        for i in (start..n).chain(0..start) {
            if (pick.usable)(i) && best.is_none_or(|b| less_loaded(&backends[i], &backends[b])) {
                best = Some(i);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::{backends, histogram};

    #[test]
    fn picks_the_least_loaded_and_rotates_ties() {
        let b = backends(3);
        let _busy = [b[0].start_request(), b[0].start_request(), b[1].start_request()];
        assert_eq!(histogram(&LeastConn::default(), &b, &|_| true, 10), vec![0, 0, 10]);
        let b = backends(3);
        assert_eq!(histogram(&LeastConn::default(), &b, &|_| true, 300), vec![100, 100, 100]);
    }

    /// Many threads picking, holding and releasing requests: once they stop, the in-flight
    /// counts are balanced (picking at random instead leaves them hundreds apart).
    #[test]
    fn balances_under_concurrent_load() {
        let b = backends(4);
        let s = Arc::new(LeastConn::default());
        let spread = std::sync::Mutex::new(None);
        // Counted when every thread has stopped picking and still holds its requests.
        let (stopped, counted) = (std::sync::Barrier::new(8), std::sync::Barrier::new(8));
        std::thread::scope(|scope| {
            for _ in 0..8 {
                let (b, s, stopped, counted, spread) = (&b, s.clone(), &stopped, &counted, &spread);
                scope.spawn(move || {
                    let mut held = Vec::new();
                    for round in 0..5_000 {
                        let i = s.pick(b, &Pick { usable: &|_| true, key: 0 }).unwrap();
                        held.push(b[i].start_request());
                        if round % 3 == 2 {
                            held.remove(fastrand::usize(..held.len()));
                        }
                    }
                    if stopped.wait().is_leader() {
                        let counts: Vec<usize> = b.iter().map(|x| x.inflight()).collect();
                        *spread.lock().unwrap() = Some(counts);
                    }
                    counted.wait();
                });
            }
        });
        let counts = spread.into_inner().unwrap().unwrap();
        assert_eq!(counts.iter().sum::<usize>(), 8 * (5_000 - 5_000 / 3));
        // Threads race between reading counts and taking a request: a few picks are stale.
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 16, "in-flight counts unbalanced: {counts:?}");
        assert!(b.iter().all(|x| x.inflight() == 0), "in-flight counts leaked");
    }
}
