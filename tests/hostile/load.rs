//! The load scenarios of `hostile_load.rs`, shared with `hostile_one_worker.rs`.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use crate::support::hostile::{Rng, assert_not_early, scaled, sleep_until, us};
use crate::support::ms;
use crate::support::watchdog::bounded;
use greenlet::queue::{GetTimeoutError, PutTimeoutError, Queue};
use greenlet::sync::Event;
use greenlet::{JoinError, Timeout};

pub const WATCH: Duration = Duration::from_secs(60);

/// How late a wait may return while thousands of timers fire on two cores (or one worker).
pub fn load_slack() -> Duration {
    if cfg!(debug_assertions) {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(500)
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Sleep,
    Event,
    Queue,
}

/// What one waiter of [`timed_waits`] saw.
#[derive(Debug)]
struct Waited {
    kind: Kind,
    d: Duration,
    ok: bool,
    took: Duration,
    /// Its start, and when its satisfier had finished, if it has one.
    start: Instant,
    satisfied: Option<Instant>,
}

/// `n` greenlets (and a few plain threads), each in one timed wait of 1–20 ms: `sleep`,
/// `Event::wait_timeout` or `Queue::get_timeout`. Half of the events and queues are satisfied
/// at a random instant of their wait (before or after the deadline). All return; none
/// reports a time-out early or a success it was not given; none is very late; one satisfied
/// before its deadline succeeds.
pub fn timed_waits(n: usize, seed: u64) {
    let name = format!("{n} timed waits (seed {seed})");
    let (worst, counts) = bounded(&name, WATCH, move || {
        let mut rng = Rng::new(seed);
        let mut waiters = Vec::with_capacity(n);
        let mut threads = Vec::new();
        for i in 0..n {
            let d = rng.between(ms(1), ms(20));
            let kind = match rng.below(3) {
                0 => Kind::Sleep,
                1 => Kind::Event,
                _ => Kind::Queue,
            };
            let satisfy_in = (!matches!(kind, Kind::Sleep) && rng.one_in(2))
                .then(|| rng.between(Duration::ZERO, d + ms(2)));
            let w = move || wait_one(kind, d, satisfy_in);
            // One in 100 waits on a plain thread.
            if i.is_multiple_of(100) {
                threads.push(std::thread::spawn(w));
            } else {
                waiters.push(greenlet::spawn(w));
            }
        }
        let mut all: Vec<Waited> = greenlet::joinall(waiters)
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("a waiter failed: {e}")))
            .collect();
        all.extend(threads.into_iter().map(|t| t.join().unwrap()));
        check_waits(&all)
    });
    eprintln!("{name}: latest return {worst:?} after a deadline; {counts:?}");
}

fn wait_one(kind: Kind, d: Duration, satisfy_in: Option<Duration>) -> Waited {
    let start = Instant::now();
    let done = Arc::new(StdMutex::new(None));
    let (ok, satisfier) = match kind {
        Kind::Sleep => {
            greenlet::sleep(d);
            (false, None)
        }
        Kind::Event => {
            let ev = Arc::new(Event::new());
            let satisfier = satisfy_in.map(|at| {
                let (ev, done) = (ev.clone(), done.clone());
                greenlet::spawn(move || {
                    sleep_until(start + at);
                    ev.set();
                    *done.lock().unwrap() = Some(Instant::now());
                })
            });
            (ev.wait_timeout(d), satisfier)
        }
        Kind::Queue => {
            let q = Queue::<u8>::bounded(1);
            let satisfier = satisfy_in.map(|at| {
                let (q, done) = (q.clone(), done.clone());
                greenlet::spawn(move || {
                    sleep_until(start + at);
                    q.put(1).unwrap();
                    *done.lock().unwrap() = Some(Instant::now());
                })
            });
            let ok = match q.get_timeout(d) {
                Ok(1) => true,
                Err(GetTimeoutError::Timeout) => false,
                other => panic!("get_timeout gave {other:?}"),
            };
            (ok, satisfier)
        }
    };
    let took = start.elapsed();
    if let Some(s) = satisfier {
        s.join();
    }
    let satisfied = *done.lock().unwrap();
    Waited {
        kind,
        d,
        ok,
        took,
        start,
        satisfied,
    }
}

/// Checks every wait; returns the latest return after a deadline and how many succeeded and
/// timed out.
fn check_waits(all: &[Waited]) -> (Duration, (usize, usize)) {
    let mut worst = Duration::ZERO;
    let (mut ok, mut timed_out) = (0, 0);
    for w in all {
        let what = format!("{:?} wait of {:?}", w.kind, w.d);
        if w.ok {
            ok += 1;
            let at = w.satisfied.expect("a success without a satisfier");
            // A success is never seen before it was given (the satisfier finished after
            // giving it, so only "not long before" can be checked: not before the start).
            assert!(at >= w.start, "{what}: satisfied before it started");
        } else {
            timed_out += 1;
            assert_not_early(&what, w.d, w.took);
            if let Some(at) = w.satisfied {
                assert!(
                    at >= w.start + w.d,
                    "{what}: satisfied {:?} into its wait, yet it timed out after {:?}",
                    at - w.start,
                    w.took
                );
            }
        }
        worst = worst.max(w.took.saturating_sub(w.d));
        assert!(
            w.took < w.d + load_slack(),
            "{what}: returned after {:?}",
            w.took
        );
    }
    (worst, (ok, timed_out))
}

/// Greenlets under a `Timeout` of 1–20 ms and `with_timeout` calls of 1–20 ms, `n` of each,
/// all at once: every one ends by its deadline, never before, with `TimedOut` / `Elapsed`.
pub fn timeouts(n: usize, seed: u64) {
    let name = format!("{n} Timeouts and with_timeouts (seed {seed})");
    bounded(&name, WATCH, move || {
        let mut rng = Rng::new(seed);
        let gs: Vec<_> = (0..n)
            .map(|i| {
                let d = rng.between(ms(1), ms(20));
                let unwound = Arc::new(StdMutex::new(None));
                let unwound2 = unwound.clone();
                let start = Instant::now();
                let g = greenlet::spawn(move || {
                    struct Stamp(Arc<StdMutex<Option<Instant>>>);
                    impl Drop for Stamp {
                        fn drop(&mut self) {
                            *self.0.lock().unwrap() = Some(Instant::now());
                        }
                    }
                    let _t = Timeout::start(d);
                    let _stamp = Stamp(unwound2);
                    if i.is_multiple_of(2) {
                        greenlet::sleep(Duration::from_secs(60));
                    } else {
                        Event::new().wait();
                    }
                });
                (g, d, start, unwound)
            })
            .collect();
        let calls: Vec<_> = (0..n)
            .map(|_| {
                let d = rng.between(ms(1), ms(20));
                greenlet::spawn(move || {
                    let t = Instant::now();
                    let r = greenlet::with_timeout(d, || greenlet::sleep(Duration::from_secs(60)));
                    (r.is_err(), d, t.elapsed())
                })
            })
            .collect();
        for (g, d, start, unwound) in gs {
            assert_eq!(g.get(), Err(JoinError::TimedOut));
            let took = unwound.lock().unwrap().expect("unwound") - start;
            assert_not_early("Timeout", d, took);
            assert!(
                took < d + load_slack(),
                "Timeout {d:?} fired after {took:?}"
            );
        }
        for c in calls {
            let (elapsed, d, took) = c.get().unwrap();
            assert!(elapsed, "with_timeout({d:?}) of a 60 s sleep returned Ok");
            assert_not_early("with_timeout", d, took);
            assert!(took < d + load_slack(), "with_timeout {d:?} took {took:?}");
        }
    });
}

/// 20 producers × 1,000 items into `Queue::bounded(16)`, 8 consumers looping on
/// `get_timeout` (short time-outs, retried), producers on `put_timeout` (retried with the
/// item they get back); in some rounds one or two consumers are killed. Every item is taken
/// exactly once and nothing hangs.
pub fn drain(round: u64) {
    const PRODUCERS: usize = 20;
    const ITEMS: usize = 1_000;
    const CONSUMERS: usize = 8;
    let name = format!("drain round {round}");
    let stats = bounded(&name, WATCH, move || {
        let mut rng = Rng::new(round);
        let q = Queue::<u32>::bounded(16);
        let seen: Arc<Vec<AtomicU8>> =
            Arc::new((0..PRODUCERS * ITEMS).map(|_| AtomicU8::new(0)).collect());
        let producing = Arc::new(AtomicUsize::new(PRODUCERS));
        let put_timeouts = Arc::new(AtomicUsize::new(0));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (q, producing, put_timeouts) =
                    (q.clone(), producing.clone(), put_timeouts.clone());
                let d = us(200 + 100 * p as u64);
                greenlet::spawn(move || {
                    for i in 0..ITEMS {
                        let mut item = (p * ITEMS + i) as u32;
                        loop {
                            match q.put_timeout(item, d) {
                                Ok(()) => break,
                                Err(PutTimeoutError::Timeout(back)) => {
                                    assert_eq!(back, item, "the item given back");
                                    put_timeouts.fetch_add(1, Ordering::Relaxed);
                                    item = back;
                                }
                                Err(e) => panic!("put_timeout: {e}"),
                            }
                        }
                    }
                    producing.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        let get_timeouts = Arc::new(AtomicUsize::new(0));
        let consumer = |c: usize| {
            let (q, seen, producing, get_timeouts) = (
                q.clone(),
                seen.clone(),
                producing.clone(),
                get_timeouts.clone(),
            );
            let d = us(300 + 400 * c as u64);
            move || {
                loop {
                    match q.get_timeout(d) {
                        // Counted before any blocking point: a kill cannot lose it.
                        Ok(item) => {
                            seen[item as usize].fetch_add(1, Ordering::SeqCst);
                        }
                        Err(GetTimeoutError::Timeout) => {
                            get_timeouts.fetch_add(1, Ordering::Relaxed);
                            if producing.load(Ordering::SeqCst) == 0 && q.is_empty() {
                                return;
                            }
                        }
                        Err(e) => panic!("get_timeout: {e}"),
                    }
                }
            }
        };
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|c| greenlet::spawn(consumer(c)))
            .collect();
        // A plain thread consumes too.
        let on_thread = std::thread::spawn(consumer(CONSUMERS));
        // Some rounds kill one or two consumers midway.
        let victims = rng.below(3) as usize;
        let mut killed = 0;
        for victim in consumers.iter().take(victims) {
            greenlet::sleep(rng.between(ms(1), ms(10)));
            if victim.kill() {
                killed += 1;
            }
        }
        for p in producers {
            p.get().unwrap();
        }
        for (i, c) in consumers.into_iter().enumerate() {
            match c.get() {
                Ok(()) => {}
                Err(JoinError::Killed) if i < victims => {}
                Err(e) => panic!("consumer {i}: {e}"),
            }
        }
        on_thread.join().unwrap();
        let wrong: Vec<_> = seen
            .iter()
            .enumerate()
            .filter(|(_, n)| n.load(Ordering::SeqCst) != 1)
            .map(|(i, n)| (i, n.load(Ordering::SeqCst)))
            .take(10)
            .collect();
        assert!(wrong.is_empty(), "items not taken exactly once: {wrong:?}");
        assert!(q.is_empty());
        (
            killed,
            put_timeouts.load(Ordering::Relaxed),
            get_timeouts.load(Ordering::Relaxed),
        )
    });
    eprintln!("{name}: (consumers killed, put time-outs, get time-outs) = {stats:?}");
}

/// `rounds` rounds of [`drain`].
pub fn drains(rounds: u64) {
    let t = Instant::now();
    for round in 0..rounds {
        drain(round);
    }
    eprintln!("{rounds} drain rounds in {:?}", t.elapsed());
}

/// A greenlet computes, calling `yield_now` every 200 µs (what the crate's docs recommend),
/// while a plain thread spawns 200–500 greenlets that sleep 1–20 ms: each returns within
/// the slack of its deadline, counted from its spawn (it must get to run, and its timer must
/// fire, beside the computing greenlet).
pub fn timers_beside_a_computing_greenlet(seed: u64) {
    let name = format!("timers beside a computing greenlet (seed {seed})");
    bounded(&name, WATCH, move || {
        let mut rng = Rng::new(seed);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let busy = greenlet::spawn(move || {
            // Yields now and then, so that one worker is enough for the others to run. Stops
            // by itself after 3 s, so that a failure here does not starve the other tests.
            let began = Instant::now();
            while !stop2.load(Ordering::Relaxed) && began.elapsed() < Duration::from_secs(3) {
                let t = Instant::now();
                while t.elapsed() < us(200) {
                    std::hint::spin_loop();
                }
                greenlet::yield_now();
            }
        });
        let sleepers: Vec<_> = (0..scaled(500, 200))
            .map(|_| {
                let d = rng.between(ms(1), ms(20));
                // From the spawn: a sleeper that cannot even start is late too.
                let t = Instant::now();
                greenlet::spawn(move || {
                    greenlet::sleep(d);
                    (d, t.elapsed())
                })
            })
            .collect();
        for s in sleepers {
            let (d, took) = s.get().unwrap();
            assert_not_early("sleep beside a computing greenlet", d, took);
            assert!(took < d + load_slack(), "sleep {d:?} took {took:?}");
        }
        stop.store(true, Ordering::Relaxed);
        busy.join();
    });
}
