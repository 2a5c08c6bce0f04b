//! `Condvar`: may's cooperative condition variable, with time-outs through the crate's
//! deadline door.

use std::fmt;
use std::sync::{LockResult, PoisonError};
use std::time::Duration;

use may::sync::MutexGuard;

use crate::deadline::{deadline, left, may_timeout};

/// A condition variable for greenlets and threads, used with [`Mutex`](super::Mutex) (std's
/// `Condvar` API). A greenlet that waits parks; a thread blocks.
///
/// Time-outs keep the crate's contract: a timed wait never returns before its deadline, never
/// hangs (a zero or sub-millisecond time-out included), and returns within about 2 ms after
/// it on an idle machine.
///
/// # Kill safety
///
/// A kill while waiting unwinds the greenlet without re-taking the lock for it; other waiters
/// are unaffected. A wait made by a destructor while a kill unwinds parks normally.
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
pub struct Condvar(may::sync::Condvar);

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

impl Condvar {
    /// A new condition variable.
    pub fn new() -> Condvar {
        Condvar(may::sync::Condvar::new())
    }

    /// Releases the lock, waits for a notification, and re-takes the lock. Wake-ups can be
    /// spurious: check the condition in a loop, or use [`wait_while`](Self::wait_while).
    ///
    /// # Errors
    ///
    /// A poisoned mutex, as std.
    ///
    /// # Panics
    ///
    /// If the condition variable is used with two different mutexes.
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        crate::monitor::blocking("Condvar::wait", || self.0.wait(guard))
    }

    /// Waits while `condition` holds.
    ///
    /// # Errors
    ///
    /// A poisoned mutex, as std.
    ///
    /// # Panics
    ///
    /// As [`wait`](Self::wait).
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
    ///
    /// # Panics
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_timeout<'a, T>(&self, mut guard: MutexGuard<'a, T>, dur: Duration) -> Timed<'a, T> {
        let deadline = deadline(dur);
        loop {
            let left = match left(deadline) {
                Err(()) => return Ok((guard, WaitTimeoutResult(true))),
                Ok(None) => {
                    return self
                        .wait(guard)
                        .map(|g| (g, WaitTimeoutResult(false)))
                        .map_err(|e| PoisonError::new((e.into_inner(), WaitTimeoutResult(false))));
                }
                Ok(Some(left)) => left,
            };
            let waited = crate::monitor::blocking_until("Condvar::wait", deadline, || {
                self.0.wait_timeout(guard, may_timeout(left))
            });
            crate::deadline::leave_timer_thread();
            let (g, r) = match waited {
                Ok(v) => v,
                Err(e) => {
                    let (g, r) = e.into_inner();
                    return Err(PoisonError::new((g, WaitTimeoutResult(r.timed_out()))));
                }
            };
            if !r.timed_out() {
                return Ok((g, WaitTimeoutResult(false)));
            }
            // may can wake up to 1 ms early: the loop waits out the rest.
            guard = g;
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
    ///
    /// # Panics
    ///
    /// As [`wait`](Self::wait).
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
            let left = match deadline {
                None => Duration::MAX,
                Some(d) => d.saturating_duration_since(std::time::Instant::now()),
            };
            if left.is_zero() {
                return Ok((guard, WaitTimeoutResult(true)));
            }
            guard = self.wait_timeout(guard, left)?.0;
        }
        Ok((guard, WaitTimeoutResult(false)))
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        self.0.notify_one();
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.0.notify_all();
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Condvar { .. }")
    }
}
