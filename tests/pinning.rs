//! Issue 14: a greenlet never changes OS thread, whatever wakes it, so thread-locals, `Rc`s
//! and `MutexGuard`s held across a blocking point stay on the thread that made them. Each case
//! runs thousands of blocking points on the default configuration (two or more workers),
//! watched by the watchdog; on the code before issue 14, 8,028 of 8,250 such points resumed on
//! another thread.

mod support;

use std::cell::Cell;
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::ThreadId;
use std::time::Duration;

use greenlet::queue::Queue;
use greenlet::sync::Event;
use support::hostile::scaled;
use support::watchdog::bounded;

fn tid() -> ThreadId {
    std::thread::current().id()
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// What a case saw: blocking points checked, those that resumed on another thread (by kind),
/// and wake-ups that came from another thread than the woken greenlet's (so the case did
/// exercise cross-thread wake-ups).
#[derive(Default)]
struct Seen {
    checks: AtomicU64,
    moved: Vec<AtomicU64>,
    crossed: AtomicU64,
}

impl Seen {
    fn new(kinds: usize) -> Arc<Seen> {
        Arc::new(Seen {
            moved: (0..kinds).map(|_| AtomicU64::new(0)).collect(),
            ..Seen::default()
        })
    }

    /// A blocking point of kind `kind` that started on `before` now runs on this thread.
    fn check(&self, kind: usize, before: ThreadId) {
        self.checks.fetch_add(1, Ordering::Relaxed);
        if tid() != before {
            self.moved[kind].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The waker ran on `waker`, the woken greenlet on `woken`.
    fn woke(&self, waker: ThreadId, woken: ThreadId) {
        if waker != woken {
            self.crossed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn assert_none_moved(&self, case: &str, kinds: &[&str]) {
        let moved: Vec<_> = kinds
            .iter()
            .zip(&self.moved)
            .map(|(k, m)| (*k, m.load(Ordering::Relaxed)))
            .collect();
        let checks = self.checks.load(Ordering::Relaxed);
        eprintln!(
            "{case}: {checks} blocking points, moved {moved:?}, cross-thread wake-ups {}, \
             (migrations caught, hops) {:?}",
            self.crossed.load(Ordering::Relaxed),
            greenlet::__pinning_stats()
        );
        assert!(
            moved.iter().all(|(_, m)| *m == 0),
            "{case}: greenlets resumed on another thread: {moved:?} of {checks}"
        );
        assert!(checks > 0);
    }
}

thread_local! {
    static COUNTER: Cell<u64> = const { Cell::new(0) };
    static SHARED: Rc<Cell<u64>> = Rc::new(Cell::new(0));
}

/// The issue's case: a thread-local `Cell` borrowed across `yield_now`. The reference must
/// still be the running thread's own `Cell` after the yield.
#[test]
fn a_thread_local_held_across_a_yield_is_the_running_threads_own() {
    let (greenlets, rounds) = (200, scaled(200, 50));
    let foreign = bounded(
        "thread-local across yield_now",
        Duration::from_secs(60),
        move || {
            let foreign = Arc::new(AtomicU64::new(0));
            let gs: Vec<_> = (0..greenlets)
                .map(|_| {
                    let foreign = foreign.clone();
                    greenlet::spawn(move || {
                        for _ in 0..rounds {
                            COUNTER.with(|c| {
                                greenlet::yield_now();
                                if !COUNTER.with(|now| std::ptr::eq(c, now)) {
                                    foreign.fetch_add(1, Ordering::Relaxed);
                                }
                                for _ in 0..200 {
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
            foreign.load(Ordering::Relaxed)
        },
    );
    assert_eq!(
        foreign, 0,
        "closures used another thread's Cell after a yield"
    );
}

const KINDS: [&str; 10] = [
    "yield_now",
    "sleep (timer)",
    "Event set by another greenlet",
    "Event set by a plain thread",
    "Queue::get_timeout expiring (timer)",
    "Queue::get, put by a plain thread",
    "socket read, written by a plain thread",
    "socket read, written by another greenlet",
    "socket read time-out (timer)",
    "Timeout interrupting a sleep",
];

/// Every kind of wake-up: a yield, the timer, a notify from another greenlet (half of them on
/// another worker: spawns from `main` go round robin) and from a plain thread, a socket made
/// ready by a thread and by a greenlet, a socket time-out and a `Timeout`.
#[test]
fn every_kind_of_wake_up_resumes_on_the_greenlets_own_thread() {
    let seen = Seen::new(KINDS.len());
    let theirs = seen.clone();
    let (greenlets, rounds) = (100, scaled(10, 4));
    bounded(
        "every kind of wake-up",
        Duration::from_secs(120),
        move || {
            let gs: Vec<_> = (0..greenlets)
                .map(|i| {
                    let seen = theirs.clone();
                    greenlet::spawn(move || {
                        for round in 0..rounds {
                            one_of_each(&seen, (i * 7 + round) as u64);
                        }
                    })
                })
                .collect();
            for g in gs {
                g.get().unwrap();
            }
        },
    );
    seen.assert_none_moved("every kind of wake-up", &KINDS);
    assert!(
        seen.crossed.load(Ordering::Relaxed) > 0,
        "no wake-up came from another thread: the case tests nothing"
    );
}

fn one_of_each(seen: &Arc<Seen>, n: u64) {
    let t = tid();
    greenlet::yield_now();
    seen.check(0, t);

    greenlet::sleep(us(200 + n % 300));
    seen.check(1, t);

    // An event set by another greenlet, spawned from a plain thread: round robin, so on
    // another worker half of the time.
    let e = Arc::new(Event::new());
    let (e2, s2) = (e.clone(), seen.clone());
    let setter = std::thread::spawn(move || {
        greenlet::spawn(move || {
            greenlet::sleep(us(100));
            s2.woke(tid(), t);
            e2.set();
        })
    })
    .join()
    .unwrap();
    e.wait();
    seen.check(2, t);
    setter.join();

    let e = Arc::new(Event::new());
    let e2 = e.clone();
    let th = std::thread::spawn(move || {
        std::thread::sleep(us(100));
        e2.set();
    });
    e.wait();
    seen.check(3, t);
    seen.woke(th.thread().id(), t);
    th.join().unwrap();

    let q: Queue<u64> = Queue::unbounded();
    assert!(q.get_timeout(us(300)).is_err());
    seen.check(4, t);

    let q2 = q.clone();
    let th = std::thread::spawn(move || {
        std::thread::sleep(us(100));
        q2.put(1).unwrap();
    });
    assert_eq!(q.get(), Ok(1));
    seen.check(5, t);
    th.join().unwrap();

    let (mut a, mut b) = greenlet::net::UnixStream::pair().unwrap();
    let th = std::thread::spawn(move || {
        std::thread::sleep(us(100));
        a.write_all(b"x").unwrap();
        a
    });
    let mut buf = [0u8; 1];
    b.read_exact(&mut buf).unwrap();
    seen.check(6, t);
    let mut a = th.join().unwrap();

    let writer = std::thread::spawn(move || {
        greenlet::spawn(move || {
            greenlet::sleep(us(100));
            a.write_all(b"y").unwrap();
            a
        })
    })
    .join()
    .unwrap();
    b.read_exact(&mut buf).unwrap();
    seen.check(7, t);
    let a = writer.get().unwrap();

    b.set_read_timeout(Some(us(300))).unwrap();
    let e = b.read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    seen.check(8, t);
    drop(a);

    let r = greenlet::with_timeout(us(300), || greenlet::sleep(Duration::from_secs(10)));
    assert!(r.is_err());
    seen.check(9, t);
}

/// An `Rc` from a thread-local, held across socket reads woken by a plain thread and by
/// greenlets: after each read it is still the running thread's `Rc`.
#[test]
fn an_rc_from_a_thread_local_held_across_a_socket_read_stays_on_its_thread() {
    let seen = Seen::new(1);
    let theirs = seen.clone();
    let (greenlets, rounds) = (50, scaled(40, 10));
    bounded(
        "Rc across a socket read",
        Duration::from_secs(60),
        move || {
            let gs: Vec<_> = (0..greenlets)
                .map(|_| {
                    let seen = theirs.clone();
                    greenlet::spawn(move || {
                        let (a, mut b) = tcp_pair();
                        let a = Arc::new(a);
                        for round in 0..rounds {
                            let mine = SHARED.with(Rc::clone);
                            let before = tid();
                            let a2 = a.clone();
                            // The next round's writer must not overlap this one: two writes
                            // at once through `&TcpStream` fail with `ResourceBusy`.
                            let written = Arc::new(Event::new());
                            let done = written.clone();
                            let write = move || {
                                (&*a2).write_all(b"r").unwrap();
                                done.set();
                            };
                            if round % 2 == 0 {
                                std::thread::spawn(write);
                            } else {
                                std::thread::spawn(move || greenlet::spawn(write));
                            }
                            let mut buf = [0u8; 1];
                            b.read_exact(&mut buf).unwrap();
                            seen.check(0, before);
                            if !SHARED.with(|now| Rc::ptr_eq(&mine, now)) {
                                seen.moved[0].fetch_add(1, Ordering::Relaxed);
                            }
                            mine.set(mine.get() + 1);
                            written.wait();
                        }
                    })
                })
                .collect();
            for g in gs {
                g.get().unwrap();
            }
        },
    );
    seen.assert_none_moved("Rc across a socket read", &["socket read"]);
}

/// A connected pair of loopback TCP sockets, made in the calling greenlet.
fn tcp_pair() -> (greenlet::net::TcpStream, greenlet::net::TcpStream) {
    let l = greenlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = greenlet::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    (a, b)
}

/// A std `MutexGuard` (which must be unlocked on the thread that locked it) held across a
/// sleep and a yield.
#[test]
fn a_std_mutex_guard_held_across_a_sleep_is_released_on_its_thread() {
    let seen = Seen::new(1);
    let theirs = seen.clone();
    let (greenlets, rounds) = (100, scaled(40, 10));
    bounded(
        "MutexGuard across a sleep",
        Duration::from_secs(60),
        move || {
            let gs: Vec<_> = (0..greenlets)
                .map(|i| {
                    let seen = theirs.clone();
                    greenlet::spawn(move || {
                        let m = std::sync::Mutex::new(0u64);
                        for round in 0..rounds {
                            let mut guard = m.lock().unwrap();
                            let before = tid();
                            greenlet::sleep(us(100 + ((i * 13 + round) % 400) as u64));
                            greenlet::yield_now();
                            *guard += 1;
                            seen.check(0, before);
                            drop(guard);
                        }
                    })
                })
                .collect();
            for g in gs {
                g.get().unwrap();
            }
        },
    );
    seen.assert_none_moved("MutexGuard across a sleep", &["sleep + yield"]);
}

/// Records the thread its greenlet was on when made, and checks it again when dropped by a
/// kill's unwind.
struct Guard {
    made_on: ThreadId,
    seen: Arc<Seen>,
    kind: usize,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.seen.check(self.kind, self.made_on);
    }
}

/// Sets its flag when dropped (also by a kill's unwind).
struct StopOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Kills sent from a plain thread and from greenlets (on another worker half of the time),
/// and `Timeout`s, to greenlets parked in an `Event`, a socket read and a sleep: the unwind
/// (and the destructors it runs) stays on the greenlet's thread.
#[test]
fn kills_and_timeouts_unwind_on_the_greenlets_own_thread() {
    const WAITS: [&str; 3] = ["Event::wait", "socket read", "sleep"];
    let seen = Seen::new(WAITS.len());
    let theirs = seen.clone();
    let rounds = scaled(300, 60);
    bounded("kills and timeouts", Duration::from_secs(120), move || {
        for round in 0..rounds {
            let kind = round % WAITS.len();
            let seen = theirs.clone();
            let victim = greenlet::spawn(move || {
                let _guard = Guard {
                    made_on: tid(),
                    seen,
                    kind,
                };
                let _t = (round % 4 == 3).then(|| greenlet::Timeout::start(us(300)));
                match kind {
                    0 => Event::new().wait(),
                    1 => {
                        let (_a, mut b) = greenlet::net::UnixStream::pair().unwrap();
                        let _ = b.read(&mut [0u8; 1]);
                    }
                    _ => greenlet::sleep(Duration::from_secs(30)),
                }
            });
            greenlet::sleep(us(50 + round as u64 % 200));
            match round % 4 {
                0 => {
                    victim.kill();
                }
                1 => {
                    let v = victim.handle();
                    std::thread::spawn(move || v.kill()).join().unwrap();
                }
                2 => {
                    let v = victim.handle();
                    greenlet::spawn(move || v.kill()).join();
                }
                _ => {}
            }
            let _ = victim.get();
        }
    });
    seen.assert_none_moved("kills and timeouts", &WAITS);
}

/// Greenlets that loop on `yield_now` (the way to keep a computation killable), killed from a
/// plain thread and from greenlets: the unwind runs on the greenlet's own thread. (`yield_now`
/// parks about every millisecond to let its worker's inbox through; a kill sent from another
/// thread woke it there.)
#[test]
fn a_kill_during_a_loop_of_yield_now_unwinds_on_the_greenlets_own_thread() {
    let seen = Seen::new(1);
    let theirs = seen.clone();
    let rounds = scaled(150, 40);
    bounded(
        "kill vs yield_now loop",
        Duration::from_secs(120),
        move || {
            for round in 0..rounds {
                let seen = theirs.clone();
                let spinner = greenlet::spawn(move || {
                    // A neighbour on the same worker that computes 200 µs between yields keeps
                    // the inbox rounds of `yield_now` parked long enough for kills to land there.
                    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let halt = stop.clone();
                    let _neighbour = greenlet::spawn(move || {
                        while !halt.load(Ordering::Relaxed) {
                            let t = std::time::Instant::now();
                            while t.elapsed() < us(200) {
                                std::hint::spin_loop();
                            }
                            greenlet::yield_now();
                        }
                    });
                    let _stop = StopOnDrop(stop);
                    let _guard = Guard {
                        made_on: tid(),
                        seen,
                        kind: 0,
                    };
                    loop {
                        greenlet::yield_now();
                    }
                });
                std::thread::sleep(us(2000 + (round as u64 * 997) % 5000));
                if round % 2 == 0 {
                    spinner.kill();
                } else {
                    let v = spinner.handle();
                    greenlet::spawn(move || v.kill()).join();
                }
                assert!(spinner.get().is_err());
            }
        },
    );
    seen.assert_none_moved("kill vs yield_now loop", &["yield_now loop"]);
}

/// Pinning does not serialise CPU-bound work: greenlets spawned from a plain thread go round
/// robin over the workers, and each worker's thread runs some of them.
#[test]
fn cpu_bound_greenlets_spawned_from_main_use_every_worker() {
    let workers = greenlet::settings().workers;
    let threads = bounded("fan-out", Duration::from_secs(60), move || {
        let gs: Vec<_> = (0..8 * workers)
            .map(|_| {
                greenlet::spawn(|| {
                    let t = std::time::Instant::now();
                    let mut x = 0u64;
                    while t.elapsed() < Duration::from_millis(5) {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                    tid()
                })
            })
            .collect();
        let mut threads: Vec<_> = gs.into_iter().map(|g| g.get().unwrap()).collect();
        threads.sort_by_key(|t| format!("{t:?}"));
        threads.dedup();
        threads.len()
    });
    assert_eq!(
        threads, workers,
        "greenlets ran on {threads} of {workers} workers"
    );
}
