//! `sleep`, `yield_now`, `with_timeout` and the `Timeout` guard (gevent.sleep, gevent.Timeout).

use std::fmt;
use std::panic::resume_unwind;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Elapsed, JoinError};
use crate::greenlet::{Builder, Greenlet, GreenletRef, current};

/// Pauses the calling greenlet for at least `d`; other greenlets run meanwhile. On a plain
/// thread it blocks the thread.
///
/// It never returns early: however the timer wakes it, it goes back to sleep until `d` has
/// passed.
///
/// # Kill safety
///
/// A kill or an expired [`Timeout`] ends a sleeping greenlet at once.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// let start = Instant::now();
/// greenlet::sleep(Duration::from_millis(5));
/// assert!(start.elapsed() >= Duration::from_millis(5));
/// ```
pub fn sleep(d: Duration) {
    if !may::coroutine::is_coroutine() {
        return std::thread::sleep(d);
    }
    if d.is_zero() {
        return yield_now();
    }
    // Only the crate's timer (or a kill) unparks this blocker; a `None` deadline
    // (`Duration::MAX`) sleeps until the greenlet is killed.
    let deadline = crate::deadline::deadline(d);
    let retire = crate::sync::waiters::Retire::new();
    let began = Instant::now();
    while crate::deadline::park("sleep", retire.blocker(), deadline)
        == crate::deadline::Parked::Woken
    {}
    drop(retire);
    if deadline.is_some_and(|d| d <= began) {
        // Shorter than the call itself (a few nanoseconds): still a blocking point.
        yield_now();
    }
}

/// Lets the other runnable greenlets on this worker run, then continues (gevent's `sleep(0)`).
/// On a plain thread it is [`std::thread::yield_now`].
///
/// It is also a blocking point: a pending kill or an expired [`Timeout`] takes effect here,
/// so a long computation that calls `yield_now` now and then can be interrupted. And it never
/// starves what waits outside the worker's own queue: about every millisecond of yields on a
/// worker, the yielding greenlet steps behind the greenlets spawned or woken from other
/// threads and the worker's sockets.
///
/// # Examples
///
/// ```
/// let g = greenlet::spawn(|| {
///     for _ in 0..3 {
///         greenlet::yield_now();
///     }
/// });
/// g.join();
/// ```
pub fn yield_now() {
    if !may::coroutine::is_coroutine() {
        return std::thread::yield_now();
    }
    crate::monitor::blocking("yield_now", crate::deadline::hop::yield_now);
    crate::greenlet::kill::check();
}

/// Runs `f` and returns its value, or [`Elapsed`] if it takes longer than `d`.
///
/// `f` runs in a greenlet of its own. When the deadline passes, that greenlet is killed (it
/// unwinds at its next blocking point) and `with_timeout` returns once it is gone, so `f` has
/// no effect after `Err(Elapsed)` is returned. Works from a plain thread too.
///
/// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
/// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
///
/// # Errors
///
/// [`Elapsed`] if `f` did not finish within `d`.
///
/// # Panics
///
/// If `f` panics, the panic is re-raised on the caller (as if `f` had run inline). Also if the
/// greenlet for `f` cannot be spawned (see [`crate::spawn`]).
///
/// # Caveats
///
/// A deadline cannot interrupt code that never blocks: if `f` computes without sleeping,
/// doing I/O or calling [`yield_now`], it runs to its next blocking point first.
///
/// # Kill safety
///
/// If the caller is killed while waiting, `f`'s greenlet is killed too.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let fast = greenlet::with_timeout(Duration::from_secs(1), || 1 + 1);
/// assert_eq!(fast, Ok(2));
///
/// let slow = greenlet::with_timeout(Duration::from_millis(10), || {
///     greenlet::sleep(Duration::from_secs(10));
/// });
/// assert!(slow.is_err());
/// ```
#[track_caller]
pub fn with_timeout<F, T>(d: Duration, f: F) -> Result<T, Elapsed>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let g = match Builder::new().quiet_panics().spawn(f) {
        Ok(g) => g,
        Err(e) => panic!("with_timeout could not spawn: {e}"),
    };
    let guard = KillOnDrop(Some(&g));
    let finished = g.join_timeout(d);
    let killed_by_us = !finished && g.kill();
    disarm(guard);
    if killed_by_us {
        return Err(Elapsed::new(d));
    }
    match g.get() {
        Ok(v) => Ok(v),
        Err(JoinError::Panicked(msg)) => resume_unwind(Box::new(msg)),
        Err(other) => resume_unwind(Box::new(format!("with_timeout's greenlet ended: {other}"))),
    }
}

/// Kills the greenlet if the caller unwinds (is killed) while waiting for it.
struct KillOnDrop<'a, T: Send + 'static>(Option<&'a Greenlet<T>>);

impl<T: Send + 'static> Drop for KillOnDrop<'_, T> {
    fn drop(&mut self) {
        if let Some(g) = self.0 {
            g.kill_nowait();
        }
    }
}

fn disarm<T: Send + 'static>(mut guard: KillOnDrop<'_, T>) {
    guard.0 = None;
}

/// A deadline for the calling greenlet (gevent's `Timeout.start_new`).
///
/// While the guard lives, the greenlet that started it is interrupted at its first blocking
/// point after the deadline: it unwinds (its destructors run) and its result becomes
/// [`JoinError::TimedOut`]. Dropping the guard (or [`cancel`](Self::cancel)) disarms it: before
/// the deadline, and also after it if the interrupt has not reached the greenlet yet (it
/// computed through the deadline without a blocking point), as gevent's cancelled timer never
/// fires. To recover from a time-out and carry on, use [`with_timeout`] instead.
///
/// Unlike gevent's `Timeout`, this is not an exception to catch: the greenlet ends, and its
/// joiner sees an ordinary error value.
///
/// # Caveats
///
/// A plain thread (such as `main`) cannot be interrupted: there the guard only tracks the
/// deadline ([`is_expired`](Self::is_expired), [`remaining`](Self::remaining)). Code that
/// never blocks is interrupted at its next blocking point, which [`yield_now`] provides.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use greenlet::{JoinError, Timeout};
///
/// let g = greenlet::spawn(|| {
///     let _t = Timeout::start(Duration::from_millis(10));
///     greenlet::sleep(Duration::from_secs(10)); // interrupted here
///     "never"
/// });
/// assert_eq!(g.get(), Err(JoinError::TimedOut));
/// ```
#[must_use = "a Timeout is disarmed when dropped: bind it with `let _t = Timeout::start(d);`"]
pub struct Timeout {
    deadline: Option<Instant>,
    duration: Duration,
    /// The armed interrupt and its state (`deadline::ARMED` until it fires or is disarmed).
    timer: Option<(crate::deadline::Armed, Arc<AtomicU8>)>,
    /// The id of the greenlet that started it (0 on a plain thread).
    greenlet: u64,
}

impl Timeout {
    /// Arms a deadline `d` from now for the calling greenlet.
    ///
    /// The crate's timer thread interrupts the greenlet at the deadline; nothing is spawned.
    #[track_caller]
    pub fn start(d: Duration) -> Timeout {
        let deadline = crate::deadline::deadline(d);
        let me = current();
        let greenlet = me.as_ref().map_or(0, GreenletRef::id);
        let timer = match (me, deadline) {
            (Some(me), Some(at)) => {
                // The crate's timer interrupts the greenlet at `at`, from a worker: no timer
                // greenlet to spawn, and none to starve behind a loop of `yield_now`.
                let state = Arc::new(AtomicU8::new(crate::deadline::ARMED));
                crate::deadline::arm_interrupt(at, me, state.clone()).map(|armed| (armed, state))
            }
            // On a plain thread, or a deadline too far to represent: nothing to arm.
            _ => None,
        };
        Timeout {
            deadline,
            duration: d,
            timer,
            greenlet,
        }
    }

    /// Disarms the deadline (the same as dropping the guard).
    pub fn cancel(self) {}

    /// The instant the deadline passes (`None` if too far in the future to represent).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The duration the guard was started with.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Time left before the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        })
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        self.remaining().is_zero()
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        if let Some((armed, state)) = self.timer.take() {
            let fired = state
                .compare_exchange(
                    crate::deadline::ARMED,
                    crate::deadline::CANCELLED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err();
            crate::deadline::disarm(armed);
            if fired {
                // The deadline passed while the greenlet computed (or as the guarded section
                // ended): take the interrupt back unless it is already unwinding the greenlet.
                // The timer is a few instructions from having requested it.
                while state.load(Ordering::Acquire) == crate::deadline::FIRED {
                    std::thread::yield_now();
                }
                crate::greenlet::kill::withdraw_timeout(self.greenlet);
            }
        }
    }
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("duration", &self.duration)
            .field("remaining", &self.remaining())
            .field("armed", &self.timer.is_some())
            .finish()
    }
}
