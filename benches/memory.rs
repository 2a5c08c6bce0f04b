//! Resident memory per parked task: greenlet, tokio (multi-thread) and `std::thread`.
//!
//! Run with: `cargo bench --bench memory` (`GREENLET_BENCH_QUICK=1` for fewer tasks).
//!
//! Each kind of task is spawned N times, every task parks on one shared event, and the
//! growth of `VmRSS` in `/proc/self/status` divided by N is reported; then the tasks are
//! released and joined. The greenlet runtime is started (and its stack pool filled) before the
//! first reading, so the figure is what each extra parked greenlet costs.

use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{quick, tokio_rt};

#[path = "../tests/support/proc_status.rs"]
mod proc_status;

/// `VmRSS` of this process, in bytes.
fn rss() -> usize {
    proc_status::status_bytes("VmRSS").expect("VmRSS in /proc/self/status")
}

fn greenlets(n: usize) -> usize {
    let go = Arc::new(greenlet::sync::Event::new());
    let before = rss();
    let gs: Vec<_> = (0..n)
        .map(|_| {
            let go = go.clone();
            greenlet::spawn(move || go.wait())
        })
        .collect();
    // Let every greenlet run up to its park.
    std::thread::sleep(Duration::from_millis(300));
    let grown = rss().saturating_sub(before);
    go.set();
    greenlet::joinall(gs);
    grown / n
}

fn tokio_tasks(n: usize) -> usize {
    let rt = tokio_rt();
    let go = Arc::new(tokio::sync::Notify::new());
    let before = rss();
    let hs: Vec<_> = (0..n)
        .map(|_| {
            let go = go.clone();
            rt.spawn(async move { go.notified().await })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let grown = rss().saturating_sub(before);
    go.notify_waiters();
    rt.block_on(async {
        for h in hs {
            h.await.unwrap();
        }
    });
    grown / n
}

fn threads(n: usize) -> usize {
    let go = Arc::new(std::sync::Barrier::new(n + 1));
    let before = rss();
    let hs: Vec<_> = (0..n)
        .map(|_| {
            let go = go.clone();
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    go.wait();
                })
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let grown = rss().saturating_sub(before);
    go.wait();
    for h in hs {
        h.join().unwrap();
    }
    grown / n
}

fn main() {
    let n = if quick() { 2_000 } else { 10_000 };
    // Each kind is measured in a fresh process (this binary, re-run with `--kind`), so one
    // kind's freed heap does not absorb the next kind's allocations.
    let args: Vec<String> = std::env::args().collect();
    if let Some(kind) = args
        .iter()
        .position(|a| a == "--kind")
        .and_then(|i| args.get(i + 1))
    {
        let per_task = match kind.as_str() {
            "greenlet" => {
                // Start the runtime (and fill its stack pool) before measuring.
                greenlet::spawn(|| ()).join();
                greenlets(n)
            }
            "tokio" => tokio_tasks(n),
            _ => threads(n / 10),
        };
        println!("{per_task}");
        return;
    }
    println!(
        "RSS per parked task, {n} tasks (threads: {} with 64 KiB stacks), each kind in a fresh process",
        n / 10
    );
    let me = std::env::current_exe().expect("own path");
    for (kind, count) in [("greenlet", n), ("tokio", n), ("std_thread", n / 10)] {
        let out = std::process::Command::new(&me)
            .args(["--kind", kind])
            .output()
            .expect("re-run the bench");
        let bytes = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        println!("memory/{kind}/{count:<8} {bytes:>8} bytes");
    }
}
