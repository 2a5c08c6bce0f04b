//! The async bridge (feature `tokio`), beside tokio doing the same on the same machine.
//!
//! Run with: `cargo bench --features tokio --bench bridge`. Groups:
//! - `block_on_ready`: `block_on` of an already-ready future, inside a greenlet (`greenlet`),
//!   and tokio's `Handle::block_on` of the same on a plain thread (`tokio`).
//! - `round_trip`: a oneshot completed by a tokio task, waited on by a greenlet through
//!   `block_on` (`greenlet`: greenlet -> tokio -> greenlet), by a tokio task (`tokio`), and
//!   by a plain thread through tokio's `Handle::block_on` (`tokio_from_thread`: like the
//!   greenlet, a waiter outside the runtime's threads).
//! - `await_finished`: a tokio task awaits a finished greenlet (`greenlet`) and a finished
//!   `tokio::task::JoinHandle` (`tokio`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

mod common;

fn block_on_ready(c: &mut Criterion) {
    let mut group = c.benchmark_group("block_on_ready");
    group.bench_function("greenlet", |b| {
        b.iter_custom(|iters| {
            greenlet::spawn(move || {
                let start = Instant::now();
                for i in 0..iters {
                    black_box(greenlet::block_on(std::future::ready(black_box(i))));
                }
                start.elapsed()
            })
            .get()
            .unwrap()
        })
    });
    let rt = common::tokio_rt();
    let handle = rt.handle().clone();
    group.bench_function("tokio", |b| {
        b.iter(|| black_box(handle.block_on(std::future::ready(black_box(1u64)))))
    });
    group.finish();
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip");
    group.bench_function("greenlet", |b| {
        b.iter_custom(|iters| {
            greenlet::spawn(move || {
                let tokio = greenlet::bridge::handle();
                let start = Instant::now();
                for i in 0..iters {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    tokio.spawn(async move { tx.send(i).unwrap() });
                    black_box(greenlet::block_on(rx).unwrap());
                }
                start.elapsed()
            })
            .get()
            .unwrap()
        })
    });
    let rt = common::tokio_rt();
    group.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async move {
                tokio::spawn(async move {
                    let start = Instant::now();
                    for i in 0..iters {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        tokio::spawn(async move { tx.send(i).unwrap() });
                        black_box(rx.await.unwrap());
                    }
                    start.elapsed()
                })
                .await
                .unwrap()
            })
        })
    });
    // The nearest tokio equivalent of the greenlet's path: a thread outside the runtime waits
    // (tokio's `Handle::block_on`) for a task on the runtime's threads.
    let handle = rt.handle().clone();
    group.bench_function("tokio_from_thread", |b| {
        b.iter(|| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            handle.spawn(async move { tx.send(1u64).unwrap() });
            black_box(handle.block_on(rx).unwrap())
        })
    });
    group.finish();
}

/// How many finished tasks each timed batch awaits.
const BATCH: u64 = 1_000;

fn await_finished(c: &mut Criterion) {
    let mut group = c.benchmark_group("await_finished");
    let rt = common::tokio_rt();
    group.bench_function("greenlet", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters.div_ceil(BATCH) {
                let gs: Vec<_> = (0..BATCH).map(|i| greenlet::spawn(move || i)).collect();
                for g in &gs {
                    g.join();
                }
                total += rt.block_on(async move {
                    tokio::spawn(async move {
                        let start = Instant::now();
                        for g in gs {
                            black_box(g.await.unwrap());
                        }
                        start.elapsed()
                    })
                    .await
                    .unwrap()
                });
            }
            total.mul_f64(iters as f64 / (iters.div_ceil(BATCH) * BATCH) as f64)
        })
    });
    group.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters.div_ceil(BATCH) {
                total += rt.block_on(async move {
                    tokio::spawn(async move {
                        let hs: Vec<_> =
                            (0..BATCH).map(|i| tokio::spawn(async move { i })).collect();
                        for h in &hs {
                            while !h.is_finished() {
                                tokio::task::yield_now().await;
                            }
                        }
                        let start = Instant::now();
                        for h in hs {
                            black_box(h.await.unwrap());
                        }
                        start.elapsed()
                    })
                    .await
                    .unwrap()
                });
            }
            total.mul_f64(iters as f64 / (iters.div_ceil(BATCH) * BATCH) as f64)
        })
    });
    group.finish();
}

criterion_group!(benches, block_on_ready, round_trip, await_finished);
criterion_main!(benches);
