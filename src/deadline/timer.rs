//! The crate's timer: one `greenlet-timer` thread that unparks the parks whose deadline has
//! passed, at nanosecond precision.
//!
//! It replaces may's park time-outs, which are stored in whole milliseconds with 0 meaning
//! "forever", arm their timer before the coroutine is registered (a timer that fires in
//! between is lost, and the park hangs), and resume the woken coroutine on may's timer thread
//! (`docs/upstream.md`, items 1 to 3). Here a deadline is an `Instant`, an unpark that comes
//! before the park is remembered by the park, and the woken greenlets are queued to a worker:
//! the timer publishes them, queues one tiny coroutine to each worker, and the first of those,
//! or the first greenlet to reach a blocking point ([`drain`]), unparks them all from its
//! worker. So they never wait behind a greenlet that computes on another worker, nor behind
//! workers kept busy by ping-pongs, and the other workers can steal them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::Instant;

use may::io::WaitIoWaker;

use super::Parker;
use crate::greenlet::GreenletRef;
use crate::sync::lock;

/// An armed deadline, to [`disarm`] once the park is over.
pub(crate) struct Armed {
    key: (Instant, u64),
}

/// What the timer does when a deadline passes.
enum Action {
    /// Unparks a parked greenlet or thread.
    Unpark(Arc<Parker>),
    /// Interrupts a greenlet whose [`Timeout`](crate::Timeout) expired, unless the guard has
    /// been disarmed meanwhile (see [`arm_interrupt`]).
    Interrupt(GreenletRef, Arc<AtomicU8>),
    /// Wakes a greenlet waiting for a socket to become ready (`net::wait`).
    WakeIo(WaitIoWaker),
}

impl Action {
    fn run(self) {
        match self {
            Action::Unpark(b) => {
                b.unpark();
                // This can be the last reference, and this can be a greenlet.
                super::retire(b);
            }
            Action::WakeIo(w) => w.wakeup(),
            Action::Interrupt(g, state) => {
                if state
                    .compare_exchange(ARMED, FIRED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    g.interrupt_timeout();
                    state.store(REQUESTED, Ordering::Release);
                }
            }
        }
    }
}

/// A `Timeout` guard's state: armed, fired (the interrupt is being requested), requested, or
/// cancelled (dropped before it fired).
pub(crate) const ARMED: u8 = 0;
pub(crate) const FIRED: u8 = 1;
pub(crate) const CANCELLED: u8 = 2;
pub(crate) const REQUESTED: u8 = 3;

#[derive(Default)]
struct State {
    /// What to do at each deadline, with whether it must be done from a worker (a greenlet
    /// is woken or interrupted) or can be done from the timer thread (a plain thread).
    parks: BTreeMap<(Instant, u64), (Action, bool)>,
    next: u64,
    /// When the timer thread will look again; `None` while it sleeps until woken.
    wake_at: Option<Instant>,
}

struct Timer {
    state: Mutex<State>,
    thread: Thread,
}

static TIMER: OnceLock<Option<Timer>> = OnceLock::new();

fn timer() -> Option<&'static Timer> {
    TIMER
        .get_or_init(|| {
            let spawned = std::thread::Builder::new()
                .name("greenlet-timer".into())
                .spawn(run);
            match spawned {
                Ok(h) => Some(Timer {
                    state: Mutex::new(State::default()),
                    thread: h.thread().clone(),
                }),
                Err(e) => {
                    log::error!(
                        "cannot start the greenlet-timer thread ({e}); timed waits use may's timer"
                    );
                    None
                }
            }
        })
        .as_ref()
}

/// Unparks `blocker` at `deadline`. `None` when the timer thread could not be started (the
/// caller then hands may a time-out instead).
pub(crate) fn arm(deadline: Instant, blocker: &Arc<Parker>) -> Option<Armed> {
    let on_worker = may::coroutine::is_coroutine();
    insert(deadline, Action::Unpark(blocker.clone()), on_worker)
}

/// Interrupts `g` (as its `Timeout` expiring) at `deadline`, if `state` is still `ARMED`
/// then. `None` when the timer thread could not be started.
pub(crate) fn arm_interrupt(
    deadline: Instant,
    g: GreenletRef,
    state: Arc<AtomicU8>,
) -> Option<Armed> {
    insert(deadline, Action::Interrupt(g, state), true)
}

/// Wakes the greenlet waiting in `WaitIo::wait_io` through `waker` at `deadline` (a socket
/// time-out). `None` when the timer thread could not be started.
pub(crate) fn arm_io(deadline: Instant, waker: WaitIoWaker) -> Option<Armed> {
    insert(deadline, Action::WakeIo(waker), true)
}

fn insert(deadline: Instant, action: Action, on_worker: bool) -> Option<Armed> {
    let timer = timer()?;
    let mut state = lock(&timer.state);
    state.next += 1;
    let key = (deadline, state.next);
    state.parks.insert(key, (action, on_worker));
    // Wake the timer thread only if it would look too late: a deadline that follows its next
    // look is found then (so a steady stream of waits costs no wake-ups).
    let sooner = state.wake_at.is_none_or(|at| deadline < at);
    if sooner {
        state.wake_at = Some(deadline);
    }
    drop(state);
    if sooner {
        timer.thread.unpark();
    }
    Some(Armed { key })
}

/// Forgets an armed deadline (the park ended first, or it fired: then this is a no-op).
pub(crate) fn disarm(armed: Armed) {
    if let Some(timer) = timer() {
        // The blocker is retired outside the lock: may's `Park` can wait in its destructor.
        let removed = lock(&timer.state).parks.remove(&armed.key);
        if let Some((Action::Unpark(b), _)) = removed {
            super::retire(b);
        }
    }
}

fn run() {
    // Wait until `TIMER` holds this thread's handle.
    let timer = loop {
        if let Some(Some(t)) = TIMER.get() {
            break t;
        }
        std::thread::yield_now();
    };
    loop {
        let now = Instant::now();
        let (expired, next) = {
            let mut state = lock(&timer.state);
            let mut expired = Vec::new();
            while let Some(entry) = state.parks.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                expired.push(entry.remove());
            }
            let next = state.parks.first_key_value().map(|(k, _)| k.0);
            state.wake_at = next;
            (expired, next)
        };
        if !expired.is_empty() {
            // Plain threads are woken from here; greenlets from a worker.
            let (greenlets, threads): (Vec<_>, Vec<_>) = expired.into_iter().partition(|e| e.1);
            run_all(threads.into_iter().map(|e| e.0));
            if !greenlets.is_empty() {
                wake(greenlets.into_iter().map(|e| e.0).collect());
            }
        }
        match next {
            Some(at) => std::thread::park_timeout(at.saturating_duration_since(Instant::now())),
            None => std::thread::park(),
        }
    }
}

/// Greenlets whose deadline passed, to be unparked from a worker: by the first of one tiny
/// coroutine queued to each worker, or by any greenlet that reaches a blocking point first
/// ([`drain`]). The second matters when every worker is busy with greenlets that keep their
/// local queues non-empty (a ping-pong, a loop of `yield_now`): may only reads a worker's
/// inbox, where the tiny coroutines wait, when its local queue is empty.
static PENDING: Mutex<Vec<Action>> = Mutex::new(Vec::new());
static HAS_PENDING: AtomicBool = AtomicBool::new(false);

/// Unparks the greenlets whose deadline passed, if any: called at every blocking point of the
/// crate (one relaxed load when there are none).
#[inline]
pub(crate) fn drain() {
    // Only from a greenlet on a worker: an unpark from any other thread queues the greenlet
    // to a worker's inbox, which a busy worker does not read.
    if HAS_PENDING.load(Ordering::Relaxed) && may::coroutine::is_coroutine() && super::on_worker() {
        run_pending();
    }
}

/// Unparks the published batch, from whatever thread calls it.
fn run_pending() {
    if HAS_PENDING.swap(false, Ordering::AcqRel) {
        let batch = std::mem::take(&mut *lock(&PENDING));
        run_all(batch);
    }
}

/// Has `expired` unparked from a worker (see [`PENDING`]).
fn wake(expired: Vec<Action>) {
    let workers = may::config().get_workers();
    lock(&PENDING).extend(expired);
    HAS_PENDING.store(true, Ordering::Release);
    let mut queued = 0;
    for worker in 0..workers {
        // Not `drain`: its `on_worker` check reads a mark that only a greenlet started on the
        // thread sets, so a helper on a worker that has run none yet (or one stolen by such a
        // worker) would leave the batch for good. A helper always runs on a worker.
        let helper = || {
            super::mark_worker_thread();
            run_pending();
        };
        if crate::greenlet::spawn_on_worker(worker, helper) {
            queued += 1;
        }
    }
    if queued == 0 {
        // No coroutine could be spawned (out of stacks): unpark from here (`drain` would not,
        // on this thread).
        run_pending();
    }
}

fn run_all(expired: impl IntoIterator<Item = Action>) {
    for action in expired {
        action.run();
    }
}
