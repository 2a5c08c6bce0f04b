//! What the blocked-worker monitor (`config().monitor`) costs when it is on.
//!
//! Run with: `cargo bench --bench monitor`. The runtime in this process runs with the monitor
//! on (100 ms, gevent's default); the rows are named `greenlet_monitor` in the same groups as
//! `cargo bench --bench spawn`'s `greenlet` rows (`yield`, `ping_pong`, `spawn_join/1000`), so
//! criterion's report puts the two side by side. Every blocking point marks the switch twice.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

mod common;

fn monitored(c: &mut Criterion) {
    greenlet::config()
        .monitor(Duration::from_millis(100))
        .apply()
        .expect("configured before the first spawn");
    let mut group = c.benchmark_group("yield");
    group.bench_function("greenlet_monitor", |b| {
        b.iter_custom(common::greenlet_yield)
    });
    group.finish();
    let mut group = c.benchmark_group("ping_pong");
    group.bench_function("greenlet_monitor", |b| {
        b.iter_custom(common::greenlet_ping_pong)
    });
    group.finish();
    let mut group = c.benchmark_group("spawn_join");
    group.bench_with_input(
        BenchmarkId::new("greenlet_monitor", 1_000),
        &1_000,
        |b, &n| b.iter(|| common::greenlet_spawn_join(n)),
    );
    group.finish();
    assert!(greenlet::settings().monitor.is_some());
}

criterion_group! {
    name = benches;
    config = common::criterion_3s();
    targets = monitored
}
criterion_main!(benches);
