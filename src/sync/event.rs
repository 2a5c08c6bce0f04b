//! `Event` (gevent.event.Event).

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use super::waiters::{Waiters, deadline, lock, wait_until};

struct State {
    set: bool,
    waiters: Waiters,
}

fn waiters(s: &mut State) -> &mut Waiters {
    &mut s.waiters
}

/// A flag that greenlets (and threads) wait on until it is set (gevent's `Event`).
///
/// [`set`](Self::set) wakes every waiter; the flag stays set until [`clear`](Self::clear).
///
/// # Kill safety
///
/// A greenlet killed while waiting leaves the event unchanged; other waiters still wake.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use greenlet::sync::Event;
///
/// let ready = Arc::new(Event::new());
/// let waiters: Vec<_> = (0..3)
///     .map(|i| {
///         let ready = ready.clone();
///         greenlet::spawn(move || {
///             ready.wait();
///             i
///         })
///     })
///     .collect();
/// ready.set();
/// assert_eq!(greenlet::joinall(waiters), vec![Ok(0), Ok(1), Ok(2)]);
/// ```
pub struct Event {
    state: Mutex<State>,
}

impl Event {
    /// A new, unset event.
    pub fn new() -> Event {
        Event {
            state: Mutex::new(State {
                set: false,
                waiters: Waiters::default(),
            }),
        }
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let mut s = lock(&self.state);
        s.set = true;
        s.waiters.notify_all();
    }

    /// Clears the flag; later waiters wait again.
    pub fn clear(&self) {
        lock(&self.state).set = false;
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        lock(&self.state).set
    }

    /// Waits until the flag is set (returns at once if it is).
    pub fn wait(&self) {
        wait_until("Event::wait", &self.state, waiters, None, |s| {
            s.set.then_some(())
        });
    }

    /// Waits at most `d`; returns whether the flag is set. Never returns `false` early.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    pub fn wait_timeout(&self, d: Duration) -> bool {
        wait_until("Event::wait", &self.state, waiters, deadline(d), |s| {
            s.set.then_some(())
        })
        .is_some()
    }
}

impl Default for Event {
    fn default() -> Self {
        Event::new()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}
