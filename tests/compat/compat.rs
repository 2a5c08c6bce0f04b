//! The compatibility suite (issue 15, item 7): real blocking crates, used unmodified under
//! `greenlet::monkey::patch_all()`. Each row has 50 greenlets make one call each against a
//! loopback server (or child process, or pipe writer) that answers after 100 ms, and asserts
//! they all finish within 2 s: about 0.1 s when the call cooperates, 2.5 s (two workers) or
//! 5 s (one) when it holds its worker. `reqwest::blocking` and the sync `postgres` client
//! cannot cooperate (a tokio runtime inside); their rows assert that the blocked-worker monitor
//! names the greenlet and the wait instead. Each row prints its time (`--nocapture`), runs
//! under the watchdog (a hang fails with the row's name and the greenlet dump), and rows run
//! one at a time. This binary runs on the default workers, `compat_one_worker` on one; both
//! share the rows (`cases.rs`). `docs/compat.md` has the table.
//!
//! Servers: the HTTP, websocket and UDP servers are plain threads (`servers.rs`), not under
//! test. Redis and PostgreSQL are real: the binary itself starts `redis-server` and a
//! PostgreSQL cluster (`initdb` in a temporary directory, found with `pg_config --bindir`),
//! each on a free loopback port the first time a row needs it, so `cargo test --all-features`
//! needs no manual step beyond having them installed (`.ci/run` installs what is missing;
//! a row whose server is missing fails saying what to install). They die with the test binary
//! through `PR_SET_PDEATHSIG` (the harness never runs the destructors of statics), and the
//! cluster's directory is removed then. `GREENLET_TEST_REDIS=host:port` and
//! `GREENLET_TEST_POSTGRES=<libpq connection string>` use running servers instead
//! (`services.rs`).
#![cfg(all(feature = "monkey", target_os = "linux"))]

mod cases;
mod harness;
mod pq;
mod servers;
mod services;
#[path = "../support/mod.rs"]
mod support;

/// The default workers, the monitor on; the row lock.
fn setup() -> std::sync::MutexGuard<'static, ()> {
    harness::setup(|config| config)
}

cases::rows!();
