//! `monkey::patch_all`: `std::thread::sleep` inside greenlets parks only the greenlet, and
//! plain threads are unaffected.
#![cfg(all(feature = "monkey", target_os = "linux"))]

use std::time::{Duration, Instant};

const SLEEPERS: usize = 200;
const NAP: Duration = Duration::from_millis(200);

#[test]
fn std_sleep_in_greenlets_is_cooperative_and_threads_are_unchanged() {
    greenlet::monkey::patch_all();
    greenlet::monkey::patch_all(); // idempotent
    assert!(greenlet::monkey::is_patched());

    let t = Instant::now();
    let gs: Vec<_> = (0..SLEEPERS)
        .map(|_| {
            greenlet::spawn(|| {
                let t = Instant::now();
                std::thread::sleep(NAP);
                t.elapsed()
            })
        })
        .collect();
    for slept in greenlet::joinall(gs) {
        assert!(slept.unwrap() >= NAP, "never early");
    }
    // Unpatched, 200 × 200 ms on the worker threads would take 20 s (10 s on 2 workers).
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // A plain thread still really sleeps.
    let t = Instant::now();
    std::thread::spawn(|| std::thread::sleep(Duration::from_millis(50)))
        .join()
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(50));

    // Invalid input is rejected as by the C library.
    let g = greenlet::spawn(|| {
        let bad = libc::timespec {
            tv_sec: 0,
            tv_nsec: 2_000_000_000,
        };
        // SAFETY: a valid pointer to a (deliberately out-of-range) timespec.
        unsafe { libc::nanosleep(&bad, std::ptr::null_mut()) }
    });
    assert_eq!(g.get(), Ok(-1));
}

#[test]
fn killing_a_greenlet_in_a_patched_sleep_does_not_abort() {
    greenlet::monkey::patch_all();
    let g = greenlet::spawn(|| {
        std::thread::sleep(Duration::from_secs(3600)); // ends early when killed
        greenlet::sleep(Duration::from_secs(3600)); // the kill lands here
    });
    greenlet::sleep(Duration::from_millis(50));
    let t = Instant::now();
    assert!(g.kill_timeout(Duration::from_secs(5)));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(g.get(), Err(greenlet::JoinError::Killed));
}
