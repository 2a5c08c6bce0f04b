//! Make unmodified blocking code cooperative (gevent.monkey), Linux only, feature `monkey`.
//!
//! With the feature on, this crate defines C functions with the names of the C library's
//! blocking calls. A Rust program is linked against them before the C library, so `std` (and
//! any crate or C library that calls those functions: libcurl, libpq, ...) reaches them first.
//! After [`patch_all`] each one checks where it runs:
//!
//! - **inside a greenlet**, it waits cooperatively: only the greenlet parks, and its worker
//!   thread runs others; it wakes on the descriptor's readiness, through a private epoll set
//!   registered with the greenlet's worker (never a retry timer);
//! - **anywhere else** (plain threads, may's own workers and event loop, the thread pool), and
//!   before `patch_all`, it calls the C library's own function (found with
//!   `dlsym(RTLD_NEXT, …)`), so nothing outside greenlets changes.
//!
//! # What is patched
//!
//! | call | used by | inside a greenlet |
//! |---|---|---|
//! | `clock_nanosleep`, `nanosleep` | `std::thread::sleep`, C `sleep`/`usleep` | parks the greenlet for the duration ([`crate::sleep`]) |
//! | `poll`, `ppoll`, `select`, `pselect` | `TcpStream::connect_timeout`, `Command::output`, libcurl, libpq, C code | parks until a descriptor is ready or the time-out passes; the result (counts, `revents`, fd sets, errors) is the kernel's own, from a zero-time call made on waking |
//! | `recv`, `recvfrom`, `recvmsg`, `send`, `sendto`, `sendmsg` | `std::net` sockets | on a socket its owner left blocking: the call with `MSG_DONTWAIT`, and a wait for readiness in between; `SO_RCVTIMEO`/`SO_SNDTIMEO` bound the wait (then `EAGAIN`, as the kernel) |
//! | `read`, `write`, `readv`, `writev` | everything | sockets as above; pipes, FIFOs, character devices, eventfd, timerfd: cooperative too; regular files: the C library's own |
//! | `connect` | `TcpStream::connect` | parks until the connection is made or refused |
//! | `accept`, `accept4` | `TcpListener::accept` | parks until a connection waits |
//! | `waitpid`, `wait4`, `waitid` | `Child::wait`, `Command::status`/`output` | parks on a pidfd until the child changes state |
//! | `pthread_join` | `std::thread::JoinHandle::join` | joins on the [thread pool](crate::threadpool); only the greenlet waits |
//! | `getaddrinfo` | `ToSocketAddrs` for host names | the lookup runs on the thread pool |
//! | `close`, `dup2`, `dup3` | everything | forget what they knew about the descriptor number, then the C library's own |
//! | `setsockopt` | socket options | the C library's own; notes that a socket time-out was set (until one is, waits do not read them: a socket inherited with one already set is not seen) |
//!
//! # The user's descriptors are never changed
//!
//! The cooperative paths never set `O_NONBLOCK` on a descriptor of the user's (clones,
//! `dup`s and other threads would see it: a `try_clone`d `TcpStream` written by one greenlet
//! while another waits to read it works in full duplex). They use per-call non-blocking forms
//! instead: `MSG_DONTWAIT` on sockets, `RWF_NOWAIT` on pipes and eventfd, a private
//! non-blocking open of a FIFO. A descriptor its owner made non-blocking is never waited on:
//! the call reports `EAGAIN` as it would anyway. Three calls have no per-call form, and
//! do this instead: `connect` (`O_NONBLOCK` for the instant of
//! the `connect(2)` call itself, on a socket not connected yet, never during the wait),
//! `accept` (readiness, then the call, one greenlet of the process at a time per listener) and
//! character devices such as terminals (the same).
//!
//! # Kill safety
//!
//! A kill cannot unwind through a C function (Rust would abort the process). A greenlet killed
//! (or interrupted by a [`Timeout`](crate::Timeout)) inside a patched call has that call end
//! early with `EINTR`, and unwinds at its next blocking point in Rust code. Until then every patched call it makes fails
//! at once with `ECANCELED` instead of waiting, so that loops which retry on `EINTR` (`std`'s,
//! libcurl's) end. If the greenlet returns without reaching a blocking point, it ends with its
//! value rather than [`JoinError::Killed`](crate::JoinError::Killed). Each room's docs say what
//! its calls leave behind when killed (a child is still reaped; a lookup's result is freed).
//!
//! # What is not patched, and why
//!
//! - **`epoll_wait`**: a caller driving its own epoll set is an event loop, usually a tokio
//!   runtime on the calling thread (the sync `postgres` client, `reqwest::blocking`'s caller
//!   side). Such a runtime keeps thread-local state that two greenlets sharing a worker would
//!   share (tokio refuses to start a runtime on a thread already inside one), so parking the
//!   greenlet there would not make it sound. Run such clients with
//!   [`threadpool::spawn_blocking`](crate::threadpool::spawn_blocking).
//! - **futex waits**: `std::sync::{Mutex, Condvar, mpsc}`, crossbeam channels and
//!   `thread::park` wait on the OS thread's own park token, which every greenlet on a worker
//!   shares, so they cannot be made cooperative. Use [`crate::sync`] and [`crate::queue`]
//!   between greenlets. While monkey is patched the [blocked-worker monitor](crate::Config::monitor)
//!   is on and names a greenlet stuck in one.
//! - Standard input, output and error (descriptors 0 to 2), whatever they are: std's
//!   `Stdout` and `Stderr` hold a lock that is re-entrant per OS thread across the write, so a
//!   second greenlet of the worker printing while the first waits on a full pipe would find it
//!   borrowed, and `Stdin`'s lock is a futex wait. A print to a pipe nobody reads blocks the
//!   worker, as in gevent.
//! - A child forked from a greenlet: its hooks are the C library's own (the child is a copy of
//!   the worker thread, without the runtime).
//! - The older resolver calls (`gethostbyname`), regular files (as in gevent: read big files
//!   with [`crate::threadpool::spawn_blocking`]), static binaries (musl), code that makes the
//!   system call itself (`syscall(2)`, inline assembly) and calls made inside the C library
//!   itself. `fcntl` and `ioctl` are not interposed (stable Rust cannot define variadic C
//!   functions); nothing here needs them.
//!
//! # Cost
//!
//! Without the feature: none, nothing is compiled. With it, before `patch_all`: one atomic
//! load per call (and a function pointer call). After: outside greenlets, one atomic load and
//! a coroutine check per call; inside, a ready descriptor costs the single system call it did
//! (its non-blocking form), and a call that has to wait adds a few (the owner's flags, its
//! time-out, adding it to the private epoll set and removing it).
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

// One room per family of calls; the interposed functions are exported by `#[no_mangle]`,
// not as Rust API.
mod fd;
mod poll;
mod process;
mod ready;
mod resolver;
mod sleep;
mod socket;

static PATCHED: AtomicBool = AtomicBool::new(false);

/// Turns on the cooperative versions of the patched calls (idempotent). Call it early, e.g.
/// as the first line of `main`; calls made before it behave as usual.
pub fn patch_all() {
    crate::config::ensure_started();
    // Futex waits (std's locks and channels) cannot be made cooperative: the monitor names
    // a greenlet stuck in one, unless the program chose its own setting.
    crate::monitor::on_by_default_for_monkey();
    if !PATCHED.swap(true, Ordering::SeqCst) {
        // A child forked from a greenlet is a copy of its worker thread, still "inside a
        // coroutine": its hooks must not park (it would run the parent's event loop on the
        // epoll instance the two now share). They pass through in a forked child.
        extern "C" fn in_child() {
            PATCHED.store(false, Ordering::SeqCst);
        }
        // SAFETY: registers a handler that only stores an atomic (async-signal-safe, as a
        // handler run in a forked child must be); no other pointers.
        let r = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        if r != 0 {
            log::warn!("monkey: pthread_atfork failed ({r}): hooks in forked children may park");
        }
        log::debug!(
            "monkey: patched clock_nanosleep, nanosleep, poll, ppoll, select, pselect, recv, \
             send, recvfrom, sendto, recvmsg, sendmsg, read, write, readv, writev, connect, \
             accept, accept4, waitpid, wait4, waitid, pthread_join, getaddrinfo, close, dup2, \
             dup3, setsockopt"
        );
    }
}

/// Whether [`patch_all`] has been called (in this process: a forked child starts unpatched).
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

/// Resolves the C library's `name` as a function of type `F` (all our `*Fn` aliases).
macro_rules! real_fn {
    ($name:literal, $ty:ty) => {{
        static REAL: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        match super::real($name, &REAL) {
            0 => None,
            // SAFETY: the C library's function of this name has this signature.
            f => Some(unsafe { std::mem::transmute::<usize, $ty>(f) }),
        }
    }};
}
use real_fn;

/// Sets errno and returns the C failure value `-1`.
fn fail<T: From<i8>>(errno: c_int) -> T {
    set_errno(errno);
    T::from(-1)
}

fn set_errno(e: c_int) {
    // SAFETY: `__errno_location` returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

fn errno() -> c_int {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() }
}

/// A C-style result (`-1` and errno on failure) as a `Result` of errno.
fn check<T: PartialOrd + From<i8>>(r: T) -> Result<T, c_int> {
    if r < T::from(0) { Err(errno()) } else { Ok(r) }
}

/// Runs `f`, a wait inside a C hook. A kill's unwind cannot cross into C: it is caught here
/// (`Err`, and the hook fails with `EINTR` or `ECANCELED`), and the kill is sent again so that
/// the greenlet's next blocking point, back in Rust, delivers it.
fn catch_kill<R>(f: impl FnOnce() -> R) -> Result<R, ()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        if !crate::greenlet::kill::is_kill(&*payload) {
            // A bug of the crate's: it cannot unwind into C either. Reported, and the
            // greenlet is made to unwind at its next blocking point.
            log::error!(
                "monkey: a panic inside a patched call was turned into a kill: {}",
                crate::panic::message(&*payload)
            );
        }
        crate::greenlet::kill::redeliver()
    })
}

/// Repeats `one(done)` (a call on the part of the buffer past `done` bytes) until `len`
/// bytes are done, a call ends short with 0 or fails (then the count so far, or its error).
fn whole(len: usize, mut one: impl FnMut(usize) -> isize) -> isize {
    let mut done = 0usize;
    loop {
        let r = one(done);
        if r < 0 {
            return if done > 0 { done as isize } else { r };
        }
        done += r as usize;
        if done >= len || r == 0 {
            return done as isize;
        }
    }
}
