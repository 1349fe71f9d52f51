//! How routing scales with the number of pools: one lookup of each kind of request, the
//! conflict check for a new pool, and building a table, for 10, 1,000 and 100,000 pools.
//!
//! Run with `cargo bench --bench routing`. Before measuring, it prints how many heap
//! allocations one lookup of each kind makes (a counting allocator wraps the system one).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use lb::routing::{Pattern, Route, RoutingTable};

/// The system allocator, counting allocations.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SIZES: [usize; 3] = [10, 1_000, 100_000];

/// `n` pools, a quarter of each shape a fleet has: subtrees, method-and-wildcard APIs, host
/// pools and `{path...}` trees.
fn patterns(n: usize) -> Vec<Pattern> {
    (0..n)
        .map(|i| match i % 4 {
            0 => format!("/svc{i}/"),
            1 => format!("GET /api/v{i}/items/{{id}}"),
            2 => format!("shop{i}.example/"),
            _ => format!("/files{i}/{{path...}}"),
        })
        .map(|p| Pattern::parse(&p).expect("valid"))
        .collect()
}

fn table(n: usize) -> RoutingTable<usize> {
    RoutingTable::new(patterns(n).into_iter().zip(0..))
}

/// One request of each kind, `(kind, method, host, path, query)`, aimed at pools in the
/// middle of a table of `n`.
fn requests(n: usize) -> Vec<(&'static str, &'static str, String, String, Option<&'static str>)> {
    let k = |shape: usize| n / 2 / 4 * 4 + shape;
    vec![
        ("subtree", "GET", "lb.local".into(), format!("/svc{}/a/b", k(0)), Some("q=1")),
        ("wildcard", "GET", "lb.local".into(), format!("/api/v{}/items/42", k(1)), None),
        ("host", "GET", format!("shop{}.example:8080", k(2)), "/cart/checkout".into(), None),
        ("rest", "GET", "lb.local".into(), format!("/files{}/a/b/c.txt", k(3)), None),
        ("405", "POST", "lb.local".into(), format!("/api/v{}/items/42", k(1)), None),
        ("404", "GET", "lb.local".into(), "/nowhere/at/all".into(), None),
        ("redirect", "GET", "lb.local".into(), format!("/svc{}", k(0)), Some("q=1")),
    ]
}

fn kind_of(route: &Route<'_, usize>) -> &'static str {
    match route {
        Route::Matched { .. } => "match",
        Route::Redirect(_) => "301",
        Route::MethodNotAllowed { .. } => "405",
        Route::NotFound => "404",
    }
}

fn allocations_per_lookup() {
    println!("allocations per lookup (and the answer):");
    for n in SIZES {
        let table = table(n);
        let mut line = format!("  {n:>7} pools:");
        for (kind, method, host, path, query) in requests(n) {
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            let route = table.route(method, &host, &path, query);
            let count = ALLOCATIONS.load(Ordering::Relaxed) - before;
            line += &format!(" {kind}={count} ({})", kind_of(&route));
        }
        println!("{line}");
    }
}

fn lookups(c: &mut Criterion) {
    allocations_per_lookup();
    let tables: Vec<_> = SIZES.map(|n| (n, table(n))).into();
    let kinds = requests(1).len();
    for kind in 0..kinds {
        let mut group = c.benchmark_group(format!("route/{}", requests(1)[kind].0));
        for (n, table) in &tables {
            let (_, method, host, path, query) = &requests(*n)[kind];
            group.bench_with_input(BenchmarkId::from_parameter(n), n, |b, _| {
                b.iter(|| table.route(black_box(method), black_box(host), black_box(path), *query))
            });
        }
        group.finish();
    }

    // The wildcard values cost nothing until asked for.
    let mut group = c.benchmark_group("route/wildcard+value");
    for (n, table) in &tables {
        let path = &requests(*n)[1].3;
        group.bench_with_input(BenchmarkId::from_parameter(n), n, |b, _| {
            b.iter(|| match table.route("GET", "lb.local", black_box(path), None) {
                Route::Matched { params, .. } => params.get("id"),
                _ => unreachable!(),
            })
        });
    }
    group.finish();
}

fn changes(c: &mut Criterion) {
    // The control plane's checks before adding a pool: a full scan, as nothing conflicts.
    let mut group = c.benchmark_group("conflict_scan");
    for n in SIZES {
        let existing = patterns(n);
        let new = Pattern::parse("/svc-new/{id}").expect("valid");
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| existing.iter().find_map(|e| black_box(&new).conflict_with(e)))
        });
    }
    group.finish();

    // What every admin change costs the control plane: a new table from the stored patterns.
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    for n in SIZES {
        let existing = patterns(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| RoutingTable::new(existing.iter().cloned().zip(0usize..)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = lookups, changes
}
criterion_main!(benches);
