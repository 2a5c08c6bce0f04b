//! Coordination primitives, greenlet beside tokio and std.
//!
//! Run with: `cargo bench --bench sync`.
//!
//! - `queue/100000`: one producer and one consumer move 100,000 items through a bounded
//!   queue of 1,024 (greenlet `Queue`, tokio `mpsc::channel`, std `sync_channel`). Throughput
//!   is in items.
//! - `semaphore`: one uncontended acquire + release.
//! - `mutex/uncontended`: one lock + unlock in one task (greenlet `sync::Mutex`, may's `Mutex`,
//!   which greenlet re-exported before its own, tokio `sync::Mutex`).
//! - `mutex/contended`: 4 tasks each take the lock 1,000 times and yield while holding it.
//! - `ping_pong_timeout`: one round trip between two tasks over a pair of queues, both sides
//!   waiting with a 1 s time-out that never expires (greenlet `Queue::get_timeout`, tokio
//!   `timeout(recv())`); compare with `spawn`'s `ping_pong`.
//! - `wait_timeout_1ms`: timed waits that expire (greenlet `Event::wait_timeout(1 ms)` on an
//!   unset event, tokio `timeout(1 ms, Notify::notified())`): `per_call` in one task, `many`
//!   as 1,000 tasks at once.
//! - `sleep`: `sleep(1 ms)`, `sleep(0)` and `yield_now`, each one after another in one task.
//! - `sleep_many/1000`: 1,000 tasks each sleeping 1 ms 10 times.

use std::hint::black_box;
use std::time::{Duration, Instant};

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

/// Lock + unlock, uncontended, and 4 tasks that yield while holding the lock.
fn mutex(c: &mut Criterion) {
    const TASKS: usize = 4;
    const ROUNDS: usize = 1_000;
    let rt = tokio_rt();
    let mut group = c.benchmark_group("mutex");
    macro_rules! uncontended {
        ($name:expr, $new:expr) => {
            group.bench_function(BenchmarkId::new("uncontended", $name), |b| {
                b.iter_custom(|iters| {
                    greenlet::spawn(move || {
                        let m = $new;
                        let start = Instant::now();
                        for _ in 0..iters {
                            drop(black_box(m.lock().unwrap()));
                        }
                        start.elapsed()
                    })
                    .get()
                    .unwrap()
                })
            });
        };
    }
    uncontended!("greenlet", greenlet::sync::Mutex::new(0u64));
    uncontended!("may", may::sync::Mutex::new(0u64));
    group.bench_function(BenchmarkId::new("uncontended", "tokio"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(rt.spawn(async move {
                let m = tokio::sync::Mutex::new(0u64);
                let start = Instant::now();
                for _ in 0..iters {
                    drop(black_box(m.lock().await));
                }
                start.elapsed()
            }))
            .unwrap()
        })
    });
    macro_rules! contended {
        ($name:expr, $new:expr) => {
            group.bench_function(BenchmarkId::new("contended", $name), |b| {
                b.iter(|| {
                    let m = std::sync::Arc::new($new);
                    let gs: Vec<_> = (0..TASKS)
                        .map(|_| {
                            let m = m.clone();
                            greenlet::spawn(move || {
                                for _ in 0..ROUNDS {
                                    let mut g = m.lock().unwrap();
                                    greenlet::yield_now();
                                    *g += 1;
                                }
                            })
                        })
                        .collect();
                    greenlet::joinall(gs);
                    black_box(*m.lock().unwrap())
                })
            });
        };
    }
    contended!("greenlet", greenlet::sync::Mutex::new(0u64));
    contended!("may", may::sync::Mutex::new(0u64));
    group.bench_function(BenchmarkId::new("contended", "tokio"), |b| {
        b.iter(|| {
            rt.block_on(async {
                let m = std::sync::Arc::new(tokio::sync::Mutex::new(0u64));
                let ts: Vec<_> = (0..TASKS)
                    .map(|_| {
                        let m = m.clone();
                        tokio::spawn(async move {
                            for _ in 0..ROUNDS {
                                let mut g = m.lock().await;
                                tokio::task::yield_now().await;
                                *g += 1;
                            }
                        })
                    })
                    .collect();
                for t in ts {
                    t.await.unwrap();
                }
                black_box(*m.lock().await)
            })
        })
    });
    group.finish();
}

/// The timeout every satisfied timed wait is given: long enough never to expire.
const LONG: Duration = Duration::from_secs(1);
/// The time-out or sleep of the rows that do expire.
const MS: Duration = Duration::from_millis(1);
/// Greenlets (tasks) that wait at once in the `*_many` rows.
const MANY: usize = 1_000;
/// Sleeps each of them makes in `sleep_many`.
const SLEEPS: usize = 10;

/// One round trip over a pair of queues where both sides wait with `get_timeout(1 s)` (the
/// timed wait is always satisfied before its deadline), beside the untimed `ping_pong`.
fn timed_ping_pong(c: &mut Criterion) {
    let rt = tokio_rt();
    let mut group = c.benchmark_group("ping_pong_timeout");
    group.bench_function("greenlet", |b| {
        b.iter_custom(|iters| common::greenlet_ping_pong_with(iters, |q| q.get_timeout(LONG).ok()))
    });
    group.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            rt.block_on(rt.spawn(async move {
                let (ping_tx, mut ping_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
                let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
                let ponger = tokio::spawn(async move {
                    while let Ok(Some(v)) = tokio::time::timeout(LONG, ping_rx.recv()).await {
                        if pong_tx.send(v).is_err() {
                            break;
                        }
                    }
                });
                let start = Instant::now();
                for i in 0..iters {
                    ping_tx.send(i).unwrap();
                    let v = tokio::time::timeout(LONG, pong_rx.recv()).await;
                    black_box(v.unwrap().unwrap());
                }
                let took = start.elapsed();
                drop(ping_tx);
                ponger.await.unwrap();
                took
            }))
            .unwrap()
        })
    });
    group.finish();
}

/// Timed waits that expire: `Event::wait_timeout(1 ms)` on an event never set (tokio:
/// `timeout(1 ms, Notify::notified())`), one after another in one greenlet (`per_call`, the
/// time of one is 1 ms plus the overshoot), and 1,000 greenlets waiting once at once
/// (`many`, spawn and join included).
fn timed_wait_expires(c: &mut Criterion) {
    let rt = tokio_rt();
    let mut group = c.benchmark_group("wait_timeout_1ms");
    group.bench_function("greenlet/per_call", |b| {
        b.iter_custom(|iters| {
            greenlet::spawn(move || {
                let ev = greenlet::sync::Event::new();
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(ev.wait_timeout(MS));
                }
                start.elapsed()
            })
            .get()
            .unwrap()
        })
    });
    group.bench_function("tokio/per_call", |b| {
        b.iter_custom(|iters| {
            rt.block_on(rt.spawn(async move {
                let notify = tokio::sync::Notify::new();
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(tokio::time::timeout(MS, notify.notified()).await.is_ok());
                }
                start.elapsed()
            }))
            .unwrap()
        })
    });
    group.bench_function(BenchmarkId::new("greenlet/many", MANY), |b| {
        b.iter(|| {
            greenlet::spawn(|| {
                let ev = std::sync::Arc::new(greenlet::sync::Event::new());
                let gs: Vec<_> = (0..MANY)
                    .map(|_| {
                        let ev = ev.clone();
                        greenlet::spawn(move || ev.wait_timeout(MS))
                    })
                    .collect();
                black_box(greenlet::joinall(gs).len())
            })
            .get()
            .unwrap()
        })
    });
    group.bench_function(BenchmarkId::new("tokio/many", MANY), |b| {
        b.iter(|| {
            rt.block_on(async {
                let notify = std::sync::Arc::new(tokio::sync::Notify::new());
                let ts: Vec<_> = (0..MANY)
                    .map(|_| {
                        let notify = notify.clone();
                        tokio::spawn(async move {
                            tokio::time::timeout(MS, notify.notified()).await.is_ok()
                        })
                    })
                    .collect();
                let mut n = 0;
                for t in ts {
                    n += usize::from(!t.await.unwrap());
                }
                black_box(n)
            })
        })
    });
    group.finish();
}

/// `sleep(1 ms)` one after another in one greenlet (the time of one is 1 ms plus the
/// overshoot), and `sleep(0)` beside `yield_now`.
fn sleep(c: &mut Criterion) {
    let rt = tokio_rt();
    let mut group = c.benchmark_group("sleep");
    group.bench_function("greenlet/1ms", |b| {
        b.iter_custom(|iters| {
            greenlet::spawn(move || {
                let start = Instant::now();
                for _ in 0..iters {
                    greenlet::sleep(MS);
                }
                start.elapsed()
            })
            .get()
            .unwrap()
        })
    });
    group.bench_function("tokio/1ms", |b| {
        b.iter_custom(|iters| {
            rt.block_on(rt.spawn(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    tokio::time::sleep(MS).await;
                }
                start.elapsed()
            }))
            .unwrap()
        })
    });
    group.bench_function("greenlet/0", |b| {
        b.iter_custom(|iters| {
            greenlet::spawn(move || {
                let start = Instant::now();
                for _ in 0..iters {
                    greenlet::sleep(Duration::ZERO);
                }
                start.elapsed()
            })
            .get()
            .unwrap()
        })
    });
    group.bench_function("tokio/0", |b| {
        b.iter_custom(|iters| {
            rt.block_on(rt.spawn(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    tokio::time::sleep(Duration::ZERO).await;
                }
                start.elapsed()
            }))
            .unwrap()
        })
    });
    group.bench_function("greenlet/yield_now", |b| {
        b.iter_custom(common::greenlet_yield)
    });
    group.bench_function("tokio/yield_now", |b| {
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
    group.finish();
}

/// 1,000 greenlets (tasks) each `sleep(1 ms)` 10 times, spawn and join included (at best
/// 10 ms).
fn sleep_many(c: &mut Criterion) {
    let rt = tokio_rt();
    let mut group = c.benchmark_group("sleep_many");
    group.bench_function(BenchmarkId::new("greenlet", MANY), |b| {
        b.iter(|| {
            greenlet::spawn(|| {
                let gs: Vec<_> = (0..MANY)
                    .map(|_| {
                        greenlet::spawn(|| {
                            for _ in 0..SLEEPS {
                                greenlet::sleep(MS);
                            }
                        })
                    })
                    .collect();
                black_box(greenlet::joinall(gs).len())
            })
            .get()
            .unwrap()
        })
    });
    group.bench_function(BenchmarkId::new("tokio", MANY), |b| {
        b.iter(|| {
            rt.block_on(async {
                let ts: Vec<_> = (0..MANY)
                    .map(|_| {
                        tokio::spawn(async {
                            for _ in 0..SLEEPS {
                                tokio::time::sleep(MS).await;
                            }
                        })
                    })
                    .collect();
                for t in ts {
                    t.await.unwrap();
                }
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_3s();
    targets = queue, semaphore, mutex, timed_ping_pong, timed_wait_expires, sleep, sleep_many
}
criterion_main!(benches);
