//! A greenlet that computes for a second holds up only its own worker (greenlets are pinned:
//! issue 14): timer and socket time-out wake-ups of greenlets on the other worker stay on
//! time. Its own test binary: the computation would hold up every greenlet of other tests
//! that happen to share its worker.

mod support;

use std::time::{Duration, Instant};

use greenlet::queue::Queue;
use support::watchdog::bounded;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// B, C and D of `timer_wake_ups_resume_on_a_worker`.
fn spawn_bcd() -> (
    greenlet::Greenlet<Duration>,
    greenlet::Greenlet<Duration>,
    greenlet::Greenlet<Duration>,
) {
    let b = greenlet::spawn(|| {
        let t = Instant::now();
        greenlet::sleep(ms(50));
        t.elapsed()
    });
    let c = greenlet::spawn(|| {
        let q = Queue::<u8>::unbounded();
        let t = Instant::now();
        assert!(q.get_timeout(ms(60)).is_err());
        t.elapsed()
    });
    let d = greenlet::spawn(|| {
        use std::io::Read;
        // may kept each descriptor's time-outs on one worker (fd % workers), so try
        // descriptors of both parities (issue 13's CI failure: 30 ms took 1.03 s).
        let l = greenlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut conns = Vec::new();
        for _ in 0..4 {
            let c = greenlet::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            conns.push((c, l.accept().unwrap()));
        }
        let u = greenlet::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(Some(ms(40))).unwrap();
        let t = Instant::now();
        for (c, _) in &mut conns {
            c.set_read_timeout(Some(ms(40))).unwrap();
            let e = c.read(&mut [0; 8]).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        }
        let e = u.recv(&mut [0; 8]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        t.elapsed()
    });
    (b, c, d)
}

#[test]
fn timer_wake_ups_resume_on_a_worker() {
    // A sleeps 10 ms then computes for ~1 s on its worker. B's 50 ms sleep, C's 60 ms
    // get_timeout and D's socket read time-outs, started at the same time by greenlets that
    // live on another worker (greenlets are pinned to their worker: issue 14), must not wait
    // for A's computation.
    let (b, c, d) = bounded("timer thread", Duration::from_secs(10), || {
        let (tx, rx) = std::sync::mpsc::channel();
        let a = greenlet::spawn(move || {
            tx.send(std::thread::current().id()).unwrap();
            greenlet::sleep(ms(10));
            let t = Instant::now();
            let mut x = 0u64;
            while t.elapsed() < Duration::from_secs(1) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            x
        });
        let a_thread = rx.recv().unwrap();
        // Spawns from a greenlet stay on its worker: find one that is not on A's.
        let (b, c, d) = loop {
            let host =
                greenlet::spawn(move || (std::thread::current().id() != a_thread).then(spawn_bcd));
            if let Some(bcd) = host.get().unwrap() {
                break bcd;
            }
        };
        let (b, c, d) = (b.get().unwrap(), c.get().unwrap(), d.get().unwrap());
        a.get().unwrap();
        (b, c, d)
    });
    assert!(b < ms(400), "B's 50 ms sleep took {b:?}");
    assert!(c < ms(400), "C's 60 ms get_timeout took {c:?}");
    assert!(
        d < ms(700),
        "D's five 40 ms socket read time-outs took {d:?}"
    );
}
