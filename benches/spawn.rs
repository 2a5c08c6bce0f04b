//! Core runtime costs, greenlet beside tokio (multi-thread) and `std::thread`.
//!
//! Run with: `cargo bench --bench spawn`. Groups: `spawn_join/N` (spawn N no-op tasks from
//! `main`, then join them all; `may_raw` is may's own unsafe spawn, to show what the wrapper
//! adds), `spawn_join_inside/N` (the same from inside a task),
//! `ping_pong` (one round trip between two tasks over channels: greenlet's `Queue`, and may's
//! own `mpsc` as `may_raw`) and `yield` (one yield).

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

mod common;
use common::tokio_rt;

const SIZES: [usize; 2] = [1_000, 10_000];

/// Spawn N no-op tasks from the main thread and join them all.
fn spawn_join(c: &mut Criterion) {
    common::pool_from_env();
    let rt = tokio_rt();
    let mut group = c.benchmark_group("spawn_join");
    for n in SIZES {
        group.bench_with_input(BenchmarkId::new("greenlet", n), &n, |b, &n| {
            b.iter(|| common::greenlet_spawn_join(n))
        });
        group.bench_with_input(BenchmarkId::new("may_raw", n), &n, |b, &n| {
            b.iter(|| {
                let hs: Vec<_> = (0..n)
                    .map(|i| {
                        // SAFETY: the closure touches no thread-local storage, and its tiny
                        // frame cannot overflow may's stack: may's two conditions for spawn.
                        unsafe { may::coroutine::spawn(move || black_box(i)) }
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum::<usize>()
            })
        });
        group.bench_with_input(BenchmarkId::new("tokio", n), &n, |b, &n| {
            b.iter(|| {
                rt.block_on(async {
                    let hs: Vec<_> = (0..n)
                        .map(|i| tokio::spawn(async move { black_box(i) }))
                        .collect();
                    for h in hs {
                        h.await.unwrap();
                    }
                })
            })
        });
        if n <= 1_000 {
            group.bench_with_input(BenchmarkId::new("std_thread", n), &n, |b, &n| {
                b.iter(|| {
                    let hs: Vec<_> = (0..n)
                        .map(|i| std::thread::spawn(move || black_box(i)))
                        .collect();
                    hs.into_iter().map(|h| h.join().unwrap()).sum::<usize>()
                })
            });
        }
    }
    group.finish();
}

/// Spawn N no-op tasks from inside a task and join them all.
fn spawn_join_inside(c: &mut Criterion) {
    common::pool_from_env();
    let rt = tokio_rt();
    let mut group = c.benchmark_group("spawn_join_inside");
    for n in SIZES {
        group.bench_with_input(BenchmarkId::new("greenlet", n), &n, |b, &n| {
            b.iter(|| {
                greenlet::spawn(move || {
                    let gs: Vec<_> = (0..n)
                        .map(|i| greenlet::spawn(move || black_box(i)))
                        .collect();
                    greenlet::joinall(gs).len()
                })
                .get()
            })
        });
        group.bench_with_input(BenchmarkId::new("tokio", n), &n, |b, &n| {
            b.iter(|| {
                rt.block_on(rt.spawn(async move {
                    let hs: Vec<_> = (0..n)
                        .map(|i| tokio::spawn(async move { black_box(i) }))
                        .collect();
                    for h in hs {
                        h.await.unwrap();
                    }
                }))
            })
        });
    }
    group.finish();
}

/// One round trip between two tasks over a pair of channels.
fn ping_pong(c: &mut Criterion) {
    let rt = tokio_rt();
    let mut group = c.benchmark_group("ping_pong");
    group.bench_function("greenlet", |b| b.iter_custom(common::greenlet_ping_pong));
    group.bench_function("may_raw", |b| {
        b.iter_custom(|iters| {
            greenlet::spawn(move || {
                let (ping_tx, ping_rx) = may::sync::mpsc::channel::<u64>();
                let (pong_tx, pong_rx) = may::sync::mpsc::channel::<u64>();
                let ponger = greenlet::spawn(move || {
                    while let Ok(v) = ping_rx.recv() {
                        if pong_tx.send(v).is_err() {
                            break;
                        }
                    }
                });
                let start = Instant::now();
                for i in 0..iters {
                    ping_tx.send(i).unwrap();
                    black_box(pong_rx.recv().unwrap());
                }
                let took = start.elapsed();
                drop(ping_tx);
                ponger.join();
                took
            })
            .get()
            .unwrap()
        })
    });
    group.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            rt.block_on(rt.spawn(async move {
                let (ping_tx, mut ping_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
                let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
                let ponger = tokio::spawn(async move {
                    while let Some(v) = ping_rx.recv().await {
                        if pong_tx.send(v).is_err() {
                            break;
                        }
                    }
                });
                let start = Instant::now();
                for i in 0..iters {
                    ping_tx.send(i).unwrap();
                    black_box(pong_rx.recv().await.unwrap());
                }
                let took = start.elapsed();
                drop(ping_tx);
                ponger.await.unwrap();
                took
            }))
            .unwrap()
        })
    });
    group.bench_function("std_thread", |b| {
        b.iter_custom(|iters| {
            let (ping_tx, ping_rx) = std::sync::mpsc::channel::<u64>();
            let (pong_tx, pong_rx) = std::sync::mpsc::channel::<u64>();
            let ponger = std::thread::spawn(move || {
                while let Ok(v) = ping_rx.recv() {
                    if pong_tx.send(v).is_err() {
                        break;
                    }
                }
            });
            let start = Instant::now();
            for i in 0..iters {
                ping_tx.send(i).unwrap();
                black_box(pong_rx.recv().unwrap());
            }
            let took = start.elapsed();
            drop(ping_tx);
            ponger.join().unwrap();
            took
        })
    });
    group.finish();
}

/// One yield of a running task back to its scheduler.
fn yield_now(c: &mut Criterion) {
    let rt = tokio_rt();
    let mut group = c.benchmark_group("yield");
    group.bench_function("greenlet", |b| b.iter_custom(common::greenlet_yield));
    group.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            rt.block_on(rt.spawn(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    tokio::task::yield_now().await;
                }
                start.elapsed()
            }))
            .unwrap()
        })
    });
    group.bench_function("std_thread", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                std::thread::yield_now();
            }
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_3s();
    targets = spawn_join, spawn_join_inside, ping_pong, yield_now
}
criterion_main!(benches);
