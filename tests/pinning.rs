//! Issue 14 (prototype): a greenlet never changes OS thread, whatever wakes it.

use std::cell::Cell;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use greenlet::queue::Queue;
use greenlet::sync::Event;

thread_local! { static COUNTER: Cell<u64> = const { Cell::new(0) }; }

fn tid() -> std::thread::ThreadId {
    std::thread::current().id()
}

#[test]
fn every_kind_of_wake_up_resumes_on_the_same_thread() {
    let moved = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let kinds: Arc<Vec<std::sync::atomic::AtomicU64>> = Arc::new((0..8).map(|_| std::sync::atomic::AtomicU64::new(0)).collect());
    let checks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let gs: Vec<_> = (0..100)
        .map(|i| {
            let (moved, checks, kinds) = (moved.clone(), checks.clone(), kinds.clone());
            greenlet::spawn(move || {
                let k = std::cell::Cell::new(0usize);
                let check = |before: std::thread::ThreadId| {
                    checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if tid() != before {
                        moved.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        kinds[k.get() % 7].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    k.set(k.get() + 1);
                };
                for round in 0..10u64 {
                    let t = tid();
                    greenlet::yield_now();
                    check(t);
                    let t = tid();
                    greenlet::sleep(Duration::from_micros(200 + (i * 7 + round) % 300));
                    check(t);
                    // An event set by another greenlet (likely on the other worker).
                    let e = Arc::new(Event::new());
                    let e2 = e.clone();
                    let setter = greenlet::spawn(move || e2.set());
                    let t = tid();
                    e.wait();
                    check(t);
                    setter.join();
                    // An event set by a plain thread.
                    let e = Arc::new(Event::new());
                    let e2 = e.clone();
                    let th = std::thread::spawn(move || e2.set());
                    let t = tid();
                    e.wait();
                    check(t);
                    th.join().unwrap();
                    // A queue item from a greenlet spawned from main (another worker).
                    let q: Queue<u64> = Queue::unbounded();
                    let t = tid();
                    let _ = q.get_timeout(Duration::from_micros(300));
                    check(t);
                    // A socket read woken by a plain thread's write.
                    let (mut a, mut b) = greenlet::net::UnixStream::pair().unwrap();
                    let th = std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_micros(100));
                        a.write_all(b"x").unwrap();
                    });
                    let t = tid();
                    let mut buf = [0u8; 1];
                    b.read_exact(&mut buf).unwrap();
                    check(t);
                    th.join().unwrap();
                    // The thread-local race of the issue.
                    COUNTER.with(|c| {
                        let t = tid();
                        greenlet::yield_now();
                        check(t);
                        for _ in 0..1000 {
                            c.set(c.get() + 1);
                        }
                    });
                }
            })
        })
        .collect();
    for g in gs {
        g.get().unwrap();
    }
    let (migrations, hops) = greenlet::__pinning_stats();
    eprintln!("by kind (yield, sleep, event/greenlet, event/thread, queue timeout, socket, tls-yield): {:?}", kinds.iter().map(|k| k.load(std::sync::atomic::Ordering::Relaxed)).collect::<Vec<_>>());
    eprintln!(
        "checks {}, moved {}, migrations {migrations}, hops {hops}",
        checks.load(std::sync::atomic::Ordering::Relaxed),
        moved.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(moved.load(std::sync::atomic::Ordering::Relaxed), 0);
}
