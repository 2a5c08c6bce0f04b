//! A CPU-bound fan-out: N greenlets each hash 1 MiB, spawned from `main`. Greenlets stay on the
//! worker they were spawned onto (issue 14), and spawns from `main` go round robin, so the
//! work still spreads over every worker. Prints the time on one thread, the time in greenlets
//! and the speed-up.
//!
//! Run with: `cargo run --release --example fan_out [-- --n 1000]`

use std::hash::{DefaultHasher, Hasher};
use std::time::Instant;

mod common;

/// Hashes 1 MiB derived from `seed` (SipHash, std's default hasher).
fn hash_1mib(seed: u64) -> u64 {
    let block: Vec<u8> = (0..1024 * 1024).map(|i| (i as u64 ^ seed) as u8).collect();
    let mut h = DefaultHasher::new();
    h.write(&block);
    h.finish()
}

fn main() {
    let n = common::num("--n", 1000);
    let t = Instant::now();
    let one: u64 = (0..n).map(hash_1mib).fold(0, u64::wrapping_add);
    let sequential = t.elapsed();

    let t = Instant::now();
    let gs: Vec<_> = (0..n)
        .map(|i| greenlet::spawn(move || (hash_1mib(i), std::thread::current().id())))
        .collect();
    let results: Vec<_> = greenlet::joinall(gs)
        .into_iter()
        .map(|r| r.expect("a hashing greenlet failed"))
        .collect();
    let fanned = t.elapsed();
    let sum = results.iter().map(|r| r.0).fold(0, u64::wrapping_add);
    assert_eq!(sum, one, "the greenlets computed other hashes");
    let mut threads: Vec<_> = results.iter().map(|r| format!("{:?}", r.1)).collect();
    threads.sort();
    threads.dedup();

    println!(
        "{n} × hash 1 MiB: one thread {sequential:.2?}, greenlets {fanned:.2?} on {} of {} \
         workers: {:.2}× faster",
        threads.len(),
        greenlet::settings().workers,
        sequential.as_secs_f64() / fanned.as_secs_f64()
    );
}
