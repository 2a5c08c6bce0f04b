//! The crate's timer: one `greenlet-timer` thread that unparks the parks whose deadline has
//! passed, at nanosecond precision.
//!
//! It replaces may's park time-outs, which are stored in whole milliseconds with 0 meaning
//! "forever", arm their timer before the coroutine is registered (a timer that fires in
//! between is lost, and the park hangs), and resume the woken coroutine on may's timer thread
//! (`docs/upstream.md`, items 1 to 3). Here a deadline is an `Instant`, an unpark that comes
//! before the park is remembered by the park, and each woken greenlet is handed to its own
//! worker's mailbox ([`home`]), which that worker also empties at each blocking point: so a
//! greenlet resumes on its own worker, and never waits behind workers kept busy by ping-pongs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::Instant;

use may::io::WaitIoWaker;

use super::Parker;
use super::home::{self, Wake};
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
    /// Wakes a greenlet waiting for a socket to become ready (`net::wait`), on its worker.
    WakeIo(WaitIoWaker, usize),
}

impl Action {
    /// Performs the action on the worker of the greenlet it concerns (`home`), or here for a
    /// plain thread.
    fn run(self) {
        match self {
            Action::Unpark(b) => {
                home::unpark(&b);
                super::retire(b);
            }
            Action::WakeIo(w, at) => home::wake_on(at, Wake::Io(w)),
            Action::Interrupt(g, state) => {
                let at = g.home();
                let interrupt = move || {
                    if state
                        .compare_exchange(ARMED, FIRED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        g.interrupt_timeout();
                        state.store(REQUESTED, Ordering::Release);
                    }
                };
                home::wake_on(at, Wake::Call(Box::new(interrupt)));
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
    /// What to do at each deadline.
    parks: BTreeMap<(Instant, u64), Action>,
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
    insert(deadline, Action::Unpark(blocker.clone()))
}

/// Interrupts `g` (as its `Timeout` expiring) at `deadline`, if `state` is still `ARMED`
/// then. `None` when the timer thread could not be started.
pub(crate) fn arm_interrupt(
    deadline: Instant,
    g: GreenletRef,
    state: Arc<AtomicU8>,
) -> Option<Armed> {
    insert(deadline, Action::Interrupt(g, state))
}

/// Wakes the greenlet waiting in `WaitIo::wait_io` through `waker` at `deadline` (a socket
/// time-out). `None` when the timer thread could not be started.
pub(crate) fn arm_io(deadline: Instant, waker: WaitIoWaker) -> Option<Armed> {
    let at = home::worker().unwrap_or(home::NONE);
    insert(deadline, Action::WakeIo(waker, at))
}

fn insert(deadline: Instant, action: Action) -> Option<Armed> {
    let timer = timer()?;
    let mut state = lock(&timer.state);
    state.next += 1;
    let key = (deadline, state.next);
    state.parks.insert(key, action);
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

/// A socket registration's wake-up by the timer, kept armed from one wait to the next.
///
/// A socket time-out is re-armed at every wait that parks (every request of a keep-alive
/// connection), each time a little later than the last. Arming and disarming cost the timer's
/// lock and a `BTreeMap` insert and remove (4–6% of `examples/http_hello`'s time under wrk).
/// Here a wake-up still pending at or before the new deadline is kept instead: it can only
/// come early, and an early wake-up is one the waits already expect (readiness can be
/// spurious: the caller tries its call again, sees the deadline has not passed, and waits
/// again, arming then a wake-up for its own deadline). So a steady connection with a 60 s
/// time-out arms once a minute instead of once a request. Disarmed when the registration is
/// dropped.
#[derive(Default)]
pub(crate) struct IoTimer(Mutex<Option<Armed>>);

impl IoTimer {
    /// Makes sure that the timer wakes the registration's waiter (`waker`) at `deadline` or
    /// before it, but after `now`. `false` when the timer thread could not be started.
    pub(crate) fn wake_by(
        &self,
        deadline: Instant,
        now: Instant,
        waker: impl FnOnce() -> WaitIoWaker,
    ) -> bool {
        let mut armed = lock(&self.0);
        // Still to fire (a wake-up due by `now` may have fired already), and not late.
        if let Some(a) = &*armed
            && a.key.0 > now
            && a.key.0 <= deadline
        {
            return true;
        }
        if let Some(old) = armed.take() {
            disarm(old);
        }
        *armed = arm_io(deadline, waker());
        armed.is_some()
    }
}

impl Drop for IoTimer {
    fn drop(&mut self) {
        let armed = self.0.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(armed) = armed {
            disarm(armed);
        }
    }
}

/// Forgets an armed deadline (the park ended first, or it fired: then this is a no-op).
pub(crate) fn disarm(armed: Armed) {
    if let Some(timer) = timer() {
        // The blocker is retired outside the lock: may's `Park` can wait in its destructor.
        let removed = lock(&timer.state).parks.remove(&armed.key);
        if let Some(Action::Unpark(b)) = removed {
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
        // Plain threads are woken from here; greenlets through their worker's mailbox.
        for action in expired {
            action.run();
        }
        match next {
            Some(at) => std::thread::park_timeout(at.saturating_duration_since(Instant::now())),
            None => std::thread::park(),
        }
    }
}
