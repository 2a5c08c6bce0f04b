//! The one door for deadlines: every timed wait of the crate turns its deadline into what may
//! is given here, and every park of the crate goes through [`park`].
//!
//! may 0.3.51 stores a park's time-out in whole milliseconds with 0 meaning "forever"
//! (`docs/upstream.md`, item 1): a time-out under 1 ms parks forever and a longer one wakes up
//! to 1 ms early. And a greenlet woken by may's timer runs on may's timer thread until it next
//! parks (item 2), where its work would delay every other timer in the process. So here:
//!
//! - a deadline that has passed (a zero time-out) means "check once, then time out": nothing is
//!   parked;
//! - a deadline too far away to represent (`Duration::MAX`) means "no deadline";
//! - parks are given no time-out: the crate's own [`timer`] unparks them at their deadline, at
//!   nanosecond precision, from a worker, and the wait loops until the deadline has passed;
//! - socket time-outs are kept the same way (`net::wait`): may is never given one;
//! - where may must still be given a time-out (no timer thread), it is rounded **up** to whole
//!   milliseconds, at least 1 ms ([`may_timeout`]); a greenlet that may's timer then wakes on
//!   may's timer thread moves back to its worker before it runs on (`hop::stay_home`).
//!
//! The contract every timed API of the crate states: **a timed wait never returns before its
//! deadline, never hangs, and on an idle machine returns within about 2 ms after it.**

pub(crate) mod home;
pub(crate) mod hop;
mod reaper;
pub(crate) mod timer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use may::coroutine::ParkError;
use may::sync::Blocker;

/// A may `Blocker` that keeps the handle of the coroutine that made it alive for as long as
/// itself.
///
/// may's `Park::subscribe` goes on using the parking coroutine's cancel data, which lives in
/// the coroutine's handle, after it has published the coroutine to its wakers
/// (`docs/upstream.md`, item 13): a waker on another thread can run the coroutine to its end,
/// and may then frees the handle with the coroutine's local storage while `subscribe` still
/// writes to it (AddressSanitizer: heap-use-after-free in `Cancel::set_co`). The handle held
/// here cannot be the last one before the blocker is dropped, and the blocker's `Park::drop`
/// waits for the end of any `subscribe` first (fields drop in declaration order). Blockers are
/// only dropped where that wait works (`reaper`).
pub(crate) struct Parker {
    blocker: Blocker,
    _owner: Option<may::coroutine::Coroutine>,
    /// The worker the parked greenlet lives on ([`home::NONE`] for a plain thread): wake-ups
    /// are routed there ([`home::unpark`]).
    pub(crate) home: usize,
}

impl Parker {
    /// A blocker for the calling greenlet or thread. may reports a kill to [`park`] as
    /// `ParkError::Canceled` instead of acting on it itself.
    pub(crate) fn new() -> Parker {
        let co = may::coroutine::is_coroutine();
        Parker {
            blocker: Blocker::new(true),
            _owner: co.then(may::coroutine::current),
            home: if co {
                home::worker().unwrap_or(home::NONE)
            } else {
                home::NONE
            },
        }
    }
}

impl std::ops::Deref for Parker {
    type Target = Blocker;

    fn deref(&self) -> &Blocker {
        &self.blocker
    }
}

/// The longest single time-out handed to may; longer waits are made of several. Keeps may's
/// timer arithmetic (`now + nanos`) far from overflow.
pub(crate) const MAX_CHUNK: Duration = Duration::from_secs(3600);

/// A deadline `d` from now; `None` (no deadline) if it cannot be represented. A zero `d` gives
/// a deadline that has already passed: the wait checks once and times out.
pub(crate) fn deadline(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

/// What may is given for a wait of `left`: whole milliseconds, rounded up, at least 1 ms (may
/// treats anything under 1 ms as "forever") and at most [`MAX_CHUNK`].
pub(crate) fn may_timeout(left: Duration) -> Duration {
    whole_ms(left).min(MAX_CHUNK)
}

/// `d` rounded up to whole milliseconds, at least 1 ms.
fn whole_ms(d: Duration) -> Duration {
    let ms = d.as_nanos().div_ceil(1_000_000).max(1);
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// Time left before `deadline`: `Ok(None)` for no deadline, `Err(())` once it has passed.
#[allow(clippy::result_unit_err)]
pub(crate) fn left(deadline: Option<Instant>) -> Result<Option<Duration>, ()> {
    match deadline {
        None => Ok(None),
        Some(d) => match d.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(()),
        },
    }
}

/// How [`park`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parked {
    /// Unparked (possibly spuriously: the caller re-checks its condition).
    Woken,
    /// The deadline has passed.
    TimedOut,
}

/// Parks on `blocker` until it is unparked or `deadline` passes.
///
/// may reports a kill on `blocker` (a [`Parker`]) as `ParkError::Canceled` instead of acting
/// on it itself, and the kill is handled here, once (see `greenlet::kill`): the first one unwinds the greenlet, and a wait made while that
/// unwinding runs destructors parks normally.
///
/// The deadline is kept by the crate's own [`timer`] (nanosecond precision, greenlets woken
/// on a worker). Never returns `TimedOut` before the deadline; with no deadline it never
/// returns `TimedOut`.
pub(crate) fn park(what: &'static str, blocker: &Arc<Parker>, deadline: Option<Instant>) -> Parked {
    loop {
        let Ok(left) = left(deadline) else {
            return Parked::TimedOut;
        };
        let armed = deadline.and_then(|d| timer::arm(d, blocker));
        // Without the timer thread (it could not be started), may keeps the time-out.
        let may_left = if armed.is_some() {
            None
        } else {
            left.map(may_timeout)
        };
        let home = hop::thread_number();
        let r = crate::monitor::blocking_until(what, deadline, || blocker.park(may_left));
        hop::stay_home(home);
        if let Some(armed) = armed {
            timer::disarm(armed);
        }
        match r {
            // By a notifier or by the timer: the caller re-checks its condition, then calls
            // again, and the deadline check above ends the wait.
            Ok(()) => return Parked::Woken,
            // Early (may's wake-up can precede the deadline) or on time: the loop decides.
            Err(ParkError::Timeout) => {}
            Err(ParkError::Canceled) => crate::greenlet::kill::cancelled(),
        }
    }
}

pub(crate) use home::drain;
pub(crate) use reaper::retire;
pub(crate) use timer::{ARMED, Armed, CANCELLED, FIRED, IoTimer, arm_interrupt, disarm};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn may_timeouts_round_up_to_whole_milliseconds() {
        let us = Duration::from_micros;
        assert_eq!(may_timeout(Duration::ZERO), us(1000));
        assert_eq!(may_timeout(us(1)), us(1000));
        assert_eq!(may_timeout(us(999)), us(1000));
        assert_eq!(may_timeout(us(1000)), us(1000));
        assert_eq!(may_timeout(us(1001)), us(2000));
        assert_eq!(may_timeout(us(1500)), us(2000));
        assert_eq!(may_timeout(Duration::MAX), MAX_CHUNK);
    }

    #[test]
    fn deadlines() {
        assert!(deadline(Duration::MAX).is_none());
        assert_eq!(left(None), Ok(None));
        assert_eq!(left(deadline(Duration::ZERO)), Err(()));
        let l = left(deadline(Duration::from_secs(5))).unwrap().unwrap();
        assert!(l > Duration::from_secs(4) && l <= Duration::from_secs(5));
    }
}
