//! Warm greenlets (issue 18): a finished greenlet's coroutine runs the next spawn of its worker,
//! and nothing of the first greenlet reaches the second: not its greenlet-locals, name, id,
//! kill or time-out state, links or panic; a coroutine a kill was sent to is not reused; idle
//! ones end after `keep_warm`.
//!
//! One test runs the cases in order: they read the process-wide count of idle coroutines.

mod support;

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use greenlet::{JoinError, Timeout};
use support::ms;
use support::watchdog::in_greenlet;

const KEEP: Duration = Duration::from_millis(400);
const BOUND: Duration = Duration::from_secs(30);

greenlet::greenlet_local! {
    static MARK: Cell<u64> = Cell::new(0);
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        // A destructor that blocks, as a greenlet-local's or a detached result's may.
        greenlet::sleep(ms(1));
        self.0.store(true, Ordering::SeqCst);
    }
}

greenlet::greenlet_local! {
    static GUARD: RefCell<Option<SetOnDrop>> = const { RefCell::new(None) };
}

/// The address of a local in the greenlet's body: equal for two greenlets run one after the
/// other by the same coroutine.
#[inline(never)]
fn frame_address() -> usize {
    let x = 0u8;
    std::hint::black_box(&x) as *const u8 as usize
}

/// Whether two [`frame_address`]es lie on one stack (stacks are 128 KiB mappings apart).
fn same_stack(a: usize, b: usize) -> bool {
    a.abs_diff(b) < 4096
}

fn wait_for(what: &str, bound: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + bound;
    while !cond() {
        assert!(Instant::now() < end, "{what}: not within {bound:?}");
        greenlet::sleep(ms(5));
    }
}

#[test]
fn warm_greenlets() {
    greenlet::config()
        .keep_warm(KEEP)
        .apply()
        .expect("configured before the first spawn");
    in_greenlet("reused_newest_first", BOUND, reused_newest_first);
    in_greenlet(
        "nothing_passes_to_the_next",
        BOUND,
        nothing_passes_to_the_next,
    );
    in_greenlet(
        "killed_ones_are_not_reused",
        BOUND,
        killed_ones_are_not_reused,
    );
    in_greenlet("panics_do_not_pass", BOUND, panics_do_not_pass);
    in_greenlet("idle_ones_end", BOUND, idle_ones_end);
    support::watchdog::bounded("from_a_plain_thread", BOUND, from_a_plain_thread);
}

/// A greenlet spawned after another ended on the same worker runs on its coroutine.
fn reused_newest_first() {
    let a = greenlet::spawn(frame_address).get().unwrap();
    let idle = greenlet::__warm_idle();
    assert!(idle >= 1, "the finished greenlet waits warm ({idle} idle)");
    let (b, idle_inside) = greenlet::spawn(|| (frame_address(), greenlet::__warm_idle()))
        .get()
        .unwrap();
    assert!(
        same_stack(a, b),
        "the second greenlet ran on the first one's stack"
    );
    assert_eq!(idle_inside, idle - 1, "taken off the shelf while it runs");
}

fn nothing_passes_to_the_next() {
    let dropped = Arc::new(AtomicBool::new(false));
    let d = dropped.clone();
    let linked = Arc::new(AtomicUsize::new(0));
    let l = linked.clone();
    let first = greenlet::Builder::new()
        .name("first")
        .spawn(move || {
            MARK.with(|m| m.set(7));
            GUARD.with(|g| *g.borrow_mut() = Some(SetOnDrop(d)));
            (
                frame_address(),
                greenlet::current().map(|g| g.id()),
                MARK.with(Cell::get),
            )
        })
        .unwrap();
    first.link(move |_| {
        l.fetch_add(1, Ordering::SeqCst);
    });
    let first_id = first.id();
    let (at, seen_id, mark) = first.get().unwrap();
    assert_eq!((seen_id, mark), (Some(first_id), 7));
    wait_for(
        "the first greenlet's locals dropped",
        Duration::from_secs(5),
        || dropped.load(Ordering::SeqCst),
    );
    let second = greenlet::spawn(|| {
        (
            frame_address(),
            greenlet::current().map(|g| (g.id(), g.name().to_owned())),
            MARK.with(Cell::get),
            GUARD.with(|g| g.borrow().is_none()),
        )
    });
    let second_id = second.id();
    let (at2, me, mark2, no_guard) = second.get().unwrap();
    assert!(same_stack(at, at2), "the same coroutine ran both");
    assert_eq!(me, Some((second_id, format!("Greenlet-{second_id}"))));
    assert_eq!(mark2, 0, "a fresh greenlet-local");
    assert!(no_guard, "a fresh greenlet-local");
    assert_eq!(
        linked.load(Ordering::SeqCst),
        1,
        "the first one's link ran once"
    );

    // A time-out of the first greenlet that is still armed when it ends does not reach the
    // next one on its coroutine.
    let at = greenlet::spawn(|| {
        let t = Timeout::start(ms(30));
        std::mem::forget(t); // never cancelled: it fires after the greenlet has ended
        frame_address()
    })
    .get()
    .unwrap();
    let next = greenlet::spawn(|| {
        greenlet::sleep(ms(80));
        frame_address()
    });
    let at2 = next.get().expect("not reached by the first one's time-out");
    assert!(same_stack(at, at2), "it ran on the same coroutine");
}

fn killed_ones_are_not_reused() {
    let g = greenlet::spawn(|| {
        greenlet::sleep(Duration::from_secs(60));
        frame_address()
    });
    greenlet::sleep(ms(5));
    let idle = greenlet::__warm_idle();
    assert!(g.kill());
    assert_eq!(g.get(), Err(JoinError::Killed));
    greenlet::sleep(ms(5));
    assert!(
        greenlet::__warm_idle() <= idle,
        "the killed one's coroutine is not shelved"
    );
    // Killed before it ever ran, on a warm coroutine: its body never runs, and that
    // coroutine is not reused either.
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let g = greenlet::spawn(move || r.store(true, Ordering::SeqCst));
    assert!(g.kill());
    assert_eq!(g.get(), Err(JoinError::Killed));
    assert!(!ran.load(Ordering::SeqCst));
    // The next ones run normally.
    let gs: Vec<_> = (0..50).map(|i| greenlet::spawn(move || i)).collect();
    assert_eq!(greenlet::joinall(gs), (0..50).map(Ok).collect::<Vec<_>>());
    // Thousands of kills racing the end of the greenlet: every result is its own.
    for round in 0..2_000u32 {
        let g = greenlet::spawn(move || {
            if round.is_multiple_of(2) {
                greenlet::yield_now();
            }
            round
        });
        if round.is_multiple_of(3) {
            greenlet::yield_now();
        }
        g.kill_nowait();
        match g.get() {
            Ok(v) => assert_eq!(v, round),
            Err(e) => assert_eq!(e, JoinError::Killed),
        }
        let h = greenlet::spawn(move || {
            greenlet::sleep(Duration::from_micros(200));
            round + 1
        });
        assert_eq!(
            h.get(),
            Ok(round + 1),
            "round {round}: the next greenlet untouched"
        );
    }
}

fn panics_do_not_pass() {
    let at = greenlet::Builder::new()
        .name("panics")
        .spawn(|| {
            let at = frame_address();
            if at != 0 {
                panic!("on purpose at {at}");
            }
        })
        .unwrap();
    let msg = match at.get() {
        Err(JoinError::Panicked(m)) => m,
        other => panic!("expected a panic, got {other:?}"),
    };
    let at: usize = msg.trim_start_matches("on purpose at ").parse().unwrap();
    let next = greenlet::spawn(|| {
        // Blocking points work normally: no stale panic or kill state.
        greenlet::sleep(ms(1));
        greenlet::yield_now();
        let t = Timeout::start(ms(500));
        greenlet::sleep(ms(1));
        drop(t);
        frame_address()
    });
    let at2 = next.get().expect("no stale panic or kill");
    assert!(
        same_stack(at, at2),
        "the coroutine of a panicked greenlet is reused"
    );
}

fn idle_ones_end() {
    let gs: Vec<_> = (0..200)
        .map(|_| greenlet::spawn(|| greenlet::sleep(ms(1))))
        .collect();
    greenlet::joinall(gs);
    assert!(greenlet::__warm_idle() >= 200);
    // Past `keep_warm` (plus a quarter, and scheduling slack) they have all ended.
    wait_for("idle greenlets end", KEEP * 5, || {
        greenlet::__warm_idle() == 0
    });
}

/// Spawns from a plain thread take warm coroutines too (woken through the worker's mailbox).
fn from_a_plain_thread() {
    for round in 0..3 {
        let gs: Vec<_> = (0..1_000u32)
            .map(|i| greenlet::spawn(move || i * 2))
            .collect();
        let sum: u32 = greenlet::joinall(gs).into_iter().map(Result::unwrap).sum();
        assert_eq!(sum, 999 * 1_000, "round {round}");
        assert!(greenlet::__warm_idle() > 0, "round {round}");
    }
}
