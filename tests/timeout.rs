//! `sleep`, `yield_now`, `with_timeout` and the `Timeout` guard.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use greenlet::{JoinError, Timeout};
use support::ms;

#[test]
fn sleep_never_ends_early() {
    for d in [0, 1, 7, 30] {
        let t = Instant::now();
        greenlet::sleep(ms(d));
        assert!(t.elapsed() >= ms(d));
        let g = greenlet::spawn(move || {
            let t = Instant::now();
            greenlet::sleep(ms(d));
            t.elapsed()
        });
        assert!(g.get().unwrap() >= ms(d));
    }
}

#[test]
fn with_timeout_returns_the_value_in_time() {
    assert_eq!(greenlet::with_timeout(ms(1000), || 5), Ok(5));
    let g = greenlet::spawn(|| greenlet::with_timeout(ms(1000), || "inner"));
    assert_eq!(g.get(), Ok(Ok("inner")));
}

#[test]
fn with_timeout_elapses_no_earlier_than_its_deadline() {
    let t = Instant::now();
    let r = greenlet::with_timeout(ms(50), || greenlet::sleep(Duration::from_secs(60)));
    assert!(t.elapsed() >= ms(50));
    assert!(t.elapsed() < Duration::from_secs(5));
    let e = r.unwrap_err();
    assert_eq!(e.duration(), ms(50));
    assert_eq!(std::io::Error::from(e).kind(), std::io::ErrorKind::TimedOut);
}

#[test]
fn with_timeout_stops_the_work_before_returning() {
    let after = Arc::new(AtomicBool::new(false));
    let after2 = after.clone();
    let r = greenlet::with_timeout(ms(20), move || {
        greenlet::sleep(ms(200));
        after2.store(true, Ordering::SeqCst);
    });
    assert!(r.is_err());
    greenlet::sleep(ms(400));
    assert!(
        !after.load(Ordering::SeqCst),
        "the body ran on after Elapsed"
    );
}

#[test]
fn with_timeout_reraises_a_panic_of_its_body() {
    let g = greenlet::spawn(|| greenlet::with_timeout(ms(1000), || -> u8 { panic!("inner boom") }));
    assert_eq!(g.get(), Err(JoinError::Panicked("inner boom".into())));
}

#[test]
fn killing_the_caller_of_with_timeout_kills_its_body() {
    let body_done = Arc::new(AtomicBool::new(false));
    let body_done2 = body_done.clone();
    let g = greenlet::spawn(move || {
        greenlet::with_timeout(Duration::from_secs(60), move || {
            greenlet::sleep(ms(300));
            body_done2.store(true, Ordering::SeqCst);
        })
    });
    greenlet::sleep(ms(30));
    assert!(g.kill());
    greenlet::sleep(ms(500));
    assert!(!body_done.load(Ordering::SeqCst));
}

#[test]
fn timeout_guard_interrupts_the_greenlet() {
    let dropped = Arc::new(AtomicBool::new(false));
    let dropped2 = dropped.clone();
    let t = Instant::now();
    let g = greenlet::spawn(move || {
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _flag = Flag(dropped2);
        let _t = Timeout::start(ms(30));
        greenlet::sleep(Duration::from_secs(60));
    });
    assert_eq!(g.get(), Err(JoinError::TimedOut));
    assert!(t.elapsed() >= ms(30));
    assert!(dropped.load(Ordering::SeqCst));
}

#[test]
fn dropped_timeout_guard_does_not_fire() {
    let g = greenlet::spawn(|| {
        {
            let t = Timeout::start(ms(20));
            assert!(!t.is_expired());
            greenlet::sleep(ms(5));
        }
        Timeout::start(ms(20)).cancel();
        greenlet::sleep(ms(100));
        "survived"
    });
    assert_eq!(g.get(), Ok("survived"));
}

#[test]
fn timeout_interrupts_a_loop_that_yields() {
    let spins = Arc::new(AtomicUsize::new(0));
    let spins2 = spins.clone();
    let g = greenlet::spawn(move || {
        let _t = Timeout::start(ms(50));
        loop {
            spins2.fetch_add(1, Ordering::Relaxed);
            greenlet::yield_now();
        }
    });
    assert!(g.join_timeout(Duration::from_secs(10)));
    assert_eq!(g.get(), Err(JoinError::TimedOut));
    assert!(spins.load(Ordering::Relaxed) > 0);
}

#[test]
fn timeout_on_a_plain_thread_only_tracks_the_deadline() {
    let t = Timeout::start(ms(20));
    assert_eq!(t.duration(), ms(20));
    assert!(t.remaining() <= ms(20));
    greenlet::sleep(ms(25));
    assert!(t.is_expired());
    assert_eq!(t.remaining(), Duration::ZERO);
    let far = Timeout::start(Duration::MAX);
    assert!(far.deadline().is_none());
    assert!(!far.is_expired());
}

#[test]
fn yield_now_alternates_greenlets() {
    const ROUNDS: usize = 1000;
    let counter = Arc::new(AtomicUsize::new(0));
    let gs: Vec<_> = (0..2)
        .map(|_| {
            let counter = counter.clone();
            greenlet::spawn(move || {
                for _ in 0..ROUNDS {
                    counter.fetch_add(1, Ordering::Relaxed);
                    greenlet::yield_now();
                }
            })
        })
        .collect();
    greenlet::joinall(gs);
    assert_eq!(counter.load(Ordering::Relaxed), 2 * ROUNDS);
}
