//! Coordination primitives, greenlet beside tokio and std.
//!
//! Run with: `cargo bench --bench sync`.
//!
//! - `queue/100000`: one producer and one consumer move 100,000 items through a bounded
//!   queue of 1,024 (greenlet `Queue`, tokio `mpsc::channel`, std `sync_channel`). Throughput
//!   is in items.
//! - `semaphore`: one uncontended acquire + release.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

mod common;
use common::tokio_rt;

const ITEMS: u64 = 100_000;
const CAPACITY: usize = 1_024;

/// Items through a bounded queue, producer and consumer as separate tasks.
fn queue(c: &mut Criterion) {
    let rt = tokio_rt();
    let mut group = c.benchmark_group("queue");
    group.throughput(Throughput::Elements(ITEMS));
    group.bench_function(BenchmarkId::new("greenlet", ITEMS), |b| {
        b.iter(|| {
            let q = greenlet::queue::Queue::bounded(CAPACITY);
            let tx = q.clone();
            let producer = greenlet::spawn(move || {
                for i in 0..ITEMS {
                    tx.put(i).unwrap();
                }
                tx.close();
            });
            let consumer = greenlet::spawn(move || q.iter().fold(0u64, |a, b| a.wrapping_add(b)));
            producer.join();
            black_box(consumer.get().unwrap())
        })
    });
    group.bench_function(BenchmarkId::new("tokio", ITEMS), |b| {
        b.iter(|| {
            rt.block_on(async {
                let (tx, mut rx) = tokio::sync::mpsc::channel(CAPACITY);
                let producer = tokio::spawn(async move {
                    for i in 0..ITEMS {
                        tx.send(i).await.unwrap();
                    }
                });
                let consumer = tokio::spawn(async move {
                    let mut sum = 0u64;
                    while let Some(v) = rx.recv().await {
                        sum = sum.wrapping_add(v);
                    }
                    sum
                });
                producer.await.unwrap();
                black_box(consumer.await.unwrap())
            })
        })
    });
    group.bench_function(BenchmarkId::new("std_thread", ITEMS), |b| {
        b.iter(|| {
            let (tx, rx) = std::sync::mpsc::sync_channel(CAPACITY);
            let producer = std::thread::spawn(move || {
                for i in 0..ITEMS {
                    tx.send(i).unwrap();
                }
            });
            let sum = rx.iter().fold(0u64, |a, b| a.wrapping_add(b));
            producer.join().unwrap();
            black_box(sum)
        })
    });
    group.finish();
}

/// One uncontended acquire and release.
fn semaphore(c: &mut Criterion) {
    let rt = tokio_rt();
    let mut group = c.benchmark_group("semaphore");
    group.bench_function("greenlet", |b| {
        b.iter_custom(|iters| {
            greenlet::spawn(move || {
                let sem = greenlet::sync::Semaphore::new(1);
                let start = Instant::now();
                for _ in 0..iters {
                    drop(black_box(sem.acquire()));
                }
                start.elapsed()
            })
            .get()
            .unwrap()
        })
    });
    group.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            rt.block_on(rt.spawn(async move {
                let sem = tokio::sync::Semaphore::new(1);
                let start = Instant::now();
                for _ in 0..iters {
                    drop(black_box(sem.acquire().await.unwrap()));
                }
                start.elapsed()
            }))
            .unwrap()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_3s();
    targets = queue, semaphore
}
criterion_main!(benches);
