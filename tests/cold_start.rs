//! No cold start (issue 18): the first greenlets of a fresh process are as punctual as later
//! ones. may used to fill its pool of 1,000 stacks when the runtime started, which delayed the
//! first spawn by 16-21 ms and made the first 1,000 timed sleeps oversleep by 22-33 ms.
//!
//! This binary holds one test, so that its first spawn is the process's first. The bounds are
//! generous (a loaded CI machine); `cargo test --release --test cold_start -- --nocapture`
//! prints the measured figures.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::watchdog::bounded;

const N: usize = 1_000;
const NAP: Duration = Duration::from_millis(15);

/// Spawns `N` greenlets that each sleep `NAP`; returns (time to the first one's start, the
/// oversleeps sorted).
fn round() -> (Duration, Vec<Duration>) {
    let t0 = Instant::now();
    let first = Arc::new(std::sync::OnceLock::new());
    let gs: Vec<_> = (0..N)
        .map(|_| {
            let first = first.clone();
            greenlet::spawn(move || {
                let _ = first.set(t0.elapsed());
                let start = Instant::now();
                greenlet::sleep(NAP);
                start.elapsed().saturating_sub(NAP)
            })
        })
        .collect();
    let mut late: Vec<_> = greenlet::joinall(gs)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    late.sort();
    (*first.get().unwrap(), late)
}

fn pct(v: &[Duration], p: usize) -> Duration {
    v[(v.len() * p / 100).min(v.len() - 1)]
}

#[test]
fn the_first_thousand_sleeps_are_punctual() {
    let (cold, warm) = bounded("cold_start", Duration::from_secs(60), || {
        let cold = round();
        let warm = round();
        (cold, warm)
    });
    for (name, (first, late)) in [("cold", &cold), ("warm", &warm)] {
        println!(
            "{name}: first greenlet started {first:?} after its spawn; oversleep p50 {:?} p99 {:?} max {:?}",
            pct(late, 50),
            pct(late, 99),
            late[late.len() - 1]
        );
    }
    let (first, late) = cold;
    assert!(
        first < Duration::from_millis(50),
        "the first greenlet of the process started {first:?} after its spawn"
    );
    assert!(
        pct(&late, 50) < Duration::from_millis(10),
        "a fresh process's sleeps overslept by {:?} (median)",
        pct(&late, 50)
    );
}
