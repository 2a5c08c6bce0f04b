//! The one waiting mechanism behind `sync`, `queue`, `pool` and joins: a condition variable
//! over a std mutex whose waiters park through the crate's deadline door
//! ([`crate::deadline::park`]: a greenlet parks, a thread blocks) and survive kills without
//! losing a wake-up.
//!
//! The state lives under a `std::sync::Mutex` that is only held for short, non-blocking
//! critical sections, never across a park, and never while the last reference to a blocker
//! is dropped (may's `Park` can yield in its destructor; a greenlet switched out while holding
//! a std lock would block every other greenlet on that worker). A waiter registers its blocker in the state's
//! [`Waiters`], releases the lock and parks. A kill unwinds out of `park`; the registration's
//! guard then removes the waiter, or, if a notifier had already picked it, passes that
//! wake-up on to the next waiter, so no notification is lost to a dead greenlet.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::deadline::Parker;

pub(crate) use crate::deadline::deadline;

/// Locks a std mutex of the crate's, ignoring poison: a holder that panicked is tolerable,
/// because every critical section in this crate leaves its data consistent at each step.
pub(crate) fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Who waits: a parked greenlet or thread, or a future's task (woken through its waker).
enum Sleeper {
    Parked(Arc<Parker>),
    Task(Waker),
}

impl Sleeper {
    fn wake(self) {
        match self {
            Sleeper::Parked(b) => crate::deadline::home::unpark(&b),
            Sleeper::Task(w) => w.wake(),
        }
    }
}

/// Parked waiters, in arrival order.
#[derive(Default)]
pub(crate) struct Waiters {
    list: VecDeque<(u64, Sleeper)>,
    next: u64,
}

impl Waiters {
    /// An empty list.
    pub(crate) const fn new() -> Waiters {
        Waiters {
            list: VecDeque::new(),
            next: 0,
        }
    }

    fn push(&mut self, b: Arc<Parker>) -> u64 {
        self.next += 1;
        self.list.push_back((self.next, Sleeper::Parked(b)));
        self.next
    }

    /// Registers a future's waker, or updates the one registered as `*id`; `*id` is then its
    /// registration (for [`Waiters::remove`] when the future is dropped).
    fn register_waker(&mut self, id: &mut Option<u64>, waker: &Waker) {
        if let Some(known) = *id
            && let Some((_, Sleeper::Task(w))) = self.list.iter_mut().find(|(i, _)| *i == known)
        {
            if !w.will_wake(waker) {
                w.clone_from(waker);
            }
            return;
        }
        self.next += 1;
        self.list
            .push_back((self.next, Sleeper::Task(waker.clone())));
        *id = Some(self.next);
    }

    /// Removes waiter `id`; `false` if a notifier already took it.
    fn remove(&mut self, id: u64) -> bool {
        match self.list.iter().position(|(i, _)| *i == id) {
            Some(pos) => {
                self.list.remove(pos);
                true
            }
            None => false,
        }
    }

    /// Wakes the longest-waiting waiter, if any.
    pub(crate) fn notify_one(&mut self) {
        if let Some((_, s)) = self.list.pop_front() {
            s.wake();
        }
    }

    /// Wakes every waiter.
    pub(crate) fn notify_all(&mut self) {
        for (_, s) in self.list.drain(..) {
            s.wake();
        }
    }
}

/// Removes a waiter that is unwinding (killed) from the list, or passes on the wake-up it was
/// given.
struct Registration<'a, S> {
    state: &'a Mutex<S>,
    waiters: fn(&mut S) -> &mut Waiters,
    id: u64,
}

impl<S> Drop for Registration<'_, S> {
    fn drop(&mut self) {
        let mut state = lock(self.state);
        let waiters = (self.waiters)(&mut state);
        if !waiters.remove(self.id) {
            waiters.notify_one();
        }
    }
}

/// A blocker for one park, handed to `deadline::retire` when dropped, also by an unwind (never
/// dropped in a greenlet: may's `Park` can wait in its destructor).
pub(crate) struct Retire(Option<Arc<Parker>>);

impl Retire {
    /// A new blocker for the calling greenlet or thread (see `deadline::Parker`).
    pub(crate) fn new() -> Retire {
        Retire(Some(Arc::new(Parker::new())))
    }

    pub(crate) fn blocker(&self) -> &Arc<Parker> {
        self.0
            .as_ref()
            .expect("a Retire holds its blocker until it is dropped")
    }
}

impl Drop for Retire {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            crate::deadline::retire(b);
        }
    }
}

/// Passes on a wake-up that a waiter was given (`owed`) if it unwinds (is killed) before it can
/// use it.
struct PassOn<'a, S> {
    state: &'a Mutex<S>,
    waiters: fn(&mut S) -> &mut Waiters,
    owed: bool,
}

impl<S> Drop for PassOn<'_, S> {
    fn drop(&mut self) {
        if self.owed {
            (self.waiters)(&mut lock(self.state)).notify_one();
        }
    }
}

/// Parks once on `waiters` (registered under `state`'s lock), running `registered` right
/// after the registration, with the lock released: a notification that follows it is not
/// lost. Returns whether a notifier picked this waiter (`false`: the deadline passed, or the
/// wake-up was spurious).
///
/// # Kill safety
///
/// A kill while parked unwinds from here with the registration removed, or, if a notifier had
/// already picked this waiter, with the wake-up passed on to the next one.
fn park_once<S>(
    what: &'static str,
    state: &Mutex<S>,
    waiters: fn(&mut S) -> &mut Waiters,
    mut guard: MutexGuard<'_, S>,
    deadline: Option<Instant>,
    registered: impl FnOnce(),
) -> bool {
    let retire = Retire::new();
    let blocker = retire.blocker();
    let id = waiters(&mut guard).push(blocker.clone());
    drop(guard);
    // A kill unwinds out of the park; `registration` (declared after `retire`, so dropped
    // before it) then cleans up under the lock, and the blocker is retired, outside the lock.
    let registration = Registration { state, waiters, id };
    registered();
    let _ = crate::deadline::park(what, blocker, deadline);
    std::mem::forget(registration);
    let owed = !waiters(&mut lock(state)).remove(id);
    drop(retire);
    owed
}

/// Waits on `state` until `ready` gives a value, or until `deadline` (then `None`).
///
/// `ready` runs under the lock each time the waiter is woken; it may change the state (take an
/// item, a permit). `waiters` picks the list to park on.
///
/// # Kill safety
///
/// A kill while parked unwinds from here with no effect on the state and no lost wake-up.
pub(crate) fn wait_until<S, R>(
    what: &'static str,
    state: &Mutex<S>,
    waiters: fn(&mut S) -> &mut Waiters,
    deadline: Option<Instant>,
    mut ready: impl FnMut(&mut S) -> Option<R>,
) -> Option<R> {
    let mut guard = lock(state);
    // Set when a notifier picked us: if we then give up, the wake-up is passed on.
    let mut owed = false;
    loop {
        if let Some(r) = ready(&mut guard) {
            return Some(r);
        }
        if crate::deadline::left(deadline).is_err() {
            if owed {
                waiters(&mut guard).notify_one();
            }
            return None;
        }
        let pass_on = PassOn {
            state,
            waiters,
            owed,
        };
        let picked = park_once(what, state, waiters, guard, deadline, || {});
        std::mem::forget(pass_on);
        owed |= picked;
        guard = lock(state);
    }
}

/// Registers on `waiters`, runs `release` (which must not block: it drops the caller's lock),
/// and parks once until notified or `deadline`: a condition variable's wait. Returns whether
/// a notifier picked this waiter. Kill-safe as [`wait_until`].
pub(crate) fn wait_once<S>(
    what: &'static str,
    state: &Mutex<S>,
    waiters: fn(&mut S) -> &mut Waiters,
    deadline: Option<Instant>,
    release: impl FnOnce(),
) -> bool {
    if crate::deadline::left(deadline).is_err() {
        release();
        return false;
    }
    park_once(what, state, waiters, lock(state), deadline, release)
}

/// A one-way flag (set once, never cleared) that greenlets and threads wait on: the crate's
/// join and "done" signals. Kill-safe and time-out-exact, unlike may's `SyncFlag`.
#[derive(Default)]
pub(crate) struct Flag {
    fired: AtomicBool,
    waiters: Mutex<Waiters>,
}

fn all(w: &mut Waiters) -> &mut Waiters {
    w
}

impl Flag {
    pub(crate) fn new() -> Flag {
        Flag::default()
    }

    pub(crate) fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Sets the flag and wakes every waiter.
    pub(crate) fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        lock(&self.waiters).notify_all();
    }

    /// Waits until the flag is set or `deadline` passes; `true` if it is set.
    pub(crate) fn wait_until(&self, what: &'static str, deadline: Option<Instant>) -> bool {
        self.is_fired()
            || wait_until(what, &self.waiters, all, deadline, |_| {
                self.is_fired().then_some(())
            })
            .is_some()
    }

    /// Waits until the flag is set.
    pub(crate) fn wait(&self, what: &'static str) {
        while !self.wait_until(what, None) {}
    }

    /// A future's poll of the flag: `Ready` once it is set; otherwise the task's waker is
    /// registered (as `*id`, updated on later polls) and woken when it is.
    pub(crate) fn poll_fired(&self, id: &mut Option<u64>, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_fired() {
            return Poll::Ready(());
        }
        let mut waiters = lock(&self.waiters);
        // Checked again under the lock: `fire` sets the flag before it takes the lock.
        if self.is_fired() {
            return Poll::Ready(());
        }
        waiters.register_waker(id, cx.waker());
        Poll::Pending
    }

    /// Forgets the waker registered as `id` by [`Flag::poll_fired`] (its future is dropped).
    pub(crate) fn forget_waker(&self, id: u64) {
        lock(&self.waiters).remove(id);
    }
}

/// The state of a future that resolves, once a [`Flag`] of `H` fires, to what `H` then gives
/// (a `Greenlet`'s or a pool `Task`'s result).
pub(crate) struct FlagFuture<H> {
    held: Option<H>,
    /// The waker's registration with the flag.
    waker: Option<u64>,
    flag: fn(&H) -> &Flag,
}

impl<H> FlagFuture<H> {
    pub(crate) fn new(held: H, flag: fn(&H) -> &Flag) -> FlagFuture<H> {
        FlagFuture {
            held: Some(held),
            waker: None,
            flag,
        }
    }

    pub(crate) fn held(&self) -> Option<&H> {
        self.held.as_ref()
    }

    /// Polls: `Ready(get(h))` once the flag has fired.
    ///
    /// # Panics
    ///
    /// When polled again after it returned `Ready`.
    pub(crate) fn poll<R>(&mut self, cx: &mut Context<'_>, get: impl FnOnce(H) -> R) -> Poll<R> {
        let held = self
            .held
            .as_ref()
            .expect("a greenlet's or task's future polled after it completed");
        if (self.flag)(held)
            .poll_fired(&mut self.waker, cx)
            .is_pending()
        {
            return Poll::Pending;
        }
        self.waker = None; // `fire` took the registration
        Poll::Ready(get(self.held.take().expect("checked above")))
    }
}

impl<H> Drop for FlagFuture<H> {
    fn drop(&mut self) {
        if let (Some(held), Some(id)) = (&self.held, self.waker) {
            (self.flag)(held).forget_waker(id);
        }
    }
}
