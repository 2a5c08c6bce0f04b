//! A socket's may registration whose memory outlives may's last read of it.
//!
//! may's `WaitIo::wait_io` parks a greenlet through `RawIoBlock::subscribe`, which runs on the
//! greenlet's thread right after it switched out, and which reads the socket's `IoData` again
//! *after* it has published the greenlet to its wakers (`docs/upstream.md`, item 13). A
//! readiness event on another worker, or the crate's timer, can take the greenlet in that
//! window and run it on another thread, where it finishes its call and drops (or moves) the
//! socket while the first thread is still about to read it: a use-after-free, seen by
//! AddressSanitizer in `tests/hostile_servers.rs` once the window was widened.
//!
//! So the registration lives in a `Box` (a move of the socket does not move it), and each wait
//! notes the thread it switched out on when it resumed on another one
//! ([`Registered::wait_io`]). A thread is known to be out of that `subscribe` once it runs a
//! greenlet again: `subscribe` runs no other coroutine after the store. A socket dropped while
//! such a thread is noted is dropped *in place* at once (the descriptor is deregistered and
//! closed, as std's would be), but the box's memory and may's `EventData` are kept until a
//! helper greenlet has run on each noted thread; only then are they freed.

use std::io;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use may::io::{AsIoData, WaitIo};

use crate::deadline::hop;
use crate::sync::lock;

/// A boxed may registration and the threads that may still be inside may's `subscribe` for a
/// wait on it.
pub(crate) struct Registered<T: AsIoData + Send + 'static> {
    /// `None` once dropped. `ManuallyDrop`: the registration is dropped in place, and its
    /// memory may be freed later (see the module docs).
    io: Option<Box<ManuallyDrop<T>>>,
    tails: Tails,
    /// Registrations of the same socket with the other workers' selectors, by worker: a
    /// duplicate descriptor each, made when a greenlet of that worker first waits on the
    /// socket ([`here`](Registered::here)), so that readiness resumes it on its own worker.
    elsewhere: OnceLock<Box<[OnceLock<Registered<T>>]>>,
    /// The timer's wake-up of this registration's waiter at its deadline, kept from one
    /// wait to the next (`net::wait`).
    timer: crate::deadline::IoTimer,
}

/// The readiness flag that may's `WaitIoWaker::wakeup` sets (`wait_io.rs`).
pub(crate) const WAKER_BIT: usize = 0x8000_0000;

/// A socket registration that can be made again, for the calling greenlet's worker, on a
/// duplicate of its descriptor ([`Registered::here`]).
pub(crate) trait Again: Sized {
    /// A new registration of the same socket (a duplicate descriptor), with the selector of
    /// the calling greenlet's worker.
    fn again(&self) -> io::Result<Self>;
}

macro_rules! again_via_std_clone {
    ($($t:ty: $what:literal),* $(,)?) => {$(
        impl Again for $t {
            fn again(&self) -> io::Result<Self> {
                register_fd(self.inner().try_clone()?.into(), $what)
            }
        }
    )*};
}

again_via_std_clone!(
    may::net::TcpStream: "connection",
    may::net::TcpListener: "listener",
    may::net::UdpSocket: "socket",
);

/// Threads (`hop::thread_number`) that may still be inside a `subscribe` for the registration.
#[derive(Default)]
struct Tails {
    /// Whether `threads` may be non-empty (read on every wait; the lock only when set).
    any: AtomicBool,
    threads: Mutex<Vec<u64>>,
}

impl<T: AsIoData + Send + 'static> Registered<T> {
    pub(crate) fn new(io: T) -> Registered<T> {
        Registered {
            io: Some(Box::new(ManuallyDrop::new(io))),
            tails: Tails::default(),
            elsewhere: OnceLock::new(),
            timer: crate::deadline::IoTimer::default(),
        }
    }

    /// Makes sure the crate's timer wakes the greenlet waiting on this registration at
    /// `deadline` or before it (but after `now`); `false` if the timer thread could not be
    /// started. Keeps the wake-up armed for the next wait (see `deadline::IoTimer`).
    pub(crate) fn wake_by(&self, deadline: Instant, now: Instant) -> bool {
        self.timer.wake_by(deadline, now, || self.io().waker())
    }

    /// may's `wait_io` on the registration, noting where may may still be reading it; the
    /// greenlet then continues on the thread it waited on (`hop::stay_home`).
    pub(crate) fn wait_io(&self) {
        let before = hop::thread_number();
        self.wait_io_anywhere();
        hop::stay_home(before);
    }

    /// [`wait_io`](Self::wait_io), but continuing on whichever thread woke the greenlet.
    /// Returns may's readiness flags of the wait (`WAKER_BIT` set when a `WaitIoWaker` ended
    /// it).
    pub(crate) fn wait_io_anywhere(&self) -> usize {
        let before = hop::thread_number();
        let flags = self.io().wait_io();
        self.tails.waited(before, hop::thread_number());
        flags
    }

    /// The registration to wait on from the calling greenlet: this one if it is with the
    /// selector of the greenlet's worker (descriptor number `≡ worker (mod N)`), otherwise
    /// that worker's own, made on first use. Falls back to this one (a greenlet woken on
    /// another worker then moves back: `hop::stay_home`) off the workers or if no duplicate
    /// can be made.
    pub(crate) fn here(&self) -> &Registered<T>
    where
        T: AsRawFd + Again,
    {
        let Some(w) = crate::deadline::home::worker() else {
            return self;
        };
        let n = may::config().get_workers().max(1);
        if self.io().as_raw_fd() as usize % n == w {
            return self;
        }
        let slots = self
            .elsewhere
            .get_or_init(|| (0..n).map(|_| OnceLock::new()).collect());
        let Some(slot) = slots.get(w) else {
            return self;
        };
        if let Some(reg) = slot.get() {
            return reg;
        }
        match self.io().again() {
            // If another greenlet of this worker raced us here, keep its registration.
            Ok(again) => slot.get_or_init(|| Registered::new(again)),
            Err(e) => {
                log::debug!("cannot register a socket with worker {w}'s selector ({e})");
                self
            }
        }
    }

    fn io(&self) -> &T {
        self.io
            .as_deref()
            .expect("a Registered holds its registration until dropped")
    }
}

/// Registers socket `fd` with may as a `T` (`may::net::TcpStream`, ...) on the selector of
/// the calling greenlet's worker (`deadline::home::place_fd`), so that its readiness resumes
/// waiters there.
pub(crate) fn register_fd<T: std::os::fd::FromRawFd>(
    fd: std::os::fd::OwnedFd,
    what: &str,
) -> std::io::Result<T> {
    use std::os::fd::IntoRawFd;
    let fd = crate::deadline::home::place_fd(fd).into_raw_fd();
    let registered = crate::panic::quietly(|| {
        std::panic::catch_unwind(|| {
            // SAFETY: `fd` is an open socket that nothing else owns (just taken out of its
            // `OwnedFd`); may takes ownership of it. may's `from_raw_fd` panics if the socket
            // cannot be registered with its epoll, after closing it.
            unsafe { T::from_raw_fd(fd) }
        })
    });
    registered.map_err(|_| {
        std::io::Error::other(format!("cannot register the {what} with the event loop"))
    })
}

impl<T: AsIoData + Send + 'static> Deref for Registered<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.io()
    }
}

impl<T: AsIoData + Send + 'static> Drop for Registered<T> {
    fn drop(&mut self) {
        let Some(mut io) = self.io.take() else {
            return;
        };
        let here = hop::thread_number();
        let pending: Vec<u64> = if self.tails.any.load(Ordering::Acquire) {
            lock(&self.tails.threads)
                .iter()
                .copied()
                .filter(|&t| t != here)
                .collect()
        } else {
            Vec::new()
        };
        if pending.is_empty() {
            // SAFETY: the registration is dropped once, here; `ManuallyDrop` keeps the box's
            // own drop (right after) from dropping it again.
            unsafe { ManuallyDrop::drop(&mut *io) };
            return;
        }
        // may's `subscribe` reads the `IoData` (in the box) and the `EventData` it points to:
        // keep both.
        let event_data: Box<dyn Send> = Box::new(std::sync::Arc::clone(&**io.as_io_data()));
        // SAFETY: as above, dropped once; the box is freed later, without dropping it again.
        // The descriptor is deregistered from may's epoll and closed now.
        unsafe { ManuallyDrop::drop(&mut *io) };
        defer(pending, Box::new((io, event_data)));
    }
}

impl Tails {
    /// A wait that switched out on `before` resumed on `after`.
    fn waited(&self, before: u64, after: u64) {
        if before == after && !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut threads = lock(&self.threads);
        // Running here: this thread has left any `subscribe` of an earlier wait.
        threads.retain(|&t| t != after);
        if before != after && !threads.contains(&before) {
            threads.push(before);
        }
        self.any.store(!threads.is_empty(), Ordering::Release);
    }
}

/// Memory to free once a greenlet has run on each of `rest` (after the thread it waits for).
struct Deferred {
    rest: Vec<u64>,
    memory: Box<dyn Send>,
}

/// Per thread waited for: what to free once a greenlet runs there, and whether a helper is
/// queued to do it.
static WAITING: Mutex<Vec<(u64, Vec<Deferred>, bool)>> = Mutex::new(Vec::new());

/// Frees `memory` once a greenlet has run on each of `threads` (not empty), one after the
/// other.
fn defer(mut threads: Vec<u64>, memory: Box<dyn Send>) {
    let thread = threads.remove(0);
    let d = Deferred {
        rest: threads,
        memory,
    };
    let queue_helper = {
        let mut waiting = lock(&WAITING);
        let pos = match waiting.iter().position(|(t, _, _)| *t == thread) {
            Some(pos) => pos,
            None => {
                waiting.push((thread, Vec::new(), false));
                waiting.len() - 1
            }
        };
        let entry = &mut waiting[pos];
        entry.1.push(d);
        !std::mem::replace(&mut entry.2, true)
    };
    if queue_helper {
        queue_release(thread);
    }
}

/// Queues a helper greenlet to `thread` that frees what waits for it. If that cannot be done,
/// the memory is kept (a few hundred bytes per socket): freeing it could be the
/// use-after-free this module exists to prevent.
fn queue_release(thread: u64) {
    let queued = hop::worker_of(thread)
        .is_some_and(|worker| crate::greenlet::spawn_on_worker(worker, move || release(thread)));
    if !queued {
        log::warn!("cannot queue the release of closed sockets' memory to a worker; it is kept");
        let mut waiting = lock(&WAITING);
        if let Some(entry) = waiting.iter_mut().find(|(t, _, _)| *t == thread) {
            std::mem::forget(std::mem::take(&mut entry.1));
            entry.2 = false;
        }
    }
}

/// Runs in a helper greenlet queued to `thread`: frees what waited for it, or passes it on to
/// the next thread it waits for.
fn release(thread: u64) {
    if hop::thread_number() != thread {
        // Not run where it was queued (may's workers no longer steal, so this is a guard):
        // move there, or queue another helper.
        hop::to_thread(thread);
        if hop::thread_number() != thread {
            return queue_release(thread);
        }
    }
    let items = {
        let mut waiting = lock(&WAITING);
        match waiting.iter().position(|(t, _, _)| *t == thread) {
            Some(pos) => waiting.swap_remove(pos).1,
            None => Vec::new(),
        }
    };
    for d in items {
        let mut rest = d.rest;
        rest.retain(|&t| t != thread);
        if rest.is_empty() {
            drop(d.memory);
        } else {
            defer(rest, d.memory);
        }
    }
}
