//! Where the blockers of greenlets are dropped: on a plain thread, never in a greenlet.
//!
//! may's `Park::drop` waits for the end of the `subscribe` that registered the park, with may's
//! `yield_now`. When an unpark comes just as a greenlet parks, `subscribe` resumes the greenlet
//! inside its own frame, so the greenlet runs while that wait is still pending; if it then
//! drops the last reference to its blocker with a kill pending, may's `yield_now` does not
//! yield: it either spins for good (the worker's `thread::panicking()` is true because another
//! greenlet is parked mid-unwind there) or raises the kill out of `Park::drop` and frees the park
//! while `subscribe` still uses it (`docs/upstream.md`, item 11). So a greenlet hands its
//! blocker here instead ([`retire`]): a few are gathered per thread and dropped in batches by a
//! `greenlet-reaper` thread, where may's `yield_now` is `std::thread::yield_now` and the wait
//! works.

use std::cell::RefCell;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};

use super::Parker;

/// Blockers gathered on one thread before they are sent to the reaper together.
const BATCH: usize = 64;

thread_local! {
    static RETIRED: RefCell<Vec<Arc<Parker>>> = const { RefCell::new(Vec::new()) };
}

/// A batch of blockers on its way to the reaper thread.
type Batch = Vec<Arc<Parker>>;

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

/// Drops `blocker` later, on a plain thread, if the caller is a coroutine (on a plain thread it
/// is dropped at once).
pub(crate) fn retire(blocker: Arc<Parker>) {
    if !may::coroutine::is_coroutine() {
        return drop(blocker);
    }
    let full = RETIRED.with(|r| {
        let mut r = r.borrow_mut();
        r.push(blocker);
        (r.len() >= BATCH).then(|| std::mem::take(&mut *r))
    });
    if let Some(batch) = full {
        match reaper() {
            Some(tx) => {
                // Sending cannot block, and the lock is held for the send alone.
                let _ = crate::sync::lock(tx).send(batch);
            }
            // No reaper thread: keep them (a leak of a few hundred bytes per park, logged
            // once) rather than risk the drop in a greenlet.
            None => std::mem::forget(batch),
        }
    }
}
