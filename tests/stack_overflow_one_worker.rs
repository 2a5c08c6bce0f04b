//! The cases of `overflow/cases.rs` on one worker (`config().workers(1)`): the overflowing
//! greenlets, the ones spawned after them and the watchdog's all share it.

#[path = "overflow/cases.rs"]
mod cases;
mod support;

/// One worker, applied before the first spawn of the process.
fn configure() {
    support::apply_one_worker();
}
