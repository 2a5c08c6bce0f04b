//! Where the blockers of greenlets are dropped: on a plain thread, never in a greenlet.
//!
//! may's `Park::drop` waits for the end of the `subscribe` that registered the park, with may's
//! `yield_now`. When an unpark comes just as a greenlet parks, `subscribe` resumes the greenlet
//! inside its own frame, so the greenlet runs while that wait is still pending; if it then
//! drops the last reference to its blocker with a kill pending, may's `yield_now` does not
//! yield: it either spins for good (the worker's `thread::panicking()` is true because another
//! greenlet is parked mid-unwind there) or raises the kill out of `Park::drop` and frees the park
//! while `subscribe` still uses it (`docs/upstream.md`, item 11). So a greenlet hands its
//! blocker here instead ([`retire`]), in a list kept per thread. The blockers a greenlet retired
//! on a thread are dropped there by the next *other* greenlet that retires one on that thread:
//! while another greenlet runs on the thread, the first one has switched out there, so any
//! `subscribe` it was resumed inside has returned. A greenlet alone on its thread for long sends
//! its own to a `greenlet-reaper` thread in batches, where may's `yield_now` is
//! `std::thread::yield_now` and the wait works.

use std::cell::RefCell;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};

use may::sync::Blocker;

/// Blockers of the running greenlet kept on a thread before they go to the reaper.
const BATCH: usize = 64;

thread_local! {
    /// Retired blockers, with the id of the greenlet that retired each.
    static RETIRED: RefCell<Vec<(u64, Arc<Blocker>)>> = const { RefCell::new(Vec::new()) };
}

/// A batch of blockers on its way to the reaper thread.
type Batch = Vec<Arc<Blocker>>;

static REAPER: OnceLock<Option<Mutex<Sender<Batch>>>> = OnceLock::new();

fn reaper() -> Option<&'static Mutex<Sender<Batch>>> {
    REAPER
        .get_or_init(|| {
            let (tx, rx) = channel::<Batch>();
            let spawned = std::thread::Builder::new()
                .name("greenlet-reaper".into())
                .spawn(move || {
                    for batch in rx {
                        drop(batch);
                    }
                });
            match spawned {
                Ok(_) => Some(Mutex::new(tx)),
                Err(e) => {
                    log::error!("cannot start the greenlet-reaper thread ({e}); blockers are kept");
                    None
                }
            }
        })
        .as_ref()
}

/// Drops `blocker` later, when that is safe (see the module docs); at once on a plain thread.
pub(crate) fn retire(blocker: Arc<Blocker>) {
    if !may::coroutine::is_coroutine() {
        return drop(blocker);
    }
    let me = crate::greenlet::current_id().unwrap_or(0);
    let batch = RETIRED.with(|r| {
        // Not borrowed already unless a drop below switched coroutines, which the argument
        // above rules out; if it happens anyway, this one goes to the reaper.
        let Ok(mut r) = r.try_borrow_mut() else {
            return Some(vec![(me, blocker)]);
        };
        // Other greenlets' blockers are safe to drop now (and do not switch).
        r.retain(|(owner, _)| *owner == me);
        r.push((me, blocker));
        (r.len() >= BATCH).then(|| std::mem::take(&mut *r))
    });
    if let Some(batch) = batch {
        let batch: Batch = batch.into_iter().map(|(_, b)| b).collect();
        match reaper() {
            Some(tx) => {
                // Sending cannot block, and the lock is held for the send alone.
                let _ = crate::sync::lock(tx).send(batch);
            }
            // No reaper thread: keep them (a leak of a few hundred bytes per park, logged
            // once) rather than risk the drop here.
            None => std::mem::forget(batch),
        }
    }
}
