//! Synchronisation between greenlets (gevent.event, gevent.lock).
//!
//! Every wait here parks only the calling greenlet (a plain thread blocks instead), comes in
//! three forms (`try_*`, plain, `*_timeout`), and is kill-safe: a greenlet killed while
//! waiting takes nothing and steals no wake-up from the others; a guard held by a killed
//! greenlet is released as it unwinds.
//!
//! - [`Event`]: a flag to wait for; [`AsyncResult`]: a one-shot value or error.
//! - [`Semaphore`], [`BoundedSemaphore`]: counting permits; [`RLock`]: a re-entrant lock.
//! - [`Mutex`], [`RwLock`], [`Condvar`]: std's API, built on the same kill-safe waiters as the
//!   rest (poisoning is per greenlet). Use them, not `std::sync`'s, for locks held across a
//!   blocking call: a std lock that waits blocks the whole worker thread.
//!
//! # Time-outs
//!
//! Every `*_timeout` here keeps the crate's contract: it never returns before its deadline,
//! never hangs (zero and sub-millisecond time-outs included: zero checks once), and returns
//! within about 2 ms after the deadline on an idle machine. A time-out too large to represent
//! (`Duration::MAX`) waits without one.
//!
//! # Examples
//!
//! A start signal and a bounded section:
//!
//! ```
//! use std::sync::Arc;
//! use greenlet::sync::{Event, Semaphore};
//!
//! let go = Arc::new(Event::new());
//! let slots = Arc::new(Semaphore::new(2));
//! let gs: Vec<_> = (0..6)
//!     .map(|i| {
//!         let (go, slots) = (go.clone(), slots.clone());
//!         greenlet::spawn(move || {
//!             go.wait();
//!             let _permit = slots.acquire(); // at most two at a time in here
//!             i * 10
//!         })
//!     })
//!     .collect();
//! go.set();
//! assert_eq!(greenlet::joinall(gs).len(), 6);
//! ```

mod async_result;
mod condvar;
mod event;
mod mutex;
mod rlock;
mod rwlock;
mod semaphore;
pub(crate) mod waiters;

pub(crate) use waiters::lock;

/// `value` as std's lock results carry it: inside a [`std::sync::PoisonError`] if `poisoned`.
fn lock_result<T>(poisoned: bool, value: T) -> std::sync::LockResult<T> {
    if poisoned {
        Err(std::sync::PoisonError::new(value))
    } else {
        Ok(value)
    }
}

pub use async_result::{AsyncResult, Failure};
pub use condvar::{Condvar, WaitTimeoutResult};
pub use event::Event;
pub use mutex::{Mutex, MutexGuard};
pub use rlock::{RLock, RLockGuard};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::{
    BoundedSemaphore, OwnedSemaphoreGuard, ReleaseError, Semaphore, SemaphoreGuard,
};
