//! `Condvar`: std's API over the crate's waiters, used with the crate's [`Mutex`].

use std::fmt;
use std::sync::{LockResult, PoisonError};
use std::time::Duration;

use super::waiters::{Waiters, lock, wait_once};
use super::{Mutex, MutexGuard};
use crate::deadline::{deadline, left};

/// A condition variable for greenlets and threads, used with [`Mutex`] (std's `Condvar`
/// API). A greenlet that waits parks; a thread blocks.
///
/// Time-outs keep the crate's contract: a timed wait never returns before its deadline, never
/// hangs (a zero or sub-millisecond time-out included), and returns within about 2 ms after
/// it on an idle machine.
///
/// # Kill safety
///
/// A kill while waiting, or while re-taking the lock after a notification, unwinds the
/// greenlet without the lock and without stealing another waiter's notification. A wait made
/// by a destructor while a kill unwinds parks normally.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use greenlet::sync::{Condvar, Mutex};
///
/// let pair = Arc::new((Mutex::new(false), Condvar::new()));
/// let theirs = pair.clone();
/// let g = greenlet::spawn(move || {
///     *theirs.0.lock().unwrap() = true;
///     theirs.1.notify_one();
/// });
/// let (lock, cvar) = &*pair;
/// let mut ready = lock.lock().unwrap();
/// while !*ready {
///     ready = cvar.wait_timeout(ready, Duration::from_secs(5)).unwrap().0;
/// }
/// g.join();
/// ```
#[derive(Default)]
pub struct Condvar {
    waiters: std::sync::Mutex<Waiters>,
}

/// Whether a timed wait on a [`Condvar`] returned because its time-out passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// Returns `true` if the wait ended because its time-out passed.
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

type Timed<'a, T> = LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)>;

fn all(w: &mut Waiters) -> &mut Waiters {
    w
}

impl Condvar {
    /// A new condition variable.
    pub const fn new() -> Condvar {
        Condvar {
            waiters: std::sync::Mutex::new(Waiters::new()),
        }
    }

    /// Releases the lock, waits for a notification, and re-takes the lock. Wake-ups can be
    /// spurious: check the condition in a loop, or use [`wait_while`](Self::wait_while).
    ///
    /// # Errors
    ///
    /// A poisoned mutex, as std.
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        let mutex = Mutex::of(&guard);
        wait_once("Condvar::wait", &self.waiters, all, None, || drop(guard));
        mutex.lock()
    }

    /// Waits while `condition` holds.
    ///
    /// # Errors
    ///
    /// A poisoned mutex, as std.
    pub fn wait_while<'a, T, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: F,
    ) -> LockResult<MutexGuard<'a, T>>
    where
        F: FnMut(&mut T) -> bool,
    {
        while condition(&mut *guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Waits for a notification for at most `dur`. A zero `dur` times out at once; a `dur`
    /// too large to represent waits without a time-out.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    ///
    /// # Errors
    ///
    /// A poisoned mutex, as std.
    pub fn wait_timeout<'a, T>(&self, guard: MutexGuard<'a, T>, dur: Duration) -> Timed<'a, T> {
        let deadline = deadline(dur);
        let mutex = Mutex::of(&guard);
        let notified = wait_once("Condvar::wait", &self.waiters, all, deadline, || {
            drop(guard);
        });
        let timed_out = WaitTimeoutResult(!notified && left(deadline).is_err());
        match mutex.lock() {
            Ok(g) => Ok((g, timed_out)),
            Err(e) => Err(PoisonError::new((e.into_inner(), timed_out))),
        }
    }

    /// Waits while `condition` holds, for at most `dur` in all.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    ///
    /// # Errors
    ///
    /// A poisoned mutex, as std.
    pub fn wait_timeout_while<'a, T, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        dur: Duration,
        mut condition: F,
    ) -> Timed<'a, T>
    where
        F: FnMut(&mut T) -> bool,
    {
        let deadline = deadline(dur);
        while condition(&mut *guard) {
            let left = match left(deadline) {
                Err(()) => return Ok((guard, WaitTimeoutResult(true))),
                Ok(None) => Duration::MAX,
                Ok(Some(left)) => left,
            };
            guard = self.wait_timeout(guard, left)?.0;
        }
        Ok((guard, WaitTimeoutResult(false)))
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        lock(&self.waiters).notify_one();
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        lock(&self.waiters).notify_all();
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Condvar { .. }")
    }
}
