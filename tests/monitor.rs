//! `config().monitor(max_blocking)`: the blocked-worker monitor. Own test binary: it
//! configures the runtime and installs a capturing logger.

mod support;

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use support::{logged, ms};

const MAX_BLOCKING: Duration = Duration::from_millis(50);

/// The tests' configuration (`support::monitored_serially`), one test at a time.
fn setup() -> MutexGuard<'static, ()> {
    support::monitored_serially(MAX_BLOCKING)
}

/// The monitor's warnings that name the greenlet called `name`.
fn reports(name: &str) -> Vec<String> {
    logged(&format!("greenlet {name} (id "))
        .into_iter()
        .filter(|(level, m)| *level == log::Level::Warn && m.contains("held its worker thread"))
        .map(|(_, m)| m)
        .collect()
}

#[test]
fn the_setting_is_visible() {
    let _serial = setup();
    greenlet::spawn(|| ()).join();
    assert_eq!(greenlet::settings().monitor, Some(MAX_BLOCKING));
}

#[test]
fn a_std_sleep_in_a_greenlet_is_reported_once_by_name() {
    let _serial = setup();
    let g = greenlet::Builder::new()
        .name("sleeper")
        .spawn(|| std::thread::sleep(ms(400)))
        .unwrap();
    let id = g.id();
    g.join();
    greenlet::sleep(ms(100)); // lets the monitor see the incident end
    let found = reports("sleeper");
    assert_eq!(found.len(), 1, "one report per incident: {found:?}");
    let text = &found[0];
    assert!(text.contains(&format!("(id {id})")), "{text}");
    if cfg!(target_os = "linux") {
        assert!(text.contains("system call"), "{text}");
    }
    assert!(text.contains("longer than the monitor's 50 ms"), "{text}");
    let ended = logged(&format!("greenlet id {id} released its thread after"));
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].0, log::Level::Debug);
}

#[test]
fn a_long_computation_is_reported() {
    let _serial = setup();
    let g = greenlet::Builder::new()
        .name("spinner")
        .spawn(|| {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < ms(300) {
                n = std::hint::black_box(n.wrapping_add(1));
            }
            n
        })
        .unwrap();
    assert!(g.get().unwrap() > 0);
    let found = reports("spinner");
    assert_eq!(found.len(), 1, "{found:?}");
    if cfg!(target_os = "linux") {
        assert!(found[0].contains("computing"), "{}", found[0]);
    }
}

#[test]
fn cooperative_greenlets_and_idle_workers_are_not_reported() {
    let _serial = setup();
    // Many greenlets sleeping, a queue ping-pong, yields, and joins: all switch through
    // greenlet's API. Then a pause with both workers idle.
    let sleepers: Vec<_> = (0..200)
        .map(|i| {
            greenlet::Builder::new()
                .name(format!("quiet-sleeper-{i}"))
                .spawn(|| greenlet::sleep(ms(300)))
                .unwrap()
        })
        .collect();
    let q = greenlet::queue::Queue::bounded(1);
    let back = greenlet::queue::Queue::bounded(1);
    let (q2, back2) = (q.clone(), back.clone());
    let ponger = greenlet::Builder::new()
        .name("quiet-ponger")
        .spawn(move || {
            while let Ok(Some(v)) = q2.get().map(|v: Option<u64>| v) {
                back2.put(v).unwrap();
            }
        })
        .unwrap();
    let pinger = greenlet::Builder::new()
        .name("quiet-pinger")
        .spawn(move || {
            let start = Instant::now();
            let mut trips = 0u64;
            while start.elapsed() < ms(300) {
                q.put(Some(trips)).unwrap();
                back.get().unwrap();
                trips += 1;
                greenlet::yield_now();
            }
            q.put(None).unwrap();
            trips
        })
        .unwrap();
    assert!(pinger.get().unwrap() > 0);
    ponger.join();
    greenlet::joinall(sleepers);
    greenlet::sleep(ms(300));
    let found = reports("quiet-");
    assert!(found.is_empty(), "false reports: {found:?}");
}

#[test]
fn a_greenlet_parked_on_a_may_primitive_is_not_reported_when_its_worker_idles() {
    let _serial = setup();
    // may's `Mutex`, used directly: waiting on it is a switch the monitor cannot see. The
    // worker then idles, and on Linux the monitor finds it waiting on its own stack.
    let lock = std::sync::Arc::new(may::sync::Mutex::new(0));
    let held = lock.clone();
    let holder = greenlet::Builder::new()
        .name("quiet-holder")
        .spawn(move || {
            let mut guard = held.lock().unwrap();
            greenlet::sleep(ms(300));
            *guard += 1;
        })
        .unwrap();
    greenlet::sleep(ms(20));
    let waiter = greenlet::Builder::new()
        .name("quiet-waiter")
        .spawn(move || *lock.lock().unwrap())
        .unwrap();
    assert_eq!(waiter.get(), Ok(1));
    holder.join();
    if cfg!(target_os = "linux") {
        let found = reports("quiet-waiter");
        assert!(found.is_empty(), "false reports: {found:?}");
    }
}
