//! Issue 13's contract, table-driven, for every public timed API of the crate: a timed wait
//! never returns before its deadline, never hangs, and returns soon after it; zero means
//! "check once, then time out"; `Duration::MAX` (and a deadline far away) means "no
//! deadline".
//!
//! One test per API (so a failure names it). Each runs the table: the deadlines
//! {0, 1 µs, 200 µs, 999 µs, 1 ms, 1.5 ms, 30 ms} × {waiter inside a greenlet, on a plain
//! thread} × {satisfied before the call, never satisfied, satisfied just before the deadline,
//! satisfied just after it}, plus `Duration::MAX` and 600 years satisfied after 5 ms. The
//! satisfier is a plain thread in even rounds and a greenlet in odd ones. Every case runs
//! under the watchdog, named like "Event::wait_timeout 999µs greenlet satisfied-after".
//! (The harness is `tests/hostile/table.rs`; the servers and the HTTP client are in
//! `hostile_servers.rs`, a process of their own: see there why.)
//!
//! What is checked, for each case:
//! - a wait that reports a time-out took at least its deadline (never early);
//! - every wait returns within `SLACK` of its deadline (never hangs, never very late);
//! - satisfied before the call: it succeeds, even with a zero deadline;
//! - never satisfied: it times out;
//! - satisfied before the deadline (the satisfier *finished* before `start + d`, which is no
//!   later than the wait's own deadline): it succeeds;
//! - satisfied after the deadline: a time-out or a success are both correct, but a success
//!   cannot come before the satisfaction, so it never comes before the deadline;
//! - no deadline: it waits for the satisfaction and succeeds;
//! - the API's own invariants (items, permits, results) once both sides have run.

mod support;
#[path = "hostile/table.rs"]
mod table;

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use greenlet::queue::{Channel, GetTimeoutError, PriorityQueue, PutTimeoutError, Queue};
use greenlet::sync::{AsyncResult, BoundedSemaphore, Condvar, Event, Mutex, RLock, Semaphore};
use greenlet::{Greenlet, JoinError, Timeout};
use support::hostile::{
    DEADLINES, HUGE, SetOnDrop, assert_not_early, assert_not_late, fill, name_of, pause, tcp_pair,
};
use support::watchdog::{bounded, in_greenlet};
use table::{Api, Case, EXPIRES_ONLY, NO_READY, READY_EXPIRES, Ready, WATCH, full_backlog, table};

// ---- helpers for the cases ----

/// A greenlet that waits for `ev`, and whose destructor also waits for it: killed, it stays
/// alive (unwinding) until `ev` is set. Returned once it runs (a kill racing its start hits
/// another bug, shown in `hostile_kill.rs`).
fn stubborn(ev: Arc<Event>) -> Greenlet<()> {
    struct WaitOnDrop(Arc<Event>);
    impl Drop for WaitOnDrop {
        fn drop(&mut self) {
            self.0.wait();
        }
    }
    let guard = WaitOnDrop(ev.clone());
    let started = Arc::new(Event::new());
    let started2 = started.clone();
    let g = greenlet::spawn(move || {
        let _guard = guard;
        started2.set();
        ev.wait();
    });
    started.wait();
    g
}

/// A connected pair whose client side cannot write any more (filled).
fn full_tcp_pair() -> (greenlet::net::TcpStream, greenlet::net::TcpStream) {
    let (mut c, s) = tcp_pair();
    fill(&mut c);
    (c, s)
}

/// Reads everything the peer sent until it has been quiet for 20 ms.
fn drain(s: &mut greenlet::net::TcpStream) {
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut buf = vec![0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::TimedOut => return,
            Err(e) => panic!("draining: {e}"),
        }
    }
}

#[track_caller]
fn io_result(r: std::io::Result<usize>) -> bool {
    match r {
        Ok(n) => {
            assert!(n > 0, "a timed read or write returned 0 bytes");
            true
        }
        Err(e) if e.kind() == ErrorKind::TimedOut => false,
        Err(e) => panic!("unexpected error {e} ({:?})", e.kind()),
    }
}

// ---- the APIs ----

#[test]
fn sleep() {
    table(
        Api::new("greenlet::sleep", || {
            Case::new(
                |d| {
                    greenlet::sleep(d);
                    false
                },
                || true,
            )
        })
        .modes(EXPIRES_ONLY),
    );
}

#[test]
fn spawn_later() {
    table(
        Api::new("greenlet::spawn_later", || {
            Case::new(
                |d| {
                    let t = Instant::now();
                    let g = greenlet::spawn_later(d, move || t.elapsed());
                    let started = g.get().unwrap();
                    assert!(started >= d, "spawn_later({d:?}) started after {started:?}");
                    false
                },
                || true,
            )
        })
        .modes(EXPIRES_ONLY),
    );
}

#[test]
fn with_timeout() {
    table(
        Api::new("with_timeout", || {
            let go = Arc::new(Event::new());
            let finished = Arc::new(Event::new());
            let completed = Arc::new(AtomicBool::new(false));
            let (go2, completed2) = (go.clone(), completed.clone());
            // Set when `f` ends: returned, killed, or dropped unrun.
            let fin = SetOnDrop(finished.clone());
            let f = move || {
                let _fin = fin;
                go2.wait();
                completed2.store(true, Ordering::SeqCst);
                7
            };
            let completed3 = completed.clone();
            Case::new(
                move |d| match greenlet::with_timeout(d, f) {
                    Ok(v) => {
                        assert_eq!(v, 7);
                        true
                    }
                    Err(e) => {
                        assert_eq!(e.duration(), d);
                        false
                    }
                },
                move || {
                    go.set();
                    finished.wait();
                    completed.load(Ordering::SeqCst)
                },
            )
            .check(move |ok, _| {
                // Ok exactly when `f` completed; after Elapsed, `f` has stopped for good.
                assert_eq!(
                    ok,
                    completed3.load(Ordering::SeqCst),
                    "with_timeout's result"
                );
            })
        })
        .modes(NO_READY),
    );
}

#[test]
fn timeout_guard() {
    table(
        Api::new("Timeout::start", || {
            let go = Arc::new(Event::new());
            let go2 = go.clone();
            Case::new(
                move |d| {
                    let g = greenlet::spawn(move || {
                        let _t = Timeout::start(d);
                        go2.wait();
                        7
                    });
                    match g.get() {
                        Ok(7) => true,
                        Err(JoinError::TimedOut) => false,
                        other => panic!("Timeout::start({d:?}): the greenlet ended with {other:?}"),
                    }
                },
                move || {
                    go.set();
                    // Whether the greenlet resumed before its Timeout struck is not visible.
                    false
                },
            )
        })
        .modes(NO_READY),
    );
}

#[test]
fn greenlet_join_timeout() {
    table(Api::new("Greenlet::join_timeout", || {
        let ev = Arc::new(Event::new());
        let ev2 = ev.clone();
        let g = greenlet::spawn(move || ev2.wait());
        let h = g.handle();
        Case::new(
            move |d| {
                let ok = g.join_timeout(d);
                // `true` means finished; after `false` it may finish at once (the satisfier
                // races the deadline), so only that direction can be checked afterwards.
                assert!(
                    !ok || g.ready(),
                    "join_timeout said finished; ready() disagrees"
                );
                ok
            },
            move || {
                ev.set();
                h.join();
                true
            },
        )
    }));
}

#[test]
fn greenlet_ref_join_timeout() {
    table(Api::new("GreenletRef::join_timeout", || {
        let ev = Arc::new(Event::new());
        let ev2 = ev.clone();
        let g = greenlet::spawn(move || ev2.wait());
        let (h, h2) = (g.handle(), g.handle());
        drop(g);
        Case::new(
            move |d| h.join_timeout(d),
            move || {
                ev.set();
                h2.join();
                true
            },
        )
    }));
}

/// `kill_timeout` on a greenlet whose destructor blocks until satisfied; satisfied before
/// the call means it has already finished by itself.
fn kill_timeout_case(by_ref: bool) -> Case {
    let ev = Arc::new(Event::new());
    let g = stubborn(ev.clone());
    let h = g.handle();
    let slot = Arc::new(StdMutex::new(None));
    let slot2 = slot.clone();
    let h2 = h.clone();
    *slot.lock().unwrap() = Some(g);
    Case::new(
        move |d| {
            if by_ref {
                h2.kill_timeout(d)
            } else {
                // Not kept locked while it waits: the lock is a std one.
                let g = slot2.lock().unwrap().take().unwrap();
                let ok = g.kill_timeout(d);
                *slot2.lock().unwrap() = Some(g);
                ok
            }
        },
        move || {
            ev.set();
            h.join();
            true
        },
    )
    .check(move |_, mode| {
        let g = slot.lock().unwrap().take().unwrap();
        let r = g.get();
        match mode {
            // It had finished by itself.
            Ready => assert_eq!(r, Ok(()), "the finished greenlet's result"),
            // Released as the kill arrives (or, with a tiny deadline, just after the wait
            // returned, before the greenlet reached its park): either may win, nothing else.
            _ => assert!(
                matches!(r, Ok(()) | Err(JoinError::Killed)),
                "the killed greenlet's result: {r:?}"
            ),
        }
    })
}

#[test]
fn greenlet_kill_timeout() {
    table(Api::new("Greenlet::kill_timeout", || {
        kill_timeout_case(false)
    }));
}

#[test]
fn greenlet_ref_kill_timeout() {
    table(Api::new("GreenletRef::kill_timeout", || {
        kill_timeout_case(true)
    }));
}

#[test]
fn joinall_timeout() {
    table(Api::new("joinall_timeout", || {
        let ev = Arc::new(Event::new());
        let ev2 = ev.clone();
        let quick = || greenlet::spawn(|| ());
        let (a, b) = (quick(), quick());
        a.join();
        b.join();
        // The slow one in the middle: the ones after it are still counted after the deadline.
        let gs = vec![a, greenlet::spawn(move || ev2.wait()), b];
        let h = gs[1].handle();
        Case::new(
            move |d| {
                let n = greenlet::joinall_timeout(&gs, d);
                assert!(n == 2 || n == 3, "joinall_timeout({d:?}) counted {n} of 3");
                n == 3
            },
            move || {
                ev.set();
                h.join();
                true
            },
        )
    }));
}

#[test]
fn event_wait_timeout() {
    table(Api::new("Event::wait_timeout", || {
        let ev = Arc::new(Event::new());
        let (ev2, ev3) = (ev.clone(), ev.clone());
        Case::new(
            move |d| ev.wait_timeout(d),
            move || {
                ev2.set();
                true
            },
        )
        .check(move |_, _| {
            // A set event is seen by every later waiter, at once.
            assert!(ev3.is_set());
            assert!(ev3.wait_timeout(Duration::ZERO));
        })
    }));
}

#[test]
fn async_result_get_timeout() {
    table(Api::new("AsyncResult::get_timeout", || {
        let ar = Arc::new(AsyncResult::<u32>::new());
        let (ar2, ar3) = (ar.clone(), ar.clone());
        Case::new(
            move |d| match ar.get_timeout(d) {
                Some(Ok(7)) => true,
                None => false,
                other => panic!("AsyncResult::get_timeout gave {other:?}"),
            },
            move || {
                ar2.set(7);
                true
            },
        )
        .check(move |_, _| {
            assert!(matches!(ar3.try_get(), Some(Ok(7))));
            assert!(matches!(ar3.get_timeout(Duration::ZERO), Some(Ok(7))));
        })
    }));
}

#[test]
fn semaphore_acquire_timeout() {
    table(Api::new("Semaphore::acquire_timeout", || {
        let sem = Arc::new(Semaphore::new(0));
        let (sem2, sem3) = (sem.clone(), sem.clone());
        Case::new(
            move |d| sem.acquire_timeout(d).is_some(),
            move || {
                sem2.release();
                true
            },
        )
        .check(move |_, _| {
            assert_eq!(sem3.available_permits(), 1, "the permit is back");
        })
    }));
}

#[test]
fn bounded_semaphore_acquire_timeout() {
    table(Api::new("BoundedSemaphore::acquire_timeout", || {
        let sem = Arc::new(BoundedSemaphore::new(1));
        sem.acquire().forget();
        let (sem2, sem3) = (sem.clone(), sem.clone());
        Case::new(
            move |d| sem.acquire_timeout(d).is_some(),
            move || {
                sem2.release().unwrap();
                true
            },
        )
        .check(move |_, _| {
            assert_eq!(sem3.available_permits(), 1, "the permit is back");
            assert!(sem3.release().is_err(), "no permit beyond the bound");
        })
    }));
}

#[test]
fn rlock_lock_timeout() {
    table(Api::new("RLock::lock_timeout", || {
        let lock = Arc::new(RLock::new());
        let held = Arc::new(Event::new());
        let release = Arc::new(Event::new());
        let released = Arc::new(Event::new());
        {
            let (lock, held, release, released) = (
                lock.clone(),
                held.clone(),
                release.clone(),
                released.clone(),
            );
            // The holder is a plain thread: a different owner from any greenlet or thread
            // that runs the wait.
            std::thread::spawn(move || {
                let g = lock.lock();
                held.set();
                release.wait();
                drop(g);
                released.set();
            });
        }
        held.wait();
        let lock2 = lock.clone();
        Case::new(
            move |d| lock.lock_timeout(d).is_some(),
            move || {
                release.set();
                released.wait();
                true
            },
        )
        .check(move |_, _| assert!(!lock2.is_locked(), "the lock is free"))
    }));
}

type Pair = Arc<(Mutex<bool>, Condvar)>;

fn notify_all(pair: &Pair) -> bool {
    let mut g = pair.0.lock().unwrap();
    *g = true;
    pair.1.notify_all();
    drop(g);
    true
}

#[test]
fn condvar_wait_timeout() {
    table(Api::new("Condvar::wait_timeout", || {
        let pair: Pair = Arc::new((Mutex::new(false), Condvar::new()));
        let (p2, p3) = (pair.clone(), pair.clone());
        Case::new(
            move |d| {
                let g = pair.0.lock().unwrap();
                if *g {
                    return true;
                }
                let (g, r) = pair.1.wait_timeout(g, d).unwrap();
                if !r.timed_out() {
                    assert!(*g, "woken without a notification (nobody else notifies)");
                }
                !r.timed_out()
            },
            move || notify_all(&p2),
        )
        .check(move |_, _| {
            assert!(p3.0.try_lock().is_ok(), "the mutex is free");
        })
    }));
}

#[test]
fn condvar_wait_timeout_while() {
    table(Api::new("Condvar::wait_timeout_while", || {
        let pair: Pair = Arc::new((Mutex::new(false), Condvar::new()));
        let p2 = pair.clone();
        Case::new(
            move |d| {
                let g = pair.0.lock().unwrap();
                let (g, r) = pair.1.wait_timeout_while(g, d, |ready| !*ready).unwrap();
                assert_eq!(r.timed_out(), !*g, "timed_out() agrees with the condition");
                *g
            },
            move || notify_all(&p2),
        )
    }));
}

#[test]
fn queue_get_timeout() {
    table(Api::new("Queue::get_timeout", || {
        let q = Queue::<u32>::unbounded();
        let (q2, q3) = (q.clone(), q.clone());
        Case::new(
            move |d| match q.get_timeout(d) {
                Ok(7) => true,
                Err(GetTimeoutError::Timeout) => false,
                other => panic!("Queue::get_timeout gave {other:?}"),
            },
            move || {
                q2.put(7).unwrap();
                true
            },
        )
        .check(move |ok, _| {
            // The item was taken exactly once, or is still there.
            assert_eq!(q3.len(), usize::from(!ok), "items in the queue");
        })
    }));
}

#[test]
fn priority_queue_get_timeout() {
    table(Api::new("PriorityQueue::get_timeout", || {
        let q = PriorityQueue::<u32>::bounded(4);
        let (q2, q3) = (q.clone(), q.clone());
        Case::new(
            move |d| match q.get_timeout(d) {
                Ok(7) => true,
                Err(GetTimeoutError::Timeout) => false,
                other => panic!("PriorityQueue::get_timeout gave {other:?}"),
            },
            move || {
                q2.put(7).unwrap();
                true
            },
        )
        .check(move |ok, _| assert_eq!(q3.len(), usize::from(!ok), "items in the queue"))
    }));
}

#[test]
fn queue_put_timeout() {
    table(Api::new("Queue::put_timeout (full)", || {
        let q = Queue::<u32>::bounded(1);
        q.put(1).unwrap();
        let (q2, q3) = (q.clone(), q.clone());
        Case::new(
            move |d| match q.put_timeout(2, d) {
                Ok(()) => true,
                Err(PutTimeoutError::Timeout(2)) => false,
                other => panic!("Queue::put_timeout gave {other:?}"),
            },
            move || {
                assert_eq!(q2.get(), Ok(1));
                true
            },
        )
        .check(move |ok, _| {
            if ok {
                assert_eq!(q3.try_get(), Ok(2), "the item put");
            }
            assert!(q3.is_empty(), "nothing else in the queue");
        })
    }));
}

#[test]
fn queue_join_timeout() {
    table(Api::new("Queue::join_timeout", || {
        let q = Queue::<u32>::unbounded();
        q.put(1).unwrap();
        assert_eq!(q.get(), Ok(1));
        let q2 = q.clone();
        Case::new(
            move |d| q.join_timeout(d),
            move || {
                q2.task_done().unwrap();
                true
            },
        )
    }));
}

#[test]
fn channel_get_timeout_closed() {
    table(Api::new("Channel::get_timeout (closed)", || {
        let ch = Channel::<u32>::new();
        let ch2 = ch.clone();
        Case::new(
            move |d| match ch.get_timeout(d) {
                Err(GetTimeoutError::Closed) => true,
                Err(GetTimeoutError::Timeout) => false,
                other => panic!("Channel::get_timeout gave {other:?}"),
            },
            move || {
                ch2.close();
                true
            },
        )
    }));
}

#[test]
fn channel_get_timeout() {
    table(
        Api::new("Channel::get_timeout", || {
            let ch = Channel::<u32>::new();
            let (ch2, ch3) = (ch.clone(), ch.clone());
            let returned = Arc::new(AtomicBool::new(false));
            let handed = Arc::new(AtomicBool::new(false));
            let (returned2, handed2) = (returned.clone(), handed.clone());
            Case::new(
                move |d| {
                    let r = ch.get_timeout(d);
                    returned.store(true, Ordering::SeqCst);
                    match r {
                        Ok(7) => true,
                        Err(GetTimeoutError::Timeout) => false,
                        other => panic!("Channel::get_timeout gave {other:?}"),
                    }
                },
                // A hand-off to the waiting getter: `try_put` succeeds only while one waits.
                move || loop {
                    let last = returned2.load(Ordering::SeqCst);
                    if ch2.try_put(7).is_ok() {
                        handed2.store(true, Ordering::SeqCst);
                        return true;
                    }
                    if last {
                        return false;
                    }
                    pause();
                },
            )
            .check(move |ok, _| {
                // Handed over exactly once: to the getter, or still offered in the channel.
                match (ok, handed.load(Ordering::SeqCst)) {
                    (true, true) => assert!(ch3.try_get().is_err(), "a second item"),
                    (false, true) => assert_eq!(ch3.try_get(), Ok(7), "the item offered"),
                    (false, false) => {}
                    (true, false) => panic!("got an item nobody handed over"),
                }
            })
        })
        .modes(NO_READY),
    );
}

#[test]
fn channel_put_timeout() {
    table(
        Api::new("Channel::put_timeout", || {
            let ch = Channel::<u32>::new();
            let ch2 = ch.clone();
            let returned = Arc::new(AtomicBool::new(false));
            let taken = Arc::new(AtomicBool::new(false));
            let (returned2, taken2) = (returned.clone(), taken.clone());
            Case::new(
                move |d| {
                    let r = ch.put_timeout(2, d);
                    returned.store(true, Ordering::SeqCst);
                    match r {
                        Ok(()) => true,
                        Err(PutTimeoutError::Timeout(2)) => false,
                        other => panic!("Channel::put_timeout gave {other:?}"),
                    }
                },
                move || loop {
                    let last = returned2.load(Ordering::SeqCst);
                    if let Ok(v) = ch2.try_get() {
                        assert_eq!(v, 2);
                        taken2.store(true, Ordering::SeqCst);
                        return true;
                    }
                    if last {
                        return false;
                    }
                    pause();
                },
            )
            .check(move |ok, _| {
                // The put succeeded exactly when a getter took the item.
                assert_eq!(
                    ok,
                    taken.load(Ordering::SeqCst),
                    "put_timeout vs the getter"
                );
            })
        })
        .modes(NO_READY),
    );
}

#[test]
fn pool_join_timeout() {
    table(Api::new("Pool::join_timeout", || {
        let pool = greenlet::pool::Pool::new(2);
        let ev = Arc::new(Event::new());
        let ev2 = ev.clone();
        drop(pool.spawn(move || ev2.wait()));
        let (pool2, pool3) = (pool.clone(), pool.clone());
        Case::new(
            move |d| pool.join_timeout(d),
            move || {
                ev.set();
                pool2.join();
                true
            },
        )
        .check(move |_, _| assert!(pool3.is_empty()))
    }));
}

#[test]
fn task_join_timeout() {
    table(Api::new("threadpool::Task::join_timeout", || {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let task = Arc::new(greenlet::threadpool::spawn_blocking(move || {
            let _ = rx.recv();
        }));
        let task2 = task.clone();
        Case::new(
            move |d| {
                let ok = task.join_timeout(d);
                // As for `Greenlet::join_timeout`: only "true means finished" holds afterwards.
                assert!(
                    !ok || task.ready(),
                    "join_timeout said finished; ready() disagrees"
                );
                ok
            },
            move || {
                tx.send(()).unwrap();
                task2.join();
                true
            },
        )
    }));
}

/// The table for a read-side socket operation `$op` on `$c` with a read time-out: satisfied
/// by the peer writing a byte. (A macro: `Api::new` takes a plain `fn`, which cannot capture
/// the operation.)
macro_rules! tcp_read_table {
    ($name:expr, |$c:ident| $op:expr) => {
        table(
            Api::new($name, || {
                #[allow(unused_mut)]
                let (mut $c, mut s) = tcp_pair();
                Case::new(
                    move |d| {
                        $c.set_read_timeout(Some(d)).unwrap();
                        io_result($op)
                    },
                    move || {
                        s.write_all(b"x").unwrap();
                        true
                    },
                )
            })
            .no_zero(),
        )
    };
}

/// The table for a write `$op` on `$c` with a write time-out on a filled socket: the peer
/// draining it makes room, at a moment that is not visible from here.
macro_rules! tcp_write_table {
    ($name:expr, |$c:ident| $op:expr) => {
        table(
            Api::new($name, || {
                #[allow(unused_mut)]
                let (mut $c, mut s) = full_tcp_pair();
                Case::new(
                    move |d| {
                        $c.set_write_timeout(Some(d)).unwrap();
                        io_result($op)
                    },
                    move || {
                        drain(&mut s);
                        // Room frees up as the kernel moves data: not visible from here.
                        false
                    },
                )
            })
            .no_zero(),
        )
    };
}

#[test]
fn tcp_read_timeout() {
    tcp_read_table!("TcpStream::read (set_read_timeout)", |c| c
        .read(&mut [0; 8]));
}

#[test]
fn tcp_shared_read_timeout() {
    tcp_read_table!("&TcpStream::read (set_read_timeout)", |c| (&c)
        .read(&mut [0; 8]));
}

#[test]
fn tcp_peek_timeout() {
    tcp_read_table!("TcpStream::peek (set_read_timeout)", |c| c
        .peek(&mut [0; 8]));
}

#[test]
fn tcp_write_timeout() {
    tcp_write_table!("TcpStream::write (set_write_timeout)", |c| c
        .write(&[1; 1024]));
}

#[test]
fn tcp_shared_write_timeout() {
    tcp_write_table!("&TcpStream::write (set_write_timeout)", |c| (&c)
        .write(&[1; 1024]));
}

#[test]
fn tcp_connect_timeout() {
    table(
        Api::new("TcpStream::connect_timeout", || {
            let (full, full_addr, fillers) = full_backlog();
            let open = greenlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let open_addr = open.local_addr().unwrap();
            let target = Arc::new(StdMutex::new(full_addr));
            let target2 = target.clone();
            Case::new(
                move |d| {
                    let addr = *target.lock().unwrap();
                    let r = greenlet::net::TcpStream::connect_timeout(&addr, d);
                    drop((full, fillers, open));
                    match r {
                        Ok(_) => true,
                        Err(e) if e.kind() == ErrorKind::TimedOut => false,
                        Err(e) => panic!("connect_timeout: {e} ({:?})", e.kind()),
                    }
                },
                // Satisfied: connect to a listener with room instead.
                move || {
                    *target2.lock().unwrap() = open_addr;
                    true
                },
            )
        })
        .modes(READY_EXPIRES)
        .no_zero(),
    );
}

fn udp_pair() -> (greenlet::net::UdpSocket, greenlet::net::UdpSocket) {
    let a = greenlet::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = greenlet::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    b.connect(a.local_addr().unwrap()).unwrap();
    (a, b)
}

#[test]
fn udp_recv_from_timeout() {
    table(
        Api::new("UdpSocket::recv_from (set_read_timeout)", || {
            let (a, b) = udp_pair();
            let to = a.local_addr().unwrap();
            Case::new(
                move |d| {
                    a.set_read_timeout(Some(d)).unwrap();
                    io_result(a.recv_from(&mut [0; 8]).map(|(n, _)| n))
                },
                move || {
                    b.send_to(b"x", to).unwrap();
                    true
                },
            )
        })
        .no_zero(),
    );
}

#[test]
fn udp_recv_timeout() {
    table(
        Api::new("UdpSocket::recv (set_read_timeout)", || {
            let (a, b) = udp_pair();
            Case::new(
                move |d| {
                    a.set_read_timeout(Some(d)).unwrap();
                    io_result(a.recv(&mut [0; 8]))
                },
                move || {
                    b.send(b"x").unwrap();
                    true
                },
            )
        })
        .no_zero(),
    );
}

// ---- what the table cannot express ----

#[test]
fn zero_socket_timeouts_are_refused_as_std_does() {
    bounded("zero socket time-outs", WATCH, || {
        let (c, _s) = tcp_pair();
        let invalid = |r: std::io::Result<()>| r.unwrap_err().kind() == ErrorKind::InvalidInput;
        assert!(invalid(c.set_read_timeout(Some(Duration::ZERO))));
        assert!(invalid(c.set_write_timeout(Some(Duration::ZERO))));
        let u = greenlet::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(invalid(u.set_read_timeout(Some(Duration::ZERO))));
        let addr = c.local_addr().unwrap();
        let e = greenlet::net::TcpStream::connect_timeout(&addr, Duration::ZERO).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        // A refused zero leaves the previous time-out in place.
        c.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        assert!(c.set_read_timeout(Some(Duration::ZERO)).is_err());
        let t = Instant::now();
        assert!(!io_result((&c).read(&mut [0; 4])));
        assert_not_early(
            "read after a refused zero",
            Duration::from_millis(5),
            t.elapsed(),
        );
    });
}

#[test]
fn join_timeout_on_itself_sleeps_and_returns_false() {
    for d in DEADLINES {
        let name = format!("Greenlet::join_timeout on itself {}", name_of(d));
        let took = in_greenlet(&name, WATCH, move || {
            let me = greenlet::current().unwrap();
            let t = Instant::now();
            assert!(!me.join_timeout(d));
            t.elapsed()
        });
        assert_not_early(&name, d, took);
        assert_not_late(&name, d, took);
    }
}

#[test]
fn timeout_on_a_plain_thread_only_tracks_its_deadline() {
    for d in DEADLINES {
        let name = format!("Timeout::start on a thread {}", name_of(d));
        let what = name.clone();
        bounded(&name, WATCH, move || {
            let start = Instant::now();
            let t = Timeout::start(d);
            assert_eq!(t.duration(), d);
            while !t.is_expired() {
                assert!(t.remaining() <= d);
                std::thread::yield_now();
            }
            assert_not_early(&what, d, start.elapsed());
            assert_eq!(t.remaining(), Duration::ZERO);
            // Nothing was armed: the thread's later waits are not interrupted.
            std::thread::sleep(Duration::from_millis(2));
            let q = Queue::<u8>::unbounded();
            assert!(q.get_timeout(Duration::from_millis(1)).is_err());
        });
    }
    bounded("Timeout::start(Duration::MAX) on a thread", WATCH, || {
        let t = Timeout::start(Duration::MAX);
        assert!(t.deadline().is_none());
        assert!(!t.is_expired());
        assert_eq!(t.remaining(), Duration::MAX);
    });
}

#[test]
fn no_deadline_timeout_guards_never_fire() {
    for d in [Duration::MAX, HUGE] {
        let name = format!("Timeout::start({}) in a greenlet", name_of(d));
        in_greenlet(&name, WATCH, move || {
            let g = greenlet::spawn(move || {
                let t = Timeout::start(d);
                assert!(!t.is_expired());
                greenlet::sleep(Duration::from_millis(20));
                drop(t);
                7
            });
            assert_eq!(g.get(), Ok(7));
        });
    }
}
