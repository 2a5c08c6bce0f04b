//! The load and race cases of `hostile_load.rs` and `hostile_races.rs` on a single worker
//! (`config().workers(1)`): timer wake-ups cannot hop to another worker, a greenlet that
//! computes holds the only one, and every notifier, killer and waiter shares it.
//!
//! The runtime starts once per process: every test first applies the configuration (once,
//! before any spawn) and checks it took effect.

#[path = "hostile/load.rs"]
mod load;
#[path = "hostile/races.rs"]
mod races;
mod support;

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use support::hostile::scaled;

/// Applies `workers(1)` before the first spawn of this process, and shares the worker with
/// the other tests for as long as the returned guard lives.
fn one_worker() -> RwLockReadGuard<'static, ()> {
    support::apply_one_worker();
    WORKER.read().unwrap_or_else(PoisonError::into_inner)
}

/// As [`one_worker`], with the worker to itself: a test whose greenlet computes on the only
/// worker delays every other test's greenlets by design (the harness runs tests in parallel),
/// and their races with sub-millisecond deadlines would then all time out. The race tests
/// take it alone too: two of them side by side (about 200 greenlets a batch each, in a debug
/// build) held the worker more than the rounds' 1 ms, so that every waiter of one started
/// after its deadline, and that test's rounds did not race at all (1 CI run, and 2 of 45
/// local runs of this binary under `cargo test`).
fn one_worker_alone() -> RwLockWriteGuard<'static, ()> {
    support::apply_one_worker();
    WORKER.write().unwrap_or_else(PoisonError::into_inner)
}

static WORKER: RwLock<()> = RwLock::new(());

#[test]
fn two_thousand_timed_waits() {
    let _shared = one_worker();
    for seed in 0..scaled(2, 1) as u64 {
        load::timed_waits(2_000, 100 + seed);
    }
}

#[test]
fn timeouts_and_with_timeouts_en_masse() {
    let _shared = one_worker();
    load::timeouts(scaled(1_000, 500), 100);
}

/// A round with killed consumers once lost an item (seen once, never reproduced). The
/// suspected window is closed since #13's follow-up: may's `Park::drop` can yield, and so take
/// a kill; `wait_until` dropped its blocker after `ready` had taken the item. Now it drops it
/// before `ready` runs, and passes on a wake-up it was given if the kill lands there.
#[test]
fn producer_consumer_drain_with_timeouts_and_kills() {
    let _shared = one_worker();
    load::drains(10);
}

/// Regression (fixed in #13's follow-up): on one worker, a greenlet that computes and calls
/// `yield_now` now and then (what the crate's docs recommend for long computations) held up
/// the greenlets that a plain thread spawns beside it and their 1–20 ms sleeps: they
/// returned only when it stopped (3 s here). may's `yield_now` requeues the greenlet on the
/// worker's local queue, and the worker reads its inbox, where spawns and wake-ups from other
/// threads go, only when that queue is empty. Now about every millisecond of yields the
/// yielding greenlet steps behind the inbox (`deadline::hop::yield_now`).
#[test]
fn timers_fire_beside_a_computing_greenlet() {
    let _alone = one_worker_alone();
    load::timers_beside_a_computing_greenlet(100);
}

#[test]
fn event_set_vs_timeout_vs_kill() {
    let _alone = one_worker_alone();
    races::event_set_vs_timeout_vs_kill();
}

#[test]
fn async_result_set_vs_timeout_vs_kill() {
    let _alone = one_worker_alone();
    races::async_result_set_vs_timeout_vs_kill();
}

#[test]
fn queue_get_vs_timeout_vs_kill() {
    let _alone = one_worker_alone();
    races::queue_get_vs_timeout_vs_kill();
}

#[test]
fn semaphore_release_vs_timeout_vs_kill() {
    let _alone = one_worker_alone();
    races::semaphore_release_vs_timeout_vs_kill();
}

#[test]
fn greenlet_finish_vs_join_timeout_vs_kill() {
    let _alone = one_worker_alone();
    races::greenlet_finish_vs_join_timeout_vs_kill();
}

#[test]
fn condvar_notify_all_vs_timeout() {
    let _alone = one_worker_alone();
    races::condvar_notify_all_vs_timeout();
}

#[test]
fn with_timeout_vs_work_finishing() {
    let _alone = one_worker_alone();
    races::with_timeout_vs_work_finishing();
}

#[test]
fn timeout_guard_vs_work_finishing_vs_kill() {
    let _alone = one_worker_alone();
    races::timeout_guard_vs_work_finishing_vs_kill();
}

#[test]
fn kills_and_timeouts_at_once_are_delivered_once() {
    let _alone = one_worker_alone();
    races::kills_and_timeouts_at_once_are_delivered_once();
}

#[test]
fn links_from_threads_and_greenlets_on_a_finishing_greenlet() {
    let _shared = one_worker();
    races::links_from_threads_and_greenlets_on_a_finishing_greenlet();
}
