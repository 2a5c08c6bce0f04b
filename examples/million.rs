//! A million parked greenlets in one process: RSS per greenlet, time to spawn, time to wake.
//!
//! Run with: `cargo run --release --example million [-- --n 1000000]`
//!
//! Each live greenlet takes two memory mappings, and Linux's default `vm.max_map_count`
//! (65,530) allows about 32,000; raise it first (as root):
//! `sysctl -w vm.max_map_count=2200000`. With a lower limit the example spawns until the
//! limit bites and reports the error it got (spawning never hangs or aborts).

use std::sync::Arc;
use std::time::Instant;

use greenlet::Builder;
use greenlet::sync::Event;

mod common;

#[path = "../tests/support/proc_status.rs"]
mod proc_status;

/// `VmRSS` in bytes; 0 where it cannot be read (not Linux).
fn rss() -> usize {
    proc_status::status_bytes("VmRSS").unwrap_or(0)
}

fn main() {
    // Show warnings (the vm.max_map_count one) unless RUST_LOG says otherwise.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let n = common::num("--n", 1_000_000) as usize;
    greenlet::config()
        .max_greenlets(n) // logs a warning if vm.max_map_count is too low
        .apply()
        .expect("configured before the first spawn");
    greenlet::spawn(|| ()).join(); // start the runtime (fills the stack pool)
    let limit = std::fs::read_to_string("/proc/sys/vm/max_map_count").unwrap_or_default();
    println!("vm.max_map_count = {}", limit.trim());

    let wake = Arc::new(Event::new());
    let before = rss();
    let start = Instant::now();
    let mut parked = Vec::with_capacity(n);
    for _ in 0..n {
        let wake = wake.clone();
        match Builder::new().spawn(move || wake.wait()) {
            Ok(g) => parked.push(g),
            Err(e) => {
                println!("stopped after {} greenlets: {e}", parked.len());
                break;
            }
        }
    }
    let spawned = start.elapsed();
    // Let them all reach their park, then measure.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let grown = rss().saturating_sub(before);
    let count = parked.len().max(1);
    println!(
        "{count} greenlets parked: spawned in {spawned:.2?} ({:.2} µs each), RSS +{} MiB = {} bytes per greenlet",
        spawned.as_secs_f64() * 1e6 / count as f64,
        grown >> 20,
        grown / count
    );

    let start = Instant::now();
    wake.set();
    let results = greenlet::joinall(parked);
    let failed = results.iter().filter(|r| r.is_err()).count();
    println!(
        "woke and joined all in {:.2?}; {failed} failed",
        start.elapsed()
    );
}
