//! `sync`: Event, AsyncResult, Semaphore, BoundedSemaphore, RLock, Mutex, RwLock, Condvar;
//! waits, time-outs, kills, poisoning.

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
fn mutex_is_cooperative() {
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

#[test]
fn mutex_between_greenlets_and_threads() {
    let m = Arc::new(greenlet::sync::Mutex::new(0u64));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    *m.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    let gs: Vec<_> = (0..20)
        .map(|_| {
            let m = m.clone();
            greenlet::spawn(move || {
                for _ in 0..40 {
                    let mut g = m.lock().unwrap();
                    greenlet::yield_now();
                    *g += 1;
                }
            })
        })
        .collect();
    greenlet::joinall(gs);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*m.lock().unwrap(), 800 + 800);
}

#[test]
fn mutex_try_lock_poison_and_into_inner() {
    use std::sync::TryLockError;
    let m = Arc::new(greenlet::sync::Mutex::new(vec![1]));
    let g = m.lock().unwrap();
    assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
    drop(g);
    // A panic while holding poisons, as std's.
    let m2 = m.clone();
    let r = greenlet::spawn(move || {
        let _g = m2.lock().unwrap();
        panic!("boom (expected by the test)");
    });
    assert!(matches!(r.get(), Err(JoinError::Panicked(_))));
    assert!(m.is_poisoned());
    let mut g = m.lock().unwrap_err().into_inner();
    g.push(2);
    drop(g);
    m.clear_poison();
    assert_eq!(*m.try_lock().unwrap(), [1, 2]);
    let m = Arc::try_unwrap(m).unwrap();
    assert_eq!(m.into_inner().unwrap(), [1, 2]);
}

#[test]
fn mutex_held_by_a_killed_greenlet_is_released() {
    let m = Arc::new(greenlet::sync::Mutex::new(0));
    let m2 = m.clone();
    let holder = greenlet::spawn(move || {
        let _g = m2.lock().unwrap();
        greenlet::sleep(Duration::from_secs(30));
    });
    greenlet::sleep(ms(20));
    let m3 = m.clone();
    let waiter = greenlet::spawn(move || *m3.lock().unwrap_or_else(|e| e.into_inner()) + 1);
    greenlet::sleep(ms(10));
    assert!(holder.kill());
    assert_eq!(
        waiter.get(),
        Ok(1),
        "the waiter got the lock once the holder unwound"
    );
    // Killed while waiting: takes nothing, steals no wake-up.
    let g = m.lock().unwrap_or_else(|e| e.into_inner());
    let m4 = m.clone();
    kill_while_waiting(move || drop(m4.lock()));
    drop(g);
    assert!(m.try_lock().is_ok() || m.is_poisoned());
}

#[test]
fn rwlock_readers_share_and_a_waiting_writer_goes_first() {
    let l = Arc::new(greenlet::sync::RwLock::new(0));
    let r1 = l.read().unwrap();
    let r2 = l.read().unwrap();
    assert!(l.try_write().is_err());
    let l2 = l.clone();
    let writer = greenlet::spawn(move || *l2.write().unwrap() += 1);
    greenlet::sleep(ms(10));
    // A writer waits: new readers queue behind it.
    assert!(l.try_read().is_err());
    let l3 = l.clone();
    let reader = greenlet::spawn(move || *l3.read().unwrap());
    greenlet::sleep(ms(10));
    drop((r1, r2));
    assert_eq!(writer.get(), Ok(()));
    assert_eq!(reader.get(), Ok(1), "the reader came after the writer");
}

#[test]
fn rwlock_writer_killed_while_waiting_lets_readers_in() {
    let l = Arc::new(greenlet::sync::RwLock::new(5));
    let r = l.read().unwrap();
    let l2 = l.clone();
    let writer = greenlet::spawn(move || drop(l2.write()));
    greenlet::sleep(ms(10));
    let l3 = l.clone();
    let reader = greenlet::spawn(move || *l3.read().unwrap());
    greenlet::sleep(ms(10));
    assert!(!reader.ready(), "held back by the waiting writer");
    assert!(writer.kill());
    assert_eq!(reader.get(), Ok(5));
    drop(r);
    assert!(!l.is_poisoned());
    *l.write().unwrap() += 1;
    assert_eq!(*l.read().unwrap(), 6);
}

#[test]
fn condvar_wakes_greenlets_and_threads_and_times_out() {
    use greenlet::sync::{Condvar, Mutex};
    let pair = Arc::new((Mutex::new(0u32), Condvar::new()));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let p = pair.clone();
            greenlet::spawn(move || {
                let g = p.0.lock().unwrap();
                *p.1.wait_while(g, |n| *n == 0).unwrap()
            })
        })
        .collect();
    let p = pair.clone();
    let thread = std::thread::spawn(move || {
        let g = p.0.lock().unwrap();
        *p.1.wait_while(g, |n| *n == 0).unwrap()
    });
    greenlet::sleep(ms(20));
    *pair.0.lock().unwrap() = 7;
    pair.1.notify_all();
    for w in waiters {
        assert_eq!(w.get(), Ok(7));
    }
    assert_eq!(thread.join().unwrap(), 7);
    let g = pair.0.lock().unwrap();
    let t = Instant::now();
    let (g, r) = pair.1.wait_timeout(g, ms(5)).unwrap();
    assert!(r.timed_out() && t.elapsed() >= ms(5));
    let (_g, r) = pair.1.wait_timeout(g, Duration::ZERO).unwrap();
    assert!(r.timed_out());
}
