//! A pipeline: a producer, a pool of workers and a collector, joined by queues.
//!
//! Run with: `cargo run --release --example queue_pipeline [-- --items 1000 --workers 8]`

use std::time::{Duration, Instant};

use greenlet::queue::{JoinableQueue, Queue};

mod common;

fn main() {
    let (items, workers) = (
        common::num("--items", 1000) as usize,
        common::num("--workers", 8) as usize,
    );
    let jobs: JoinableQueue<u64> = Queue::bounded(workers * 2);
    let results: Queue<(usize, u64)> = Queue::unbounded();
    let start = Instant::now();

    // Workers: take a job, "work" (a short sleep stands in for I/O), report, mark it done.
    let pool: Vec<_> = (0..workers)
        .map(|w| {
            let (jobs, results) = (jobs.clone(), results.clone());
            greenlet::spawn(move || {
                for n in &jobs {
                    greenlet::sleep(Duration::from_millis(1));
                    let _ = results.put((w, n * n));
                    jobs.task_done().expect("one task_done per job");
                }
            })
        })
        .collect();

    // The collector sums results until the results queue is closed.
    let collector = {
        let results = results.clone();
        greenlet::spawn(move || {
            let mut per_worker = vec![0usize; workers];
            let mut sum = 0u64;
            for (w, square) in &results {
                per_worker[w] += 1;
                sum += square;
            }
            (sum, per_worker)
        })
    };

    // The producer: put waits while the bounded queue is full (back-pressure).
    for n in 0..items as u64 {
        jobs.put(n).expect("jobs queue open");
    }
    jobs.join(); // every job processed
    jobs.close(); // workers' loops end
    greenlet::joinall(pool);
    results.close(); // the collector's loop ends
    let (sum, per_worker) = collector.get().expect("collector");

    let expected: u64 = (0..items as u64).map(|n| n * n).sum();
    println!(
        "{items} items through {workers} workers in {:.2?}",
        start.elapsed()
    );
    println!("sum of squares {sum} (expected {expected}); jobs per worker {per_worker:?}");
    assert_eq!(sum, expected);
}
