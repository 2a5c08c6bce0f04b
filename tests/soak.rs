//! Soak: many spawn/join and spawn/kill cycles leave memory and descriptors where warm-up left
//! them (about 2 s in release, 4 s in debug).

use std::time::Duration;

mod support;

/// Cycles, spawned and joined in batches so a bounded number is alive at once.
const SPAWN_JOIN: usize = 1_000_000;
const SPAWN_KILL: usize = 100_000;
const BATCH: usize = 1_000;
/// RSS may grow this much past warm-up (allocator slack), no more: under 20 bytes per cycle.
const RSS_SLACK: usize = 16 * 1024 * 1024;

fn rss() -> usize {
    support::proc_status::status_bytes("VmRSS").expect("VmRSS in /proc/self/status")
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn spawn_join_batch() {
    let gs: Vec<_> = (0..BATCH).map(|i| greenlet::spawn(move || i * 2)).collect();
    assert_eq!(greenlet::joinall(gs).len(), BATCH);
}

fn spawn_kill_batch() {
    let gs: Vec<_> = (0..BATCH)
        .map(|_| greenlet::spawn(|| greenlet::sleep(Duration::from_secs(3600))))
        .collect();
    greenlet::killall(&gs);
    assert!(gs.iter().all(|g| g.ready()));
}

/// Runs `batch` until `cycles` greenlets went through it; checks RSS and descriptors against
/// their values after the first tenth.
fn soak(cycles: usize, batch: fn()) {
    let batches = cycles / BATCH;
    for _ in 0..batches / 10 {
        batch();
    }
    let (rss0, fds0) = (rss(), open_fds());
    for _ in batches / 10..batches {
        batch();
    }
    let (rss1, fds1) = (rss(), open_fds());
    assert!(
        rss1 <= rss0 + RSS_SLACK,
        "RSS grew from {rss0} to {rss1} bytes"
    );
    // A kill's delivery borrows a never-ready pipe from a small pool (`greenlet::kill`): the
    // pool can grow by a pipe or two after warm-up when more kills land at once. A leak per
    // cycle would show as thousands.
    assert!(
        fds1 <= fds0 + 4,
        "descriptors leaked: {fds0} after warm-up, {fds1} at the end"
    );
}

#[test]
fn spawn_join_cycles_leak_nothing() {
    soak(SPAWN_JOIN, spawn_join_batch);
}

#[test]
fn spawn_kill_cycles_leak_nothing() {
    soak(SPAWN_KILL, spawn_kill_batch);
}
