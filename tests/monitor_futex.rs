//! Issue 15, item 5: a futex wait inside a greenlet (std `mpsc`, a std `Mutex`) cannot be
//! made cooperative, so the blocked-worker monitor names it: the greenlet, "futex wait", how
//! long, what to use instead and (Linux, glibc, debug builds) the Rust function that waited;
//! when every worker is blocked, an error with the greenlet dump. Own test binary: it
//! configures two workers and the monitor, and installs a capturing logger.
#![cfg(target_os = "linux")]

mod support;

use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::Duration;

use support::watchdog::bounded;
use support::{logged, ms};

const MAX_BLOCKING: Duration = Duration::from_millis(50);
/// How long a plain thread keeps the greenlets blocked before it releases them.
const HOLD: Duration = Duration::from_millis(500);
const BOUND: Duration = Duration::from_secs(30);
/// Whether the report can name the Rust frame here: glibc on x86_64 or aarch64, with the
/// debug information and frames of a debug build.
const FRAMES: bool = cfg!(all(
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64"),
    debug_assertions
));

/// The tests' configuration (`support::monitored_serially`), one test at a time.
fn setup() -> MutexGuard<'static, ()> {
    support::monitored_serially(MAX_BLOCKING)
}

/// The records at `level` that name greenlet `name` and say "futex".
fn futex_records(level: log::Level, name: &str) -> Vec<String> {
    logged(&format!("greenlet {name} (id "))
        .into_iter()
        .filter(|(l, m)| *l == level && m.contains("futex"))
        .map(|(_, m)| m)
        .collect()
}

/// A greenlet called `name` that waits in `recv` on a std channel, and the plain thread that
/// sends on it after [`HOLD`].
struct Blocked {
    greenlet: greenlet::Greenlet<u32>,
    sender: std::thread::JoinHandle<()>,
}

impl Blocked {
    fn start(name: &str) -> Blocked {
        let (tx, rx) = mpsc::channel::<u32>();
        let greenlet = greenlet::Builder::new()
            .name(name)
            .spawn(move || wait_on_std_channel(&rx))
            .unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(HOLD);
            tx.send(7).unwrap();
        });
        Blocked { greenlet, sender }
    }

    /// Waits for the greenlet (it gets the value) and returns its id.
    fn finish(self) -> u64 {
        let id = self.greenlet.id();
        assert_eq!(self.greenlet.get(), Ok(7));
        self.sender.join().unwrap();
        id
    }
}

/// The function the report should blame.
#[inline(never)]
fn wait_on_std_channel(rx: &mpsc::Receiver<u32>) -> u32 {
    rx.recv().unwrap()
}

#[test]
fn a_std_channel_recv_is_reported_as_a_futex_wait() {
    let _serial = setup();
    let id = bounded("std channel recv", BOUND, || {
        let id = Blocked::start("futex-recv").finish();
        greenlet::sleep(ms(100)); // lets the monitor see the incident end
        id
    });
    let found = futex_records(log::Level::Warn, "futex-recv");
    assert_eq!(found.len(), 1, "one report per incident: {found:?}");
    let text = &found[0];
    assert!(text.contains(&format!("(id {id})")), "{text}");
    assert!(text.contains("futex wait"), "{text}");
    assert!(text.contains("longer than the monitor's 50 ms"), "{text}");
    assert!(text.contains("greenlet::queue"), "{text}");
    assert!(text.contains("threadpool::spawn_blocking"), "{text}");
    if FRAMES {
        assert!(
            text.contains("monitor_futex::wait_on_std_channel`"),
            "the frame: {text}"
        );
        assert!(text.contains("tests/monitor_futex.rs:"), "{text}");
        assert!(text.contains("Receiver<T>::recv`"), "the call: {text}");
    }
    // One of two workers was blocked: no error.
    assert!(futex_records(log::Level::Error, "futex-recv").is_empty());
}

#[test]
fn a_std_mutex_held_by_a_thread_is_reported() {
    let _serial = setup();
    bounded("std mutex", BOUND, || {
        let lock = Arc::new(Mutex::new(0u32));
        let (held_tx, held_rx) = mpsc::channel();
        let holder = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                let mut guard = lock.lock().unwrap();
                held_tx.send(()).unwrap();
                std::thread::sleep(HOLD);
                *guard += 1;
            })
        };
        held_rx.recv().unwrap();
        let g = greenlet::Builder::new()
            .name("futex-mutex")
            .spawn(move || *lock.lock().unwrap())
            .unwrap();
        assert_eq!(g.get(), Ok(1));
        holder.join().unwrap();
    });
    let found = futex_records(log::Level::Warn, "futex-mutex");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("greenlet::sync"), "{}", found[0]);
    if FRAMES {
        assert!(
            found[0].contains("Mutex<T>::lock`"),
            "the call: {}",
            found[0]
        );
    }
}

#[test]
fn every_worker_blocked_is_an_error_with_the_dump() {
    let _serial = setup();
    bounded("every worker blocked", BOUND, || {
        // Spawned from a plain thread, consecutive greenlets go round robin over the workers.
        let a = Blocked::start("futex-all-a");
        let b = Blocked::start("futex-all-b");
        a.finish();
        b.finish();
    });
    let errors: Vec<String> = logged("every worker thread (2) is blocked")
        .into_iter()
        .filter(|(l, _)| *l == log::Level::Error)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let text = &errors[0];
    for name in ["futex-all-a", "futex-all-b"] {
        assert!(text.contains(&format!("greenlet {name} (id ")), "{text}");
        assert!(text.contains(&format!("{name:?}")), "the dump: {text}");
    }
    assert!(text.contains("futex wait"), "{text}");
    assert!(text.contains("live greenlet(s)"), "the dump: {text}");
}
