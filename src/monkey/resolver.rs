//! Name resolution: `getaddrinfo(3)` (what `std`'s lookups of host names call) runs on the
//! blocking [thread pool](crate::threadpool) while only the greenlet waits, as gevent's
//! default resolver does. The older calls (`gethostbyname`) are not patched.
//!
//! # Kill safety
//!
//! A killed lookup returns `EAI_SYSTEM` with errno `EINTR` at once. The lookup itself cannot be
//! stopped: it goes on on the pool with copies of its arguments, and frees its result when it
//! ends, so the greenlet neither waits for it nor leaks it.

use std::ffi::{CStr, CString, c_char, c_int};
use std::sync::{Arc, Mutex};

use super::{catch_kill, cooperative, real_fn, set_errno};
use crate::sync::lock;

type GetaddrinfoFn = unsafe extern "C" fn(
    *const c_char,
    *const c_char,
    *const libc::addrinfo,
    *mut *mut libc::addrinfo,
) -> c_int;

/// A lookup's arguments, owned, so that it can outlive the call that asked for it.
struct Query {
    node: Option<CString>,
    service: Option<CString>,
    /// The fields of the caller's hints that `getaddrinfo` reads (the others must be zero).
    hints: Option<(c_int, c_int, c_int, c_int)>,
}

/// What the pool's lookup left: its result list while nobody took it, or that the caller
/// left (a kill) and the list is to be freed by the lookup.
#[derive(Default)]
struct Outcome {
    done: Option<(c_int, c_int, usize)>,
    abandoned: bool,
}

impl Query {
    /// Copies the caller's arguments.
    ///
    /// # Safety
    ///
    /// `node`, `service` null or NUL-terminated; `hints` null or valid.
    unsafe fn copy(
        node: *const c_char,
        service: *const c_char,
        hints: *const libc::addrinfo,
    ) -> Query {
        // SAFETY: the caller's NUL-terminated strings (the C contract).
        let owned = |s: *const c_char| (!s.is_null()).then(|| unsafe { CStr::from_ptr(s) }.into());
        Query {
            node: owned(node),
            service: owned(service),
            // SAFETY: the caller's valid hints (the C contract).
            hints: (!hints.is_null()).then(|| unsafe {
                let h = &*hints;
                (h.ai_flags, h.ai_family, h.ai_socktype, h.ai_protocol)
            }),
        }
    }

    /// Runs the lookup: (its return value, errno, the result list's address).
    fn run(&self, real: GetaddrinfoFn) -> (c_int, c_int, usize) {
        // SAFETY: addrinfo is plain old data; all-zero is a valid (empty) value.
        let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
        let hints_ptr = match self.hints {
            Some((flags, family, socktype, protocol)) => {
                hints.ai_flags = flags;
                hints.ai_family = family;
                hints.ai_socktype = socktype;
                hints.ai_protocol = protocol;
                &raw const hints
            }
            None => std::ptr::null(),
        };
        let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        let mut res = std::ptr::null_mut();
        // SAFETY: our own strings, hints and result slot, alive across the call.
        let r = unsafe { real(ptr(&self.node), ptr(&self.service), hints_ptr, &mut res) };
        (r, super::errno(), res as usize)
    }
}

/// `getaddrinfo(3)`: inside greenlets after `patch_all` the lookup runs on the thread pool
/// and only the greenlet waits.
///
/// # Safety
///
/// As the C function: `node` and `service` are null or NUL-terminated, `hints` is null or
/// valid, `res` is writable.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const libc::addrinfo,
    res: *mut *mut libc::addrinfo,
) -> c_int {
    let Some(real) = real_fn!(c"getaddrinfo", GetaddrinfoFn) else {
        return libc::EAI_SYSTEM;
    };
    if !cooperative() {
        // SAFETY: passed through unchanged.
        return unsafe { real(node, service, hints, res) };
    }
    if crate::greenlet::kill::pending() {
        set_errno(libc::ECANCELED);
        return libc::EAI_SYSTEM;
    }
    // SAFETY: the caller's arguments (the C contract).
    let query = unsafe { Query::copy(node, service, hints) };
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let theirs = outcome.clone();
    let task = crate::threadpool::spawn_blocking(move || {
        let done = query.run(real);
        let mut out = lock(&theirs);
        if out.abandoned {
            if done.0 == 0 {
                // SAFETY: a successful lookup's list, which nobody else will see.
                unsafe { libc::freeaddrinfo(done.2 as *mut libc::addrinfo) };
            }
        } else {
            out.done = Some(done);
        }
    });
    let waited = catch_kill(|| task.join());
    let mut out = lock(&outcome);
    match (waited, out.done.take()) {
        (Ok(()), Some((r, e, list))) => {
            // SAFETY: the caller's writable result slot.
            unsafe { *res = list as *mut libc::addrinfo };
            set_errno(e);
            r
        }
        (Err(()), Some((r, _, list))) => {
            // Killed, but the lookup ended first: free what the caller will not see.
            if r == 0 {
                // SAFETY: a successful lookup's list, which nobody else will see.
                unsafe { libc::freeaddrinfo(list as *mut libc::addrinfo) };
            }
            set_errno(libc::EINTR);
            libc::EAI_SYSTEM
        }
        (_, None) => {
            // Killed while the lookup runs (or its job panicked): it frees its own result.
            out.abandoned = true;
            set_errno(libc::EINTR);
            libc::EAI_SYSTEM
        }
    }
}
