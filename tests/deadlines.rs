//! The symptoms of issue 13, as regression tests: timed waits that expire inside a greenlet
//! return (never hang, never early), timer wake-ups resume on a worker, huge durations mean
//! "no deadline", and kills through blocking destructors never abort. Every case is watched:
//! a hang fails with the case's name and `greenlet::dump()`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use greenlet::queue::Queue;
use greenlet::sync::Event;
use greenlet::{JoinError, Timeout};
use support::watchdog::{bounded, in_greenlet};

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Asserts a timed wait of `d` that expired took at least `d` and not much more.
fn assert_on_time(what: &str, d: Duration, took: Duration) {
    assert!(
        took >= d,
        "{what}: returned after {took:?}, before its {d:?} deadline"
    );
    assert!(
        took < d + ms(250),
        "{what}: returned after {took:?}, far after its {d:?} deadline"
    );
}

#[test]
fn bounded_queue_drain_with_get_timeout_finishes() {
    // 20 producers, 8 consumers looping on get_timeout(1 s): the consumers must see the
    // queue drain and time out, 10 rounds.
    for round in 0..10 {
        let got = bounded(
            &format!("drain round {round}"),
            Duration::from_secs(30),
            || {
                let q = Queue::bounded(16);
                let producers: Vec<_> = (0..20)
                    .map(|p| {
                        let q = q.clone();
                        greenlet::spawn(move || {
                            for i in 0..1_000 {
                                q.put(p * 1_000 + i).unwrap();
                            }
                        })
                    })
                    .collect();
                let consumers: Vec<_> = (0..8)
                    .map(|_| {
                        let q = q.clone();
                        greenlet::spawn(move || {
                            let mut n = 0u32;
                            while q.get_timeout(ms(200)).is_ok() {
                                n += 1;
                            }
                            n
                        })
                    })
                    .collect();
                greenlet::joinall(producers);
                greenlet::joinall(consumers)
                    .into_iter()
                    .map(Result::unwrap)
                    .sum::<u32>()
            },
        );
        assert_eq!(got, 20_000, "round {round}: every item consumed once");
    }
}

#[test]
fn unbounded_get_timeout_in_a_greenlet_returns() {
    let took = in_greenlet("Queue::get_timeout(100 ms)", Duration::from_secs(5), || {
        let q = Queue::<u8>::unbounded();
        let t = Instant::now();
        assert!(q.get_timeout(ms(100)).is_err());
        t.elapsed()
    });
    assert_on_time("Queue::get_timeout", ms(100), took);
}

#[test]
fn sub_millisecond_and_zero_waits_return_inside_a_greenlet() {
    for d in [us(0), us(1), us(200), us(999), us(1000), us(1500)] {
        let name = format!("Event::wait_timeout({d:?})");
        let took = in_greenlet(&name, Duration::from_secs(5), move || {
            let e = Event::new();
            let t = Instant::now();
            assert!(!e.wait_timeout(d));
            t.elapsed()
        });
        assert_on_time(&name, d, took);
    }
}

#[test]
fn zero_join_timeout_and_zero_with_timeout_return() {
    in_greenlet("join_timeout(ZERO)", Duration::from_secs(5), || {
        let sleeper = greenlet::spawn(|| greenlet::sleep(Duration::from_secs(60)));
        assert!(!sleeper.join_timeout(Duration::ZERO));
        assert!(sleeper.kill());
    });
    let took = in_greenlet("with_timeout(ZERO)", Duration::from_secs(5), || {
        let t = Instant::now();
        let r = greenlet::with_timeout(Duration::ZERO, || greenlet::sleep(Duration::from_secs(2)));
        assert!(r.is_err());
        t.elapsed()
    });
    assert!(took < ms(500), "with_timeout(ZERO) took {took:?}");
}

#[test]
fn sub_millisecond_with_timeout_fires() {
    for d in [us(1), us(999), us(1500)] {
        let name = format!("with_timeout({d:?})");
        let took = in_greenlet(&name, Duration::from_secs(5), move || {
            let t = Instant::now();
            let r = greenlet::with_timeout(d, || greenlet::sleep(Duration::from_secs(1)));
            assert!(r.is_err(), "{d:?}: the time-out fired");
            t.elapsed()
        });
        assert_on_time(&format!("with_timeout({d:?})"), d, took);
    }
}

#[test]
fn huge_durations_mean_no_deadline() {
    in_greenlet("Duration::MAX", Duration::from_secs(10), || {
        let t = Instant::now();
        assert_eq!(greenlet::with_timeout(Duration::MAX, || 7), Ok(7));
        let r = greenlet::with_timeout(Duration::MAX, || {
            greenlet::sleep(ms(30));
            8
        });
        assert_eq!(r, Ok(8));
        let quick = greenlet::spawn(|| greenlet::sleep(ms(30)));
        assert!(quick.join_timeout(Duration::MAX));
        let forever = greenlet::spawn(|| greenlet::sleep(Duration::MAX));
        // Other timers keep working while a greenlet sleeps "forever".
        let other = greenlet::spawn(|| {
            let t = Instant::now();
            greenlet::sleep(ms(20));
            t.elapsed()
        });
        assert!(other.get().unwrap() < ms(500));
        assert!(!forever.join_timeout(ms(50)));
        assert!(forever.kill());
        assert!(!Event::new().wait_timeout(ms(1)));
        assert!(t.elapsed() < Duration::from_secs(5));
    });
}

/// Kills its child greenlet on drop: the usual structured-concurrency guard.
struct KillChild(Option<greenlet::Greenlet<()>>);

impl Drop for KillChild {
    fn drop(&mut self) {
        if let Some(g) = self.0.take() {
            g.kill();
        }
    }
}

#[test]
fn a_guard_that_kills_its_child_survives_a_kill() {
    for round in 0..200 {
        in_greenlet(
            &format!("kill guard {round}"),
            Duration::from_secs(10),
            move || {
                let child_dropped = Arc::new(AtomicBool::new(false));
                let flag = child_dropped.clone();
                let started = Arc::new(Event::new());
                let started2 = started.clone();
                let parent = greenlet::spawn(move || {
                    struct Mark(Arc<AtomicBool>);
                    impl Drop for Mark {
                        fn drop(&mut self) {
                            self.0.store(true, Ordering::SeqCst);
                        }
                    }
                    // Dropped when the child unwinds, or with its closure if it never ran.
                    let mark = Mark(flag);
                    let child = greenlet::spawn(move || {
                        let _m = mark;
                        greenlet::sleep(Duration::from_secs(60));
                    });
                    let _guard = KillChild(Some(child));
                    started2.set();
                    greenlet::sleep(Duration::from_secs(60));
                });
                // Odd rounds kill at once (often before the parent runs), even rounds once the
                // guard is in place.
                if round % 2 == 0 {
                    started.wait();
                }
                greenlet::sleep(us(round % 7 * 100));
                assert!(parent.kill());
                assert_eq!(parent.get(), Err(JoinError::Killed));
                if started.is_set() {
                    assert!(
                        child_dropped.load(Ordering::SeqCst),
                        "the child was killed too"
                    );
                }
            },
        );
    }
}

#[test]
fn destructors_block_normally_during_a_kill() {
    // Every blocking call of the crate, made from a destructor while its greenlet is killed
    // (and while its Timeout fires): works, never aborts.
    struct BlockOnDrop;
    impl Drop for BlockOnDrop {
        fn drop(&mut self) {
            greenlet::sleep(ms(2));
            greenlet::yield_now();
            let e = Arc::new(Event::new());
            let e2 = e.clone();
            let setter = greenlet::spawn(move || {
                greenlet::sleep(ms(1));
                e2.set();
            });
            assert!(e.wait_timeout(Duration::from_secs(5)));
            setter.join();
            assert_eq!(greenlet::spawn(|| 5).get(), Ok(5));
            let q = Queue::<u8>::unbounded();
            assert!(q.get_timeout(us(500)).is_err());
            let m = greenlet::sync::Mutex::new(1);
            *m.lock().unwrap() += 1;
            let pair = Arc::new((
                greenlet::sync::Mutex::new(false),
                greenlet::sync::Condvar::new(),
            ));
            let p2 = pair.clone();
            let notifier = greenlet::spawn(move || {
                greenlet::sleep(ms(1));
                *p2.0.lock().unwrap() = true;
                p2.1.notify_all();
            });
            let guard = pair.0.lock().unwrap();
            let (guard, _) = pair
                .1
                .wait_timeout_while(guard, Duration::from_secs(5), |ready| !*ready)
                .unwrap();
            assert!(*guard);
            drop(guard);
            notifier.join();
            let other = greenlet::spawn(|| greenlet::sleep(Duration::from_secs(60)));
            assert!(other.kill());
            assert!(greenlet::with_timeout(ms(1), || greenlet::sleep(ms(100))).is_err());
        }
    }
    for round in 0..50 {
        in_greenlet(
            &format!("blocking drop, kill {round}"),
            Duration::from_secs(20),
            || {
                let g = greenlet::spawn(|| {
                    let _b = BlockOnDrop;
                    greenlet::sleep(Duration::from_secs(60));
                });
                greenlet::sleep(ms(1));
                assert!(g.kill());
                assert_eq!(g.get(), Err(JoinError::Killed));
            },
        );
        in_greenlet(
            &format!("blocking drop, Timeout {round}"),
            Duration::from_secs(20),
            || {
                let g = greenlet::spawn(|| {
                    let _t = Timeout::start(ms(2));
                    let _b = BlockOnDrop;
                    greenlet::sleep(Duration::from_secs(60));
                });
                assert_eq!(g.get(), Err(JoinError::TimedOut));
            },
        );
    }
}

#[test]
fn link_and_error_from_several_threads_on_a_finishing_greenlet() {
    use std::sync::atomic::AtomicUsize;
    for round in 0..300 {
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = calls.clone();
        bounded(
            &format!("links {round}"),
            Duration::from_secs(10),
            move || {
                let g = Arc::new(greenlet::spawn(move || -> Result<(), String> {
                    greenlet::yield_now();
                    Err::<(), _>("boom".into())
                }));
                let threads: Vec<_> = (0..4)
                    .map(|_| {
                        let g = g.clone();
                        let calls = c2.clone();
                        std::thread::spawn(move || {
                            g.link(move |r| {
                                assert!(matches!(r, Ok(Err(_))));
                                calls.fetch_add(1, Ordering::SeqCst);
                            });
                            g.join();
                            assert!(g.ready());
                            assert!(g.error().is_none(), "the body returned a value (an Err)");
                        })
                    })
                    .collect();
                for t in threads {
                    t.join().unwrap();
                }
            },
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            4,
            "round {round}: every link ran"
        );
    }
    // A failed greenlet's error stays visible while links run.
    bounded("error while linking", Duration::from_secs(10), || {
        let g = Arc::new(greenlet::spawn(|| -> u8 { panic!("bad") }));
        g.join();
        let g2 = g.clone();
        let t = std::thread::spawn(move || {
            g2.link(|_| std::thread::sleep(ms(50)));
        });
        std::thread::sleep(ms(10));
        assert!(matches!(g.error(), Some(JoinError::Panicked(_))));
        t.join().unwrap();
    });
}

#[test]
fn socket_read_timeouts_are_never_early_and_never_forever() {
    use std::io::Read;
    for d in [us(1), us(999), us(1500), ms(30)] {
        let name = format!("TcpStream read_timeout {d:?}");
        let took = in_greenlet(&name, Duration::from_secs(5), move || {
            let l = greenlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let mut c = greenlet::net::TcpStream::connect(addr).unwrap();
            let _server_side = l.accept().unwrap();
            c.set_read_timeout(Some(d)).unwrap();
            let t = Instant::now();
            let e = c.read(&mut [0; 8]).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
            t.elapsed()
        });
        assert_on_time(&name, d, took);
    }
    let l = greenlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c = greenlet::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    assert_eq!(
        c.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
}

#[test]
fn dump_names_what_a_greenlet_waits_on() {
    greenlet::track_waits(true);
    let q = Queue::<u8>::unbounded();
    let q2 = q.clone();
    let g = greenlet::Builder::new()
        .name("dump-me")
        .spawn(move || q2.get_timeout(Duration::from_secs(30)))
        .unwrap();
    let t = Instant::now();
    let info = loop {
        let d = greenlet::dump();
        let found = d.greenlets().iter().find(|i| i.id() == g.id()).cloned();
        if let Some(i) = found.filter(|i| i.waiting().is_some()) {
            break i;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "never seen parked:\n{d}"
        );
        std::thread::sleep(ms(1));
    };
    assert_eq!(info.name(), "dump-me");
    assert_eq!(info.state(), greenlet::GreenletState::Parked);
    let w = info.waiting().unwrap();
    assert_eq!(w.what(), "Queue::get");
    assert!(w.deadline().is_some());
    assert!(info.spawned_at().file().ends_with("deadlines.rs"));
    let text = greenlet::dump().to_string();
    assert!(
        text.contains("dump-me") && text.contains("Queue::get"),
        "{text}"
    );
    q.put(1).unwrap();
    let id = g.id();
    assert_eq!(g.get().unwrap(), Ok(1));
    assert!(!greenlet::dump().greenlets().iter().any(|i| i.id() == id));
}

#[test]
fn timers_fire_while_every_worker_runs_a_ping_pong() {
    use std::sync::atomic::AtomicBool;
    let (slept, waited) = bounded("ping-pong on every worker", Duration::from_secs(10), || {
        let ready = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let r1 = ready.clone();
        let sleeper = greenlet::spawn(move || {
            let t = Instant::now();
            r1.fetch_add(1, Ordering::SeqCst);
            greenlet::sleep(ms(50));
            t.elapsed()
        });
        let r2 = ready.clone();
        let waiter = greenlet::spawn(move || {
            let t = Instant::now();
            r2.fetch_add(1, Ordering::SeqCst);
            let _ = Queue::<u8>::unbounded().get_timeout(ms(60));
            t.elapsed()
        });
        // Both must have started (a new greenlet waits in a worker's inbox, which a worker
        // busy with a ping-pong does not read: docs/upstream.md, item 7).
        while ready.load(Ordering::SeqCst) < 2 {
            std::thread::sleep(ms(1));
        }
        std::thread::sleep(ms(2));
        let stop = Arc::new(AtomicBool::new(false));
        let mut pairs = Vec::new();
        for _ in 0..greenlet::settings().workers {
            let (a, b) = (Queue::<u32>::bounded(1), Queue::<u32>::bounded(1));
            let (a2, b2, stop2) = (a.clone(), b.clone(), stop.clone());
            pairs.push(greenlet::spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    a2.put(1).unwrap();
                    let _ = b2.get();
                }
                a2.close();
            }));
            pairs.push(greenlet::spawn(move || {
                while a.get().is_ok() {
                    if b.put(1).is_err() {
                        break;
                    }
                }
            }));
        }
        std::thread::sleep(ms(400));
        let done = (sleeper.ready(), waiter.ready());
        stop.store(true, Ordering::Relaxed);
        greenlet::killall(&pairs);
        assert_eq!(done, (true, true), "timers fired while the ping-pongs ran");
        (sleeper.get().unwrap(), waiter.get().unwrap())
    });
    assert_on_time("sleep during ping-pongs", ms(50), slept);
    assert_on_time("get_timeout during ping-pongs", ms(60), waited);
}

#[test]
fn a_timeout_interrupts_a_loop_of_yield_now() {
    let r = bounded("Timeout vs yield_now loop", Duration::from_secs(10), || {
        let loops: Vec<_> = (0..greenlet::settings().workers)
            .map(|_| {
                greenlet::spawn(|| {
                    let _t = Timeout::start(ms(20));
                    loop {
                        greenlet::yield_now();
                    }
                })
            })
            .collect();
        greenlet::joinall(loops)
    });
    assert!(r.iter().all(|r| *r == Err(JoinError::TimedOut)), "{r:?}");
}

struct SleepOnDrop(Duration);

impl Drop for SleepOnDrop {
    fn drop(&mut self) {
        greenlet::sleep(self.0);
    }
}

#[test]
fn a_kill_or_timeout_during_a_panic_unwind_never_aborts() {
    for round in 0..20 {
        bounded(
            &format!("panic then kill {round}"),
            Duration::from_secs(10),
            || {
                let g = greenlet::spawn(|| {
                    let _d = SleepOnDrop(ms(30));
                    greenlet::sleep(ms(1));
                    panic!("ordinary panic");
                });
                greenlet::sleep(ms(10));
                assert!(g.kill_timeout(Duration::from_secs(5)));
                assert!(matches!(
                    g.get(),
                    Err(JoinError::Panicked(_)) | Err(JoinError::Killed)
                ));
            },
        );
        bounded(
            &format!("panic then Timeout {round}"),
            Duration::from_secs(10),
            || {
                let g = greenlet::spawn(|| {
                    let _t = Timeout::start(ms(5));
                    let _d = SleepOnDrop(ms(30));
                    greenlet::sleep(ms(1));
                    panic!("ordinary panic");
                });
                assert!(matches!(g.get(), Err(JoinError::Panicked(m)) if m == "ordinary panic"));
            },
        );
    }
}

#[test]
fn a_caught_kill_can_be_re_raised_with_is_kill() {
    bounded("catch_unwind + is_kill", Duration::from_secs(10), || {
        let g = greenlet::spawn(|| {
            loop {
                if let Err(unwind) = std::panic::catch_unwind(|| greenlet::sleep(ms(2))) {
                    assert!(greenlet::is_kill(&*unwind));
                    std::panic::resume_unwind(unwind);
                }
            }
        });
        greenlet::sleep(ms(10));
        assert!(g.kill());
        assert_eq!(g.get(), Err(JoinError::Killed));
    });
}
