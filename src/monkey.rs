//! Make unmodified blocking code cooperative (gevent.monkey), Linux only, feature `monkey`.
//!
//! With the feature on, this crate defines C functions with the names of the C library's
//! blocking calls. A Rust program is linked against them before the C library, so `std` (and
//! any crate that calls those functions) reaches them first. After
//! [`patch_all`] each one checks where it runs:
//!
//! - **inside a greenlet**, it waits cooperatively: only the greenlet parks, and its worker
//!   thread runs others;
//! - **anywhere else** (plain threads, may's own workers and event loop), and before
//!   `patch_all`, it calls the C library's own function (found with `dlsym(RTLD_NEXT, …)`), so
//!   nothing outside greenlets changes.
//!
//! # What is patched
//!
//! | call | used by | inside a greenlet |
//! |---|---|---|
//! | `clock_nanosleep`, `nanosleep` | `std::thread::sleep`, C `sleep`/`usleep` | parks the greenlet for the duration ([`crate::sleep`]); never returns early unless the greenlet is killed |
//!
//! # Kill safety
//!
//! A kill cannot unwind through a C function (Rust would abort the process). A greenlet killed
//! inside a patched call has that call end early (`EINTR`, nothing left to sleep), and unwinds
//! at its next blocking point in Rust code; if it returns without reaching one, it ends with
//! its value rather than [`JoinError::Killed`](crate::JoinError::Killed).
//!
//! # What is not patched
//!
//! Sockets, files, pipes, `poll` and name resolution are not interposed yet: a `std::net`
//! read inside a greenlet still blocks its worker. Use [`crate::net`] and [`crate::http`]
//! there. Interposition also cannot reach static binaries (musl), code that makes the system
//! call itself (`syscall(2)`, inline assembly), or calls made inside the C library itself.
//!
//! # Cost
//!
//! Without the feature: none, nothing is compiled. With it, before `patch_all`: one atomic
//! load per call. After: one atomic load and a coroutine check per call outside greenlets.
//!
//! # Examples
//!
//! ```
//! use std::time::{Duration, Instant};
//!
//! greenlet::monkey::patch_all();
//! let start = Instant::now();
//! let sleepers: Vec<_> = (0..100)
//!     .map(|_| greenlet::spawn(|| std::thread::sleep(Duration::from_millis(100))))
//!     .collect();
//! greenlet::joinall(sleepers);
//! // Without patching, 100 sleeps on 2 workers would take about 5 s.
//! assert!(start.elapsed() < Duration::from_secs(3));
//! ```

use std::ffi::{CStr, c_int};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static PATCHED: AtomicBool = AtomicBool::new(false);

/// Turns on the cooperative versions of the patched calls (idempotent). Call it early, e.g.
/// as the first line of `main`; calls made before it behave as usual.
pub fn patch_all() {
    crate::config::ensure_started();
    if !PATCHED.swap(true, Ordering::SeqCst) {
        log::debug!("monkey: blocking calls patched: clock_nanosleep, nanosleep");
    }
}

/// Whether [`patch_all`] has been called.
pub fn is_patched() -> bool {
    PATCHED.load(Ordering::Relaxed)
}

/// Whether a patched call should cooperate: patched, and running in a greenlet.
fn cooperative() -> bool {
    PATCHED.load(Ordering::Relaxed) && may::coroutine::is_coroutine()
}

/// Looks up the C library's own `name` (the next definition after ours).
fn real(name: &CStr, slot: &OnceLock<usize>) -> usize {
    *slot.get_or_init(|| {
        // SAFETY: `dlsym` only reads its arguments; `name` is a NUL-terminated string and
        // RTLD_NEXT is a valid pseudo-handle. A null result is handled by the caller.
        unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) as usize }
    })
}

fn duration(ts: &libc::timespec) -> Option<Duration> {
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
pub unsafe extern "C" fn clock_nanosleep(
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
        // the process). Catch it and end the call early; may's cancel flag stays set, so the
        // greenlet unwinds at its next blocking point in Rust code.
        let slept = std::panic::catch_unwind(|| crate::sleep(d));
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
    static REAL: OnceLock<usize> = OnceLock::new();
    match real(c"clock_nanosleep", &REAL) {
        0 => libc::ENOSYS,
        f => {
            // SAFETY: `f` is the C library's `clock_nanosleep`, which has this signature; the
            // arguments are passed through unchanged from our caller.
            unsafe { std::mem::transmute::<usize, ClockNanosleep>(f)(clock, flags, req, rem) }
        }
    }
}

/// `nanosleep(2)`: cooperative inside greenlets after [`patch_all`].
///
/// # Safety
///
/// As the C function: `req` must point to a valid `timespec`; `rem` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nanosleep(req: *const libc::timespec, rem: *mut libc::timespec) -> c_int {
    if cooperative() && !req.is_null() {
        // SAFETY: as in `clock_nanosleep`.
        let result = unsafe { clock_nanosleep(libc::CLOCK_MONOTONIC, 0, req, rem) };
        if result == 0 {
            return 0;
        }
        // SAFETY: writing errno through the C library's own accessor.
        unsafe { *libc::__errno_location() = result };
        return -1;
    }
    static REAL: OnceLock<usize> = OnceLock::new();
    match real(c"nanosleep", &REAL) {
        0 => {
            // SAFETY: as above.
            unsafe { *libc::__errno_location() = libc::ENOSYS };
            -1
        }
        f => {
            // SAFETY: `f` is the C library's `nanosleep`, which has this signature.
            unsafe { std::mem::transmute::<usize, Nanosleep>(f)(req, rem) }
        }
    }
}
