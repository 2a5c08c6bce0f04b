//! Greenlets that overflow their stacks. The guard page stops the overflow and the greenlet is
//! stopped where it is, without unwinding: its joiners get an error, the process goes on, and
//! its stack is kept for good, so whatever still refers to it (a scoped thread's borrow, a lock
//! it holds) never sees the memory freed or reused (issue 14, item 4).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use greenlet::{Builder, JoinError};

use crate::support::watchdog::bounded;

/// Recurses with a 1 KiB frame until the stack runs out.
pub fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth as u8; 1024]);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + u64::from(frame[0])
}

/// Asserts that `r` is the overflow error of a greenlet with a stack of `bytes`.
fn assert_overflowed<T: std::fmt::Debug>(r: Result<T, JoinError>, bytes: usize) {
    match r {
        Err(JoinError::Panicked(msg)) => assert!(
            msg.contains(&format!("overflowed its stack of {bytes} bytes")),
            "{msg}"
        ),
        other => panic!("expected an overflow error, got {other:?}"),
    }
}

fn default_stack() -> usize {
    greenlet::settings().stack_size
}

#[test]
fn overflow_is_an_error_not_a_hang() {
    crate::configure();
    bounded(
        "overflow_is_an_error_not_a_hang",
        Duration::from_secs(20),
        || {
            const STACK: usize = 16 * 1024;
            let g = Builder::new()
                .name("deep")
                .stack_size(STACK)
                .spawn(|| recurse(0))
                .unwrap();
            assert_overflowed(g.get(), STACK);
            // The runtime carries on.
            assert_eq!(greenlet::spawn(|| 5).get(), Ok(5));
        },
    );
}

/// The reproduction of `docs/upstream.md` item 14: a scoped thread borrows a local of a
/// greenlet that then overflows. The borrowed memory must stay as it was while new greenlets
/// are spawned (before: pooled stacks were handed to them and overwritten, or unmapped and the
/// thread died with SIGSEGV), for the default (pooled) stack size and for a size of its own.
#[test]
fn a_scoped_borrow_of_an_overflowed_stack_stays_valid() {
    crate::configure();
    for bytes in [default_stack(), 64 * 1024] {
        let name = format!("scoped borrow, {bytes} B stack");
        bounded(&name, Duration::from_secs(60), move || scoped_borrow(bytes));
    }
}

fn scoped_borrow(bytes: usize) {
    const PATTERN: u64 = 0x5EED_5EED_5EED_5EED;
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let (stop2, reads2, bad2) = (stop.clone(), reads.clone(), bad.clone());
    let g = Builder::new()
        .name("overflows inside a scope")
        .stack_size(bytes)
        .spawn(move || {
            let local = std::hint::black_box([PATTERN; 16]);
            std::thread::scope(|s| {
                s.spawn(|| {
                    while !stop2.load(Ordering::Relaxed) {
                        let seen = std::hint::black_box(&local);
                        if seen.iter().any(|&w| w != PATTERN) {
                            bad2.fetch_add(1, Ordering::Relaxed);
                        }
                        reads2.fetch_add(1, Ordering::Relaxed);
                        std::thread::yield_now();
                    }
                });
                recurse(0)
            })
        })
        .unwrap();
    assert_overflowed(g.get(), bytes);
    // New greenlets, each writing over its whole stack: before, they were given the
    // overflowed stack (the pool's newest) and overwrote the borrowed words.
    for _ in 0..10 {
        let batch: Vec<_> = (0..500)
            .map(|i| {
                Builder::new()
                    .stack_size(bytes)
                    .spawn(move || {
                        let fill = std::hint::black_box([i as u8 | 1; 24 * 1024]);
                        greenlet::sleep(Duration::from_millis(1));
                        fill[7]
                    })
                    .unwrap()
            })
            .collect();
        for g in greenlet::joinall(batch) {
            assert!(g.is_ok());
        }
    }
    let before = reads.load(Ordering::Relaxed);
    let t0 = Instant::now();
    while reads.load(Ordering::Relaxed) == before && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    assert!(
        reads.load(Ordering::Relaxed) > before,
        "the scoped thread stopped reading"
    );
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "the overflowed greenlet's borrowed local changed under the scoped thread"
    );
}

/// A lock held by a greenlet that overflows stays locked (it was never unwound): a deadlock
/// for whoever waits on it, never a lock whose guard's memory is reused. Not poisoned either.
#[test]
fn locks_held_by_an_overflowed_greenlet_stay_locked() {
    crate::configure();
    bounded("locks stay locked", Duration::from_secs(20), || {
        let ours = Arc::new(greenlet::sync::Mutex::new(1u32));
        let std_lock = Arc::new(std::sync::Mutex::new(2u32));
        let (a, b) = (ours.clone(), std_lock.clone());
        let g = greenlet::spawn(move || {
            let _g1 = a.lock().unwrap();
            let _g2 = b.lock().unwrap();
            recurse(0)
        });
        assert_overflowed(g.get(), default_stack());
        assert!(
            ours.try_lock().is_err(),
            "greenlet::sync::Mutex was released"
        );
        assert!(
            matches!(
                std_lock.try_lock(),
                Err(std::sync::TryLockError::WouldBlock)
            ),
            "std's Mutex was released or poisoned"
        );
        let waiter = {
            let ours = ours.clone();
            greenlet::spawn(move || ours.lock().map(|g| *g).is_ok())
        };
        assert!(!waiter.handle().join_timeout(Duration::from_millis(50)));
        waiter.kill();
        assert_eq!(waiter.get(), Err(JoinError::Killed));
    });
}

/// What would have woken or unwound an overflowed greenlet comes later: its own `Timeout`
/// firing, a kill, a link. None resumes it; its joiners and links see the overflow once.
#[test]
fn timeouts_kills_and_links_after_an_overflow_find_it_finished() {
    crate::configure();
    bounded("after an overflow", Duration::from_secs(20), || {
        let linked = Arc::new(AtomicUsize::new(0));
        let g = greenlet::spawn(|| {
            let _t = greenlet::Timeout::start(Duration::from_millis(10));
            recurse(0)
        });
        let seen = linked.clone();
        g.link(move |r| {
            assert!(r.is_err());
            seen.fetch_add(1, Ordering::SeqCst);
        });
        g.join();
        greenlet::sleep(Duration::from_millis(30)); // its Timeout fires meanwhile
        assert!(!g.kill(), "a finished greenlet reported killed");
        assert_overflowed(g.get(), default_stack());
        let t0 = Instant::now();
        while linked.load(Ordering::SeqCst) == 0 && t0.elapsed() < Duration::from_secs(5) {
            greenlet::sleep(Duration::from_millis(1));
        }
        assert_eq!(linked.load(Ordering::SeqCst), 1);
        assert_eq!(greenlet::spawn(|| 7).get(), Ok(7));
    });
}

/// Rounds of a kill racing an overflow: the kill comes before the greenlet starts, while it
/// computes (from a plain thread, and from a greenlet on its worker), or after it overflowed.
/// Each round ends as `Killed` or as the overflow, never hangs, and the worker goes on.
#[test]
fn a_kill_racing_an_overflow_ends_one_way_or_the_other() {
    crate::configure();
    bounded("kill vs overflow", Duration::from_secs(120), || {
        let (mut killed, mut overflowed) = (0, 0);
        for round in 0..200u64 {
            let spin = Duration::from_micros(round % 7 * 30);
            let victim = Builder::new()
                .stack_size(32 * 1024)
                .spawn(move || {
                    let t0 = Instant::now();
                    while t0.elapsed() < spin {
                        std::hint::spin_loop();
                    }
                    recurse(0)
                })
                .unwrap();
            let wait = Duration::from_micros(round % 5 * 40);
            if round % 2 == 0 {
                std::thread::sleep(wait);
                victim.kill();
            } else {
                let v = victim.handle();
                greenlet::spawn(move || {
                    greenlet::sleep(wait);
                    v.kill()
                })
                .join();
            }
            match victim.get() {
                Err(JoinError::Killed) => killed += 1,
                r => {
                    assert_overflowed(r, 32 * 1024);
                    overflowed += 1;
                }
            }
        }
        assert_eq!(killed + overflowed, 200);
        assert_eq!(greenlet::spawn(|| 3).get(), Ok(3));
    });
}

/// Overflows inside a kill's unwind: a destructor that recurses without end. The greenlet
/// ends with the overflow (its destructor never finished), and the process goes on.
#[test]
fn an_overflow_in_a_destructor_during_a_kill() {
    crate::configure();
    struct Deep;
    impl Drop for Deep {
        fn drop(&mut self) {
            recurse(0);
        }
    }
    bounded(
        "overflow while unwinding a kill",
        Duration::from_secs(20),
        || {
            for _ in 0..20 {
                let started = Arc::new(AtomicBool::new(false));
                let s = started.clone();
                let g = greenlet::spawn(move || {
                    let _deep = Deep;
                    s.store(true, Ordering::SeqCst);
                    greenlet::sleep(Duration::from_secs(60));
                });
                while !started.load(Ordering::SeqCst) {
                    greenlet::sleep(Duration::from_millis(1));
                }
                g.kill();
                assert_overflowed(g.get(), default_stack());
            }
            assert_eq!(greenlet::spawn(|| 9).get(), Ok(9));
        },
    );
}

/// Many overflows, one after another and many at once, on every worker: each is reported,
/// each stack kept, and the runtime goes on.
#[test]
fn many_overflows_at_once() {
    crate::configure();
    bounded("many overflows", Duration::from_secs(60), || {
        for _ in 0..4 {
            let gs: Vec<_> = (0..50)
                .map(|_| {
                    Builder::new()
                        .stack_size(16 * 1024)
                        .spawn(|| {
                            greenlet::yield_now();
                            recurse(0)
                        })
                        .unwrap()
                })
                .collect();
            for r in greenlet::joinall(gs) {
                assert_overflowed(r, 16 * 1024);
            }
        }
        let sum: u64 = greenlet::joinall((0..100u64).map(|i| greenlet::spawn(move || i)))
            .into_iter()
            .map(Result::unwrap)
            .sum();
        assert_eq!(sum, 4950);
    });
}

const CHILD: &str = "GREENLET_OVERFLOW_CHILD";

/// A stack overflow that is not a greenlet's (a plain thread's) still reaches the handlers
/// installed before the crate's and ends the process, as without the crate's handler. (std
/// would report it and abort; generator's handler, which comes first, ends it with SIGSEGV.)
#[test]
fn a_plain_threads_overflow_still_aborts() {
    crate::configure();
    if std::env::var_os(CHILD).is_some() {
        assert_eq!(greenlet::spawn(|| 1).get(), Ok(1)); // the runtime (and its handler) is up
        let t = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| recurse(0))
            .unwrap();
        let _ = t.join();
        unreachable!("the overflow returned");
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cases::a_plain_threads_overflow_still_aborts",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child did not end within 30 s (it hangs)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    use std::os::unix::process::ExitStatusExt;
    // SIGSEGV (11) or, should generator pass it on to std's handler, SIGABRT (6).
    if std::env::var_os("GREENLET_TEST_SANITIZER").is_some() {
        // AddressSanitizer reports the overflow itself and exits with an error.
        assert!(!status.success(), "{status:?}");
    } else {
        assert!(matches!(status.signal(), Some(11 | 6)), "{status:?}");
    }
}

/// Closures of every size run on small stacks: a large one is kept on the heap, not copied
/// down the new stack before the greenlet's first frame (before: a 7 KB closure on a 64 KiB
/// stack overflowed there in a debug build, unseen by the handler, and its joiners hung; a
/// closure bigger than the stack could not be spawned at all).
#[test]
fn big_closures_run_on_small_stacks() {
    crate::configure();
    bounded("big closures", Duration::from_secs(30), || {
        fn with<const N: usize>() {
            let big = [3u8; N];
            let g = Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    std::hint::black_box(&big)
                        .iter()
                        .map(|&b| u64::from(b))
                        .sum::<u64>()
                })
                .unwrap();
            assert_eq!(g.get(), Ok(3 * N as u64), "{N} bytes");
        }
        with::<200>();
        with::<4_000>();
        with::<7_000>();
        with::<20_000>();
        with::<200_000>();
    });
}
