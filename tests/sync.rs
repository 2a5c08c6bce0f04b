//! `sync`: Event, AsyncResult, Semaphore, BoundedSemaphore, RLock; waits, time-outs, kills.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use greenlet::JoinError;
use greenlet::sync::{AsyncResult, BoundedSemaphore, Event, RLock, Semaphore};
use support::ms;

/// Spawns `f`, lets it park, kills it, and checks it ended killed.
fn kill_while_waiting<F: FnOnce() + Send + 'static>(f: F) {
    let g = greenlet::spawn(f);
    greenlet::sleep(ms(30));
    assert!(g.kill_timeout(Duration::from_secs(5)), "the kill landed");
    assert_eq!(g.get(), Err(JoinError::Killed));
}

#[test]
fn event_wakes_every_waiter_and_can_be_cleared() {
    let ev = Arc::new(Event::new());
    let woken = Arc::new(AtomicUsize::new(0));
    let gs: Vec<_> = (0..50)
        .map(|_| {
            let (ev, woken) = (ev.clone(), woken.clone());
            greenlet::spawn(move || {
                ev.wait();
                woken.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    greenlet::sleep(ms(20));
    assert_eq!(woken.load(Ordering::SeqCst), 0);
    ev.set();
    greenlet::joinall(gs);
    assert_eq!(woken.load(Ordering::SeqCst), 50);
    assert!(ev.is_set());
    ev.clear();
    let t = Instant::now();
    assert!(!ev.wait_timeout(ms(40)));
    assert!(t.elapsed() >= ms(40));
}

#[test]
fn event_works_from_plain_threads() {
    let ev = Arc::new(Event::new());
    let ev2 = ev.clone();
    let thread = std::thread::spawn(move || ev2.wait_timeout(Duration::from_secs(5)));
    greenlet::spawn(move || ev.set()).join();
    assert!(thread.join().unwrap());
}

#[test]
fn killed_event_waiter_does_not_steal_the_wake_up() {
    let ev = Arc::new(Event::new());
    let e2 = ev.clone();
    kill_while_waiting(move || e2.wait());
    let e3 = ev.clone();
    let survivor = greenlet::spawn(move || e3.wait_timeout(Duration::from_secs(5)));
    greenlet::sleep(ms(10));
    ev.set();
    assert_eq!(survivor.get(), Ok(true));
}

#[test]
fn async_result_delivers_values_and_errors_to_all() {
    let r = Arc::new(AsyncResult::<String>::new());
    assert!(!r.ready());
    let t = Instant::now();
    assert!(r.get_timeout(ms(30)).is_none());
    assert!(t.elapsed() >= ms(30));
    let gs: Vec<_> = (0..5)
        .map(|_| {
            let r = r.clone();
            greenlet::spawn(move || r.get().map_err(|e| e.to_string()))
        })
        .collect();
    greenlet::sleep(ms(10));
    r.set("v".into());
    for res in greenlet::joinall(gs) {
        assert_eq!(res, Ok(Ok("v".to_owned())));
    }
    assert!(r.successful());
    r.set_error("boom");
    assert!(!r.successful());
    assert_eq!(r.try_get().unwrap().unwrap_err().to_string(), "boom");
    assert!(format!("{r:?}").contains("error"));
}

#[test]
fn semaphore_bounds_concurrency() {
    const PERMITS: usize = 3;
    let sem = Arc::new(Semaphore::new(PERMITS));
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let gs: Vec<_> = (0..30)
        .map(|_| {
            let (sem, now, peak) = (sem.clone(), now.clone(), peak.clone());
            greenlet::spawn(move || {
                let _permit = sem.acquire();
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                greenlet::sleep(ms(5));
                now.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    greenlet::joinall(gs);
    assert_eq!(peak.load(Ordering::SeqCst), PERMITS);
    assert_eq!(sem.available_permits(), PERMITS);
}

#[test]
fn semaphore_timeouts_and_kills_leak_no_permit() {
    let sem = Arc::new(Semaphore::new(1));
    let held = sem.acquire();
    let t = Instant::now();
    assert!(sem.acquire_timeout(ms(30)).is_none());
    assert!(t.elapsed() >= ms(30));
    let s2 = sem.clone();
    kill_while_waiting(move || drop(s2.acquire()));
    drop(held);
    assert_eq!(sem.available_permits(), 1, "the killed waiter took nothing");

    // A greenlet killed while holding a permit gives it back as it unwinds.
    let s3 = sem.clone();
    kill_while_waiting(move || {
        let _p = s3.acquire();
        greenlet::sleep(Duration::from_secs(60));
    });
    assert_eq!(sem.available_permits(), 1);
    // And a waiter woken by that release is not lost.
    assert!(sem.acquire_timeout(ms(100)).is_some());
}

#[test]
fn bounded_semaphore_refuses_over_release() {
    let sem = BoundedSemaphore::new(2);
    assert!(sem.release().is_err());
    sem.acquire().forget();
    assert_eq!(sem.available_permits(), 1);
    assert!(sem.release().is_ok());
    let e = sem.release().unwrap_err();
    assert_eq!(
        e.to_string(),
        "semaphore released more times than it was acquired"
    );
    let plain = Semaphore::new(0);
    plain.release();
    assert_eq!(plain.available_permits(), 1);
}

#[test]
fn rlock_is_reentrant_per_greenlet_and_exclusive_across() {
    let lock = Arc::new(RLock::new());
    let l2 = lock.clone();
    let holder = greenlet::spawn(move || {
        let _a = l2.lock();
        let _b = l2.lock();
        greenlet::sleep(ms(50));
    });
    greenlet::sleep(ms(10));
    let l3 = lock.clone();
    let other = greenlet::spawn(move || {
        let t = Instant::now();
        let got = l3.lock_timeout(Duration::from_secs(5)).is_some();
        (got, t.elapsed())
    });
    assert!(lock.try_lock().is_none(), "another holder has it");
    holder.join();
    let (got, waited) = other.get().unwrap();
    assert!(got);
    assert!(waited >= ms(20));
    assert!(!lock.is_locked());
    let l4 = lock.clone();
    kill_while_waiting(move || {
        let _g = l4.lock();
        greenlet::sleep(Duration::from_secs(60));
    });
    assert!(!lock.is_locked(), "released by the killed holder's unwind");
}

#[test]
fn may_mutex_is_reexported_and_cooperative() {
    let m = Arc::new(greenlet::sync::Mutex::new(0));
    let gs: Vec<_> = (0..100)
        .map(|_| {
            let m = m.clone();
            greenlet::spawn(move || {
                let mut g = m.lock().unwrap();
                greenlet::yield_now(); // held across a switch without stalling the worker
                *g += 1;
            })
        })
        .collect();
    greenlet::joinall(gs);
    assert_eq!(*m.lock().unwrap(), 100);
}
