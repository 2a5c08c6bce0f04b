//! `Semaphore` and `BoundedSemaphore` (gevent.lock).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::waiters::{Waiters, deadline, lock, wait_until};

struct State {
    permits: usize,
    waiters: Waiters,
}

fn waiters(s: &mut State) -> &mut Waiters {
    &mut s.waiters
}

fn take(s: &mut State) -> Option<()> {
    (s.permits > 0).then(|| s.permits -= 1)
}

/// A counting semaphore (gevent's `Semaphore`): [`acquire`](Self::acquire) waits for a
/// permit and returns a guard that gives it back when dropped.
///
/// Waiters are woken in arrival order. [`release`](Self::release) adds a permit without a
/// guard, so a semaphore can also count events; [`BoundedSemaphore`] refuses to grow past its
/// initial count.
///
/// # Kill safety
///
/// A greenlet killed while waiting takes no permit. A greenlet killed while holding a guard
/// gives its permit back as it unwinds.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use greenlet::sync::Semaphore;
///
/// let sem = Arc::new(Semaphore::new(2));
/// let a = sem.acquire();
/// let _b = sem.acquire();
/// assert!(sem.try_acquire().is_none());
/// drop(a);
/// assert!(sem.try_acquire().is_some());
/// ```
pub struct Semaphore {
    state: Mutex<State>,
    bound: Option<usize>,
}

/// Gives its permit back to the [`Semaphore`] when dropped.
#[must_use = "the permit is released at once if the guard is not kept"]
pub struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
}

/// A permit of an `Arc<Semaphore>` that can move into another greenlet; released on drop.
#[must_use = "the permit is released at once if the guard is not kept"]
pub struct OwnedSemaphoreGuard {
    sem: Arc<Semaphore>,
}

impl Semaphore {
    /// A semaphore with `permits` permits.
    pub fn new(permits: usize) -> Semaphore {
        Semaphore::with_bound(permits, None)
    }

    fn with_bound(permits: usize, bound: Option<usize>) -> Semaphore {
        Semaphore {
            state: Mutex::new(State {
                permits,
                waiters: Waiters::default(),
            }),
            bound,
        }
    }

    /// Waits for a permit.
    pub fn acquire(&self) -> SemaphoreGuard<'_> {
        self.acquire_raw();
        SemaphoreGuard { sem: self }
    }

    /// Takes a permit if one is free.
    pub fn try_acquire(&self) -> Option<SemaphoreGuard<'_>> {
        take(&mut lock(&self.state)).map(|()| SemaphoreGuard { sem: self })
    }

    /// Waits at most `d` for a permit.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    pub fn acquire_timeout(&self, d: Duration) -> Option<SemaphoreGuard<'_>> {
        wait_until(
            "Semaphore::acquire",
            &self.state,
            waiters,
            deadline(d),
            take,
        )
        .map(|()| SemaphoreGuard { sem: self })
    }

    /// Waits for a permit that is not tied to a borrow, to move into another greenlet.
    pub fn acquire_owned(self: &Arc<Self>) -> OwnedSemaphoreGuard {
        self.acquire_raw();
        OwnedSemaphoreGuard { sem: self.clone() }
    }

    pub(crate) fn acquire_raw(&self) {
        while wait_until("Semaphore::acquire", &self.state, waiters, None, take).is_none() {}
    }

    /// Adds a permit (waking one waiter) without a guard.
    pub fn release(&self) {
        let mut s = lock(&self.state);
        s.permits += 1;
        s.waiters.notify_one();
    }

    fn release_bounded(&self) -> Result<(), ReleaseError> {
        let mut s = lock(&self.state);
        if self.bound.is_some_and(|b| s.permits >= b) {
            return Err(ReleaseError { _private: () });
        }
        s.permits += 1;
        s.waiters.notify_one();
        Ok(())
    }

    /// Free permits now.
    pub fn available_permits(&self) -> usize {
        lock(&self.state).permits
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        let _ = self.sem.release_bounded();
    }
}

impl SemaphoreGuard<'_> {
    /// Keeps the permit taken: it is not given back when the guard goes.
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for OwnedSemaphoreGuard {
    fn drop(&mut self) {
        let _ = self.sem.release_bounded();
    }
}

/// A semaphore that refuses to be released past its initial count (gevent's
/// `BoundedSemaphore`, which raises `ValueError` there): a release without a matching acquire
/// is a bug that a plain [`Semaphore`] would hide.
///
/// # Examples
///
/// ```
/// use greenlet::sync::BoundedSemaphore;
///
/// let sem = BoundedSemaphore::new(1);
/// assert!(sem.release().is_err()); // nothing was acquired
/// sem.acquire().forget();
/// assert!(sem.release().is_ok());
/// ```
pub struct BoundedSemaphore {
    inner: Semaphore,
}

impl BoundedSemaphore {
    /// A semaphore with `permits` permits, never more.
    pub fn new(permits: usize) -> BoundedSemaphore {
        BoundedSemaphore {
            inner: Semaphore::with_bound(permits, Some(permits)),
        }
    }

    /// Waits for a permit. See [`Semaphore::acquire`].
    pub fn acquire(&self) -> SemaphoreGuard<'_> {
        self.inner.acquire()
    }

    /// Takes a permit if one is free.
    pub fn try_acquire(&self) -> Option<SemaphoreGuard<'_>> {
        self.inner.try_acquire()
    }

    /// Waits at most `d` for a permit.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    pub fn acquire_timeout(&self, d: Duration) -> Option<SemaphoreGuard<'_>> {
        self.inner.acquire_timeout(d)
    }

    /// Gives back a permit taken with [`SemaphoreGuard::forget`].
    ///
    /// # Errors
    ///
    /// [`ReleaseError`] if every permit is already free.
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.inner.release_bounded()
    }

    /// Free permits now.
    pub fn available_permits(&self) -> usize {
        self.inner.available_permits()
    }
}

/// [`BoundedSemaphore::release`] was called with every permit already free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseError {
    _private: (),
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("semaphore released more times than it was acquired")
    }
}

impl std::error::Error for ReleaseError {}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("available", &self.available_permits())
            .finish()
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("available", &self.available_permits())
            .finish()
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").finish_non_exhaustive()
    }
}

impl fmt::Debug for OwnedSemaphoreGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedSemaphoreGuard")
            .finish_non_exhaustive()
    }
}
