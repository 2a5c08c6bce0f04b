//! Keeping a greenlet on its own worker (issue 14): the map of worker threads (and the check,
//! at start, that may does not steal coroutines between them), the backstop that moves a
//! greenlet back to its worker when a switch resumed it elsewhere ([`stay_home`]), and
//! queueing a greenlet behind its worker's inbox when a loop of `yield_now` would starve the
//! inbox.
//!
//! may offers no way to queue an existing coroutine to a chosen worker, but it can spawn one
//! there (`Builder::id`), and an unpark made on a worker queues the unparked coroutine to that
//! worker's local queue. So to move, the greenlet parks and has its wake-up performed on the
//! wanted worker (a helper spawned there, or that worker's mailbox: `home`). An unpark that
//! comes before the park leaves the greenlet where it was: the callers check and try again.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::sync::lock;

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static THREAD: u64 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

/// A number for the calling OS thread. Not inlined: a greenlet may have changed thread since
/// its last call, and the thread-local's address must be computed afresh.
#[inline(never)]
pub(crate) fn thread_number() -> u64 {
    THREAD.with(|t| *t)
}

/// The workers' thread numbers, by may worker index (learned when the runtime starts).
static WORKERS: Mutex<Vec<(u64, usize)>> = Mutex::new(Vec::new());

/// Learns which thread is which worker: one helper queued to each worker reports its thread.
/// Called once, while the runtime starts.
///
/// # Panics
///
/// If may runs with its `work_steal` feature (another crate of the build depends on may with
/// its default features, and cargo unified them): greenlets could then not be pinned to their
/// worker, and the crate's soundness rests on it (issue 14). Or if a worker never answers.
pub(crate) fn learn_workers() {
    let workers = may::config().get_workers();
    let (tx, rx) = mpsc::channel();
    for index in 0..workers {
        let tx = tx.clone();
        crate::greenlet::spawn_on_worker(index, move || {
            super::home::set_worker(index);
            crate::greenlet::overflow::ensure_signal_stack();
            #[cfg(feature = "tokio")]
            crate::bridge::enter_on_worker();
            let _ = tx.send((thread_number(), index));
        });
    }
    drop(tx);
    let mut seen = Vec::new();
    while seen.len() < workers {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(pair) => seen.push(pair),
            Err(_) => break,
        }
    }
    let distinct = seen
        .iter()
        .all(|(t, _)| seen.iter().filter(|(u, _)| u == t).count() == 1);
    assert!(
        seen.len() == workers && distinct,
        "greenlet: may's workers did not each run the helper queued to them ({} of {workers} \
         answered, distinct: {distinct}); may's `work_steal` feature must be off",
        seen.len()
    );
    *lock(&WORKERS) = seen;
    if workers > 1 {
        assert!(
            !work_stealing(),
            "greenlet: may runs with its `work_steal` feature, which another crate of this build \
             enabled (a dependency on may with default features: use `default-features = \
             false`). Greenlets could change OS thread at any blocking point, which is unsound \
             (docs/soundness.md), so the runtime does not start."
        );
    }
}

/// Whether may steals queued coroutines between workers: a coroutine is queued on worker 1's
/// local queue while worker 1 computes for a few milliseconds and worker 0 is woken with
/// nothing to do; with stealing, worker 0 runs it.
fn work_stealing() -> bool {
    // A probe never sees stealing where there is none (every step is checked), but a
    // stealing build is not caught by every probe: up to three.
    (0..3).any(|_| steal_probe())
}

fn steal_probe() -> bool {
    let (tx, rx) = mpsc::channel();
    let (blocker_tx, blocker_rx) = mpsc::channel();
    // On worker 0: parks (on a coroutine blocker, made there), then reports the thread it was
    // resumed on.
    let started = crate::greenlet::spawn_on_worker(0, move || {
        let blocker = Arc::new(may::sync::Blocker::new(true));
        let _ = blocker_tx.send(blocker.clone());
        let _ = blocker.park(None);
        let _ = tx.send(thread_number());
    });
    if !started {
        return false;
    }
    let Ok(blocker) = blocker_rx.recv_timeout(Duration::from_secs(60)) else {
        return false;
    };
    // Wait until it has parked (an unpark before the park would resume it in place, on
    // worker 0: a false verdict). Worker 0 runs this second coroutine only once the first
    // has switched out, which it does only by parking.
    let (parked_tx, parked_rx) = mpsc::channel();
    if !crate::greenlet::spawn_on_worker(0, move || {
        let _ = parked_tx.send(thread_number());
    }) {
        return false;
    }
    match parked_rx.recv_timeout(Duration::from_secs(60)) {
        // A coroutine queued to worker 0 ran elsewhere: stolen.
        Ok(ran_on) if worker_of(ran_on) != Some(0) => return true,
        Ok(_) => {}
        Err(_) => return false,
    }
    let (busy_tx, busy_rx) = mpsc::channel();
    // On worker 1: queues it on worker 1's local queue, then computes without yielding.
    let unparker = crate::greenlet::spawn_on_worker(1, move || {
        blocker.unpark();
        let _ = busy_tx.send(thread_number());
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(2) {
            std::hint::spin_loop();
        }
    });
    if !unparker {
        return false;
    }
    let Ok(busy) = busy_rx.recv_timeout(Duration::from_secs(60)) else {
        return false;
    };
    if worker_of(busy) != Some(1) {
        // Queued to worker 1, run elsewhere: stolen.
        return true;
    }
    // Wake worker 0 with nothing to do, again and again while worker 1 computes: a stealing
    // worker then takes from worker 1.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(2) {
        crate::greenlet::spawn_on_worker(0, || ());
        match rx.recv_timeout(Duration::from_micros(200)) {
            Ok(resumed_on) => return resumed_on != busy,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return false,
        }
    }
    rx.recv_timeout(Duration::from_secs(60))
        .is_ok_and(|resumed_on| resumed_on != busy)
}

/// The may worker index of thread `thread`, if it is a worker.
pub(crate) fn worker_of(thread: u64) -> Option<usize> {
    lock(&WORKERS)
        .iter()
        .find(|(t, _)| *t == thread)
        .map(|(_, i)| *i)
}

/// One round: parks the greenlet and has the first helper to run on one of `targets` unpark
/// it. Returns `false` if no helper could be spawned (nothing parked).
fn round(targets: impl Iterator<Item = usize>) -> bool {
    let retire = crate::sync::waiters::Retire::new();
    let parked = retire.blocker();
    // 0: still spawning the helpers; 1: about to park; 2: a helper has taken the wake-up.
    let stage = Arc::new(AtomicU8::new(0));
    let mut queued = 0;
    for worker in targets {
        let (parked, stage) = (parked.clone(), stage.clone());
        let wake = move || {
            // Let the greenlet reach its park first (an unpark before it would not move it;
            // the caller then tries again), but never give the wake-up up.
            for _ in 0..1_000 {
                if stage.load(Ordering::Acquire) != 0 {
                    break;
                }
                may::coroutine::yield_now();
            }
            may::coroutine::yield_now();
            if stage.swap(2, Ordering::AcqRel) != 2 {
                parked.unpark();
            }
        };
        if crate::greenlet::spawn_on_worker(worker, wake) {
            queued += 1;
        }
    }
    if queued == 0 {
        return false;
    }
    stage.store(1, Ordering::Release);
    // A kill here is not acted on: may's flag stays set, and the greenlet's next blocking
    // point delivers it.
    let _ = parked.park(None);
    true
}

/// Moves the calling greenlet back to thread `home` (a worker), so that the unwind that
/// started there is caught there: std counts panics per OS thread, and a catch on another
/// thread would leave `home` counting one panic too many and the other one too few (wrapping
/// below zero), after which `thread::panicking()` is wrong on both. Best effort: gives up
/// after a few tries (a helper can be stolen by another worker).
#[cold]
pub(crate) fn to_thread(home: u64) {
    let Some(worker) = worker_of(home) else {
        return;
    };
    for _ in 0..8 {
        if thread_number() == home || !round(std::iter::once(worker)) {
            return;
        }
    }
}

/// Switches after which the greenlet resumed on another thread than it switched out on, and
/// the hops that took it back (issue 14).
pub(crate) static MIGRATIONS: AtomicU64 = AtomicU64::new(0);
pub(crate) static HOPS: AtomicU64 = AtomicU64::new(0);

/// After a switch that began on thread `home`: if the greenlet resumed on another thread,
/// takes it back before anything else runs (a greenlet never changes thread: issue 14).
#[inline]
pub(crate) fn stay_home(home: u64) {
    if thread_number() != home {
        return_home(worker_of(home));
    }
}

/// Takes the calling greenlet back to worker `worker` (its home), if it is not there. Each
/// round parks the greenlet and posts its wake-up to the home's mailbox, so that it resumes
/// there ([`home`](super::home)). It never returns on another thread.
///
/// - With no kill pending, the park is a `Blocker`'s (no descriptor needed).
/// - With a kill's cancel possibly set, a `Blocker` park would return at once (may reschedules
///   a cancelled coroutine where it is), so the round waits on a never-ready pipe instead:
///   `wait_io` clears may's flag, which is set again once home. A pipe whose waker did not end
///   its wait is not reused.
/// - Out of descriptors for such a pipe, it retries every millisecond, and after 10 s aborts
///   the process: running the greenlet on another thread would be undefined behaviour.
#[cold]
pub(crate) fn return_home(worker: Option<usize>) {
    use super::home::{self, Wake};
    MIGRATIONS.fetch_add(1, Ordering::Relaxed);
    let Some(worker) = worker else {
        foreign_for_good("its worker is unknown");
    };
    let mut cleared = false;
    let mut starved_since: Option<Instant> = None;
    let mut rounds = 0u32;
    while home::worker() != Some(worker) {
        HOPS.fetch_add(1, Ordering::Relaxed);
        rounds += 1;
        if rounds > 100_000 {
            // Each round's wake-up was performed here instead of at home (no mailbox, no
            // helper could be queued): it cannot go back.
            foreign_for_good("its worker's wake-ups cannot be delivered there");
        }
        if !crate::greenlet::kill::cancel_may_be_set() {
            let parked = crate::sync::waiters::Retire::new();
            home::wake_on(worker, Wake::Unpark(parked.blocker().clone()));
            // A kill sent meanwhile ends the park early (`Canceled`): the next round sees it.
            let _ = parked.blocker().park(None);
            continue;
        }
        let went = crate::greenlet::kill::with_spare_pipe(|pipe| {
            use may::io::WaitIo;
            home::wake_on(worker, Wake::Io(pipe.waker()));
            let flags = pipe.wait_io_anywhere();
            // A wait that returned at once for a pending cancel left may's result behind.
            let _ = generator::co_get_yield::<std::io::Error>();
            // Reusable only if the waker was the one that ended the wait.
            flags & crate::net::registered::WAKER_BIT != 0
        });
        if went.is_some() {
            cleared = true;
            starved_since = None;
            continue;
        }
        let since = *starved_since.get_or_insert_with(Instant::now);
        if since.elapsed() > Duration::from_secs(10) {
            foreign_for_good("no descriptor for a pipe could be had for 10 s");
        }
        if since.elapsed() < Duration::from_millis(2) {
            log::error!("out of descriptors while moving a killed greenlet back to its worker");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if cleared {
        crate::greenlet::kill::restore_cancel_after_hop();
    }
}

/// A greenlet resumed on another thread than its own and cannot be moved back: its code must
/// not run here (issue 14), and nothing else can be done with it.
#[cold]
fn foreign_for_good(why: &str) -> ! {
    log::error!("a greenlet resumed away from its worker and cannot go back ({why}); aborting");
    std::process::abort();
}

/// How long a worker may go on running `yield_now` loops before the yielding greenlet steps
/// behind the worker's inbox.
const INBOX_EVERY: Duration = Duration::from_millis(1);

thread_local! {
    /// Yields on this thread since the clock below was last read, and when the inbox was
    /// last let through.
    static YIELDS: Cell<u32> = const { Cell::new(0) };
    static INBOX_AT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// A `yield_now` in a greenlet: normally may's, which puts the greenlet back on its worker's
/// local queue. But a worker reads its inbox (new greenlets spawned from other threads,
/// greenlets woken from plain threads, the crate's timer helpers) only when that queue is
/// empty, which a loop of `yield_now` never lets happen (`docs/upstream.md`, item 7). So about
/// every millisecond of such yields the greenlet instead parks and has a helper queued to its
/// own worker's inbox wake it: the queue empties, the worker reads its inbox, and the greenlet
/// continues behind what was waiting there.
pub(crate) fn yield_now() {
    let home = thread_number();
    if inbox_due()
        && let Some(worker) = worker_of(home)
        && round(std::iter::once(worker))
    {
        // A kill sent from another thread during the round wakes the greenlet there.
        stay_home(home);
        return;
    }
    may::coroutine::yield_now();
    stay_home(home);
}

/// Whether the calling worker has run yields for [`INBOX_EVERY`] since its inbox was last let
/// through (the clock is read every 16 yields). Not inlined: thread-locals of the thread the
/// greenlet runs on now.
#[inline(never)]
fn inbox_due() -> bool {
    let n = YIELDS.with(|y| {
        let n = y.get().wrapping_add(1);
        y.set(n);
        n
    });
    if !n.is_multiple_of(16) {
        return false;
    }
    let now = Instant::now();
    INBOX_AT.with(|at| match at.get() {
        Some(t) if now.duration_since(t) < INBOX_EVERY => false,
        Some(_) => {
            at.set(Some(now));
            true
        }
        None => {
            at.set(Some(now));
            false
        }
    })
}
