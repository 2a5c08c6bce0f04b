//! Spawning: `Builder`, `spawn`, `spawn_later`, and the crate's doors to may's `unsafe` spawn.

use std::io;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Greenlet, Inner, Meta, Slot, dump, warm};
use crate::config;
use crate::deadline::home::round_robin;
use crate::panic;
use crate::sync::lock;

/// The one door to may's `unsafe` spawn. Stack exhaustion, which may reports by panicking,
/// becomes an `io::Error`.
fn raw_spawn<F>(builder: may::coroutine::Builder, f: F) -> io::Result<()>
where
    F: FnOnce() + Send + 'static,
{
    let spawned = panic::quietly(|| {
        catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: may's `spawn` has two preconditions (coroutine_impl.rs).
            // (1) Thread-local storage: a coroutine that moved between worker threads at a
            // blocking point could use a thread-local reference or a `!Send` value held across
            // it from two threads. Discharged by pinning (`deadline::home`): may runs without
            // `work_steal`, each greenlet is spawned onto one worker (`Builder::id`), every
            // wake-up of the crate is performed on that worker, sockets are registered with its
            // selector, and a switch that still resumed elsewhere (a kill sent from another
            // thread) moves back before any code of the greenlet runs (`hop::stay_home`, after
            // may's own code and the crate's `inline(never)` thread-local reads only).
            // `tests/pinning.rs` checks it. Code that calls may's own blocking primitives
            // directly is outside this argument (`docs/soundness.md`).
            // (2) Stack overflow: the guard page stops it, and the coroutine is left without
            // unwinding while values on its stack may still be referenced. Discharged on
            // x86-64 Linux by `greenlet::overflow`: the crate's SIGSEGV handler takes the
            // fault of a greenlet's stack, completes the greenlet and parks its coroutine for
            // good, so may never reuses, unmaps or resumes that stack (`tests/stack_overflow`).
            // Not discharged elsewhere, nor for a fault before the greenlet's first frame
            // recorded its stack (`docs/soundness.md`).
            unsafe { builder.spawn(f) }
        }))
    });
    match spawned {
        Ok(Ok(_detached)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(payload) => Err(stack_error(&panic::message(&*payload))),
    }
}

/// Runs one empty coroutine to completion, so that generator installs its panic hook (which
/// hides may's kill unwinds from the hooks installed before it) before the crate installs
/// its own on top. Called once, while the runtime starts.
pub(crate) fn run_first_coroutine() {
    // SAFETY: as in `raw_spawn`; the closure touches no thread-local and returns at once.
    let spawned = unsafe { may::coroutine::Builder::new().spawn(|| ()) };
    match spawned {
        Ok(h) => {
            let _ = h.join();
        }
        Err(e) => log::warn!("cannot start the first coroutine: {e}"),
    }
}

/// Queues a raw coroutine (not a greenlet) running `f` to worker `worker`'s inbox; it runs on
/// that worker. `f` may block only through may's own waits (the mailbox daemons do, for ever).
/// Returns `false` if it could not be spawned.
pub(crate) fn spawn_on_worker(worker: usize, f: impl FnOnce() + Send + 'static) -> bool {
    let spawned = panic::quietly(|| {
        catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: as in `raw_spawn`; `f` is the crate's own, and holds no thread-local
            // reference across a switch (it reads thread-locals through `hop::thread_number`).
            unsafe { may::coroutine::Builder::new().id(worker).spawn(f) }
        }))
    });
    matches!(spawned, Ok(Ok(_)))
}

fn stack_error(cause: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!(
            "cannot allocate a greenlet stack ({cause}): each live greenlet takes two memory \
             mappings, limited by vm.max_map_count (raise it with `sysctl -w vm.max_map_count=N`), \
             and its stack size in address space (use smaller stacks: `Builder::stack_size`, \
             `config().stack_size`)"
        ),
    )
}

/// Starts a greenlet's body `run` on worker `home`: in `carrier`, a warm one of that worker,
/// if there is one, else in a new coroutine (which becomes a carrier). A greenlet with a stack
/// size of its own gets a coroutine of its own, used once.
fn start<R>(
    home: usize,
    carrier: Option<Arc<warm::Carrier>>,
    stack_bytes: Option<usize>,
    run: R,
) -> io::Result<()>
where
    R: FnOnce() -> bool + Send + 'static,
{
    if let Some(carrier) = carrier {
        carrier.start(Box::new(run));
        return Ok(());
    }
    // A new coroutine. If its stack cannot be mapped, idle carriers may hold the room: they
    // are ended and the spawn tried once more (the body is kept aside for that).
    let own_stack = stack_bytes.map(config::stack_words);
    let body = Arc::new(Mutex::new(Some(run)));
    let attempt = || {
        let mut builder = may::coroutine::Builder::new().id(home);
        if let Some(words) = own_stack {
            builder = builder.stack_size(words);
        }
        let body = body.clone();
        raw_spawn(builder, move || {
            let Some(run) = lock(&body).take() else {
                return;
            };
            if own_stack.is_some() {
                run();
            } else {
                warm::carry(home, run);
            }
        })
    };
    match attempt() {
        Err(e)
            if e.kind() == io::ErrorKind::OutOfMemory
                && warm::release_idle(Duration::from_secs(1)) > 0 =>
        {
            log::debug!("no room for a greenlet stack ({e}); ended the idle ones and retried");
            attempt()
        }
        spawned => spawned,
    }
}

/// Closures bigger than this (bytes) are boxed at spawn (see [`Builder::spawn`]).
const BOX_CLOSURES_OVER: usize = 256;

/// Configures and spawns a greenlet (gevent's `Greenlet(name=...)`).
///
/// # Examples
///
/// ```
/// let g = greenlet::Builder::new()
///     .name("big-stack")
///     .stack_size(256 * 1024)
///     .spawn(|| 42)?;
/// assert_eq!(g.name(), "big-stack");
/// assert_eq!(g.get(), Ok(42));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a Builder does nothing until `spawn` is called"]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
    report_panics: bool,
    home: Option<usize>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// A builder with the default name (`Greenlet-<id>`) and stack size ([`crate::config`]).
    pub fn new() -> Builder {
        Builder {
            name: None,
            stack_size: None,
            report_panics: true,
            home: None,
        }
    }

    /// Names the greenlet; the name appears in panic reports and `Debug` output.
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Sets the stack size in **bytes** (rounded up to whole 4 KiB pages, at least 8 KiB).
    ///
    /// A greenlet with a stack size of its own gets a fresh stack, mapped for it (about 13 µs
    /// more per spawn), instead of a finished greenlet's warm one.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Runs the greenlet on may worker `worker` (a server's handler goes round robin).
    pub(crate) fn on_worker(mut self, worker: usize) -> Builder {
        self.home = Some(worker);
        self
    }

    /// For greenlets whose panic is handed to someone who re-raises it (`with_timeout`).
    pub(crate) fn quiet_panics(mut self) -> Builder {
        self.report_panics = false;
        self
    }

    /// Spawns the greenlet. It starts running on a worker soon, not inline.
    ///
    /// # Errors
    ///
    /// An [`io::ErrorKind::OutOfMemory`] error when its stack cannot be allocated: too many
    /// live greenlets for `vm.max_map_count`, or too little address space. The message says
    /// what to change. Nothing is left running.
    #[track_caller]
    pub fn spawn<F, T>(self, f: F) -> io::Result<Greenlet<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        config::ensure_started();
        // A warm carrier, unless the greenlet needs a stack size of its own. Spawned from a
        // plain thread, a greenlet may go to any worker: one with a warm carrier is preferred.
        let spawner_worker = crate::deadline::home::worker();
        let mut home = self.home.or(spawner_worker).unwrap_or_else(round_robin);
        let carrier = if self.stack_size.is_none() {
            let elsewhere = self.home.is_none() && spawner_worker.is_none();
            warm::take(home, elsewhere).map(|(at, c)| {
                home = at;
                c
            })
        } else {
            None
        };
        let at = Location::caller();
        let inner = Arc::new_cyclic(|me: &std::sync::Weak<Inner<T>>| Inner {
            meta: Meta::new(self.name, self.report_panics, at, home, me.clone()),
            slot: Mutex::new(Slot {
                result: None,
                error: None,
                links: Vec::new(),
                finished: false,
                lent: false,
                borrowers: Default::default(),
            }),
        });
        let theirs = inner.clone();
        // A large closure goes to the heap: moved by value, it would be copied down the new
        // stack (several times in a debug build) before the greenlet's first frame records
        // its stack for the overflow handler, and could overflow a small stack right there.
        let spawned = if size_of::<F>() > BOX_CLOSURES_OVER {
            let f: Box<dyn FnOnce() -> T + Send> = Box::new(f);
            start(home, carrier, self.stack_size, move || theirs.run(f))
        } else {
            start(home, carrier, self.stack_size, move || theirs.run(f))
        };
        if let Err(e) = spawned {
            dump::unregister(inner.meta.id, inner.meta.dump_slot);
            return Err(e);
        }
        Ok(Greenlet { inner })
    }
}

/// Spawns a greenlet running `f` (gevent's `spawn`). It starts soon on a worker, not inline.
///
/// # Panics
///
/// If the greenlet's stack cannot be allocated (see [`Builder::spawn`], which returns the
/// error instead).
///
/// # Examples
///
/// ```
/// let gs: Vec<_> = (0..10).map(|i| greenlet::spawn(move || i * i)).collect();
/// let squares: Vec<_> = greenlet::joinall(gs).into_iter().map(Result::unwrap).collect();
/// assert_eq!(squares[9], 81);
/// ```
#[track_caller]
pub fn spawn<F, T>(f: F) -> Greenlet<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Builder::new().spawn(f) {
        Ok(g) => g,
        Err(e) => panic!("greenlet::spawn failed: {e}"),
    }
}

/// Spawns a greenlet that starts `f` after `delay` (gevent's `spawn_later`). Killed during the
/// delay, it never runs `f`.
///
/// # Panics
///
/// As [`spawn`].
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// let start = Instant::now();
/// let g = greenlet::spawn_later(Duration::from_millis(20), move || start.elapsed());
/// assert!(g.get().unwrap() >= Duration::from_millis(20));
/// ```
#[track_caller]
pub fn spawn_later<F, T>(delay: Duration, f: F) -> Greenlet<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    spawn(move || {
        crate::sleep(delay);
        f()
    })
}
