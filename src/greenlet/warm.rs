//! Warm greenlets: a finished greenlet's coroutine, with its stack, waits parked on its
//! worker's shelf, and the next spawn onto that worker hands it the new greenlet's body
//! instead of making a coroutine (issue 18).
//!
//! - Every greenlet with the default stack size runs in a **carrier**: a may coroutine that
//!   runs one greenlet after another. Each greenlet's run ends by clearing what it left in
//!   the coroutine (its `CURRENT` entry, its greenlet-locals: `Inner::run`); the carrier then
//!   puts itself on its worker's shelf (newest last) and parks on its own blocker.
//! - A spawn takes the newest carrier of the target worker's shelf (its stack is the most
//!   likely still in cache), stores the body in it and unparks it: on the same worker that
//!   is a push onto may's local run queue, with no eventfd write and no stack to map; from
//!   elsewhere the wake-up goes through the worker's mailbox (`deadline::home`).
//! - A carrier is not reused after a greenlet that a kill or a time-out was sent to (may's
//!   cancel flag may be left set), whose clearing was not clean (a destructor panicked, or
//!   kept making greenlet-locals), or whose stack overflowed (its coroutine stays parked for
//!   good, `overflow`). It then ends, and may frees its stack.
//! - The shelves grow to the high-water mark of live greenlets (each carrier on a shelf was a
//!   live greenlet a moment ago), at most seven eighths of what `vm.max_map_count` allows; a
//!   spawn that finds no room for a new stack ends the idle carriers and tries again. A
//!   carrier left on a shelf for [`Config::keep_warm`](crate::Config::keep_warm) (10 s by
//!   default) is ended by the `greenlet-warm` thread, so memory follows the live count once
//!   the load has gone.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::deadline::{Parker, home, hop, retire};
use crate::sync::lock;

/// A greenlet's body as a carrier runs it; returns whether the carrier may be reused.
pub(super) type Job = Box<dyn FnOnce() -> bool + Send>;

/// A coroutine that runs greenlets one after another.
pub(super) struct Carrier {
    /// The next greenlet's body, stored by the spawner that took the carrier off its shelf.
    job: Mutex<Option<Job>>,
    /// Set by the sweeper: the carrier has been idle too long and ends.
    stop: AtomicBool,
    /// The carrier's own blocker: it parks there between greenlets.
    parker: Arc<Parker>,
}

impl Carrier {
    /// Runs `job` as the carrier's next greenlet (the carrier was taken off a shelf).
    pub(super) fn start(&self, job: Job) {
        *lock(&self.job) = Some(job);
        home::unpark(&self.parker);
    }

    /// Ends the carrier (taken off its shelf by the caller).
    fn finish(&self) {
        ENDING.fetch_add(1, Ordering::AcqRel);
        self.stop.store(true, Ordering::Release);
        home::unpark(&self.parker);
    }

    /// Parks until a spawner hands over a job (`Some`) or the sweeper ends the carrier. The
    /// carrier is on `shelf` while it waits.
    fn wait(self: &Arc<Self>, shelf: &Shelf) -> Option<Job> {
        let thread = hop::thread_number();
        loop {
            if let Some(job) = lock(&self.job).take() {
                return Some(job);
            }
            if self.stop.load(Ordering::Acquire) {
                return None;
            }
            // Nothing is parked forever by mistake: whoever stores the job or sets `stop`
            // unparks afterwards, and an unpark before the park is remembered by the park.
            let r = self.parker.park(None);
            hop::stay_home(thread);
            if let Err(e) = r {
                // A cancel (only may's own `cancel`, called directly, sends one to an idle
                // carrier) or a time-out (none is given): parking again would return at once.
                log::error!("an idle greenlet carrier was woken by {e:?}; it ends");
                return self.leave_shelf(shelf);
            }
        }
    }

    /// Takes the carrier off `shelf` to end it; `None` if that was done, or the job of the
    /// spawner that took it meanwhile (stored a few instructions after the take).
    fn leave_shelf(self: &Arc<Self>, shelf: &Shelf) -> Option<Job> {
        {
            let mut idle = lock(&shelf.idle);
            if let Some(i) = idle.iter().position(|(c, _)| Arc::ptr_eq(c, self)) {
                idle.remove(i);
                IDLE.fetch_sub(1, Ordering::Relaxed);
                return None;
            }
        }
        loop {
            if let Some(job) = lock(&self.job).take() {
                return Some(job);
            }
            if self.stop.load(Ordering::Acquire) {
                return None;
            }
            may::coroutine::yield_now();
        }
    }
}

/// One worker's idle carriers, oldest first, each with the sweep epoch it was shelved in.
struct Shelf {
    idle: Mutex<std::collections::VecDeque<(Arc<Carrier>, u64)>>,
}

static SHELVES: OnceLock<Vec<Shelf>> = OnceLock::new();

/// The sweeper's clock: advanced once per quarter of `keep_warm`.
static EPOCH: AtomicU64 = AtomicU64::new(0);
/// Set while the sweeper thread sleeps for good (all shelves were empty).
static SWEEPER_ASLEEP: AtomicBool = AtomicBool::new(false);
static SWEEPER: OnceLock<Option<std::thread::Thread>> = OnceLock::new();

/// How long an idle carrier is kept (0: carriers are not reused).
fn keep() -> Duration {
    crate::config::keep_warm()
}

/// Idle carriers on all shelves.
static IDLE: AtomicUsize = AtomicUsize::new(0);

/// Most idle carriers in all: seven eighths of the greenlets the mapping limit allows (two
/// mappings each), so that some room always stays for other mappings (heap arenas, threads).
/// Each carrier on a shelf was a live greenlet a moment ago, so this only bites past that
/// many live at once. (A spawn that finds no room for a stack ends the idle carriers and
/// tries again: [`release_idle`].)
fn idle_cap() -> usize {
    static CAP: OnceLock<usize> = OnceLock::new();
    *CAP.get_or_init(|| {
        let allowed =
            crate::config::max_map_count().map_or(usize::MAX, crate::config::greenlets_allowed);
        (allowed - allowed / 8).max(1)
    })
}

fn shelves() -> &'static [Shelf] {
    SHELVES.get_or_init(|| {
        (0..may::config().get_workers().max(1))
            .map(|_| Shelf {
                idle: Mutex::new(Default::default()),
            })
            .collect()
    })
}

/// Takes the newest idle carrier of worker `home`, or, when `elsewhere` allows it and `home`
/// has none, of the next worker that has one. Returns the carrier and its worker.
pub(super) fn take(home: usize, elsewhere: bool) -> Option<(usize, Arc<Carrier>)> {
    let shelves = shelves();
    let tries = if elsewhere { shelves.len() } else { 1 };
    (0..tries).find_map(|i| {
        let at = (home + i) % shelves.len();
        let c = lock(&shelves[at].idle).pop_back()?.0;
        IDLE.fetch_sub(1, Ordering::Relaxed);
        Some((at, c))
    })
}

/// Carriers told to end ([`Carrier::finish`]) that have not ended yet.
static ENDING: AtomicUsize = AtomicUsize::new(0);

/// The body of every carrier's coroutine: runs `first`, then the greenlets spawners hand it,
/// until one leaves it unfit for reuse or it stays idle too long. Runs on worker `home`.
pub(super) fn carry(home: usize, first: impl FnOnce() -> bool) {
    if !first() || keep().is_zero() {
        return;
    }
    let Some(shelf) = shelves().get(home) else {
        return;
    };
    let me = Arc::new(Carrier {
        job: Mutex::new(None),
        stop: AtomicBool::new(false),
        parker: Arc::new(Parker::new()),
    });
    loop {
        if IDLE.fetch_add(1, Ordering::Relaxed) >= idle_cap() {
            IDLE.fetch_sub(1, Ordering::Relaxed);
            break;
        }
        lock(&shelf.idle).push_back((me.clone(), EPOCH.load(Ordering::Relaxed)));
        wake_sweeper();
        match me.wait(shelf) {
            Some(job) => {
                if !job() {
                    break;
                }
            }
            None => break,
        }
    }
    if me.stop.load(Ordering::Acquire) {
        ENDING.fetch_sub(1, Ordering::AcqRel);
    }
    // The blocker is dropped on a plain thread (`deadline::reaper`); the shelf no longer
    // holds this carrier (a carrier is taken off before it is started or stopped).
    let parker = me.parker.clone();
    drop(me);
    retire(parker);
}

/// Ends every idle carrier and waits, at most `bound`, until they have ended and may has
/// unmapped their stacks. For a spawn that found no room for a new stack. Returns how many
/// were ended.
pub(super) fn release_idle(bound: Duration) -> usize {
    let Some(shelves) = SHELVES.get() else {
        return 0;
    };
    let idle: Vec<_> = shelves
        .iter()
        .flat_map(|s| std::mem::take(&mut *lock(&s.idle)))
        .collect();
    IDLE.fetch_sub(idle.len(), Ordering::Relaxed);
    for (c, _) in &idle {
        c.finish();
    }
    let end = std::time::Instant::now() + bound;
    while ENDING.load(Ordering::Acquire) > 0 && std::time::Instant::now() < end {
        crate::sleep(Duration::from_millis(1));
    }
    idle.len()
}

/// Starts the sweeper thread if needed, or wakes it from its sleep for good.
fn wake_sweeper() {
    let sweeper = SWEEPER.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("greenlet-warm".into())
            .spawn(sweep);
        match spawned {
            Ok(h) => Some(h.thread().clone()),
            Err(e) => {
                log::warn!("cannot start the greenlet-warm thread ({e}); idle greenlets stay");
                None
            }
        }
    });
    if SWEEPER_ASLEEP.load(Ordering::Relaxed)
        && SWEEPER_ASLEEP.swap(false, Ordering::AcqRel)
        && let Some(t) = sweeper
    {
        t.unpark();
    }
}

/// The `greenlet-warm` thread: four times per `keep_warm`, ends the carriers shelved for at
/// least that long (and at most a quarter longer); sleeps while every shelf is empty.
fn sweep() {
    const TICKS: u64 = 4;
    loop {
        let tick = (keep() / TICKS as u32).max(Duration::from_millis(1));
        std::thread::park_timeout(tick);
        let now = EPOCH.fetch_add(1, Ordering::Relaxed) + 1;
        let mut left = 0;
        for shelf in shelves() {
            let stale: Vec<_> = {
                let mut idle = lock(&shelf.idle);
                let n = idle.iter().take_while(|(_, e)| e + TICKS < now).count();
                let stale: Vec<_> = idle.drain(..n).collect();
                IDLE.fetch_sub(stale.len(), Ordering::Relaxed);
                left += idle.len();
                stale
            };
            for (c, _) in stale {
                c.finish();
            }
        }
        if left == 0 {
            SWEEPER_ASLEEP.store(true, Ordering::Release);
            // A carrier shelved since the count clears the flag and unparks; otherwise this
            // sleeps until one is.
            if shelves().iter().all(|s| lock(&s.idle).is_empty()) {
                while SWEEPER_ASLEEP.load(Ordering::Acquire) {
                    std::thread::park();
                }
            } else {
                SWEEPER_ASLEEP.store(false, Ordering::Release);
            }
        }
    }
}

/// Idle carriers on all shelves (for the crate's tests: `__warm_idle`).
pub(crate) fn idle_count() -> usize {
    SHELVES
        .get()
        .map_or(0, |s| s.iter().map(|s| lock(&s.idle).len()).sum())
}
