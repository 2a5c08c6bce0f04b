//! gevent for Rust: run plain blocking-style code (connect, read, write, sleep) in thousands of
//! green threads at once, without `async`/`await`.
//!
//! A *greenlet* is a stackful coroutine (from [may]) with a handle. Everything that would block
//! inside one, such as a socket read, [`sleep`], [`Greenlet::join`] or a lock, parks only that
//! greenlet, and its worker thread runs the others. So N fetches that each wait 200 ms take
//! about 200 ms in total, not N × 200 ms, and the code stays sequential. Called from a plain
//! thread such as `main`, the same functions block that thread, so code works both ways.
//!
//! # Quick start
//!
//! ```
//! use std::time::{Duration, Instant};
//!
//! let start = Instant::now();
//! let gs: Vec<_> = (0..100)
//!     .map(|i| greenlet::spawn(move || {
//!         greenlet::sleep(Duration::from_millis(100)); // stands in for a slow fetch
//!         i
//!     }))
//!     .collect();
//! let results = greenlet::joinall(gs);
//! assert_eq!(results.len(), 100);
//! assert!(start.elapsed() < Duration::from_secs(5)); // about 0.1 s, not 10 s
//! ```
//!
//! # Panics, kills and time-outs are values
//!
//! A panic inside a greenlet never takes the process down. It is caught, logged once through
//! [`log`] (with the greenlet's name and the panic's location), and returned by
//! [`Greenlet::get`] as [`JoinError::Panicked`]; the other greenlets run on. [`Greenlet::kill`]
//! unwinds a greenlet at its next blocking point (its destructors run) and its result becomes
//! [`JoinError::Killed`]. [`with_timeout`] returns [`Elapsed`], an ordinary error.
//!
//! ```
//! use std::time::Duration;
//! use greenlet::JoinError;
//!
//! let sleeper = greenlet::spawn(|| greenlet::sleep(Duration::from_secs(60)));
//! assert!(sleeper.kill());
//! assert_eq!(sleeper.get(), Err(JoinError::Killed));
//!
//! let broken = greenlet::spawn(|| -> u8 { panic!("bad input") });
//! assert_eq!(broken.get(), Err(JoinError::Panicked("bad input".into())));
//! ```
//!
//! # Time-outs never hang
//!
//! Every timed wait of the crate (`sleep`, `*_timeout`, [`with_timeout`], [`Timeout`], socket
//! time-outs) keeps one contract: **it never returns before its deadline, never hangs, and on
//! an idle machine returns within about 2 ms after it.** A zero time-out checks once without
//! parking; a time-out too large to represent (`Duration::MAX`) means no deadline. When
//! something does hang, [`dump`] lists every live greenlet and, with [`track_waits`], what each
//! one waits on.
//!
//! # Modules (gevent → greenlet)
//!
//! | gevent | greenlet |
//! |---|---|
//! | `gevent.spawn`, `Greenlet`, `joinall`, `iwait`, `killall` | [`spawn`], [`Greenlet`], [`joinall`], [`iwait`], [`killall`] |
//! | `gevent.sleep`, `gevent.Timeout`, `with_timeout` | [`sleep`], [`yield_now`], [`Timeout`], [`with_timeout`] |
//! | `gevent.getcurrent` | [`current`] |
//! | `gevent.config` | [`config()`], [`settings`] |
//! | `gevent.util.format_run_info` | [`dump`], [`track_waits`] |
//! | `gevent.socket`, `gevent.ssl`, DNS | [`net`] |
//! | `gevent.event`, `gevent.lock` | [`sync`] |
//! | `gevent.queue` | [`queue`] |
//! | `gevent.pool` | [`pool`] |
//! | `gevent.local` | [`greenlet_local!`] |
//! | `gevent.threadpool` | [`threadpool`] |
//! | `gevent.server` | [`server`] |
//! | `gevent.pywsgi`, `requests` | [`http`] |
//!
//! # Caveats
//!
//! Greenlets are cooperative; four rules follow (may's own caveats, in our words):
//!
//! 1. **Blocking `std` calls stall a whole worker.** `std::net`, `std::thread::sleep`,
//!    `std::sync::Mutex` waits and blocking file I/O block the OS thread and every greenlet
//!    on it. Use [`net`], [`sleep`] and this crate's primitives inside greenlets.
//! 2. **Thread-locals are per worker, not per greenlet.** Every greenlet runs on one worker
//!    thread from start to end (it is *pinned*: wake-ups are routed to its worker), so a
//!    thread-local reference, an `Rc` from `rand::thread_rng()` or a std `MutexGuard` held
//!    across a blocking point is still the running thread's own: that is sound. But the other
//!    greenlets of that worker run in between and see the same thread-locals; use
//!    [`greenlet_local!`] for state private to a greenlet. Greenlets spawned from `main` go
//!    round robin over the workers; greenlets spawned from a greenlet share its worker (use
//!    several `main`-spawned greenlets, or a server, to use every core). `docs/soundness.md`
//!    states the model.
//! 3. **Long computations starve the others.** A greenlet that never blocks keeps its worker,
//!    and cannot be killed or timed out until it blocks; call [`yield_now`] now and then.
//! 4. **Stacks are fixed-size.** The default is 128 KiB ([`Config::stack_size`],
//!    [`Builder::stack_size`]). Deep recursion or large stack arrays overflow it: the guard
//!    page stops the overflow and the greenlet is stopped where it is, without unwinding, and
//!    its joiners get [`JoinError::Panicked`] saying so. What it held (a socket, a lock) is
//!    leaked and stays held, and its stack is kept for the life of the process, so nothing
//!    that still refers into it (a scoped thread's borrow) sees it freed or reused (on x86-64
//!    Linux; `docs/soundness.md`).
//!
//! # `std` channels and locks inside greenlets
//!
//! `std::sync::mpsc`, `std::sync::{Mutex, Condvar, RwLock, Barrier}`, `thread::park`,
//! crossbeam-channel and `parking_lot` wait in the kernel (a *futex wait*) on the OS thread's
//! own park token. Inside a greenlet such a wait blocks its whole worker thread: no greenlet
//! queued there runs until it ends. Between two greenlets of one worker it is a hang (the
//! receiver holds the thread its sender needs). `monkey` cannot make it cooperative: every
//! greenlet of a worker shares that token, so a wake-up meant for one could be taken by
//! another. A std `Mutex` locked briefly, never across a wait, is fine. Otherwise:
//!
//! | instead of | use |
//! |---|---|
//! | `std::sync::mpsc`, crossbeam-channel | [`queue::Queue`] (bounded or not), [`queue::Channel`] (rendezvous) |
//! | a std `Mutex`, `RwLock` or `Condvar` held or waited on across a blocking call | [`sync::Mutex`], [`sync::RwLock`], [`sync::Condvar`] |
//! | `thread::park` / `unpark`, a one-shot hand-off | [`sync::Event`], [`sync::AsyncResult`] |
//! | a library that waits on one inside (`reqwest::blocking`, a sync database driver) | its async API through `block_on` (feature `tokio`, the `bridge` module), or [`threadpool::spawn_blocking`] |
//!
//! ```
//! use greenlet::queue::Queue;
//!
//! // Not `std::sync::mpsc::channel()`: its `recv` would hold the worker thread.
//! let q = Queue::unbounded();
//! let tx = q.clone();
//! let consumer = greenlet::spawn(move || (0..3).map(|_| q.get().unwrap()).sum::<u32>());
//! let producer = greenlet::spawn(move || (1..=3).for_each(|i| tx.put(i).unwrap()));
//! producer.join();
//! assert_eq!(consumer.get(), Ok(6));
//! ```
//!
//! Such a wait is diagnosed, not left as a silent hang: the blocked-worker monitor
//! ([`Config::monitor`]; on by default, at 100 ms, once `monkey::patch_all()` has run) logs at
//! `warn` the greenlet's name and id, "futex wait", for how long, what to use instead and,
//! where it can, the Rust function that waited and the call it made:
//!
//! ```text
//! greenlet consumer (id 7) has held its worker thread (tid 6627) for 100 ms without
//! switching, longer than the monitor's 100 ms: it is blocked in a futex wait (system call
//! 202) in `app::consume` at ./src/main.rs:86:8, through `std::sync::mpsc::Receiver<T>::recv`.
//! Every greenlet queued on that thread waits meanwhile; a std::sync Mutex/Condvar/...
//! ```
//!
//! When every worker is blocked at once, it logs at `error` with the [`dump`] of every
//! greenlet. The frame needs Linux with glibc on x86_64 or aarch64: the monitor has the
//! blocked thread take a backtrace of itself in a signal handler (on the highest free
//! real-time signal; the wait resumes unchanged), and does so only when the thread waits in
//! the C library's `syscall()` wrapper, as Rust's `std` and `parking_lot` do, with room left
//! on its stack: only there is a backtrace safe to take from a signal handler. A lock of a C
//! library (`pthread_mutex_lock`), where that cannot be known, and other platforms get the
//! report without the frame.
//!
//! # Features
//!
//! - `monkey` (Linux): `monkey::patch_all()` makes unmodified blocking code cooperative
//!   inside greenlets: `std::thread::sleep`, `std::net` sockets, `poll`/`select` (libcurl,
//!   libpq), pipes, child processes, thread joins and name lookups.
//! - `tls`: `net::tls`, TLS client and server streams (rustls, `ring` provider) over greenlet
//!   sockets, and `https` for the [`http`] client.
//! - `tokio`: the async bridge (`bridge`): `block_on(future)` runs any future (reqwest,
//!   tokio-postgres, `tokio::time`) from a greenlet, parking only that greenlet, on a shared
//!   tokio runtime or one you give. Without the feature, a [`Greenlet`] and a
//!   [`threadpool::Task`] can still be `.await`ed from any async code.
//!
//! Greenlet panics are reported through `log`: the crate installs a panic hook, once, that
//! keeps panics raised inside coroutines off stderr; panics on plain threads still reach the
//! previous hook unchanged.

#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    clippy::undocumented_unsafe_blocks,
    clippy::missing_errors_doc,
    clippy::missing_panics_doc
)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "tokio")]
pub mod bridge;
mod config;
mod deadline;
mod error;
mod greenlet;
pub mod http;
mod join;
mod local;
mod monitor;
#[cfg(all(feature = "monkey", target_os = "linux"))]
pub mod monkey;
pub mod net;
mod panic;
pub mod pool;
pub mod queue;
pub mod server;
pub mod sync;
pub mod threadpool;
mod timeout;

#[cfg(feature = "tokio")]
pub use crate::bridge::block_on;
pub use crate::config::{Config, Settings, config, settings};
pub use crate::error::{ConfigError, Elapsed, JoinError};
pub use crate::greenlet::{
    Builder, Dump, Greenlet, GreenletFuture, GreenletInfo, GreenletRef, GreenletState, WaitInfo,
    current, dump, is_kill, spawn, spawn_later, track_waits,
};
pub use crate::join::{Iwait, iwait, joinall, joinall_timeout, killall};
pub use crate::timeout::{Timeout, sleep, with_timeout, yield_now};

pub use crate::local::LocalKey;

/// Spawns a greenlet: `go!(closure)` is [`spawn`]`(closure)`, and
/// `go!(name, closure)` spawns a named one with [`Builder`].
///
/// Unlike may's `go!`, this expands to no `unsafe` block of its own; it is exactly as sound as
/// [`spawn`] (see the crate's `# Caveats` and `docs/soundness.md`).
///
/// # Panics
///
/// As [`spawn`], if the greenlet's stack cannot be allocated.
///
/// # Examples
///
/// ```
/// let a = greenlet::go!(|| 1);
/// let b = greenlet::go!("adder", move || 2);
/// assert_eq!(b.name(), "adder");
/// assert_eq!(a.get().unwrap() + b.get().unwrap(), 3);
/// ```
#[macro_export]
macro_rules! go {
    ($f:expr $(,)?) => {
        $crate::spawn($f)
    };
    ($name:expr, $f:expr $(,)?) => {
        match $crate::Builder::new().name($name).spawn($f) {
            ::std::result::Result::Ok(g) => g,
            ::std::result::Result::Err(e) => ::std::panic!("greenlet::go! failed: {}", e),
        }
    };
}

/// Declares storage private to each greenlet (gevent's `local`): every greenlet that touches it
/// gets its own value, made by the initialiser on first use and dropped when the greenlet ends.
/// On a plain thread the value is per thread.
///
/// Use it instead of `thread_local!` for per-greenlet state: the greenlets of a worker share
/// its thread, so a thread-local is not private to one greenlet (each greenlet stays on its
/// worker, so a thread-local is stable across a blocking call, but others change it meanwhile).
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
///
/// greenlet::greenlet_local! {
///     static REQUESTS: Cell<u32> = Cell::new(0);
/// }
///
/// let gs: Vec<_> = (1..=3)
///     .map(|n| greenlet::spawn(move || {
///         for _ in 0..n {
///             REQUESTS.with(|r| r.set(r.get() + 1));
///             greenlet::yield_now();
///         }
///         REQUESTS.with(Cell::get)
///     }))
///     .collect();
/// assert_eq!(greenlet::joinall(gs), vec![Ok(1), Ok(2), Ok(3)]);
/// ```
#[macro_export]
macro_rules! greenlet_local {
    ($(#[$attr:meta])* $vis:vis static $name:ident : $t:ty = $init:expr $(;)?) => {
        $(#[$attr])*
        $vis static $name: $crate::LocalKey<$t> = {
            fn __init() -> $t {
                $init
            }
            fn __key() -> ::std::any::TypeId {
                struct __Key;
                ::std::any::TypeId::of::<__Key>()
            }
            $crate::LocalKey {
                __init,
                __key,
            }
        };
    };
}

/// For the crate's tests (issue 18): how many finished greenlets' coroutines wait warm for
/// reuse.
#[doc(hidden)]
pub fn __warm_idle() -> usize {
    greenlet::warm_idle()
}

/// For the crate's tests (issue 14): how many switches resumed a greenlet away from its
/// worker (caught before its code ran), and how many hops took such greenlets back.
#[doc(hidden)]
pub fn __pinning_stats() -> (u64, u64) {
    use std::sync::atomic::Ordering;
    (
        deadline::hop::MIGRATIONS.load(Ordering::Relaxed),
        deadline::hop::HOPS.load(Ordering::Relaxed),
    )
}
