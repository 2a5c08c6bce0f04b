//! A million parked greenlets in one process: time to spawn them, RSS per parked greenlet, and
//! time to wake and join them all.
//!
//! Run with: `cargo run --release --example million [-- --n 1000000 --rounds 2 --inside]`
//!
//! Each round spawns `--n` greenlets that park on one `Event`, then sets the event and joins
//! them. Round 1 maps a fresh stack for each greenlet; later rounds reuse the finished ones'
//! warm coroutines (`config().keep_warm`). With `--inside` the greenlets are spawned and
//! joined by a greenlet instead of by `main`.
//!
//! Each live greenlet takes two memory mappings, and Linux's default `vm.max_map_count`
//! (65,530) allows about 32,000; raise it first (as root):
//! `sysctl -w vm.max_map_count=2200000`. With a lower limit the example spawns until the
//! limit bites and reports the error it got (spawning never hangs or aborts).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use greenlet::Builder;
use greenlet::sync::Event;

mod common;

#[path = "../tests/support/proc_status.rs"]
mod proc_status;

/// `VmRSS` in bytes; 0 where it cannot be read (not Linux).
fn rss() -> usize {
    proc_status::status_bytes("VmRSS").unwrap_or(0)
}

/// One round: spawn `n` greenlets parked on an event, measure, wake and join them.
fn round(index: u64, n: usize) {
    let wake = Arc::new(Event::new());
    let arrived = Arc::new(AtomicUsize::new(0));
    let before = rss();
    let start = Instant::now();
    let mut parked = Vec::with_capacity(n);
    for _ in 0..n {
        let (wake, arrived) = (wake.clone(), arrived.clone());
        match Builder::new().spawn(move || {
            arrived.fetch_add(1, Ordering::Relaxed);
            wake.wait();
        }) {
            Ok(g) => parked.push(g),
            Err(e) => {
                println!("stopped after {} greenlets: {e}", parked.len());
                break;
            }
        }
    }
    let spawned = start.elapsed();
    // Let them all reach their park, then measure.
    while arrived.load(Ordering::Relaxed) < parked.len() {
        greenlet::sleep(Duration::from_millis(10));
    }
    let grown = rss().saturating_sub(before);
    let count = parked.len().max(1);
    println!(
        "round {index}: {count} greenlets parked: spawned in {spawned:.2?} ({:.2} µs each), \
         RSS +{} MiB = {} bytes per greenlet",
        spawned.as_secs_f64() * 1e6 / count as f64,
        grown >> 20,
        grown / count
    );

    let start = Instant::now();
    wake.set();
    let results = greenlet::joinall(parked);
    let failed = results.iter().filter(|r| r.is_err()).count();
    println!(
        "round {index}: woke and joined all in {:.2?}; {failed} failed",
        start.elapsed()
    );
}

fn main() {
    // Show warnings (the vm.max_map_count one) unless RUST_LOG says otherwise.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let n = common::num("--n", 1_000_000) as usize;
    let rounds = common::num("--rounds", 2);
    let inside = common::flag("--inside");
    greenlet::config()
        .max_greenlets(n) // logs a warning if vm.max_map_count is too low
        .apply()
        .expect("configured before the first spawn");
    greenlet::spawn(|| ()).join(); // start the runtime
    let limit = std::fs::read_to_string("/proc/sys/vm/max_map_count").unwrap_or_default();
    println!(
        "vm.max_map_count = {}; spawned from {}",
        limit.trim(),
        if inside { "a greenlet" } else { "main" }
    );
    let rounds = move || {
        for index in 1..=rounds {
            round(index, n);
        }
    };
    if inside {
        // One greenlet runs every round: its children live on its worker, where the
        // previous round's finished greenlets wait warm.
        greenlet::spawn(rounds).join();
    } else {
        rounds();
    }
}
