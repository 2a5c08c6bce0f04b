//! `threadpool::spawn_blocking`: results, panics, concurrency, and workers left free.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use greenlet::JoinError;
use greenlet::threadpool::spawn_blocking;
use support::ms;

const JOBS: usize = 20;

#[test]
fn result_from_a_greenlet_and_from_main() {
    assert_eq!(spawn_blocking(|| 6 * 7).get(), Ok(42));
    let g = greenlet::spawn(|| spawn_blocking(|| "pool").get());
    assert_eq!(g.get(), Ok(Ok("pool")));
}

#[test]
fn a_panicking_job_is_an_error_and_the_pool_survives() {
    support::capture_log();
    let e = spawn_blocking(|| -> u8 { panic!("job-panic-5512") }).get();
    assert_eq!(e, Err(JoinError::Panicked("job-panic-5512".into())));
    let logged = support::logged("job-panic-5512");
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].1.contains("tests/threadpool.rs"), "{logged:?}");
    assert_eq!(spawn_blocking(|| 1).get(), Ok(1));
}

#[test]
fn blocking_jobs_run_in_parallel_and_leave_workers_free() {
    let ticks = Arc::new(AtomicUsize::new(0));
    let ticker = {
        let ticks = ticks.clone();
        greenlet::spawn(move || {
            for _ in 0..20 {
                greenlet::sleep(ms(10));
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let t = Instant::now();
    let gs: Vec<_> = (0..JOBS)
        .map(|_| greenlet::spawn(|| spawn_blocking(|| std::thread::sleep(ms(200))).get()))
        .collect();
    assert!(greenlet::joinall(gs).into_iter().all(|r| r == Ok(Ok(()))));
    // Sequentially 20 × 200 ms = 4 s; on the pool about 0.2 s.
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    ticker.join();
    assert_eq!(ticks.load(Ordering::Relaxed), 20, "the ticker was starved");
}

#[test]
fn join_timeout_waits_at_least_its_timeout() {
    let task = spawn_blocking(|| std::thread::sleep(ms(300)));
    let t = Instant::now();
    assert!(!task.join_timeout(ms(50)));
    assert!(t.elapsed() >= ms(50));
    assert!(!task.ready());
    task.join();
    assert!(task.ready());
    assert!(format!("{task:?}").contains("ready: true"));
}

#[test]
fn killing_the_waiter_leaves_the_job_running() {
    let started = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let (s, f) = (started.clone(), finished.clone());
    let g = greenlet::spawn(move || {
        spawn_blocking(move || {
            s.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(ms(100));
            f.fetch_add(1, Ordering::SeqCst);
        })
        .get()
    });
    while started.load(Ordering::SeqCst) == 0 {
        greenlet::sleep(ms(1));
    }
    assert!(g.kill());
    assert_eq!(g.get(), Err(JoinError::Killed));
    let deadline = Instant::now() + Duration::from_secs(10);
    while finished.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        greenlet::sleep(ms(5));
    }
    assert_eq!(finished.load(Ordering::SeqCst), 1);
}
