//! `GREENLET_MAX_BLOCKING_MS` switches the blocked-worker monitor on for an unchanged program,
//! unless the program configured the monitor itself. Each case runs in a child process (this
//! test binary, re-run with the variable set), since the runtime starts once per process.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{capture_log, logged, ms};

const CASE: &str = "GREENLET_MONITOR_ENV_CASE";

/// Runs test `name` again in a child process with the variable set to `value`.
fn run_child(name: &str, value: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CASE, "1")
        .env("GREENLET_MAX_BLOCKING_MS", value)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Blocks a worker for 300 ms and returns the monitor's reports about it.
fn block_a_worker() -> Vec<(log::Level, String)> {
    let g = greenlet::Builder::new()
        .name("env-sleeper")
        .spawn(|| std::thread::sleep(ms(300)))
        .unwrap();
    g.join();
    logged("greenlet env-sleeper (id ")
}

#[test]
fn the_variable_switches_the_monitor_on() {
    if std::env::var_os(CASE).is_none() {
        return run_child("the_variable_switches_the_monitor_on", "50");
    }
    capture_log();
    let reports = block_a_worker();
    assert_eq!(
        greenlet::settings().monitor,
        Some(Duration::from_millis(50))
    );
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].0, log::Level::Warn);
}

#[test]
fn an_explicit_setting_wins_over_the_variable() {
    if std::env::var_os(CASE).is_none() {
        return run_child("an_explicit_setting_wins_over_the_variable", "50");
    }
    capture_log();
    greenlet::config().monitor(Duration::ZERO).apply().unwrap();
    let reports = block_a_worker();
    assert_eq!(greenlet::settings().monitor, None);
    assert!(reports.is_empty(), "{reports:?}");
}

#[test]
fn an_unreadable_value_is_reported_and_ignored() {
    if std::env::var_os(CASE).is_none() {
        return run_child("an_unreadable_value_is_reported_and_ignored", "0.1s");
    }
    capture_log();
    let reports = block_a_worker();
    assert_eq!(greenlet::settings().monitor, None);
    assert!(reports.is_empty(), "{reports:?}");
    let warned = logged("GREENLET_MAX_BLOCKING_MS=\"0.1s\" is not a whole number");
    assert_eq!(warned.len(), 1, "{warned:?}");
}
