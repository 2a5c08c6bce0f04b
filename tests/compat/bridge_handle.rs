//! The async bridge on a tokio runtime the program gives (`config().tokio_handle`), and the
//! tokio settings refused once the runtime has started. Its own binary: configuration is per
//! process.
#![cfg(feature = "tokio")]

use std::time::Duration;

use greenlet::{ConfigError, block_on};

#[path = "../support/mod.rs"]
mod support;

#[test]
fn the_given_runtime_polls_the_futures() {
    support::watchdog::bounded("a given runtime", Duration::from_secs(30), given_runtime);
}

fn given_runtime() {
    // A current-thread runtime would drive its timers only inside its own block_on.
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let refused = greenlet::config()
        .tokio_handle(current.handle().clone())
        .apply();
    assert_eq!(refused, Err(ConfigError::TokioFlavor));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("users-runtime")
        .enable_all()
        .build()
        .unwrap();
    greenlet::config()
        .tokio_handle(rt.handle().clone())
        .tokio_threads(3)
        .apply()
        .expect("before the first spawn");
    let g = greenlet::spawn(|| {
        block_on(async {
            // A task spawned inside the future runs on the given runtime's threads.
            tokio::spawn(async { std::thread::current().name().map(str::to_owned) })
                .await
                .unwrap()
        })
    });
    assert_eq!(g.get().unwrap().as_deref(), Some("users-runtime"));
    let name = block_on(
        greenlet::bridge::handle()
            .spawn(async { std::thread::current().name().map(str::to_owned) }),
    );
    assert_eq!(name.unwrap().as_deref(), Some("users-runtime"));
    assert_eq!(greenlet::settings().tokio_threads, 0, "a runtime was given");
    // Too late now, for tokio's settings as for the others.
    let late = greenlet::config().tokio_threads(4).apply();
    assert!(matches!(late, Err(ConfigError::Started)), "{late:?}");
    // Timers of the given runtime, from a greenlet.
    let slept = greenlet::spawn(|| {
        let t = std::time::Instant::now();
        block_on(tokio::time::sleep(Duration::from_millis(20)));
        t.elapsed()
    });
    assert!(slept.get().unwrap() >= Duration::from_millis(20));
}
