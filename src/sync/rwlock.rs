//! `RwLock`: std's API, with waits that park the greenlet, survive kills and poison per
//! greenlet.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};

use super::waiters::{Waiters, lock, wait_until};
use crate::greenlet::kill::unwinding;

/// A reader-writer lock for greenlets and threads, with std's API: any number of readers, or
/// one writer. A greenlet that waits parks; a thread blocks.
///
/// Writers are preferred: once a writer waits, new readers wait behind it, so a stream of
/// readers cannot starve it. (So, as with std's, a reader that takes the read lock again while
/// a writer waits deadlocks.)
///
/// # Poisoning
///
/// A write guard dropped while its holder unwinds from a panic or a kill poisons the lock, as
/// std's; whether the holder unwinds is known per greenlet (see [`Mutex`](super::Mutex)).
///
/// # Kill safety
///
/// A kill while waiting unwinds the greenlet without taking the lock; a writer killed while
/// waiting lets the readers it held back in. Guards held by a killed greenlet are released
/// as it unwinds.
///
/// # Examples
///
/// ```
/// use greenlet::sync::RwLock;
///
/// let config = RwLock::new(String::from("v1"));
/// {
///     let a = config.read().unwrap();
///     let b = config.read().unwrap(); // readers share
///     assert_eq!((a.as_str(), b.as_str()), ("v1", "v1"));
/// }
/// config.write().unwrap().push_str("-patched");
/// assert_eq!(*config.read().unwrap(), "v1-patched");
/// ```
pub struct RwLock<T: ?Sized> {
    state: std::sync::Mutex<State>,
    poisoned: AtomicBool,
    /// The data; never contended (our state admits std's readers and writer only when std
    /// would too), so it never waits. Its own poisoning is ignored.
    data: std::sync::RwLock<T>,
}

#[derive(Default)]
struct State {
    readers: usize,
    writer: bool,
    /// Writers waiting (registered or about to be): readers wait while there are any.
    writers_waiting: usize,
    read_waiters: Waiters,
    write_waiters: Waiters,
}

fn read_waiters(s: &mut State) -> &mut Waiters {
    &mut s.read_waiters
}

fn write_waiters(s: &mut State) -> &mut Waiters {
    &mut s.write_waiters
}

/// A shared guard of an [`RwLock`]: released when dropped.
#[must_use = "the lock is released at once if the guard is not kept"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    // Declared first, so dropped first: std's guard goes before our state is released.
    data: std::sync::RwLockReadGuard<'a, T>,
    _release: ReadRelease<'a, T>,
}

/// The exclusive guard of an [`RwLock`]: released when dropped.
#[must_use = "the lock is released at once if the guard is not kept"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    data: std::sync::RwLockWriteGuard<'a, T>,
    _release: WriteRelease<'a, T>,
}

struct ReadRelease<'a, T: ?Sized>(&'a RwLock<T>);

impl<T: ?Sized> Drop for ReadRelease<'_, T> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.readers -= 1;
        if state.readers == 0 {
            state.write_waiters.notify_one();
        }
    }
}

struct WriteRelease<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    unwinding_at_lock: bool,
}

impl<T: ?Sized> Drop for WriteRelease<'_, T> {
    fn drop(&mut self) {
        if !self.unwinding_at_lock && unwinding() {
            self.lock.poisoned.store(true, Ordering::Release);
        }
        let mut state = lock(&self.lock.state);
        state.writer = false;
        if state.writers_waiting > 0 {
            state.write_waiters.notify_one();
        } else {
            state.read_waiters.notify_all();
        }
    }
}

/// Counts a writer as waiting until it has the lock or gives up (also by a kill); the last
/// one to give up lets the readers in.
struct WriteIntent<'a>(&'a std::sync::Mutex<State>);

impl Drop for WriteIntent<'_> {
    fn drop(&mut self) {
        let mut state = lock(self.0);
        state.writers_waiting -= 1;
        if state.writers_waiting == 0 && !state.writer {
            state.read_waiters.notify_all();
        }
    }
}

impl<T> RwLock<T> {
    /// A new, unlocked lock holding `value`.
    pub const fn new(value: T) -> RwLock<T> {
        RwLock {
            state: std::sync::Mutex::new(State {
                readers: 0,
                writer: false,
                writers_waiting: 0,
                read_waiters: Waiters::new(),
                write_waiters: Waiters::new(),
            }),
            poisoned: AtomicBool::new(false),
            data: std::sync::RwLock::new(value),
        }
    }

    /// Consumes the lock and returns the data.
    ///
    /// # Errors
    ///
    /// If the lock is poisoned, the data inside a [`PoisonError`].
    pub fn into_inner(self) -> LockResult<T> {
        let poisoned = self.is_poisoned();
        let value = self
            .data
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        super::lock_result(poisoned, value)
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Takes a shared lock, waiting while a writer holds the lock or waits for it.
    ///
    /// # Errors
    ///
    /// If the lock is poisoned, the guard inside a [`PoisonError`] (the lock is held).
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        let _ = wait_until("RwLock::read", &self.state, read_waiters, None, |s| {
            (!s.writer && s.writers_waiting == 0).then(|| s.readers += 1)
        });
        self.read_guard()
    }

    /// Takes the exclusive lock, waiting while anyone else holds it.
    ///
    /// # Errors
    ///
    /// If the lock is poisoned, the guard inside a [`PoisonError`] (the lock is held).
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        lock(&self.state).writers_waiting += 1;
        let intent = WriteIntent(&self.state);
        let _ = wait_until("RwLock::write", &self.state, write_waiters, None, |s| {
            (!s.writer && s.readers == 0).then(|| s.writer = true)
        });
        drop(intent);
        self.write_guard()
    }

    /// Takes a shared lock if no writer holds it or waits for it, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if it cannot be taken now; [`TryLockError::Poisoned`]
    /// (holding the guard) if the lock is poisoned.
    pub fn try_read(&self) -> TryLockResult<RwLockReadGuard<'_, T>> {
        let took = {
            let mut s = lock(&self.state);
            let free = !s.writer && s.writers_waiting == 0;
            if free {
                s.readers += 1;
            }
            free
        };
        if !took {
            return Err(TryLockError::WouldBlock);
        }
        self.read_guard().map_err(TryLockError::Poisoned)
    }

    /// Takes the exclusive lock if nobody holds it, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if it is held; [`TryLockError::Poisoned`] (holding the
    /// guard) if the lock is poisoned.
    pub fn try_write(&self) -> TryLockResult<RwLockWriteGuard<'_, T>> {
        let took = {
            let mut s = lock(&self.state);
            let free = !s.writer && s.readers == 0;
            if free {
                s.writer = true;
            }
            free
        };
        if !took {
            return Err(TryLockError::WouldBlock);
        }
        self.write_guard().map_err(TryLockError::Poisoned)
    }

    /// Whether a writer unwound (panicked or was killed) while holding the lock.
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
    /// If the lock is poisoned, the reference inside a [`PoisonError`].
    pub fn get_mut(&mut self) -> LockResult<&mut T> {
        let poisoned = self.is_poisoned();
        let value = self.data.get_mut().unwrap_or_else(PoisonError::into_inner);
        super::lock_result(poisoned, value)
    }

    fn read_guard(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        let release = ReadRelease(self);
        let data = self.data.read().unwrap_or_else(PoisonError::into_inner);
        let guard = RwLockReadGuard {
            data,
            _release: release,
        };
        super::lock_result(self.is_poisoned(), guard)
    }

    fn write_guard(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        let release = WriteRelease {
            lock: self,
            unwinding_at_lock: unwinding(),
        };
        let data = self.data.write().unwrap_or_else(PoisonError::into_inner);
        let guard = RwLockWriteGuard {
            data,
            _release: release,
        };
        super::lock_result(self.is_poisoned(), guard)
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.data
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.data
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.data
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> RwLock<T> {
        RwLock::new(T::default())
    }
}

impl<T> From<T> for RwLock<T> {
    fn from(value: T) -> RwLock<T> {
        RwLock::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.try_read() {
            Ok(guard) => d.field("data", &&*guard),
            Err(TryLockError::Poisoned(e)) => d.field("data", &&*e.into_inner()),
            Err(TryLockError::WouldBlock) => d.field("data", &format_args!("<locked>")),
        };
        d.field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}
