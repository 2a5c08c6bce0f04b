//! The cases of `monkey/waits.rs` on one worker (`config().workers(1)`): every waiter, writer,
//! killer and the watchdog's greenlets share it.
#![cfg(all(feature = "monkey", target_os = "linux"))]

mod support;
#[path = "monkey/waits.rs"]
mod waits;

/// One worker, applied before the first spawn of the process.
fn configure() {
    support::apply_one_worker();
}
