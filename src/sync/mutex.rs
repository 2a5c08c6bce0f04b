//! `Mutex`: std's API, with waits that park the greenlet, survive kills and poison per
//! greenlet.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};

use super::waiters::{Waiters, lock, wait_until};

/// A mutual-exclusion lock for greenlets and threads, with std's API (gevent's `Lock`, used as
/// a context manager). A greenlet that waits parks; a thread blocks. Hold it across blocking
/// calls freely: unlike `std::sync::Mutex`, waiting for it never blocks the worker thread.
///
/// # Poisoning
///
/// As std's: a guard dropped while its holder unwinds from a panic *or a kill* poisons the
/// lock, and later `lock` calls return the guard inside a [`PoisonError`]. Unlike std's (and
/// may's, which this crate re-exported before), whether the holder unwinds is known per
/// greenlet, not per OS thread: a greenlet parked in the middle of an unwind on the same
/// worker does not poison the locks of the others, and a lock taken and released by a
/// destructor during an unwind is not poisoned.
///
/// # Kill safety
///
/// A kill while waiting unwinds the greenlet without taking the lock and without stealing the
/// wake-up of another waiter. A guard held by a killed greenlet is released as it unwinds.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use greenlet::sync::Mutex;
///
/// let total = Arc::new(Mutex::new(0));
/// let gs: Vec<_> = (0..10)
///     .map(|i| {
///         let total = total.clone();
///         greenlet::spawn(move || {
///             let mut t = total.lock().unwrap();
///             greenlet::sleep(std::time::Duration::from_millis(1)); // held across a park
///             *t += i;
///         })
///     })
///     .collect();
/// greenlet::joinall(gs);
/// assert_eq!(*total.lock().unwrap(), 45);
/// ```
pub struct Mutex<T: ?Sized> {
    /// `UNLOCKED`, `LOCKED`, or `CONTENDED` (locked, and waiters may be parked): the
    /// uncontended lock and unlock are one atomic operation each.
    word: AtomicU8,
    /// The parked waiters.
    state: std::sync::Mutex<State>,
    poisoned: AtomicBool,
    /// The data. Only the holder of the lock above touches it, so this std mutex is never
    /// contended: it provides the guard's `&mut T` without `unsafe`. Its own poisoning (which
    /// follows `thread::panicking`, per OS thread) is ignored.
    data: std::sync::Mutex<T>,
}

const UNLOCKED: u8 = 0;
const LOCKED: u8 = 1;
const CONTENDED: u8 = 2;

#[derive(Default)]
struct State {
    waiters: Waiters,
}

fn waiters(s: &mut State) -> &mut Waiters {
    &mut s.waiters
}

/// The guard of a locked [`Mutex`]: the lock is released when it is dropped.
#[must_use = "the lock is released at once if the guard is not kept"]
pub struct MutexGuard<'a, T: ?Sized> {
    // Declared first, so dropped first: the data is released before the lock is.
    data: std::sync::MutexGuard<'a, T>,
    _release: Release<'a, T>,
}

/// Releases the lock (and poisons it if the holder started unwinding since it locked).
struct Release<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    unwinding_at_lock: bool,
}

impl<T: ?Sized> Drop for Release<'_, T> {
    fn drop(&mut self) {
        if !self.unwinding_at_lock && crate::greenlet::kill::unwinding() {
            self.mutex.poisoned.store(true, Ordering::Release);
        }
        if self.mutex.word.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            // A waiter that found the lock taken registered under this lock before it
            // parked: the notification cannot pass it by.
            lock(&self.mutex.state).waiters.notify_one();
        }
    }
}

impl<T> Mutex<T> {
    /// A new, unlocked mutex holding `value`.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            word: AtomicU8::new(UNLOCKED),
            state: std::sync::Mutex::new(State {
                waiters: Waiters::new(),
            }),
            poisoned: AtomicBool::new(false),
            data: std::sync::Mutex::new(value),
        }
    }

    /// Consumes the mutex and returns the data.
    ///
    /// # Errors
    ///
    /// If the mutex is poisoned, the data inside a [`PoisonError`].
    pub fn into_inner(self) -> LockResult<T> {
        let poisoned = self.is_poisoned();
        let value = self
            .data
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        super::lock_result(poisoned, value)
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Takes the lock, waiting (parking the greenlet) while another holder has it.
    ///
    /// # Errors
    ///
    /// If the mutex is poisoned, the guard inside a [`PoisonError`] (the lock is held).
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        if self
            .word
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // Under the waiters' lock: mark the lock contended (so that its release notifies)
            // and take it if it was free meanwhile; otherwise park, registered before the
            // waiters' lock is released.
            let _ = wait_until("Mutex::lock", &self.state, waiters, None, |_| {
                (self.word.swap(CONTENDED, Ordering::Acquire) == UNLOCKED).then_some(())
            });
        }
        self.guard()
    }

    /// Takes the lock if it is free, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if another holder has it; [`TryLockError::Poisoned`]
    /// (holding the guard) if the mutex is poisoned.
    pub fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
        if self
            .word
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(TryLockError::WouldBlock);
        }
        self.guard().map_err(TryLockError::Poisoned)
    }

    /// Whether a holder unwound (panicked or was killed) while holding the lock.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Clears the poisoned state.
    pub fn clear_poison(&self) {
        self.poisoned.store(false, Ordering::Release);
    }

    /// The data, through a unique reference (no locking needed).
    ///
    /// # Errors
    ///
    /// If the mutex is poisoned, the reference inside a [`PoisonError`].
    pub fn get_mut(&mut self) -> LockResult<&mut T> {
        let poisoned = self.is_poisoned();
        let value = self.data.get_mut().unwrap_or_else(PoisonError::into_inner);
        super::lock_result(poisoned, value)
    }

    /// Builds the guard once the lock is taken.
    fn guard(&self) -> LockResult<MutexGuard<'_, T>> {
        let release = Release {
            mutex: self,
            unwinding_at_lock: crate::greenlet::kill::unwinding(),
        };
        // Never contended (see `data`): this does not wait.
        let data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        let guard = MutexGuard {
            data,
            _release: release,
        };
        super::lock_result(self.is_poisoned(), guard)
    }

    /// The mutex a guard belongs to (for [`Condvar`](super::Condvar)).
    pub(crate) fn of<'a>(guard: &MutexGuard<'a, T>) -> &'a Mutex<T> {
        guard._release.mutex
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.data
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.data
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Mutex<T> {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(value: T) -> Mutex<T> {
        Mutex::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Ok(guard) => d.field("data", &&*guard),
            Err(TryLockError::Poisoned(e)) => d.field("data", &&*e.into_inner()),
            Err(TryLockError::WouldBlock) => d.field("data", &format_args!("<locked>")),
        };
        d.field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}
