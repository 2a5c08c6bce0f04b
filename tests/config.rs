//! `config()` before and after the runtime starts, and the single-worker behaviours it allows.
//! One test function: the runtime starts once per process.

use std::sync::{Arc, Mutex};

use greenlet::JoinError;

#[test]
fn configure_then_start_then_refuse() {
    assert!(!greenlet::settings().started);
    greenlet::config()
        .workers(1)
        .stack_size(48 * 1024)
        .pool_capacity(10)
        .pin_workers(false)
        .apply()
        .expect("before the first spawn");
    let s = greenlet::settings();
    assert_eq!(
        (s.workers, s.stack_size, s.pool_capacity),
        (1, 48 * 1024, 10)
    );
    assert!(!s.pin_workers);

    strict_alternation_on_one_worker();
    kill_before_first_run_skips_the_body();

    assert!(greenlet::settings().started);
    let err = greenlet::config().workers(4).apply().unwrap_err();
    assert!(err.to_string().contains("already started"), "{err}");
    assert_eq!(
        greenlet::settings().workers,
        1,
        "the refused change had no effect"
    );
}

/// With one worker, two running greenlets that `yield_now` take strict turns. They start
/// together (a greenlet spawned while another loops on `yield_now` waits in the worker's
/// inbox until the loop ends: docs/upstream.md, item 7).
fn strict_alternation_on_one_worker() {
    const TURNS: usize = 10;
    let log = Arc::new(Mutex::new(Vec::new()));
    greenlet::track_waits(true); // before they park, so that `dump` sees them waiting
    let go = Arc::new(greenlet::sync::Event::new());
    let both = Arc::new(greenlet::sync::Event::new());
    let arrived = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let gs: Vec<_> = ["t1", "t2"]
        .into_iter()
        .map(|name| {
            let log = log.clone();
            let go = go.clone();
            let (arrived, both) = (arrived.clone(), both.clone());
            greenlet::spawn(move || {
                go.wait();
                // The second to arrive wakes the first from the worker: both are then on its
                // local queue, and take turns.
                if arrived.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                    both.set();
                } else {
                    both.wait();
                }
                for _ in 0..TURNS {
                    log.lock().unwrap().push(name);
                    greenlet::yield_now();
                }
            })
        })
        .collect();
    // Both wait on `go` (a greenlet waiting there has started); then both are woken at once.
    while greenlet::dump()
        .greenlets()
        .iter()
        .filter(|g| g.waiting().is_some_and(|w| w.what() == "Event::wait"))
        .count()
        < 2
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    go.set();
    greenlet::joinall(gs);
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 2 * TURNS);
    assert!(log.windows(2).all(|w| w[0] != w[1]), "{log:?}");
}

/// On the only worker, a greenlet spawned and killed before the spawner yields never runs.
fn kill_before_first_run_skips_the_body() {
    let outer = greenlet::spawn(|| {
        let ran = Arc::new(Mutex::new(false));
        let ran2 = ran.clone();
        let target = greenlet::spawn(move || *ran2.lock().unwrap() = true);
        assert!(target.kill_nowait());
        let result = target.get();
        (result, *ran.lock().unwrap())
    });
    assert_eq!(outer.get(), Ok((Err(JoinError::Killed), false)));
}
