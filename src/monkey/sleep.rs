//! The sleeps: `clock_nanosleep(3)` and `nanosleep(2)` park the greenlet ([`crate::sleep`],
//! exact to the nanosecond timer of the crate) instead of its worker.
//!
//! # Kill safety
//!
//! A killed sleep returns `EINTR` with nothing left to sleep (`rem` zeroed), so `std`'s retry
//! loop stops; the greenlet unwinds at its next blocking point.
//!
//! ```
//! greenlet::monkey::patch_all();
//! let g = greenlet::spawn(|| std::thread::sleep(std::time::Duration::from_millis(10)));
//! g.get().unwrap();
//! ```

use std::ffi::c_int;
use std::time::Duration;

use super::{catch_kill, cooperative, fail, real_fn};

/// A `timespec` as a `Duration`, `None` when invalid (negative, or nanoseconds out of range).
pub(super) fn duration(ts: &libc::timespec) -> Option<Duration> {
    let nanos = u32::try_from(ts.tv_nsec)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    let secs = u64::try_from(ts.tv_sec).ok()?;
    Some(Duration::new(secs, nanos))
}

type ClockNanosleep = unsafe extern "C" fn(
    libc::clockid_t,
    c_int,
    *const libc::timespec,
    *mut libc::timespec,
) -> c_int;
type Nanosleep = unsafe extern "C" fn(*const libc::timespec, *mut libc::timespec) -> c_int;

/// `clock_nanosleep(3)`: cooperative inside greenlets after [`patch_all`].
///
/// # Safety
///
/// As the C function: `req` must point to a valid `timespec`; `rem` is null or writable.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn clock_nanosleep(
    clock: libc::clockid_t,
    flags: c_int,
    req: *const libc::timespec,
    rem: *mut libc::timespec,
) -> c_int {
    if cooperative() && !req.is_null() {
        // SAFETY: the caller passes a valid `timespec` (the C contract we implement).
        let ts = unsafe { &*req };
        let Some(d) = duration(ts) else {
            return libc::EINVAL;
        };
        let d = if flags & libc::TIMER_ABSTIME != 0 {
            let mut now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `now` is a valid, writable `timespec`.
            if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
                return libc::EINVAL;
            }
            d.saturating_sub(duration(&now).unwrap_or_default())
        } else {
            d
        };
        // A kill unwinds with a panic, which must not cross this C boundary (Rust would abort
        // the process). Catch it and end the call early; the kill is sent again, so the
        // greenlet unwinds at its next blocking point in Rust code.
        let slept = catch_kill(|| crate::sleep(d));
        if !rem.is_null() && flags & libc::TIMER_ABSTIME == 0 {
            // SAFETY: the caller passes null or a writable `timespec` for `rem`. Nothing is
            // left to sleep either way, so std's retry loop on EINTR stops.
            unsafe {
                *rem = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                }
            };
        }
        return if slept.is_ok() { 0 } else { libc::EINTR };
    }
    let Some(real) = real_fn!(c"clock_nanosleep", ClockNanosleep) else {
        return libc::ENOSYS; // this call reports errors as its return value, not in errno
    };
    // SAFETY: passed through unchanged from our caller.
    unsafe { real(clock, flags, req, rem) }
}

/// `nanosleep(2)`: cooperative inside greenlets after [`patch_all`].
///
/// # Safety
///
/// As the C function: `req` must point to a valid `timespec`; `rem` is null or writable.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn nanosleep(
    req: *const libc::timespec,
    rem: *mut libc::timespec,
) -> c_int {
    if cooperative() && !req.is_null() {
        // SAFETY: as in `clock_nanosleep`.
        let result = unsafe { clock_nanosleep(libc::CLOCK_MONOTONIC, 0, req, rem) };
        return if result == 0 { 0 } else { fail(result) };
    }
    let Some(real) = real_fn!(c"nanosleep", Nanosleep) else {
        return fail(libc::ENOSYS);
    };
    // SAFETY: passed through unchanged.
    unsafe { real(req, rem) }
}
