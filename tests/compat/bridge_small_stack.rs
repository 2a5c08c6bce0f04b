//! The async bridge with the smallest greenlet stacks: its runtime is built on the thread
//! that starts the greenlet runtime, not on a worker's helper coroutine (whose stack is the
//! configured size). Its own binary: configuration is per process.
#![cfg(feature = "tokio")]

#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

#[test]
fn the_runtime_starts_with_8_kib_stacks() {
    greenlet::config()
        .stack_size(8 * 1024)
        .apply()
        .expect("before the first spawn");
    support::watchdog::bounded("8 KiB stacks", Duration::from_secs(30), || {
        let g = greenlet::Builder::new()
            .stack_size(32 * 1024)
            .spawn(|| greenlet::block_on(tokio::time::sleep(Duration::from_millis(5))))
            .unwrap();
        assert_eq!(g.get(), Ok(()));
        assert_eq!(greenlet::spawn(|| 1).get(), Ok(1));
    });
}
