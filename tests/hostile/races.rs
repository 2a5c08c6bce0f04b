//! The rounds of `hostile_races.rs`, shared with `hostile_one_worker.rs`: notify vs
//! time-out vs kill at the same instant, per primitive. Each `pub fn` runs its rounds and
//! checks that the races went both ways.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use crate::support::hostile::{
    CountDrop, Rng, assert_not_early, assert_not_late, scaled, sleep_until, us,
};
use crate::support::watchdog::bounded;
use greenlet::queue::{GetTimeoutError, Queue};
use greenlet::sync::{AsyncResult, Condvar, Event, Mutex, Semaphore};
use greenlet::threadpool::spawn_blocking;
use greenlet::{Greenlet, GreenletRef, JoinError, Timeout};

pub const WATCH: Duration = Duration::from_secs(30);

/// The waiters' deadline.
const D: Duration = Duration::from_millis(1);

/// A long deadline for the waiters that must be woken by a notification, not by it.
fn long() -> Duration {
    if greenlet::settings().workers == 1 {
        Duration::from_millis(800)
    } else {
        Duration::from_millis(600)
    }
}

/// A waiter with [`long`] woken later than this after the notification has lost it (on
/// one worker shared by every round of the batch and by the other tests, a fair wake-up can
/// take longer).
fn lost() -> Duration {
    // Generous (a debug build on a loaded 2-core machine woke one in 29-33 ms): a lost
    // wake-up shows as the long waiter's whole deadline.
    if greenlet::settings().workers == 1 {
        Duration::from_millis(400)
    } else {
        Duration::from_millis(250)
    }
}

/// Runs `total` rounds of `round`, `parallel` at a time, each in its own greenlet; a batch
/// that hangs fails with the greenlet dump.
fn rounds(name: &str, total: usize, parallel: usize, round: fn(u64)) {
    let t = Instant::now();
    for b in 0..total.div_ceil(parallel) {
        let batch = format!("{name}, batch {b}");
        bounded(&batch, WATCH, move || {
            let gs: Vec<_> = (0..parallel)
                .map(|i| {
                    let seed = (b * parallel + i) as u64;
                    greenlet::spawn(move || round(seed))
                })
                .collect();
            for (i, r) in greenlet::joinall(gs).into_iter().enumerate() {
                if let Err(e) = r {
                    panic!("round {}: {e}", b * parallel + i);
                }
            }
        });
    }
    eprintln!("{name}: {total} rounds in {:?}", t.elapsed());
}

/// A common start a little ahead, so that every participant of a round is in place.
fn base() -> Instant {
    Instant::now() + us(300)
}

/// Around `D` after `base`: the instant a notifier or a killer acts.
fn around_deadline(rng: &mut Rng, base: Instant) -> Instant {
    base + rng.between(D - us(200), D + us(200))
}

/// One round in three: a greenlet that kills `target` around the deadline.
fn maybe_kill(rng: &mut Rng, target: GreenletRef, base: Instant) -> Option<Greenlet<bool>> {
    rng.one_in(3).then(|| {
        let when = around_deadline(rng, base);
        at(when, move || target.kill())
    })
}

/// A greenlet that runs `f` at `when`.
fn at<T: Send + 'static>(when: Instant, f: impl FnOnce() -> T + Send + 'static) -> Greenlet<T> {
    greenlet::spawn(move || {
        sleep_until(when);
        f()
    })
}

/// Around `D` after `base`, later on average: for the deadlines that are kept by another
/// greenlet (`with_timeout`'s kill, `Timeout`'s timer), which strike a little after `D`.
fn after_deadline(rng: &mut Rng, base: Instant) -> Instant {
    base + rng.between(D - us(100), D + us(900))
}

/// What a timed waiter saw: whether it was satisfied, when it started, its time-out, how
/// long it took.
#[derive(Debug, Clone, Copy)]
struct Seen {
    ok: bool,
    start: Instant,
    d: Duration,
    took: Duration,
}

impl Seen {
    /// Runs the timed wait `f` with the time-out left until `deadline` (a common instant
    /// of the round, so that a late waiter does not move its deadline past the notifier's;
    /// a very late one gets a zero time-out).
    fn until(deadline: Instant, f: impl FnOnce(Duration) -> bool) -> Seen {
        let start = Instant::now();
        let d = deadline.saturating_duration_since(start);
        let ok = f(d);
        Seen {
            ok,
            start,
            d,
            took: start.elapsed(),
        }
    }

    /// The timed-wait contract for this wait, whose condition was made true at `at`.
    #[track_caller]
    fn check(&self, what: &str, at: Instant) {
        let d = self.d;
        if !self.ok {
            assert_not_early(what, d, self.took);
            assert!(
                at >= self.start + d,
                "{what}: satisfied {:?} into its {d:?} wait, yet it timed out",
                at.saturating_duration_since(self.start)
            );
        }
        assert_not_late(what, d, self.took);
    }
}

/// How the 1 ms waiters of one test ended, over all its rounds: each race must have gone
/// both ways (or the rounds did not race, and could not fail).
struct Tally {
    ok: AtomicUsize,
    timed_out: AtomicUsize,
    killed: AtomicUsize,
}

impl Tally {
    const fn new() -> Tally {
        Tally {
            ok: AtomicUsize::new(0),
            timed_out: AtomicUsize::new(0),
            killed: AtomicUsize::new(0),
        }
    }

    fn seen(&self, ok: bool) {
        let n = if ok { &self.ok } else { &self.timed_out };
        n.fetch_add(1, Ordering::Relaxed);
    }

    fn killed(&self) {
        self.killed.fetch_add(1, Ordering::Relaxed);
    }

    #[track_caller]
    fn assert_raced(&self, what: &str, kills: bool) {
        let (ok, timed_out, killed) = (
            self.ok.load(Ordering::Relaxed),
            self.timed_out.load(Ordering::Relaxed),
            self.killed.load(Ordering::Relaxed),
        );
        eprintln!("{what}: {ok} satisfied, {timed_out} timed out, {killed} killed");
        if std::env::var_os("GREENLET_TEST_SANITIZER").is_some() {
            // Under AddressSanitizer (`.ci/asan`, for heap checks) everything runs many times
            // slower, and whole runs of rounds can miss their 1 ms window: the rounds' own
            // checks still hold, the coverage of both outcomes is left to the plain runs.
            return;
        }
        assert!(
            ok > 0 && timed_out > 0 && (!kills || killed > 0),
            "{what}: the rounds did not race ({ok} satisfied, {timed_out} timed out, \
             {killed} killed)"
        );
    }
}

/// The result of a waiter that may have been killed, checked against its killer's `kill()`.
#[track_caller]
fn killed_or<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, JoinError>,
    kill: Option<bool>,
) -> Option<T> {
    match (r, kill) {
        (Ok(v), None | Some(false)) => Some(v),
        (Err(JoinError::Killed), Some(true)) => None,
        (r, kill) => panic!("{what}: result {r:?} with kill() = {kill:?}"),
    }
}

// ---- notify vs time-out vs kill, per primitive ----

fn event_round(seed: u64) {
    let mut rng = Rng::new(seed);
    let ev = Arc::new(Event::new());
    let base = base();
    let waiter = |d: Duration| {
        let ev = ev.clone();
        at(base, move || Seen::until(base + d, |d| ev.wait_timeout(d)))
    };
    let (w1, w2, w_long) = (waiter(D), waiter(D), waiter(long()));
    // One round in 8, a plain thread waits too.
    let on_thread = rng.one_in(8).then(|| {
        let ev = ev.clone();
        spawn_blocking(move || {
            sleep_until(base);
            Seen::until(base + D, |d| ev.wait_timeout(d))
        })
    });
    let set_at = around_deadline(&mut rng, base);
    let setter = {
        let ev = ev.clone();
        at(set_at, move || {
            ev.set();
            Instant::now()
        })
    };
    let killer = maybe_kill(&mut rng, w1.handle(), base);
    let set = setter.get().unwrap();
    let kill = killer.map(|k| k.get().unwrap());
    match killed_or("Event waiter 1", w1.get(), kill) {
        Some(s) => {
            s.check("Event waiter 1", set);
            EVENT.seen(s.ok);
        }
        None => EVENT.killed(),
    }
    let s2 = w2.get().unwrap();
    s2.check("Event waiter 2", set);
    EVENT.seen(s2.ok);
    if let Some(t) = on_thread {
        t.get().unwrap().check("Event waiter on a thread", set);
    }
    let long = w_long.get().unwrap();
    assert!(long.ok, "the long waiter missed the set");
    assert!(
        long.took < lost(),
        "the long waiter was woken late: {long:?}"
    );
    // A set event is seen by every later waiter, at once.
    assert!(ev.wait_timeout(Duration::ZERO));
}

static EVENT: Tally = Tally::new();

pub fn event_set_vs_timeout_vs_kill() {
    rounds("Event", scaled(5000, 3000), 32, event_round);
    EVENT.assert_raced("Event", true);
}

fn async_result_round(seed: u64) {
    let mut rng = Rng::new(seed);
    let ar = Arc::new(AsyncResult::<u64>::new());
    let base = base();
    let waiter = |d: Duration| {
        let ar = ar.clone();
        at(base, move || {
            let mut got = None;
            let s = Seen::until(base + d, |d| {
                got = ar.get_timeout(d);
                got.is_some()
            });
            if let Some(r) = got {
                assert_eq!(r.unwrap(), seed, "the value set");
            }
            s
        })
    };
    let (w1, w2, w_long) = (waiter(D), waiter(D), waiter(long()));
    let set_at = around_deadline(&mut rng, base);
    let setter = {
        let ar = ar.clone();
        at(set_at, move || {
            ar.set(seed);
            Instant::now()
        })
    };
    let killer = maybe_kill(&mut rng, w2.handle(), base);
    let set = setter.get().unwrap();
    let kill = killer.map(|k| k.get().unwrap());
    let s1 = w1.get().unwrap();
    s1.check("AsyncResult waiter 1", set);
    ASYNC_RESULT.seen(s1.ok);
    match killed_or("AsyncResult waiter 2", w2.get(), kill) {
        Some(s) => {
            s.check("AsyncResult waiter 2", set);
            ASYNC_RESULT.seen(s.ok);
        }
        None => ASYNC_RESULT.killed(),
    }
    let long = w_long.get().unwrap();
    assert!(long.ok && long.took < lost(), "the long waiter: {long:?}");
    assert_eq!(ar.try_get().map(Result::unwrap), Some(seed));
}

static ASYNC_RESULT: Tally = Tally::new();

pub fn async_result_set_vs_timeout_vs_kill() {
    rounds("AsyncResult", scaled(5000, 3000), 32, async_result_round);
    ASYNC_RESULT.assert_raced("AsyncResult", true);
}

fn queue_round(seed: u64) {
    let mut rng = Rng::new(seed);
    let q = if rng.one_in(2) {
        Queue::<u64>::unbounded()
    } else {
        Queue::bounded(2)
    };
    let items = 1 + rng.below(3);
    let taken = Arc::new(StdMutex::new(Vec::new()));
    let base = base();
    // Each consumer records an item as soon as `get_timeout` hands it over: no blocking point
    // in between, so a kill cannot lose it.
    let consumer = |d: Duration| {
        let (q, taken) = (q.clone(), taken.clone());
        at(base, move || {
            Seen::until(base + d, |d| match q.get_timeout(d) {
                Ok(item) => {
                    taken.lock().unwrap().push(item);
                    true
                }
                Err(GetTimeoutError::Timeout) => false,
                Err(e) => panic!("get_timeout: {e}"),
            })
        })
    };
    let (c1, c2) = (consumer(D), consumer(D));
    // The long consumer takes whatever is left, until the queue is closed.
    let drainer = {
        let (q, taken) = (q.clone(), taken.clone());
        at(base, move || {
            loop {
                match q.get_timeout(long()) {
                    Ok(item) => taken.lock().unwrap().push(item),
                    Err(GetTimeoutError::Closed) => return,
                    Err(e) => panic!("the drainer: {e}"),
                }
            }
        })
    };
    let put_at = around_deadline(&mut rng, base);
    let producer = {
        let q = q.clone();
        at(put_at, move || {
            for i in 0..items {
                q.put(seed * 10 + i).unwrap();
            }
            Instant::now()
        })
    };
    let killer = maybe_kill(&mut rng, c1.handle(), base);
    let put = producer.get().unwrap();
    let kill = killer.map(|k| k.get().unwrap());
    // Three takers for one to three items: a consumer may time out with items put before its
    // deadline (others took them), but never early.
    let c1 = killed_or("Queue consumer 1", c1.get(), kill);
    if c1.is_none() {
        QUEUE.killed();
    }
    for (what, s) in [
        ("Queue consumer 1", c1),
        ("Queue consumer 2", Some(c2.get().unwrap())),
    ] {
        if let Some(s) = s {
            if !s.ok {
                assert_not_early(what, s.d, s.took);
            }
            assert_not_late(what, s.d, s.took);
            QUEUE.seen(s.ok);
        }
    }
    // Everyone else is done: what is still queued must go to the drainer, promptly. An item
    // that stays while the drainer is parked is a lost wake-up. (Closing wakes everyone, so
    // only afterwards.)
    let waited = Instant::now();
    while !q.is_empty() && waited.elapsed() < lost() {
        greenlet::sleep(us(200));
    }
    let left_queued = q.len();
    q.close();
    drainer.get().unwrap();
    assert_eq!(
        left_queued,
        0,
        "items stayed queued for {:?} (put {:?} after the start) while the drainer was parked",
        lost(),
        put.saturating_duration_since(base)
    );
    let mut all = std::mem::take(&mut *taken.lock().unwrap());
    while let Ok(item) = q.try_get() {
        all.push(item);
    }
    all.sort_unstable();
    let expected: Vec<u64> = (0..items).map(|i| seed * 10 + i).collect();
    assert_eq!(all, expected, "every item taken exactly once");
}

static QUEUE: Tally = Tally::new();

pub fn queue_get_vs_timeout_vs_kill() {
    rounds("Queue", scaled(3000, 2000), 32, queue_round);
    QUEUE.assert_raced("Queue", true);
}

fn semaphore_round(seed: u64) {
    let mut rng = Rng::new(seed);
    let sem = Arc::new(Semaphore::new(0));
    let base = base();
    let acquirer = |d: Duration| {
        let sem = sem.clone();
        at(base, move || {
            let start = Instant::now();
            let d = (base + d).saturating_duration_since(start);
            let g = sem.acquire_timeout(d);
            let took = start.elapsed();
            let ok = g.is_some();
            // Held across a blocking point: a kill here unwinds and gives the permit back.
            greenlet::yield_now();
            drop(g);
            Seen { ok, start, d, took }
        })
    };
    let (w1, w2, w_long) = (acquirer(D), acquirer(D), acquirer(long()));
    let release_at = around_deadline(&mut rng, base);
    let releaser = {
        let sem = sem.clone();
        at(release_at, move || {
            sem.release();
            Instant::now()
        })
    };
    let killer = maybe_kill(&mut rng, w1.handle(), base);
    let released = releaser.get().unwrap();
    let kill = killer.map(|k| k.get().unwrap());
    let s1 = killed_or("Semaphore waiter 1", w1.get(), kill);
    let s2 = w2.get().unwrap();
    let long = w_long.get().unwrap();
    // With one permit for three, the 1 ms waiters may all miss it; the long one never does.
    for (what, s) in [("Semaphore waiter 1", s1), ("Semaphore waiter 2", Some(s2))] {
        if let Some(s) = s
            && !s.ok
        {
            assert_not_early(what, s.d, s.took);
        }
    }
    assert!(long.ok, "the long waiter never got the permit");
    assert!(
        long.start + long.took < released + lost(),
        "the long waiter got the permit {:?} after its release",
        (long.start + long.took).saturating_duration_since(released)
    );
    assert_eq!(sem.available_permits(), 1, "the one permit is back");
}

pub fn semaphore_release_vs_timeout_vs_kill() {
    rounds("Semaphore", scaled(5000, 3000), 32, semaphore_round);
}

fn join_round(seed: u64) {
    let mut rng = Rng::new(seed);
    let base = base();
    let links = Arc::new(AtomicUsize::new(0));
    let finish_at = around_deadline(&mut rng, base);
    let target = at(finish_at, move || seed);
    {
        let links = links.clone();
        target.link(move |_| {
            links.fetch_add(1, Ordering::SeqCst);
        });
    }
    let joiner = {
        let h = target.handle();
        at(base, move || {
            let s = Seen::until(base + D, |d| h.join_timeout(d));
            if s.ok {
                assert!(h.ready(), "join_timeout true but not ready");
            }
            s
        })
    };
    let on_thread = rng.one_in(8).then(|| {
        let h = target.handle();
        spawn_blocking(move || {
            sleep_until(base);
            Seen::until(base + D, |d| h.join_timeout(d))
        })
    });
    let killer = rng.one_in(2).then(|| {
        let (h, when) = (target.handle(), around_deadline(&mut rng, base));
        at(when, move || h.kill())
    });
    let s = joiner.get().unwrap();
    if !s.ok {
        assert_not_early("Greenlet::join_timeout", s.d, s.took);
    }
    assert_not_late("Greenlet::join_timeout", s.d, s.took);
    if let Some(t) = on_thread {
        let t = t.get().unwrap();
        if !t.ok {
            assert_not_early("join_timeout on a thread", t.d, t.took);
        }
    }
    let kill = killer.map(|k| k.get().unwrap());
    let r = target.get();
    // kill() is true exactly when the kill ended it: a lost kill is visible.
    match (kill, &r) {
        (None | Some(false), Ok(v)) => assert_eq!(*v, seed),
        (Some(true), Err(JoinError::Killed)) => {}
        _ => panic!("the target ended with {r:?}, kill() = {kill:?}"),
    }
    assert_eq!(links.load(Ordering::SeqCst), 1, "the link ran once");
}

pub fn greenlet_finish_vs_join_timeout_vs_kill() {
    rounds("Greenlet join", scaled(5000, 3000), 32, join_round);
}

type Pair = Arc<(Mutex<bool>, Condvar)>;

fn condvar_round(seed: u64) {
    condvar_round_with(seed, false);
}

fn condvar_round_with_kills(seed: u64) {
    condvar_round_with(seed, true);
}

fn condvar_round_with(seed: u64, kills: bool) {
    let mut rng = Rng::new(seed);
    let pair: Pair = Arc::new((Mutex::new(false), Condvar::new()));
    let base = base();
    let waiter = |d: Duration| {
        let pair = pair.clone();
        at(base, move || {
            Seen::until(base + d, |d| {
                let g = pair.0.lock().unwrap();
                let (g, r) = pair.1.wait_timeout_while(g, d, |ready| !*ready).unwrap();
                assert_eq!(r.timed_out(), !*g, "timed_out() agrees with the condition");
                *g
            })
        })
    };
    let (w1, w2, w_long) = (waiter(D), waiter(D), waiter(long()));
    let notify_at = around_deadline(&mut rng, base);
    let notifier = {
        let pair = pair.clone();
        at(notify_at, move || {
            let mut g = pair.0.lock().unwrap();
            *g = true;
            pair.1.notify_all();
            drop(g);
            Instant::now()
        })
    };
    let killer = (kills && rng.one_in(3)).then(|| {
        let (h, when) = (w1.handle(), around_deadline(&mut rng, base));
        at(when, move || h.kill())
    });
    let notified = notifier.get().unwrap();
    let kill = killer.map(|k| k.get().unwrap());
    if let Some(s) = killed_or("Condvar waiter 1", w1.get(), kill) {
        s.check("Condvar waiter 1", notified);
    }
    w2.get().unwrap().check("Condvar waiter 2", notified);
    let long = w_long.get().unwrap();
    assert!(long.ok && long.took < lost(), "the long waiter: {long:?}");
    assert!(pair.0.try_lock().is_ok(), "the mutex is free");
}

pub fn condvar_notify_all_vs_timeout() {
    rounds("Condvar", scaled(3000, 2000), 32, condvar_round);
}

/// The same with kills: a kill that lands while a waiter re-takes the mutex after its wait
/// breaks the mutex (see `hostile_kill::a_kill_while_a_condvar_waiter_retakes_its_mutex`),
/// and another waiter's *timed* wait then hangs for good (its deadline long passed; seen as
/// "parked in Condvar::wait for 29990 ms, deadline passed 29950 ms ago" in the dump).
pub fn condvar_notify_all_vs_timeout_vs_kill() {
    rounds(
        "Condvar with kills",
        scaled(3000, 2000),
        32,
        condvar_round_with_kills,
    );
}

fn with_timeout_round(seed: u64) {
    let mut rng = Rng::new(seed);
    let base = base();
    let finish_at = after_deadline(&mut rng, base);
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    sleep_until(base);
    let start = Instant::now();
    let d = (base + D).saturating_duration_since(start);
    let r = greenlet::with_timeout(d, move || {
        sleep_until(finish_at);
        done2.store(true, Ordering::SeqCst);
        seed
    });
    let took = start.elapsed();
    WITH_TIMEOUT.seen(r.is_ok());
    match r {
        Ok(v) => {
            assert_eq!(v, seed);
            assert!(
                done.load(Ordering::SeqCst),
                "Ok, yet the work did not finish"
            );
        }
        Err(_) => {
            assert_not_early("with_timeout", d, took);
            // The work has stopped when Elapsed is returned: it never finishes later.
            greenlet::sleep(us(500));
            assert!(
                !done.load(Ordering::SeqCst),
                "Elapsed, yet the work finished"
            );
        }
    }
    assert_not_late("with_timeout", d, took);
}

static WITH_TIMEOUT: Tally = Tally::new();

pub fn with_timeout_vs_work_finishing() {
    rounds("with_timeout", scaled(5000, 3000), 32, with_timeout_round);
    WITH_TIMEOUT.assert_raced("with_timeout", false);
}

fn timeout_guard_round(seed: u64) {
    let mut rng = Rng::new(seed);
    let base = base();
    let finish_at = after_deadline(&mut rng, base);
    let drops = Arc::new(AtomicUsize::new(0));
    let unwound_at = Arc::new(StdMutex::new(None));
    let started = Arc::new(StdMutex::new(None));
    let (unwound2, started2) = (unwound_at.clone(), started.clone());
    // Captured: dropped exactly once, however the greenlet ends (even killed before it ran).
    let counted = CountDrop(drops.clone());
    let g = greenlet::spawn(move || {
        struct Stamp(Arc<StdMutex<Option<Instant>>>);
        impl Drop for Stamp {
            fn drop(&mut self) {
                *self.0.lock().unwrap() = Some(Instant::now());
            }
        }
        let _counted = counted;
        sleep_until(base);
        let start = Instant::now();
        let d = (base + D).saturating_duration_since(start);
        *started2.lock().unwrap() = Some((start, d));
        let _t = Timeout::start(d);
        // Made before any blocking point under the Timeout: a TimedOut end passes here.
        let _stamp = Stamp(unwound2);
        sleep_until(finish_at);
        seed
    });
    let killer = maybe_kill(&mut rng, g.handle(), base);
    let r = g.get();
    let kill = killer.map(|k| k.get().unwrap());
    assert_eq!(drops.load(Ordering::SeqCst), 1, "destructors ran once");
    match (&r, kill) {
        (Ok(v), None | Some(false)) => {
            assert_eq!(*v, seed);
            TIMEOUT.seen(true);
        }
        (Err(JoinError::TimedOut), _) => {
            TIMEOUT.seen(false);
            let (start, d) = started.lock().unwrap().unwrap();
            let end = unwound_at.lock().unwrap().unwrap();
            assert_not_early("Timeout", d, end - start);
        }
        (Err(JoinError::Killed), Some(true)) => TIMEOUT.killed(),
        _ => panic!("the greenlet ended with {r:?}, kill() = {kill:?}"),
    }
    if kill == Some(true) {
        assert!(r.is_err(), "kill() true, yet the greenlet finished");
    }
}

static TIMEOUT: Tally = Tally::new();

pub fn timeout_guard_vs_work_finishing_vs_kill() {
    rounds("Timeout", scaled(5000, 3000), 32, timeout_guard_round);
    TIMEOUT.assert_raced("Timeout", true);
}

fn kill_once_round(seed: u64) {
    let mut rng = Rng::new(seed);
    let base = base();
    let drops = Arc::new(AtomicUsize::new(0));
    let guard = CountDrop(drops.clone());
    let with_timeout = rng.one_in(2);
    let g = greenlet::spawn(move || {
        let _guard = guard;
        let _t = with_timeout.then(|| Timeout::start(D));
        greenlet::sleep(Duration::from_secs(60));
    });
    let h = g.handle();
    let at1 = around_deadline(&mut rng, base);
    let at2 = around_deadline(&mut rng, base);
    let k1 = greenlet::spawn({
        let h = h.clone();
        move || {
            sleep_until(at1);
            h.kill()
        }
    });
    let k2 = spawn_blocking(move || {
        sleep_until(at2);
        h.kill()
    });
    let r = g.get();
    assert!(
        matches!(r, Err(JoinError::Killed | JoinError::TimedOut)),
        "{r:?}"
    );
    assert!(k1.get().unwrap(), "the kill from a greenlet ended it");
    assert!(k2.get().unwrap(), "the kill from a thread ended it");
    assert_eq!(drops.load(Ordering::SeqCst), 1, "unwound once");
}

pub fn kills_and_timeouts_at_once_are_delivered_once() {
    rounds("kill once", scaled(3000, 2000), 32, kill_once_round);
}

fn links_round(seed: u64) {
    let mut rng = Rng::new(seed);
    let calls: Arc<Vec<AtomicUsize>> = Arc::new((0..4).map(|_| AtomicUsize::new(0)).collect());
    let finish_in = rng.between(Duration::ZERO, us(300));
    let fail = rng.one_in(3);
    let target = Arc::new(greenlet::spawn(move || {
        greenlet::sleep(finish_in);
        if fail {
            panic!("boom");
        }
        seed
    }));
    let kill = rng.one_in(3).then(|| {
        let (h, when) = (
            target.handle(),
            Instant::now() + rng.between(us(0), us(300)),
        );
        at(when, move || h.kill())
    });
    let link = |i: usize, at: Instant| {
        let (target, calls) = (target.clone(), calls.clone());
        move || {
            sleep_until(at);
            target.link(move |r| {
                assert!(r.is_err() || *r == Ok(seed));
                calls[i].fetch_add(1, Ordering::SeqCst);
            });
            target.join();
            assert!(target.ready());
            // error() agrees with the result, also while other links hold it.
            let e = target.error();
            assert_eq!(e.is_some(), !target.successful());
        }
    };
    let now = Instant::now();
    let mut at = || now + rng.between(us(0), us(400));
    let threads = [spawn_blocking(link(0, at())), spawn_blocking(link(1, at()))];
    let gs = [
        greenlet::spawn(link(2, at())),
        greenlet::spawn(link(3, at())),
    ];
    for t in threads {
        t.get().unwrap();
    }
    for g in gs {
        g.get().unwrap();
    }
    let killed = kill.map(|k| k.get().unwrap());
    let target = Arc::into_inner(target).expect("every linker is done");
    let error = target.error();
    let r = target.get();
    assert_eq!(error, r.clone().err(), "error() is the result's error");
    match (&r, killed, fail) {
        (Ok(v), None | Some(false), false) => assert_eq!(*v, seed),
        (Err(JoinError::Panicked(m)), None | Some(false), true) => assert_eq!(m, "boom"),
        (Err(JoinError::Killed), Some(true), _) => {}
        _ => panic!("result {r:?}, kill() = {killed:?}, fail = {fail}"),
    }
    for (i, c) in calls.iter().enumerate() {
        assert_eq!(c.load(Ordering::SeqCst), 1, "link {i} ran once");
    }
}

pub fn links_from_threads_and_greenlets_on_a_finishing_greenlet() {
    rounds("links", scaled(3000, 2000), 16, links_round);
}
