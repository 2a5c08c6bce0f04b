//! `net`'s Unix-domain sockets: the crate's own (std sockets waited on through the crate's
//! wait), not may's: time-outs exact from greenlets and threads, shared sockets, kills,
//! clones that outlive the original.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use greenlet::JoinError;
use greenlet::net::{UnixDatagram, UnixListener, UnixStream};
use support::ms;
use support::watchdog::bounded;

/// A fresh path for a socket file, in a directory of this process's own.
fn sock_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("greenlet-net-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn listener_accepts_from_greenlets_and_threads() {
    let path = sock_path("accept");
    let listener = UnixListener::bind(&path).unwrap();
    let server = greenlet::spawn(move || {
        for conn in listener.incoming().take(2) {
            let mut conn = conn.unwrap();
            let mut buf = [0; 4];
            conn.read_exact(&mut buf).unwrap();
            conn.write_all(&buf).unwrap();
        }
    });
    let from_greenlet = {
        let path = path.clone();
        greenlet::spawn(move || {
            let mut c = UnixStream::connect(&path).unwrap();
            c.write_all(b"gree").unwrap();
            let mut buf = [0; 4];
            c.read_exact(&mut buf).unwrap();
            buf
        })
    };
    assert_eq!(from_greenlet.get(), Ok(*b"gree"));
    let mut c = UnixStream::connect(&path).unwrap();
    c.write_all(b"thrd").unwrap();
    let mut buf = [0; 4];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"thrd");
    server.get().unwrap();
    assert_eq!(
        UnixStream::connect(sock_path("nothing"))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

/// may's Unix sockets kept time-outs in whole milliseconds, so one under 1 ms meant none (a
/// read hung): these are the crate's, exact, never early, from greenlets and threads.
#[test]
fn read_timeouts_are_exact_from_greenlets_and_threads() {
    for d in [
        Duration::from_micros(1),
        Duration::from_micros(300),
        ms(2),
        ms(30),
    ] {
        let (a, _keep) = UnixStream::pair().unwrap();
        a.set_read_timeout(Some(d)).unwrap();
        assert_eq!(a.read_timeout().unwrap(), Some(d));
        let (kind, took) = bounded(&format!("UnixStream read, {d:?}"), ms(5_000), move || {
            greenlet::spawn(move || {
                let mut a = a;
                let t = Instant::now();
                let e = a.read(&mut [0; 8]).unwrap_err();
                (e.kind(), t.elapsed())
            })
            .get()
            .unwrap()
        });
        assert_eq!(kind, ErrorKind::TimedOut, "{d:?}");
        assert!(took >= d && took < d + ms(500), "{d:?}: {took:?}");

        let (mut a, _keep) = UnixStream::pair().unwrap();
        a.set_read_timeout(Some(d)).unwrap();
        let t = Instant::now();
        assert_eq!(a.read(&mut [0; 8]).unwrap_err().kind(), ErrorKind::TimedOut);
        assert!(t.elapsed() >= d, "{d:?} on a thread");
    }
    // A zero time-out is refused, as std refuses it, on every setter.
    let (a, _b) = UnixStream::pair().unwrap();
    assert_eq!(
        a.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        a.set_write_timeout(Some(Duration::ZERO))
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    let (d, _e) = UnixDatagram::pair().unwrap();
    assert_eq!(
        d.set_write_timeout(Some(Duration::ZERO))
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
}

/// Writes whose peer never reads time out, exactly, inside a greenlet (watched): a stream
/// write, and a datagram send (which waits on its own registration, `wait::SendSide`).
#[test]
fn write_timeouts_expire_inside_greenlets() {
    for d in [Duration::from_micros(1), Duration::from_micros(300), ms(2)] {
        let (kind, took) = bounded(&format!("UnixStream write, {d:?}"), ms(5_000), move || {
            greenlet::spawn(move || {
                let (mut a, _b) = UnixStream::pair().unwrap();
                a.set_write_timeout(Some(d)).unwrap();
                let chunk = [0u8; 64 * 1024];
                let t = Instant::now();
                loop {
                    if let Err(e) = a.write(&chunk) {
                        return (e.kind(), t.elapsed());
                    }
                }
            })
            .get()
            .unwrap()
        });
        assert_eq!(kind, ErrorKind::TimedOut, "stream, {d:?}");
        assert!(took >= d, "stream, {d:?}: {took:?}");

        let (kind, took) = bounded(&format!("UnixDatagram send, {d:?}"), ms(5_000), move || {
            greenlet::spawn(move || {
                let (a, _b) = UnixDatagram::pair().unwrap();
                a.set_write_timeout(Some(d)).unwrap();
                let t = Instant::now();
                loop {
                    if let Err(e) = a.send(&[0u8; 1024]) {
                        return (e.kind(), t.elapsed());
                    }
                }
            })
            .get()
            .unwrap()
        });
        assert_eq!(kind, ErrorKind::TimedOut, "datagram, {d:?}");
        assert!(took >= d, "datagram, {d:?}: {took:?}");
    }
}

#[test]
fn binding_a_path_in_use_is_addr_in_use() {
    let path = sock_path("in-use");
    let _first = UnixListener::bind(&path).unwrap();
    assert_eq!(
        UnixListener::bind(&path).unwrap_err().kind(),
        ErrorKind::AddrInUse
    );
    assert_eq!(
        UnixDatagram::bind(&path).unwrap_err().kind(),
        ErrorKind::AddrInUse
    );
}

#[test]
fn a_kill_lands_in_a_unix_read() {
    let (a, _b) = UnixStream::pair().unwrap();
    let g = greenlet::spawn(move || {
        let mut a = a;
        a.read(&mut [0; 8]).map_err(|e| e.kind())
    });
    greenlet::sleep(ms(20));
    assert!(g.kill());
    assert_eq!(g.get(), Err(JoinError::Killed));
}

/// Several greenlets receive on one datagram socket (may keeps one waiter per registration;
/// the crate queues the others): each gets one datagram.
#[test]
fn two_greenlets_receive_on_one_datagram_socket() {
    let (a, b) = UnixDatagram::pair().unwrap();
    let b = std::sync::Arc::new(b);
    let receivers: Vec<_> = (0..2)
        .map(|_| {
            let b = b.clone();
            greenlet::spawn(move || {
                let mut buf = [0; 8];
                b.recv(&mut buf).map(|n| buf[..n].to_vec())
            })
        })
        .collect();
    greenlet::sleep(ms(20));
    a.send(b"one").unwrap();
    a.send(b"two").unwrap();
    let mut got: Vec<Vec<u8>> = greenlet::joinall(receivers)
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);

    let path = sock_path("dgram");
    let server = UnixDatagram::bind(&path).unwrap();
    let client = UnixDatagram::unbound().unwrap();
    client.send_to(b"to path", &path).unwrap();
    let mut buf = [0; 16];
    let (n, _) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"to path");
    server.set_read_timeout(Some(ms(5))).unwrap();
    assert_eq!(
        server.recv(&mut buf).unwrap_err().kind(),
        ErrorKind::TimedOut
    );
}

/// A clone keeps working after the original handle is dropped: the original's registration
/// is removed from epoll while its descriptor is still open (a registration that closed
/// first would leave epoll watching the socket for a record may has freed).
#[test]
fn a_clone_outlives_the_original() {
    let (a, mut b) = UnixStream::pair().unwrap();
    let mut clone = a.try_clone().unwrap();
    drop(a);
    let g = greenlet::spawn(move || {
        let mut buf = [0; 3];
        clone.read_exact(&mut buf).map(|()| buf)
    });
    greenlet::sleep(ms(10));
    b.write_all(b"abc").unwrap();
    assert_eq!(g.get().unwrap().unwrap(), *b"abc");
    for round in 0..50 {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut clone = a.try_clone().unwrap();
        let g = greenlet::spawn(move || {
            let mut a = a;
            let mut buf = [0; 1];
            a.read_exact(&mut buf).map(|()| buf[0])
        });
        b.write_all(&[round]).unwrap();
        assert_eq!(g.get().unwrap().unwrap(), round);
        clone.write_all(b"z").unwrap();
        let mut buf = [0; 1];
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"z");
    }
}

#[test]
fn peek_leaves_the_data() {
    let (a, mut b) = UnixStream::pair().unwrap();
    let g = greenlet::spawn(move || {
        let mut buf = [0; 8];
        let n = a.peek(&mut buf).unwrap();
        let mut a = a;
        let mut again = [0; 8];
        let m = a.read(&mut again).unwrap();
        (buf[..n].to_vec(), again[..m].to_vec())
    });
    greenlet::sleep(ms(10));
    b.write_all(b"peek").unwrap();
    let (peeked, read) = g.get().unwrap();
    assert_eq!(peeked, b"peek");
    assert_eq!(read, b"peek");
}

/// A send that would block does not queue behind a receive waiting on the same datagram
/// socket (found by review: the "writable" wake-up went to the receiver, which took the wait
/// back, and the sender starved; the peer got 93 datagrams of 1,000, every run).
#[test]
fn a_blocked_send_does_not_starve_behind_a_waiting_receive() {
    const N: usize = 1000;
    let (a, b) = UnixDatagram::pair().unwrap();
    let a = std::sync::Arc::new(a);
    let receiver = {
        let a = a.clone();
        greenlet::spawn(move || {
            let mut buf = [0u8; 8];
            a.recv(&mut buf).map_err(|e| e.kind())
        })
    };
    greenlet::sleep(ms(20));
    let sender = {
        let a = a.clone();
        greenlet::spawn(move || {
            let big = [7u8; 1024];
            for _ in 0..N {
                a.send(&big)?;
            }
            Ok::<_, std::io::Error>(())
        })
    };
    let peer = greenlet::spawn(move || {
        greenlet::sleep(ms(50));
        b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = 0;
        let mut buf = [0u8; 2048];
        while got < N {
            match b.recv(&mut buf) {
                Ok(_) => got += 1,
                Err(_) => break,
            }
        }
        b.send(b"done").unwrap();
        got
    });
    assert_eq!(peer.get(), Ok(N), "the sender starved");
    sender.get().unwrap().unwrap();
    assert_eq!(receiver.get(), Ok(Ok(4)));
}
