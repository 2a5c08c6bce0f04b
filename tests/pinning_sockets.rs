//! Issue 14: sockets made on `main` (or on another worker) and waited on from greenlets of
//! every worker resume those greenlets on their own worker *directly*: each worker waits on
//! its own registration of the socket (a duplicate descriptor with its selector), so no
//! greenlet has to be moved back after a switch. One test per binary: the counters are global.

mod support;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use support::watchdog::bounded;

#[test]
fn sockets_made_elsewhere_wake_their_greenlets_on_their_own_worker() {
    let workers = greenlet::settings().workers;
    let rounds = 20;
    let (before, after, moved) =
        bounded("sockets made on main", Duration::from_secs(60), move || {
            let before = greenlet::__pinning_stats();
            let moved = Arc::new(std::sync::atomic::AtomicU64::new(0));
            // A listener bound on main, accepted on by greenlets of every worker in turn.
            let listener = Arc::new(greenlet::net::TcpListener::bind("127.0.0.1:0").unwrap());
            let addr = listener.local_addr().unwrap();
            // A UDP socket made on main, received on by greenlets of every worker in turn.
            let udp = Arc::new(greenlet::net::UdpSocket::bind("127.0.0.1:0").unwrap());
            let udp_addr = udp.local_addr().unwrap();
            for round in 0..rounds * workers {
                // Unix stream pair made on main; the greenlet (round robin over the workers)
                // reads what a plain thread writes.
                let (mut a, mut b) = greenlet::net::UnixStream::pair().unwrap();
                let (l, u, m) = (listener.clone(), udp.clone(), moved.clone());
                let g = greenlet::spawn(move || {
                    let t = std::thread::current().id();
                    let mut buf = [0u8; 8];
                    b.read_exact(&mut buf[..1]).unwrap();
                    let (mut conn, _) = l.accept().unwrap();
                    conn.read_exact(&mut buf[..1]).unwrap();
                    u.recv_from(&mut buf).unwrap();
                    if std::thread::current().id() != t {
                        m.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                });
                std::thread::sleep(Duration::from_micros(200));
                a.write_all(b"a").unwrap();
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                std::thread::sleep(Duration::from_micros(200));
                c.write_all(b"c").unwrap();
                std::thread::sleep(Duration::from_micros(200));
                let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                s.send_to(&[round as u8], udp_addr).unwrap();
                g.get().unwrap();
            }
            (
                before,
                greenlet::__pinning_stats(),
                moved.load(std::sync::atomic::Ordering::Relaxed),
            )
        });
    assert_eq!(moved, 0, "greenlets resumed on another thread");
    assert_eq!(
        before, after,
        "greenlets had to be moved back to their worker (migrations, hops)"
    );
}
