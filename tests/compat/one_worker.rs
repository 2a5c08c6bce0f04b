//! The compatibility suite's rows (`compat.rs` says what they check) on a single worker
//! (`config().workers(1)`): a call that holds its worker stalls every other greenlet. The
//! modules are `compat.rs`'s (a crate root finds its modules beside it).
#![cfg(all(feature = "monkey", target_os = "linux"))]

mod cases;
mod harness;
mod pq;
mod servers;
mod services;
#[path = "../support/mod.rs"]
mod support;

/// One worker, the monitor on; the row lock.
fn setup() -> std::sync::MutexGuard<'static, ()> {
    let rows = harness::setup(|config| config.workers(1));
    assert_eq!(greenlet::settings().workers, 1);
    rows
}

cases::rows!();
