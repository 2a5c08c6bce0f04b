//! A socket's may registration that is never freed, nor moved, while may may still read it.
//!
//! may's `WaitIo::wait_io` parks a greenlet through `RawIoBlock::subscribe`, which runs on the
//! greenlet's thread right after it switched out, and which reads the socket's `IoData` again
//! *after* it has published the greenlet to its wakers (`docs/upstream.md`, item 13). A
//! readiness event on another worker, or the crate's timer, can take the greenlet in that
//! window and run it on another thread, where it finishes its call and drops (or moves) the
//! socket while the first thread is still about to read it: a use-after-free, seen by
//! AddressSanitizer in `tests/hostile_servers.rs` once the window was widened.
//!
//! So the registration lives in a `Box` (a move of the socket does not move it), each wait
//! notes the thread whose `subscribe` may still be running ([`Registered::wait_io`]): the
//! thread it switched out on, when it resumed on another one. A thread is known to be out of
//! that `subscribe` as soon as it runs a greenlet again, because `subscribe` runs no other
//! coroutine after the store. When the socket is dropped while such a thread is noted, the
//! registration is handed to a helper greenlet queued to that thread, which drops it there
//! (closing the descriptor a few microseconds later than the drop).

use std::ops::Deref;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use may::io::{AsIoData, WaitIo};

use crate::deadline::hop;
use crate::sync::lock;

/// A boxed may registration and the threads that may still be inside may's `subscribe` for a
/// wait on it.
pub(crate) struct Registered<T: Send + 'static> {
    io: Option<Box<T>>,
    tails: Tails,
}

/// Threads (`hop::thread_number`) that may still be inside a `subscribe` for the registration.
#[derive(Default)]
struct Tails {
    /// Whether `threads` may be non-empty (read on every wait; the lock only when set).
    any: AtomicBool,
    threads: Mutex<Vec<u64>>,
}

impl<T: Send + 'static> Registered<T> {
    pub(crate) fn new(io: T) -> Registered<T> {
        Registered {
            io: Some(Box::new(io)),
            tails: Tails::default(),
        }
    }
}

impl<T: AsIoData + Send + 'static> Registered<T> {
    /// may's `wait_io` on the registration, noting where may may still be reading it.
    pub(crate) fn wait_io(&self) {
        let before = hop::thread_number();
        self.io().wait_io();
        self.tails.waited(before, hop::thread_number());
    }
}

impl<T: Send + 'static> Registered<T> {
    fn io(&self) -> &T {
        self.io
            .as_deref()
            .expect("a Registered holds its registration until dropped")
    }
}

impl<T: Send + 'static> Deref for Registered<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.io()
    }
}

impl<T: Send + 'static> Drop for Registered<T> {
    fn drop(&mut self) {
        let Some(io) = self.io.take() else {
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
            drop(io);
        } else {
            drop_after(pending, io);
        }
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

/// Drops `io` once each of `threads` has run a greenlet (so has left any `subscribe`).
fn drop_after(threads: Vec<u64>, io: Box<dyn Send>) {
    let Some(first) = threads.iter().find_map(|&t| hop::worker_of(t)) else {
        // None is a worker: the wait switched out on a thread that runs no greenlet again
        // (may's timer thread, without the crate's timer), so nothing can be queued there.
        log::debug!("a socket registration's last wait switched out off the workers");
        return drop(io);
    };
    // Taken by the helper; left here (and leaked) if no helper can be spawned.
    let slot = std::sync::Arc::new(Mutex::new(Some(io)));
    let theirs = slot.clone();
    let visit = move || {
        for &t in &threads {
            // A helper can be stolen by another worker: go where it was sent.
            for _ in 0..1_000 {
                if hop::thread_number() == t || hop::worker_of(t).is_none() {
                    break;
                }
                hop::to_thread(t);
            }
        }
        drop(lock(&theirs).take());
    };
    if !crate::greenlet::spawn_on_worker(first, visit) {
        // Out of memory for a greenlet: keeping the registration (and its descriptor) is the
        // safe choice.
        log::error!("cannot queue a socket's release to its worker; the descriptor is leaked");
        std::mem::forget(lock(&slot).take());
    }
}
