//! Helpers shared by the benches.
#![allow(dead_code)] // each bench uses some of these

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;

/// `GREENLET_BENCH_QUICK=1` asks for a short run.
pub fn quick() -> bool {
    std::env::var_os("GREENLET_BENCH_QUICK").is_some()
}

/// tokio's default multi-thread runtime, the peer every bench compares against.
pub fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Spawns `n` no-op greenlets from the calling thread and joins them all.
pub fn greenlet_spawn_join(n: usize) -> usize {
    let gs: Vec<_> = (0..n)
        .map(|i| greenlet::spawn(move || black_box(i)))
        .collect();
    greenlet::joinall(gs).len()
}

/// `iters` round trips between two greenlets over a pair of greenlet `Queue`s.
pub fn greenlet_ping_pong(iters: u64) -> Duration {
    greenlet_ping_pong_with(iters, |q| q.get().ok())
}

/// [`greenlet_ping_pong`] where both sides take from their queue with `get`; `get` returns
/// `None` when the queue failed (closed, or timed out).
pub fn greenlet_ping_pong_with<G>(iters: u64, get: G) -> Duration
where
    G: Fn(&greenlet::queue::Queue<Option<u64>>) -> Option<Option<u64>> + Copy + Send + 'static,
{
    greenlet::spawn(move || {
        let ping = greenlet::queue::Queue::unbounded();
        let pong = greenlet::queue::Queue::unbounded();
        let (ping_rx, pong_tx) = (ping.clone(), pong.clone());
        let ponger = greenlet::spawn(move || {
            while let Some(Some(v)) = get(&ping_rx) {
                pong_tx.put(Some(v)).unwrap();
            }
        });
        let start = Instant::now();
        for i in 0..iters {
            ping.put(Some(i)).unwrap();
            black_box(get(&pong).unwrap());
        }
        let took = start.elapsed();
        ping.put(None).unwrap();
        ponger.join();
        took
    })
    .get()
    .unwrap()
}

/// `iters` calls of `greenlet::yield_now` inside one greenlet.
pub fn greenlet_yield(iters: u64) -> Duration {
    greenlet::spawn(move || {
        let start = Instant::now();
        for _ in 0..iters {
            greenlet::yield_now();
        }
        start.elapsed()
    })
    .get()
    .unwrap()
}

/// `GREENLET_BENCH_POOL=n` sets `config().pool_capacity(n)` for this bench process, to show
/// what the stack pool bounds (call before the first spawn; later calls do nothing).
pub fn pool_from_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Some(n) = std::env::var("GREENLET_BENCH_POOL")
            .ok()
            .and_then(|v| v.parse().ok())
        else {
            return;
        };
        match greenlet::config().pool_capacity(n).apply() {
            Ok(()) => eprintln!("greenlet stack pool: {n}"),
            Err(e) => eprintln!("GREENLET_BENCH_POOL={n} not applied: {e}"),
        }
    });
}

/// The criterion settings of the `spawn`, `sync` and `monitor` benches (20 samples, 1 s of
/// warm-up, 3 s of measurement), so their rows compare.
pub fn criterion_3s() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}
