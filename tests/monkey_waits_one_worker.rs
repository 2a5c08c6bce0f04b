//! The cases of `monkey/waits.rs` on one worker (`config().workers(1)`): every waiter, writer,
//! killer and the watchdog's greenlets share it.
#![cfg(all(feature = "monkey", target_os = "linux"))]

mod support;
#[path = "monkey/waits.rs"]
mod waits;

/// Applies `workers(1)` once, before the first spawn of the process.
fn configure() {
    static APPLIED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    APPLIED.get_or_init(|| {
        greenlet::config()
            .workers(1)
            .apply()
            .expect("applied before the runtime starts");
    });
    assert_eq!(greenlet::settings().workers, 1);
}
