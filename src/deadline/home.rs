//! Pinned greenlets (issue 14): every greenlet runs on one worker, its *home*, from its first
//! instruction to its end, so a thread-local, an `Rc` or a `MutexGuard` held across a blocking
//! point is used on the thread that made it.
//!
//! may (built without `work_steal`) runs a woken coroutine on the worker that woke it: an
//! unpark made on worker A queues the coroutine to A's local queue, an unpark from a plain
//! thread to any worker's inbox, and a readiness event on the selector of worker `fd % N`.
//! So every wake-up of the crate is routed here:
//!
//! - a wake-up made on the greenlet's home is done at once, as before (no cost);
//! - any other is posted to the home's **mailbox**: a queue and an `eventfd` whose number is
//!   `≡ home (mod N)`, so that may's selector of the home reports it there. A daemon coroutine
//!   on each worker waits on its eventfd and performs the posted wake-ups from home;
//! - spawns name their worker (`Builder::id`): the spawner's own when spawned from a greenlet,
//!   round robin otherwise ([`round_robin`]), or one with a warm carrier (`greenlet::warm`);
//! - sockets are registered on the selector of the worker that creates them ([`place_fd`]).
//!
//! Whatever still resumes a greenlet elsewhere (a kill sent from another worker, a socket
//! made on one worker and waited on from another) is caught after the switch, before any of
//! the greenlet's own code runs, and the greenlet moves back (`hop::stay_home`).

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use may::io::{WaitIo, WaitIoWaker};

use super::Parker;
use crate::sync::lock;

/// No home: a plain thread's blocker, or a coroutine on no worker.
pub(crate) const NONE: usize = usize::MAX;

thread_local! {
    /// The may worker index of the calling thread ([`NONE`] off the workers).
    static WORKER: Cell<usize> = const { Cell::new(NONE) };
}

/// The may worker index of the calling thread, if it is a worker. Not inlined: a greenlet
/// that resumed on another thread must read that thread's value, and the compiler may
/// otherwise keep the thread-local's address across the switch.
#[inline(never)]
pub(crate) fn worker() -> Option<usize> {
    let w = WORKER.with(Cell::get);
    (w != NONE).then_some(w)
}

/// Records that the calling thread is may's worker `index` (run by a helper spawned there).
pub(crate) fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

fn workers() -> usize {
    may::config().get_workers().max(1)
}

/// The next worker, round robin (a server spreads its connections' handlers this way).
pub(crate) fn round_robin() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) % workers()
}

/// A wake-up to perform on a worker.
pub(crate) enum Wake {
    /// Unparks a greenlet parked on the blocker (then hands the blocker to the reaper).
    Unpark(Arc<Parker>),
    /// Wakes a greenlet waiting in `WaitIo::wait_io`.
    Io(WaitIoWaker),
    /// Runs a call that wakes or interrupts greenlets of that worker (a `Timeout` firing).
    Call(Box<dyn FnOnce() + Send>),
}

impl Wake {
    fn run(self) {
        match self {
            Wake::Unpark(b) => {
                b.unpark();
                // This can be the last reference, and this is a coroutine.
                super::retire(b);
            }
            Wake::Io(w) => w.wakeup(),
            // Run by the mailbox's daemon, or by a greenlet at a blocking point: a panic must
            // end neither (the daemon's end would lose every later wake-up of its worker).
            Wake::Call(f) => {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
                    log::error!("a posted wake-up panicked; it was dropped");
                }
            }
        }
    }
}

/// Wakes the greenlet (or thread) parked on `b`, on its home.
pub(crate) fn unpark(b: &Arc<Parker>) {
    let home = b.home;
    if home == NONE || worker() == Some(home) {
        b.unpark();
    } else {
        post(home, Wake::Unpark(b.clone()));
    }
}

/// Performs `wake` on worker `home` (at once when called there).
pub(crate) fn wake_on(home: usize, wake: Wake) {
    if home == NONE || worker() == Some(home) {
        wake.run();
    } else {
        post(home, wake);
    }
}

/// One worker's mailbox.
struct Mailbox {
    queue: Mutex<Vec<Wake>>,
    /// Set by the poster that writes the eventfd; cleared by the daemon before it takes the
    /// queue (so a post after that take writes again).
    armed: AtomicBool,
    /// The eventfd (the daemon's registration holds the same descriptor); `None` when it
    /// could not be made: a helper coroutine queued to the worker's inbox then empties the
    /// queue (`Builder::id`: slower, and it allocates).
    fd: Option<RawFd>,
}

/// Each worker's mailbox (made while the runtime starts).
static MAILBOXES: OnceLock<Vec<Arc<Mailbox>>> = OnceLock::new();

fn mailbox_of(worker: usize) -> Option<&'static Arc<Mailbox>> {
    MAILBOXES.get()?.get(worker)
}

/// Queues `wake` to worker `home`'s mailbox, which its daemon (or a helper, or any of its
/// greenlets at a blocking point) empties on that worker.
fn post(home: usize, wake: Wake) {
    let Some(mb) = mailbox_of(home) else {
        // Before the mailboxes exist (the runtime is starting): nothing of ours is parked.
        return wake.run();
    };
    lock(&mb.queue).push(wake);
    if mb.armed.swap(true, Ordering::SeqCst) {
        return;
    }
    match mb.fd {
        Some(fd) => {
            let one = 1u64.to_ne_bytes();
            // SAFETY: `fd` is an eventfd that lives as long as the process (its daemon loops
            // for ever and catches the panics of what it runs), and `one` is 8 readable bytes.
            unsafe { libc::write(fd, one.as_ptr().cast(), one.len()) };
        }
        None => {
            if !crate::greenlet::spawn_on_worker(home, move || drain_slow(mb)) {
                // The worker's next blocking point empties it (`drain`).
                log::error!("cannot queue a helper to worker {home}'s wake-ups");
            }
        }
    }
}

/// Performs the wake-ups posted to the calling worker's mailbox, if any: called at every
/// blocking point of the crate (one thread-local read and one relaxed load when there are
/// none). A worker reads its eventfd only when its local queue is empty, which greenlets that
/// keep waking each other (a ping-pong) never let happen; their blocking points do it instead.
#[inline]
pub(crate) fn drain() {
    if let Some(mb) = worker().and_then(mailbox_of)
        && mb.armed.load(Ordering::Relaxed)
    {
        drain_slow(mb);
    }
}

#[cold]
fn drain_slow(mb: &Mailbox) {
    mb.armed.store(false, Ordering::SeqCst);
    let batch = std::mem::take(&mut *lock(&mb.queue));
    for wake in batch {
        wake.run();
    }
}

/// An eventfd for the daemon's registration.
struct EventFd(OwnedFd);

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Duplicates `fd` onto a descriptor number `≡ worker (mod workers)`, so that may registers it
/// with that worker's selector (`epoll.rs`: `fd % selectors`), and closes the original. Keeps
/// `fd` when its number already fits, or when no duplicate can be made (out of descriptors:
/// the socket then works, and its waiters move back to their worker after each wake-up).
pub(crate) fn place_fd_on(fd: OwnedFd, worker: usize) -> OwnedFd {
    let n = workers();
    if n == 1 || fd.as_raw_fd() as usize % n == worker {
        return fd;
    }
    let mut tried = Vec::new();
    let mut from = fd.as_raw_fd() + 1;
    loop {
        // SAFETY: F_DUPFD_CLOEXEC on an open descriptor returns a new descriptor that we own
        // (or -1); its lowest free number is at least `from`.
        let d = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, from) };
        if d < 0 {
            log::debug!(
                "cannot place a descriptor on worker {worker}'s selector ({})",
                io::Error::last_os_error()
            );
            return fd;
        }
        // SAFETY: `d` was just returned by fcntl and is owned by nobody else.
        let dup = unsafe { OwnedFd::from_raw_fd(d) };
        if d as usize % n == worker {
            // `tried` and `fd` close here.
            return dup;
        }
        from = d + 1;
        tried.push(dup);
    }
}

/// [`place_fd_on`] the calling greenlet's worker; on a plain thread the descriptor is kept.
pub(crate) fn place_fd(fd: OwnedFd) -> OwnedFd {
    match worker() {
        Some(w) if may::coroutine::is_coroutine() => place_fd_on(fd, w),
        _ => fd,
    }
}

/// Makes each worker's mailbox and starts its daemon. Called once, while the runtime starts
/// (after the workers are known). A worker whose mailbox cannot be made gets its wake-ups
/// through helper coroutines instead ([`post`]).
pub(crate) fn start_mailboxes() {
    let boxes = (0..workers())
        .map(|h| {
            mailbox(h).unwrap_or_else(|e| {
                log::error!("cannot make worker {h}'s wake-up eventfd ({e}); helpers instead");
                Arc::new(Mailbox {
                    queue: Mutex::new(Vec::new()),
                    armed: AtomicBool::new(false),
                    fd: None,
                })
            })
        })
        .collect();
    let _ = MAILBOXES.set(boxes);
}

fn mailbox(h: usize) -> io::Result<Arc<Mailbox>> {
    // SAFETY: eventfd with valid flags returns a new descriptor or -1.
    let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just returned by eventfd and is owned by nobody else.
    let fd = place_fd_on(unsafe { OwnedFd::from_raw_fd(raw) }, h);
    if fd.as_raw_fd() as usize % workers() != h {
        return Err(io::Error::other(
            "no descriptor number for the worker's selector",
        ));
    }
    let mb = Arc::new(Mailbox {
        queue: Mutex::new(Vec::new()),
        armed: AtomicBool::new(false),
        fd: Some(fd.as_raw_fd()),
    });
    let io = may::io::CoIo::new(EventFd(fd)).map_err(io::Error::from)?;
    let theirs = mb.clone();
    if !crate::greenlet::spawn_on_worker(h, move || daemon(&theirs, &io)) {
        return Err(io::Error::other("cannot spawn the mailbox daemon"));
    }
    Ok(mb)
}

/// The daemon of one worker's mailbox: performs the posted wake-ups, from its worker, for ever.
fn daemon(mb: &Mailbox, io: &may::io::CoIo<EventFd>) {
    let mut batch = Vec::new();
    loop {
        mb.armed.store(false, Ordering::SeqCst);
        // The eventfd is not read: may's registration is edge-triggered, so every write is
        // reported anyway, and a read would add a writable edge (a second, empty resume).
        // The counter cannot fill (2^64 - 2 writes).
        std::mem::swap(&mut batch, &mut *lock(&mb.queue));
        if batch.is_empty() {
            io.wait_io();
            continue;
        }
        for wake in batch.drain(..) {
            wake.run();
        }
    }
}
