//! `pool`: bounded concurrency, ordering of map/imap/imap_unordered, join, kill; and
//! `greenlet_local!`.

mod support;

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use greenlet::JoinError;
use greenlet::pool::{Group, Pool};
use support::ms;

const LIMIT: usize = 5;

/// A pool task that records the peak number running at once.
fn tracked(now: &Arc<AtomicUsize>, peak: &Arc<AtomicUsize>) -> impl Fn(u64) -> u64 + use<> {
    let (now, peak) = (now.clone(), peak.clone());
    move |i| {
        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(n, Ordering::SeqCst);
        greenlet::sleep(ms(2 + i % 5));
        now.fetch_sub(1, Ordering::SeqCst);
        i * i
    }
}

#[test]
fn a_pool_of_five_never_runs_more_than_five() {
    let pool = Pool::new(LIMIT);
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let results = pool.map(0..100, tracked(&now, &peak));
    assert_eq!(results.len(), 100);
    assert!(
        results
            .iter()
            .enumerate()
            .all(|(i, r)| *r == Ok((i * i) as u64))
    );
    assert_eq!(peak.load(Ordering::SeqCst), LIMIT);
    assert_eq!(pool.free_count(), LIMIT);
    assert!(pool.is_empty());
}

#[test]
fn imap_keeps_order_and_imap_unordered_follows_finishing() {
    let pool = Pool::new(LIMIT);
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let ordered: Vec<_> = pool.imap(0..40u64, tracked(&now, &peak)).collect();
    assert_eq!(ordered, (0..40u64).map(|i| Ok(i * i)).collect::<Vec<_>>());
    assert!(peak.load(Ordering::SeqCst) <= LIMIT);

    let delays = [60u64, 5, 30];
    let unordered: Vec<_> = Group::new()
        .imap_unordered(delays, |d| {
            greenlet::sleep(ms(d));
            d
        })
        .collect();
    assert_eq!(unordered, vec![(1, Ok(5)), (2, Ok(30)), (0, Ok(60))]);
    let empty: Vec<_> = pool.imap_unordered(Vec::<u64>::new(), |x| x).collect();
    assert!(empty.is_empty());
}

#[test]
fn map_reports_panics_in_place() {
    let pool = Pool::new(2);
    let r = pool.map([1, 0, 2], |d: u32| {
        assert_ne!(d, 0, "zero");
        10 / d
    });
    assert_eq!(r[0], Ok(10));
    assert!(r[1].as_ref().unwrap_err().is_panic());
    assert_eq!(r[2], Ok(5));
    assert_eq!(pool.free_count(), 2, "the panicking member freed its slot");
}

#[test]
fn spawn_waits_for_a_slot_and_wait_available() {
    let pool = Pool::new(1);
    let first = pool.spawn(|| greenlet::sleep(ms(50)));
    assert!(pool.full());
    let t = Instant::now();
    let second = pool.spawn(|| 2);
    assert!(t.elapsed() >= ms(30), "spawn waited for the slot");
    assert_eq!(second.get(), Ok(2));
    first.join();
    pool.wait_available();
    assert_eq!(pool.apply(|| "applied"), Ok("applied"));
}

#[test]
fn join_and_kill_cover_every_member() {
    let group = Group::new();
    for _ in 0..20 {
        drop(group.spawn(|| greenlet::sleep(ms(20))));
    }
    assert!(group.join_timeout(Duration::from_secs(5)));
    assert!(group.is_empty());
    let gs: Vec<_> = (0..20)
        .map(|_| group.spawn(|| greenlet::sleep(Duration::from_secs(60))))
        .collect();
    assert_eq!(group.len(), 20);
    group.kill();
    assert!(group.is_empty());
    assert!(
        greenlet::joinall(gs)
            .into_iter()
            .all(|r| r == Err(JoinError::Killed))
    );
    group.join(); // returns at once
}

#[test]
fn killing_a_greenlet_waiting_for_a_slot_takes_no_slot() {
    let pool = Pool::new(1);
    let holder = pool.spawn(|| greenlet::sleep(ms(100)));
    let ran = Arc::new(AtomicBool::new(false));
    let (p, r) = (pool.clone(), ran.clone());
    let waiter = greenlet::spawn(move || p.spawn(move || r.store(true, Ordering::SeqCst)).join());
    greenlet::sleep(ms(20));
    assert!(waiter.kill());
    holder.join();
    pool.join();
    assert_eq!(pool.free_count(), 1);
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
#[should_panic(expected = "at least one greenlet")]
fn zero_sized_pool_is_a_documented_panic() {
    let _ = Pool::new(0);
}

greenlet::greenlet_local! {
    static COUNTER: Cell<u32> = Cell::new(0);
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

greenlet::greenlet_local! {
    /// Dropped when its greenlet ends.
    pub(crate) static GUARD: std::cell::RefCell<Option<DropFlag>> = std::cell::RefCell::new(None);
}

#[test]
fn greenlet_locals_are_private_and_freed_at_the_end() {
    let gs: Vec<_> = (1..=20u32)
        .map(|n| {
            greenlet::spawn(move || {
                for _ in 0..n {
                    COUNTER.with(|c| c.set(c.get() + 1));
                    greenlet::yield_now();
                }
                COUNTER.with(Cell::get)
            })
        })
        .collect();
    let got: Vec<_> = greenlet::joinall(gs)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, (1..=20).collect::<Vec<_>>());

    let dropped = Arc::new(AtomicBool::new(false));
    let d = dropped.clone();
    greenlet::spawn(move || GUARD.with(|g| *g.borrow_mut() = Some(DropFlag(d)))).join();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !dropped.load(Ordering::SeqCst) && Instant::now() < deadline {
        greenlet::sleep(ms(1));
    }
    assert!(
        dropped.load(Ordering::SeqCst),
        "the local was freed with its greenlet"
    );
}
