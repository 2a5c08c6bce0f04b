//! Which connections wait for a request (and since when), so that `stop` closes them at once
//! and a server at its connection cap closes the longest idle one to make room.
//!
//! Each connection registers once; between requests it only stores a time stamp (no lock, no
//! allocation per request). Only `stop` and a connection arriving at the cap scan them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::greenlet::GreenletRef;
use crate::sync::lock;

struct Slot {
    greenlet: Option<GreenletRef>,
    /// Nanoseconds since `Idle::epoch` plus one when it began waiting; 0 while busy.
    since: AtomicU64,
}

/// The open connections of one server.
pub(super) struct Idle {
    pub(super) stopping: AtomicBool,
    /// The connection cap (0: none), at which the longest idle connection is closed.
    pub(super) cap: AtomicUsize,
    conns: Mutex<HashMap<u64, Arc<Slot>>>,
    next: AtomicU64,
    epoch: Instant,
}

impl Default for Idle {
    fn default() -> Idle {
        Idle {
            stopping: AtomicBool::new(false),
            cap: AtomicUsize::new(0),
            conns: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

/// One connection's registration; removed when dropped.
pub(super) struct Member<'a> {
    idle: &'a Idle,
    key: u64,
    slot: Arc<Slot>,
}

impl Idle {
    /// Registers the calling connection (busy). At the cap, the connection idle the longest
    /// is closed to make room.
    pub(super) fn join(&self) -> Member<'_> {
        let slot = Arc::new(Slot {
            greenlet: crate::current(),
            since: AtomicU64::new(0),
        });
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let evict = {
            let mut conns = lock(&self.conns);
            conns.insert(key, slot.clone());
            let cap = self.cap.load(Ordering::Relaxed);
            if cap != 0 && conns.len() >= cap {
                conns
                    .values()
                    .filter_map(|s| {
                        let since = s.since.load(Ordering::SeqCst);
                        (since != 0).then_some((since, s))
                    })
                    .min_by_key(|(since, _)| *since)
                    .and_then(|(_, s)| s.greenlet.clone())
                    .map(|g| (g, conns.len()))
            } else {
                None
            }
        };
        if let Some((g, open)) = evict {
            log::debug!("http::Server: {open} connections (the cap): closing the longest idle");
            g.kill_nowait();
        }
        Member {
            idle: self,
            key,
            slot,
        }
    }

    /// Marks the server stopping and closes the idle connections.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let idle: Vec<GreenletRef> = lock(&self.conns)
            .values()
            .filter(|s| s.since.load(Ordering::SeqCst) != 0)
            .filter_map(|s| s.greenlet.clone())
            .collect();
        for g in &idle {
            g.kill_nowait();
        }
    }
}

impl Member<'_> {
    /// The connection starts waiting for a request; `false` if the server is stopping (the
    /// connection should close).
    pub(super) fn waiting(&self) -> bool {
        let since = self.idle.epoch.elapsed().as_nanos() as u64 + 1;
        self.slot.since.store(since, Ordering::SeqCst);
        // After the store: either `stop` sees this connection idle, or it sees `stopping`.
        if self.idle.stopping.load(Ordering::SeqCst) {
            self.busy();
            return false;
        }
        true
    }

    /// Whether the server is stopping.
    pub(super) fn stopping(&self) -> bool {
        self.idle.stopping.load(Ordering::SeqCst)
    }

    /// The connection has a request to read.
    pub(super) fn busy(&self) {
        self.slot.since.store(0, Ordering::SeqCst);
    }
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        lock(&self.idle.conns).remove(&self.key);
    }
}
