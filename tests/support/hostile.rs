//! Helpers of the hostile suites (`tests/hostile_*.rs`): durations and their names, precise
//! waits that work in a greenlet or on a thread, a tiny deterministic random source for
//! jitter, and drop guards.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use greenlet::sync::Event;

/// `Duration::from_micros`, short.
pub fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// A deadline far away but still representable as an `Instant` (600 years: more than 2^64
/// ns, so anything that turns it into `u64` nanoseconds without care overflows).
pub const HUGE: Duration = Duration::from_secs(600 * 365 * 24 * 3600);

/// The deadlines of issue 13's table.
pub const DEADLINES: [Duration; 7] = [
    Duration::ZERO,
    Duration::from_micros(1),
    Duration::from_micros(200),
    Duration::from_micros(999),
    Duration::from_millis(1),
    Duration::from_micros(1500),
    Duration::from_millis(30),
];

/// How late a timed wait may return on this 2-core machine with tests running in parallel.
pub const SLACK: Duration = Duration::from_millis(250);

/// `release` in an optimised build, `debug` in a debug build.
pub fn scaled(release: usize, debug: usize) -> usize {
    if cfg!(debug_assertions) {
        debug
    } else {
        release
    }
}

/// A short name for a deadline, for case names.
pub fn name_of(d: Duration) -> String {
    if d == Duration::MAX {
        "Duration::MAX".to_owned()
    } else if d == HUGE {
        "600 years".to_owned()
    } else if d.is_zero() {
        "0".to_owned()
    } else {
        format!("{d:?}")
    }
}

/// Whether the caller runs inside a greenlet.
pub fn in_a_greenlet() -> bool {
    greenlet::current().is_some()
}

/// Waits until `t` (never returns before it): a greenlet sleeps cooperatively; a thread
/// sleeps, then spins for the last stretch, for precision.
pub fn sleep_until(t: Instant) {
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        let left = t - now;
        if in_a_greenlet() {
            greenlet::sleep(left);
        } else if left > Duration::from_millis(2) {
            std::thread::sleep(left - Duration::from_millis(1));
        } else {
            std::thread::yield_now();
        }
    }
}

/// Lets others run: `greenlet::yield_now` in a greenlet, `std::thread::yield_now` on a thread.
pub fn pause() {
    greenlet::yield_now();
}

/// A small deterministic random source (xorshift64*), for jitter that differs per round but
/// is the same from run to run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A duration in `lo..hi`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = (hi - lo).as_nanos() as u64;
        lo + Duration::from_nanos(self.below(span))
    }

    /// `true` one time in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// Sets its event when dropped (by a normal return, a kill's unwind, or with the closure
/// that owns it).
pub struct SetOnDrop(pub Arc<Event>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// Counts its drops.
pub struct CountDrop(pub Arc<AtomicUsize>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Asserts a wait of `d` that reported a time-out after `took` did not return early.
#[track_caller]
pub fn assert_not_early(what: &str, d: Duration, took: Duration) {
    assert!(
        took >= d,
        "{what}: reported a time-out after {took:?}, before its {d:?} deadline"
    );
}

/// Asserts a wait of `d` returned within [`SLACK`] of its deadline.
#[track_caller]
pub fn assert_not_late(what: &str, d: Duration, took: Duration) {
    assert!(
        took < d.saturating_add(SLACK),
        "{what}: returned after {took:?}, far after its {d:?} deadline"
    );
}

/// A connected loopback pair (client, server side).
pub fn tcp_pair() -> (greenlet::net::TcpStream, greenlet::net::TcpStream) {
    let l = greenlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c = greenlet::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

/// Writes into `c` until it cannot take more (its writes time out after 1 ms); leaves that
/// write time-out set.
pub fn fill(c: &mut greenlet::net::TcpStream) {
    use std::io::{ErrorKind, Write};
    // A small send buffer fills quickly. (A small receive buffer would make the kernel hold
    // back its window updates after a drain: the sender then waits for its persist timer.)
    socket2::SockRef::from(&*c)
        .set_send_buffer_size(4096)
        .unwrap();
    c.set_write_timeout(Some(Duration::from_millis(1))).unwrap();
    let chunk = vec![0u8; 65536];
    let mut refused = 0;
    while refused < 2 {
        match c.write(&chunk) {
            Ok(_) => refused = 0,
            Err(e) if e.kind() == ErrorKind::TimedOut => refused += 1,
            Err(e) => panic!("filling the socket: {e}"),
        }
    }
}
