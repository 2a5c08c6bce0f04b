//! Two greenlets on one worker take turns incrementing a shared counter with `yield_now`.
//!
//! Run with: `cargo run --release --example counter [-- --turns 5]`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

mod common;

fn main() {
    let turns = common::num("--turns", 5);
    // One worker: the two greenlets share it, so `yield_now` hands over strictly in turn.
    greenlet::config()
        .workers(1)
        .apply()
        .expect("configured before the first spawn");

    let counter = Arc::new(AtomicUsize::new(0));
    let greenlets: Vec<_> = ["t1", "t2"]
        .into_iter()
        .map(|name| {
            let counter = counter.clone();
            greenlet::go!(name, move || {
                for _ in 0..turns {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    println!("{name}: {n}");
                    greenlet::yield_now();
                }
            })
        })
        .collect();
    for result in greenlet::joinall(greenlets) {
        result.expect("counter greenlet failed");
    }
}
