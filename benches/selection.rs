//! What one pick costs for each balancing strategy, with 10 and 1,000 backends, all usable,
//! and with half of them unusable (sick or already tried).
//!
//! Run with `cargo bench --bench selection`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use lb::pool::{Backend, BackendConfig, BackendState, Strategy};
use lb::selection::{build, hash_bytes, Pick};

fn backends(n: usize) -> Vec<Arc<Backend>> {
    (0..n)
        .map(|i| {
            let addr = format!("127.0.{}.{}:8080", i / 250, i % 250 + 1).parse().unwrap();
            let weight = 1 + (i % 3) as u32;
            Arc::new(Backend::new(BackendConfig { addr, url_path: "/".into(), weight }, BackendState::default()))
        })
        .collect()
}

fn picks(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for strategy in
        [Strategy::P2c, Strategy::RoundRobin, Strategy::Random, Strategy::LeastConn, Strategy::ConsistentHash]
    {
        for n in [10, 1_000] {
            let b = backends(n);
            // Some load, so that in-flight comparisons are not all ties.
            let _held: Vec<_> = b.iter().step_by(3).map(|x| x.start_request()).collect();
            let selector = build(strategy, &b);
            let mut key = 0u64;
            group.bench_function(BenchmarkId::new(format!("{strategy}/all usable"), n), |bench| {
                bench.iter(|| {
                    key = key.wrapping_add(1);
                    let pick = Pick { usable: &|i| b[i].is_usable(), key: hash_bytes(&key.to_le_bytes()) };
                    black_box(selector.pick(&b, &pick))
                })
            });
            group.bench_function(BenchmarkId::new(format!("{strategy}/half unusable"), n), |bench| {
                bench.iter(|| {
                    key = key.wrapping_add(1);
                    let pick = Pick { usable: &|i| i % 2 == 0, key: hash_bytes(&key.to_le_bytes()) };
                    black_box(selector.pick(&b, &pick))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, picks);
criterion_main!(benches);
