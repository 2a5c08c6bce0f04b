//! `RLock` (gevent.lock.RLock): a lock its holder may take again.

use std::fmt;
use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::Duration;

use super::waiters::{Waiters, deadline, lock, wait_until};

/// Who holds an `RLock`: a greenlet, or a plain thread.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Owner {
    Greenlet(u64),
    Thread(ThreadId),
}

fn me() -> Owner {
    match crate::current() {
        Some(g) => Owner::Greenlet(g.id()),
        None => Owner::Thread(std::thread::current().id()),
    }
}

struct State {
    owner: Option<Owner>,
    depth: usize,
    waiters: Waiters,
}

fn waiters(s: &mut State) -> &mut Waiters {
    &mut s.waiters
}

/// A re-entrant lock (gevent's `RLock`): the greenlet that holds it may lock it again without
/// waiting; it is free once every guard is dropped. Ownership is per greenlet (per thread on
/// plain threads), not per worker thread.
///
/// It protects no data itself; pair it with a `RefCell` or use it to serialise a section.
///
/// # Kill safety
///
/// A greenlet killed while waiting takes nothing; killed while holding it, it releases the
/// lock as its guards drop during the unwind.
///
/// # Examples
///
/// ```
/// use greenlet::sync::RLock;
///
/// let lock = RLock::new();
/// let outer = lock.lock();
/// let inner = lock.lock(); // same holder: no deadlock
/// drop((inner, outer));
/// assert!(lock.try_lock().is_some());
/// ```
pub struct RLock {
    state: Mutex<State>,
}

/// Holds an [`RLock`] until dropped.
#[must_use = "the lock is released at once if the guard is not kept"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
}

impl RLock {
    /// A new, free lock.
    pub fn new() -> RLock {
        RLock {
            state: Mutex::new(State {
                owner: None,
                depth: 0,
                waiters: Waiters::default(),
            }),
        }
    }

    fn take(s: &mut State, me: Owner) -> Option<()> {
        match s.owner {
            Some(o) if o != me => None,
            _ => {
                s.owner = Some(me);
                s.depth += 1;
                Some(())
            }
        }
    }

    /// Waits until the lock is free (or already held by the caller) and takes it.
    pub fn lock(&self) -> RLockGuard<'_> {
        let me = me();
        while wait_until("RLock::lock", &self.state, waiters, None, |s| {
            Self::take(s, me)
        })
        .is_none()
        {}
        RLockGuard { lock: self }
    }

    /// Takes the lock if it is free or already the caller's.
    pub fn try_lock(&self) -> Option<RLockGuard<'_>> {
        Self::take(&mut lock(&self.state), me()).map(|()| RLockGuard { lock: self })
    }

    /// Waits at most `d` for the lock.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    pub fn lock_timeout(&self, d: Duration) -> Option<RLockGuard<'_>> {
        let me = me();
        wait_until("RLock::lock", &self.state, waiters, deadline(d), |s| {
            Self::take(s, me)
        })
        .map(|()| RLockGuard { lock: self })
    }

    /// Whether anyone holds the lock.
    pub fn is_locked(&self) -> bool {
        lock(&self.state).owner.is_some()
    }
}

impl Default for RLock {
    fn default() -> Self {
        RLock::new()
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let mut s = lock(&self.lock.state);
        s.depth -= 1;
        if s.depth == 0 {
            s.owner = None;
            s.waiters.notify_one();
        }
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.state);
        f.debug_struct("RLock")
            .field("owner", &s.owner)
            .field("depth", &s.depth)
            .finish()
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}
