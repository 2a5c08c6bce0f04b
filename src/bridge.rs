//! The async bridge (feature `tokio`): run any future from blocking-style code with
//! [`block_on`], and await any greenlet from async code (`greenlet.await`).
//!
//! Most of Rust's network crates are async (tokio-postgres, sqlx, reqwest, tonic, cloud SDKs).
//! Their blocking faces (`postgres`, `reqwest::blocking`) run a tokio runtime on the calling
//! thread and so block a greenlet's whole worker. [`block_on`] instead drives the future inside
//! the greenlet and parks **only that greenlet** while the future is pending: its waker
//! unparks the greenlet, from whatever thread wakes it. Futures that need tokio's reactor or
//! timers (`tokio::net`, `tokio::time`, reqwest, tokio-postgres) find it: each poll runs with a
//! tokio runtime entered, the shared one this module starts on its own threads with the
//! greenlet runtime
//! ([`Config::tokio_threads`](crate::Config::tokio_threads)), or the one given with
//! [`Config::tokio_handle`](crate::Config::tokio_handle).
//!
//! The other direction needs no feature: [`Greenlet`](crate::Greenlet) and
//! [`threadpool::Task`](crate::threadpool::Task) implement [`IntoFuture`], so
//! `greenlet::spawn(|| blocking_code()).await` works in any executor without blocking its
//! thread, and `spawn` may be called from an async task.
//!
//! # Which route for a tokio-based crate
//!
//! - Its **async API through [`block_on`]**: the greenlet parks while the request is in
//!   flight, and thousands of greenlets share the runtime's few threads. The route for
//!   clients that wait on the network (databases, HTTP, RPC).
//! - Its **blocking API on the thread pool**
//!   ([`threadpool::spawn_blocking`](crate::threadpool::spawn_blocking)): one OS thread per
//!   call in flight, no async code at all. For rare calls, or crates without an async face.
//! - Its blocking API straight from a greenlet blocks the worker (the monitor says so).
//!
//! # Examples
//!
//! ```
//! use std::time::{Duration, Instant};
//!
//! let start = Instant::now();
//! let gs: Vec<_> = (0..100)
//!     .map(|i| {
//!         greenlet::spawn(move || {
//!             greenlet::block_on(tokio::time::sleep(Duration::from_millis(50)));
//!             i
//!         })
//!     })
//!     .collect();
//! assert_eq!(greenlet::joinall(gs).len(), 100);
//! assert!(start.elapsed() < Duration::from_secs(2)); // together, not one after another
//!
//! // And from async code, a greenlet is awaited like a task.
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let n = rt.block_on(async { greenlet::spawn(|| 6 * 7).await });
//! assert_eq!(n, Ok(42));
//! ```

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};

use crate::deadline::Parker;

thread_local! {
    /// Set on the greenlets' worker threads, which stay inside the runtime's context for good
    /// ([`enter_on_worker`]).
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Puts the calling worker thread inside the bridge runtime's context for good, so that
/// greenlets can make tokio futures anywhere, also in the argument of `block_on`
/// (`block_on(tokio::time::sleep(d))`), and never hold a context guard of their own across a
/// park (tokio's guards are per thread and must be dropped in order; greenlets interleave).
/// Called on each worker as the runtime starts.
pub(crate) fn enter_on_worker() {
    std::mem::forget(handle().enter());
    ON_WORKER.set(true);
}

/// The runtime futures are polled in: given, or started here (with the greenlet runtime, or
/// at a plain thread's first `block_on` before that).
static HANDLE: OnceLock<tokio::runtime::Handle> = OnceLock::new();
/// The given handle or thread count, until the first use fixes [`HANDLE`].
static CHOSEN: Mutex<Chosen> = Mutex::new(Chosen {
    handle: None,
    threads: 0,
});

struct Chosen {
    handle: Option<tokio::runtime::Handle>,
    threads: usize,
}

impl Chosen {
    /// The shared runtime's thread count: the one chosen, or the default for 0.
    fn threads(&self) -> usize {
        match self.threads {
            0 => DEFAULT_THREADS,
            n => n,
        }
    }
}

/// Default size of the shared runtime: tokio's own default is one thread per core; the
/// bridge's threads only run I/O drivers, timers and the tasks futures spawn, so two suffice.
const DEFAULT_THREADS: usize = 2;

/// Records the runtime settings of [`Config`](crate::Config) (`None`: unchanged). Returns
/// `false` when the runtime is already fixed (the bridge was used).
pub(crate) fn choose(handle: Option<tokio::runtime::Handle>, threads: Option<usize>) -> bool {
    let mut chosen = crate::sync::lock(&CHOSEN);
    if HANDLE.get().is_some() {
        return false;
    }
    if handle.is_some() {
        chosen.handle = handle;
    }
    if let Some(n) = threads {
        chosen.threads = n;
    }
    true
}

/// The shared runtime's thread count in force ([`Settings`](crate::Settings)); 0 when the
/// program gave a runtime.
pub(crate) fn threads() -> usize {
    let chosen = crate::sync::lock(&CHOSEN);
    if chosen.handle.is_some() {
        0
    } else {
        chosen.threads()
    }
}

/// The runtime the bridge polls futures in: the handle given through
/// [`Config::tokio_handle`](crate::Config::tokio_handle), or the shared runtime, started
/// with the greenlet runtime (or by this call, if earlier) with
/// [`Config::tokio_threads`](crate::Config::tokio_threads) threads (named
/// `greenlet-tokio`). Use it to spawn tokio tasks that greenlets talk to.
///
/// # Panics
///
/// If the shared runtime cannot be started (the OS refuses its threads): at the greenlet
/// runtime's start, or at this call if it comes first.
///
/// # Examples
///
/// ```
/// let (tx, rx) = tokio::sync::oneshot::channel();
/// greenlet::bridge::handle().spawn(async move { tx.send(5).unwrap() });
/// let got = greenlet::spawn(move || greenlet::block_on(rx)).get().unwrap();
/// assert_eq!(got, Ok(5));
/// ```
pub fn handle() -> &'static tokio::runtime::Handle {
    HANDLE.get_or_init(|| {
        let chosen = crate::sync::lock(&CHOSEN);
        if let Some(h) = &chosen.handle {
            return h.clone();
        }
        let threads = chosen.threads();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("greenlet-tokio")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("greenlet: cannot start the tokio runtime: {e}"));
        let handle = rt.handle().clone();
        // The runtime lives as long as the process: its threads are never shut down.
        std::mem::forget(rt);
        log::debug!("greenlet's tokio runtime started with {threads} threads");
        handle
    })
}

/// Drives `fut` to completion and returns its output, parking only the calling greenlet (or
/// blocking the calling thread, outside greenlets) while it is pending.
///
/// The future is polled in place, on the caller's stack: it may borrow from the caller and
/// need not be `Send`. It is polled inside the bridge's tokio runtime's context ([`handle`]),
/// so tokio's sockets, timers and `tokio::spawn` work in it. Greenlets are always inside that
/// context (each worker enters it for good when the runtime starts), so they can also make
/// tokio futures outside `block_on`, as in `block_on(tokio::time::sleep(d))`, and code that
/// looks for `Handle::current()` finds it (so a `Handle::current().block_on(..)` in a
/// greenlet blocks its worker instead of panicking: use this function). The waker may be
/// called from any thread: it unparks the greenlet on its own worker.
///
/// On a plain thread it is tokio's [`Handle::block_on`](tokio::runtime::Handle::block_on)
/// on that runtime: make tokio futures inside the future there
/// (`block_on(async { tokio::time::sleep(d).await })`), as with tokio's own.
///
/// # Kill safety
///
/// A kill, or a [`Timeout`](crate::Timeout) or [`with_timeout`](crate::with_timeout) firing,
/// while the greenlet is parked here unwinds it as at any other blocking point: the future is
/// dropped on the way (async cancellation), and whatever it owned is released.
///
/// # Cancel safety
///
/// Dropping the future mid-way has the future's own cancel semantics: a request already sent
/// may have taken effect (a database write), a `tokio::sync` receive loses nothing, a partly
/// read socket loses what was read. The same as dropping it in async code.
///
/// # Panics
///
/// - When the future panics: the panic goes on in the caller (in a greenlet, its joiners get
///   [`JoinError::Panicked`](crate::JoinError)).
/// - On a thread that runs tokio tasks (inside a tokio task, or a runtime's `block_on`), as
///   tokio's own `block_on` does: blocking it could stop the very runtime the future needs.
///   `.await` the future there.
/// - When the shared runtime cannot be started (see [`handle`]).
///
/// # Examples
///
/// A future that borrows from the greenlet's stack and is not `Send`:
///
/// ```
/// use std::rc::Rc;
/// use std::time::Duration;
///
/// let g = greenlet::spawn(|| {
///     let local = Rc::new(vec![1, 2, 3]);
///     let borrowed = &local;
///     greenlet::block_on(async move {
///         tokio::time::sleep(Duration::from_millis(5)).await;
///         borrowed.iter().sum::<i32>()
///     })
/// });
/// assert_eq!(g.get(), Ok(6));
/// ```
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let runtime = handle();
    if !ON_WORKER.get() {
        // Not a greenlet: tokio's own, which refuses to block a thread that drives tasks.
        return runtime.block_on(fut);
    }
    let mut fut = std::pin::pin!(fut);
    let signal = Arc::new(Signal::default());
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        // Polled inside the runtime's context: workers are inside it for good.
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        signal.wait();
    }
}

/// A [`block_on`]'s waker: a flag, and the parked greenlet's (or thread's) blocker, made on the
/// first wait only (a future that is ready at once needs none).
#[derive(Default)]
struct Signal {
    woken: AtomicBool,
    parker: OnceLock<Arc<Parker>>,
}

impl Signal {
    /// Parks until the waker has been called since the last wait; kills unwind from here.
    fn wait(&self) {
        // (Only greenlets get here: plain threads use tokio's `block_on`.)
        let parker = self.parker.get_or_init(|| Arc::new(Parker::new()));
        // Pairs with `wake_by_ref`: either it sees the parker, or this sees its flag.
        while !self.woken.swap(false, Ordering::SeqCst) {
            let _ = crate::deadline::park("block_on", parker, None);
        }
    }
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::SeqCst)
            && let Some(parker) = self.parker.get()
        {
            crate::deadline::home::unpark(parker);
        }
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        // The last waker may be dropped anywhere, a greenlet included: may's `Park` can wait
        // in its destructor, so the blocker goes to the reaper (`deadline::retire`).
        if let Some(parker) = self.parker.take() {
            crate::deadline::retire(parker);
        }
    }
}
