//! `server::StreamServer` and `server::DatagramServer`.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use greenlet::net::{TcpStream, UdpSocket};
use greenlet::server::{DatagramServer, StreamServer};
use support::ms;

const CLIENTS: usize = 1_000;

fn echo(mut conn: TcpStream, _: SocketAddr) {
    let mut buf = [0; 4096];
    while let Ok(n @ 1..) = conn.read(&mut buf) {
        if n >= 5 && &buf[..5] == b"panic" {
            panic!("handler asked to panic");
        }
        if conn.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

fn echo_server() -> StreamServer {
    let server = StreamServer::bind("127.0.0.1:0", echo).unwrap();
    server.start().unwrap();
    server
}

/// Sends `len` bytes derived from `seed`, reads them back, and checks every byte.
fn round_trip(addr: SocketAddr, seed: usize, len: usize) -> std::io::Result<()> {
    let mut s = TcpStream::connect(addr)?;
    let msg: Vec<u8> = (0..len).map(|i| (i * 31 + seed) as u8).collect();
    s.write_all(&msg)?;
    let mut back = vec![0; len];
    s.read_exact(&mut back)?;
    assert_eq!(back, msg, "client {seed}");
    Ok(())
}

#[test]
fn a_thousand_concurrent_echo_clients() {
    let server = echo_server();
    let addr = server.local_addr();
    let gs: Vec<_> = (0..CLIENTS)
        .map(|i| greenlet::spawn(move || round_trip(addr, i, 100 + i * 7 % 3000)))
        .collect();
    for (i, r) in greenlet::joinall(gs).into_iter().enumerate() {
        r.unwrap().unwrap_or_else(|e| panic!("client {i}: {e}"));
    }
    assert_eq!(server.stop(Duration::from_secs(5)), 0);
}

#[test]
fn a_panicking_handler_closes_only_its_connection() {
    let server = echo_server();
    let addr = server.local_addr();
    let mut bad = TcpStream::connect(addr).unwrap();
    bad.write_all(b"panic now").unwrap();
    let mut buf = [0; 8];
    assert_eq!(
        bad.read(&mut buf).unwrap_or(0),
        0,
        "the connection was closed"
    );
    round_trip(addr, 1, 64).unwrap();
    server.stop(Duration::from_secs(1));
}

#[test]
fn accepted_sockets_get_nodelay() {
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    let server = StreamServer::bind("127.0.0.1:0", move |c: TcpStream, _| {
        if c.nodelay().unwrap() {
            s2.fetch_add(1, Ordering::SeqCst);
        }
    })
    .unwrap();
    server.start().unwrap();
    let mut c = TcpStream::connect(server.local_addr()).unwrap();
    assert_eq!(c.read(&mut [0; 1]).unwrap(), 0);
    server.stop(Duration::from_secs(1));
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[test]
fn stop_lets_handlers_finish_within_the_grace_period() {
    let finished = Arc::new(AtomicUsize::new(0));
    let f = finished.clone();
    let server = StreamServer::bind("127.0.0.1:0", move |mut c: TcpStream, _| {
        greenlet::sleep(ms(100));
        let _ = c.write_all(b"done");
        f.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    server.start().unwrap();
    let addr = server.local_addr();
    let clients: Vec<_> = (0..10).map(|_| TcpStream::connect(addr).unwrap()).collect();
    greenlet::sleep(ms(30));
    assert_eq!(
        server.stop(Duration::from_secs(5)),
        0,
        "nothing needed killing"
    );
    assert_eq!(finished.load(Ordering::SeqCst), 10);
    for mut c in clients {
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(got, "done");
    }
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
    assert!(server.is_stopped());
}

#[test]
fn stop_kills_handlers_that_outlive_the_grace_period() {
    let server = StreamServer::bind("127.0.0.1:0", |_c: TcpStream, _| {
        greenlet::sleep(Duration::from_secs(3600));
    })
    .unwrap();
    server.start().unwrap();
    let clients: Vec<_> = (0..5)
        .map(|_| TcpStream::connect(server.local_addr()).unwrap())
        .collect();
    while server.connections() < 5 {
        greenlet::sleep(ms(5));
    }
    let t = Instant::now();
    assert_eq!(server.stop(ms(100)), 5);
    assert!(t.elapsed() >= ms(100));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(server.connections(), 0);
    for mut c in clients {
        assert_eq!(c.read(&mut [0; 1]).unwrap_or(0), 0, "closed by the kill");
    }
}

#[test]
fn max_connections_bounds_concurrent_handlers() {
    const LIMIT: usize = 5;
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (n2, p2) = (now.clone(), peak.clone());
    let server = StreamServer::bind("127.0.0.1:0", move |mut c: TcpStream, _| {
        let cur = n2.fetch_add(1, Ordering::SeqCst) + 1;
        p2.fetch_max(cur, Ordering::SeqCst);
        greenlet::sleep(ms(20));
        n2.fetch_sub(1, Ordering::SeqCst);
        let _ = c.write_all(b"k");
    })
    .unwrap()
    .max_connections(LIMIT);
    server.start().unwrap();
    let addr = server.local_addr();
    let gs: Vec<_> = (0..40)
        .map(|_| {
            greenlet::spawn(move || {
                let mut c = TcpStream::connect(addr)?;
                let mut b = [0; 1];
                c.read_exact(&mut b)
            })
        })
        .collect();
    assert!(
        greenlet::joinall(gs)
            .into_iter()
            .all(|r| matches!(r, Ok(Ok(()))))
    );
    assert_eq!(peak.load(Ordering::SeqCst), LIMIT);
    server.stop(Duration::from_secs(1));
}

#[test]
fn serve_forever_returns_when_stopped_and_cannot_restart() {
    let server = StreamServer::bind("127.0.0.1:0", echo).unwrap();
    let handle = server.clone();
    let serving = std::thread::spawn(move || handle.serve_forever());
    round_trip(server.local_addr(), 3, 10).unwrap();
    server.stop(Duration::from_secs(1));
    serving.join().unwrap().unwrap();
    assert_eq!(server.start().unwrap_err().kind(), ErrorKind::AlreadyExists);
}

#[test]
fn bind_errors_are_reported() {
    let server = echo_server();
    let e = StreamServer::bind(server.local_addr(), echo).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AddrInUse);
    server.stop(Duration::ZERO);
}

#[test]
fn datagram_server_replies_and_stops() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h2 = hits.clone();
    let server = DatagramServer::bind("127.0.0.1:0", move |s: &UdpSocket, data: &[u8], from| {
        h2.fetch_add(1, Ordering::SeqCst);
        s.send_to(&data.to_ascii_uppercase(), from).unwrap();
    })
    .unwrap()
    .max_handlers(4);
    server.start().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for word in ["one", "two", "three"] {
        client
            .send_to(word.as_bytes(), server.local_addr())
            .unwrap();
        let mut buf = [0; 16];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], word.to_uppercase().as_bytes());
    }
    assert_eq!(server.stop(Duration::from_secs(1)), 0);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}
