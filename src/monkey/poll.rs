//! The waiting calls: `poll`, `ppoll`, `select`, `pselect`.
//!
//! Inside a greenlet, a call with a time-out other than zero first checks without waiting (the
//! C library's own call with a zero time-out). If nothing is ready, the greenlet parks until
//! one of the descriptors is (a private epoll set holding them, level-triggered, unchanged:
//! `ready`) or the time-out passes (the crate's timer, to the nanosecond), and the call is made
//! again with a zero time-out. So the result is always the kernel's own: counts, `revents`
//! (`POLLNVAL` for a closed descriptor, `POLLHUP`, `POLLERR`), fd sets, and errors (`EBADF`,
//! `EINVAL`, `EFAULT`); `select` updates its `timeval` to the time left, as Linux does.
//!
//! The signal mask of `ppoll` and `pselect` applies to each zero-time check; signals are not
//! waited for while the greenlet parks (a worker thread runs many greenlets, so a per-thread
//! mask means nothing to one of them). A `select` with `nfds` above `FD_SETSIZE` (1024) is
//! the C library's own, blocking the worker: the crate saves and restores the caller's sets
//! between checks, and reads no further than an `fd_set`.
//!
//! # Kill safety
//!
//! A killed wait ends with `EINTR` (then `ECANCELED` until the kill is delivered); `select`'s
//! sets are then those of the last check (the kernel leaves them unchanged on `EINTR`).

use std::ffi::c_int;
use std::time::{Duration, Instant};

use super::ready::{DEADLINE, Watch};
use super::{cooperative, errno, fail, real_fn};

type PollFn = unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, c_int) -> c_int;
type PpollFn = unsafe extern "C" fn(
    *mut libc::pollfd,
    libc::nfds_t,
    *const libc::timespec,
    *const libc::sigset_t,
) -> c_int;
type SelectFn = unsafe extern "C" fn(
    c_int,
    *mut libc::fd_set,
    *mut libc::fd_set,
    *mut libc::fd_set,
    *mut libc::timeval,
) -> c_int;
type PselectFn = unsafe extern "C" fn(
    c_int,
    *mut libc::fd_set,
    *mut libc::fd_set,
    *mut libc::fd_set,
    *const libc::timespec,
    *const libc::sigset_t,
) -> c_int;

/// Parks until `check` (a zero-time call, C-style: above 0 ready, 0 nothing, -1 an error)
/// reports something, waiting for `interests` (descriptor, `POLL*` events) in between, until
/// `deadline`. Returns `check`'s result, 0 at the deadline, or -1 with errno.
fn wait_for(
    interests: impl Iterator<Item = (c_int, u32)>,
    deadline: Option<Instant>,
    mut check: impl FnMut() -> c_int,
) -> c_int {
    if crate::greenlet::kill::pending() {
        return fail(libc::ECANCELED);
    }
    let mut watch = Watch::new();
    for (fd, events) in interests {
        watch.add(fd, events);
    }
    let waited = watch.wait("monkey poll", deadline, || match check() {
        0 => Err(libc::EAGAIN),
        r if r > 0 => Ok(r),
        _ => Err(errno()),
    });
    // Emptied before errno is set: its `EPOLL_CTL_DEL`s can fail (a descriptor closed).
    drop(watch);
    match waited {
        Ok(r) => r,
        Err(DEADLINE) => 0,
        Err(e) => fail(e),
    }
}

/// The pollfds of a call as (descriptor, events) pairs; negative descriptors are ignored,
/// as the kernel does.
fn poll_interests(fds: *mut libc::pollfd, n: libc::nfds_t) -> impl Iterator<Item = (c_int, u32)> {
    let all: &[libc::pollfd] = if fds.is_null() || n == 0 {
        &[]
    } else {
        // SAFETY: the caller's array of `n` pollfds (the C contract; the zero-time check made
        // before this has already read all of it without `EFAULT`).
        unsafe { std::slice::from_raw_parts(fds, n as usize) }
    };
    all.iter()
        .filter(|p| p.fd >= 0)
        .map(|p| (p.fd, u32::from(p.events as u16)))
}

/// A `timespec` time-out as a deadline: `Ok(None)` for none (a null pointer), `Err` when
/// invalid (the C call then reports it).
fn timespec_deadline(t: *const libc::timespec) -> Result<Option<Instant>, ()> {
    if t.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's non-null `timespec` (the C contract).
    let t = unsafe { &*t };
    let d = super::sleep::duration(t).ok_or(())?;
    Ok(Some(after(d)))
}

/// `now + d`, or a day past now when that is not representable: far enough that the caller
/// checks again (waits this long do not end on their own in practice).
fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400))
}

/// `poll(2)`: inside a greenlet after `patch_all`, a poll with a time-out parks the greenlet
/// until a descriptor is ready or the time-out passes.
///
/// # Safety
///
/// As the C function: `fds` is valid for `n` entries.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn poll(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    timeout_ms: c_int,
) -> c_int {
    let Some(real) = real_fn!(c"poll", PollFn) else {
        return fail(libc::ENOSYS);
    };
    // SAFETY: passed through, with the caller's time-out or none.
    let call = |ms| unsafe { real(fds, n, ms) };
    if !cooperative() || timeout_ms == 0 {
        return call(timeout_ms);
    }
    let first = call(0);
    if first != 0 {
        return first;
    }
    let deadline = u64::try_from(timeout_ms)
        .ok()
        .map(|ms| after(Duration::from_millis(ms)));
    wait_for(poll_interests(fds, n), deadline, || call(0))
}

/// `ppoll(2)`: as [`poll`], with a `timespec` time-out (see the module docs for the signal
/// mask).
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn ppoll(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    timeout: *const libc::timespec,
    sigmask: *const libc::sigset_t,
) -> c_int {
    let Some(real) = real_fn!(c"ppoll", PpollFn) else {
        return fail(libc::ENOSYS);
    };
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: passed through with the caller's pointers, or a zero time-out of ours.
    let call = |t: *const libc::timespec| unsafe { real(fds, n, t, sigmask) };
    if !cooperative() {
        return call(timeout);
    }
    let deadline = match timespec_deadline(timeout) {
        // Invalid (the kernel's EINVAL), or zero: the C library's own call.
        Err(()) => return call(timeout),
        Ok(Some(d)) if d <= Instant::now() => return call(timeout),
        Ok(d) => d,
    };
    let first = call(&zero);
    if first != 0 {
        return first;
    }
    wait_for(poll_interests(fds, n), deadline, || call(&zero))
}

/// The words of an `fd_set` that the kernel reads for `nfds` descriptors.
fn set_words(nfds: c_int) -> usize {
    (nfds.max(0) as usize).div_ceil(libc::c_ulong::BITS as usize)
}

/// A copy of the first `words` words of a caller's set (null: none).
fn save(set: *mut libc::fd_set, words: usize) -> Option<Vec<libc::c_ulong>> {
    // SAFETY: the caller's set, valid for as many words as the kernel reads (the C contract;
    // the zero-time check made before this has already read them without `EFAULT`).
    (!set.is_null()).then(|| unsafe { std::slice::from_raw_parts(set.cast(), words).to_vec() })
}

/// Writes a saved copy back into the caller's set before a check.
fn restore(set: *mut libc::fd_set, saved: &Option<Vec<libc::c_ulong>>) {
    if let Some(words) = saved {
        // SAFETY: as in `save`: the same words of the same set.
        unsafe { std::ptr::copy_nonoverlapping(words.as_ptr(), set.cast(), words.len()) };
    }
}

/// The descriptors of three saved sets with their `POLL*` events.
fn select_interests(
    nfds: c_int,
    sets: [&Option<Vec<libc::c_ulong>>; 3],
) -> impl Iterator<Item = (c_int, u32)> + '_ {
    const EVENTS: [libc::c_short; 3] = [libc::POLLIN, libc::POLLOUT, libc::POLLPRI];
    let bits = libc::c_ulong::BITS as usize;
    (0..nfds.max(0)).filter_map(move |fd| {
        let (word, bit) = (fd as usize / bits, fd as usize % bits);
        let events = sets
            .iter()
            .zip(EVENTS)
            .filter(|(s, _)| s.as_ref().is_some_and(|w| w[word] >> bit & 1 == 1))
            .fold(0u32, |e, (_, ev)| e | ev as u32);
        (events != 0).then_some((fd, events))
    })
}

/// The shared wait of `select` and `pselect`: saves the sets after a first check that found
/// nothing, and restores them before each later check.
fn select_wait(
    nfds: c_int,
    sets: [*mut libc::fd_set; 3],
    deadline: Option<Instant>,
    call: impl Fn() -> c_int,
) -> c_int {
    let words = set_words(nfds);
    // Saved before the first check, which clears what is not ready.
    let saved = sets.map(|s| save(s, words));
    let first = call();
    if first != 0 {
        return first;
    }
    let check = || {
        for (set, copy) in sets.iter().zip(&saved) {
            restore(*set, copy);
        }
        call()
    };
    wait_for(
        select_interests(nfds, [&saved[0], &saved[1], &saved[2]]),
        deadline,
        check,
    )
}

/// `select(2)`: inside a greenlet after `patch_all`, a select with a time-out parks the
/// greenlet until a descriptor is ready or the time-out passes; `timeout` is left holding the
/// time not waited, as Linux does.
///
/// # Safety
///
/// As the C function: the sets are null or valid for `nfds` descriptors.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn select(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    timeout: *mut libc::timeval,
) -> c_int {
    let Some(real) = real_fn!(c"select", SelectFn) else {
        return fail(libc::ENOSYS);
    };
    // SAFETY: passed through with the caller's pointers, or a zero time-out of ours.
    let call = |t: *mut libc::timeval| unsafe { real(nfds, r, w, e, t) };
    if !cooperative() || !(0..=libc::FD_SETSIZE as c_int).contains(&nfds) {
        return call(timeout);
    }
    let deadline = if timeout.is_null() {
        None
    } else {
        // SAFETY: the caller's non-null `timeval`.
        let tv = unsafe { *timeout };
        if tv.tv_sec < 0 || tv.tv_usec < 0 {
            return call(timeout); // the kernel's EINVAL
        }
        let d = Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64);
        if d.is_zero() {
            return call(timeout);
        }
        Some(after(d))
    };
    let result = select_wait(nfds, [r, w, e], deadline, || {
        let mut zero = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        call(&mut zero)
    });
    if let Some(deadline) = deadline.filter(|_| !timeout.is_null()) {
        let left = deadline.saturating_duration_since(Instant::now());
        // SAFETY: the caller's `timeval`, which Linux's select updates too.
        unsafe {
            *timeout = libc::timeval {
                tv_sec: left.as_secs() as libc::time_t,
                tv_usec: libc::suseconds_t::from(left.subsec_micros() as i32),
            }
        };
    }
    result
}

/// `pselect(2)`: as [`select`], with a `timespec` time-out left unchanged (see the module docs
/// for the signal mask).
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn pselect(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    timeout: *const libc::timespec,
    sigmask: *const libc::sigset_t,
) -> c_int {
    let Some(real) = real_fn!(c"pselect", PselectFn) else {
        return fail(libc::ENOSYS);
    };
    // SAFETY: passed through with the caller's pointers, or a zero time-out of ours.
    let call = |t: *const libc::timespec| unsafe { real(nfds, r, w, e, t, sigmask) };
    if !cooperative() || !(0..=libc::FD_SETSIZE as c_int).contains(&nfds) {
        return call(timeout);
    }
    let deadline = match timespec_deadline(timeout) {
        Err(()) => return call(timeout),
        Ok(Some(d)) if d <= Instant::now() => return call(timeout),
        Ok(d) => d,
    };
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    select_wait(nfds, [r, w, e], deadline, || call(&zero))
}
