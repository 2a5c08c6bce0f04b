//! The crate's timer: one `greenlet-timer` thread that unparks the parks whose deadline has
//! passed, at nanosecond precision.
//!
//! It replaces may's park time-outs, which are stored in whole milliseconds with 0 meaning
//! "forever", arm their timer before the coroutine is registered (a timer that fires in
//! between is lost, and the park hangs), and resume the woken coroutine on may's timer thread
//! (`docs/upstream.md`, items 1 to 3). Here a deadline is an `Instant`, an unpark that comes
//! before the park is remembered by the park, and the woken greenlets are queued to a worker:
//! the timer queues one tiny coroutine to each worker, and the first that runs unparks every
//! greenlet that expired in that tick from there. So they never wait behind a greenlet that
//! computes on another worker, and the other workers can steal them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::Instant;

use may::sync::Blocker;

use crate::sync::lock;

/// An armed deadline, to [`disarm`] once the park is over.
pub(crate) struct Armed {
    key: (Instant, u64),
}

#[derive(Default)]
struct State {
    /// The parked blockers, with whether each belongs to a greenlet (else a plain thread).
    parks: BTreeMap<(Instant, u64), (Arc<Blocker>, bool)>,
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
pub(crate) fn arm(deadline: Instant, blocker: &Arc<Blocker>) -> Option<Armed> {
    let timer = timer()?;
    let mut state = lock(&timer.state);
    state.next += 1;
    let key = (deadline, state.next);
    state
        .parks
        .insert(key, (blocker.clone(), may::coroutine::is_coroutine()));
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
        // The blocker is dropped outside the lock: may's `Park` can yield in its destructor.
        let removed = lock(&timer.state).parks.remove(&armed.key);
        drop(removed);
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
            unpark_all(threads.into_iter().map(|e| e.0));
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

/// Unparks `expired` from a worker: the first of one tiny coroutine per worker to run does it.
fn wake(expired: Vec<Arc<Blocker>>) {
    let workers = may::config().get_workers();
    if workers > 1 {
        let batch = Arc::new((AtomicBool::new(false), Mutex::new(expired)));
        let mut queued = 0;
        for worker in 0..workers {
            let batch = batch.clone();
            let first = move || {
                if !batch.0.swap(true, Ordering::AcqRel) {
                    unpark_all(std::mem::take(&mut *lock(&batch.1)));
                }
            };
            if crate::greenlet::spawn_on_worker(worker, first) {
                queued += 1;
            }
        }
        if queued > 0 {
            return;
        }
        let expired = std::mem::take(&mut *lock(&batch.1));
        unpark_all(expired);
    } else {
        unpark_all(expired);
    }
}

fn unpark_all(expired: impl IntoIterator<Item = Arc<Blocker>>) {
    for b in expired {
        b.unpark();
    }
}
