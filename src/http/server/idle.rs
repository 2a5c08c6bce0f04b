//! Which connections wait for a request (and since when), so that `stop` closes them at once
//! and a server at its connection cap closes the longest idle one to make room.
//!
//! Each connection registers once; between requests it only stores a time stamp (no lock, no
//! allocation per request). Only `stop` and an accept waiting at the cap scan them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::greenlet::GreenletRef;
use crate::sync::lock;

struct Slot {
    greenlet: Option<GreenletRef>,
    /// Nanoseconds since `Idle::epoch` plus one when it began waiting; 0 while busy;
    /// `CLAIMED` once chosen to be closed.
    since: AtomicU64,
}

/// A connection chosen to be closed: it ends instead of serving what it reads next.
const CLAIMED: u64 = u64::MAX;

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
    /// Registers the calling connection (busy).
    pub(super) fn join(&self) -> Member<'_> {
        let slot = Arc::new(Slot {
            greenlet: crate::current(),
            since: AtomicU64::new(0),
        });
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.conns).insert(key, slot.clone());
        Member {
            idle: self,
            key,
            slot,
        }
    }

    /// Closes the connection idle the longest, if any (the server is at its cap and a new
    /// connection waits). The one chosen is claimed first, so that a connection that has
    /// just read a request ends instead of being killed in its handler.
    pub(super) fn evict(&self) {
        let conns = lock(&self.conns);
        let mut idle: Vec<(u64, &Arc<Slot>)> = conns
            .values()
            .map(|s| (s.since.load(Ordering::SeqCst), s))
            .filter(|(since, _)| *since != 0 && *since != CLAIMED)
            .collect();
        idle.sort_unstable_by_key(|(since, _)| *since);
        for (since, slot) in idle {
            let claimed = slot
                .since
                .compare_exchange(since, CLAIMED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
            if claimed {
                log::debug!(
                    "http::Server: {} connections (the cap): closing the longest idle",
                    conns.len()
                );
                if let Some(g) = &slot.greenlet {
                    g.kill_nowait();
                }
                return;
            }
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
            self.slot.since.store(0, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Whether the server is stopping.
    pub(super) fn stopping(&self) -> bool {
        self.idle.stopping.load(Ordering::SeqCst)
    }

    /// The connection has a request to read; `false` if it was chosen to be closed (it is
    /// being killed: it must end without serving anything).
    pub(super) fn busy(&self) -> bool {
        self.slot.since.swap(0, Ordering::SeqCst) != CLAIMED
    }
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        lock(&self.idle.conns).remove(&self.key);
    }
}
