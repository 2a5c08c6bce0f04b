//! `http::Server` under floods, as an attacker sends them: transfer-coding smuggling variants,
//! idle connections up to the cap, a pipelining flood, and a client that pipelines without
//! reading. Each case is bounded: it fails, never hangs.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use greenlet::http::{Body, Request, Response, Server};
use greenlet::net::TcpStream;
use support::ms;
use support::watchdog::bounded;
use support::{http_raw as raw, status_of};

fn hello() -> Server {
    hello_capped(0)
}

/// The hello server with at most `cap` connections (0: the default cap).
fn hello_capped(cap: usize) -> Server {
    let server = Server::bind("127.0.0.1:0", |mut req: Request<Body>| {
        match req.body_mut().read_to_vec(1 << 16) {
            Ok(b) => Response::new(format!("{} bytes", b.len())),
            Err(e) => Response::new(e.to_string()),
        }
    })
    .unwrap()
    .write_timeout(ms(500));
    let server = if cap > 0 {
        server.max_connections(cap)
    } else {
        server
    };
    server.start().unwrap();
    server
}

#[test]
fn transfer_coding_smuggling_variants_get_400() {
    bounded("TE smuggling", Duration::from_secs(30), || {
        let srv = hello();
        let a = srv.local_addr();
        for te in [
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
            "Transfer-Encoding: chunked, identity\r\n",
            "Transfer-Encoding: chunked, chunked\r\n",
            "Transfer-Encoding: xchunked\r\n",
            "Transfer-Encoding: identity\r\n",
            "Transfer-Encoding : chunked\r\n",
            "Transfer-Encoding:\tchunked\x0b\r\n",
            " Transfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
        ] {
            let req = format!(
                "POST / HTTP/1.1\r\nHost: x\r\n{te}Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            );
            let got = raw(a, req.as_bytes());
            assert_eq!(status_of(&got), 400, "{te:?}: {got}");
        }
        // HTTP/1.0 has no chunked coding.
        let got = raw(
            a,
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        );
        assert_eq!(status_of(&got), 400, "{got}");
        // CL.TE as a front end might forward it: the chunk data is never a second request.
        let got = raw(
            a,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(got.matches("HTTP/1.1 200").count(), 2, "{got}");
        assert!(got.ends_with("0 bytes"), "{got}");
        srv.stop(Duration::from_secs(1));
    });
}

#[test]
fn idle_connections_at_the_cap_make_room_for_new_clients() {
    bounded("idle flood", Duration::from_secs(60), || {
        const CAP: usize = 50;
        let srv = hello_capped(CAP);
        let a = srv.local_addr();
        // Four times the cap in connections that send nothing, oldest first.
        let idle: Vec<TcpStream> = (0..4 * CAP)
            .map(|_| {
                let s = TcpStream::connect(a).unwrap();
                greenlet::sleep(ms(1));
                s
            })
            .collect();
        // A real client is still served, promptly, every time.
        for _ in 0..5 {
            let t = Instant::now();
            let got = raw(a, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            assert_eq!(status_of(&got), 200, "{got}");
            assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        }
        assert!(srv.connections() <= CAP, "{} open", srv.connections());
        // The oldest idle connections were the ones closed.
        let mut first = idle.into_iter().next().unwrap();
        first
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(first.read(&mut [0; 8]).unwrap_or(0), 0, "closed");
        srv.stop(Duration::from_secs(1));
    });
}

#[test]
fn a_pipelining_flood_is_answered_in_order_with_bounded_buffers() {
    bounded("pipeline flood", Duration::from_secs(60), || {
        const N: usize = 20_000;
        let srv = hello();
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = s.try_clone().unwrap();
        let writer = greenlet::spawn(move || {
            let one = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
            let burst: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
            for _ in 0..N / 1000 {
                w.write_all(&burst)?;
            }
            w.write_all(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        });
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        writer.get().unwrap().unwrap();
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), N + 1);
        srv.stop(Duration::from_secs(1));
    });
}

#[test]
fn a_pipelining_client_that_never_reads_is_dropped() {
    bounded("pipeline, never read", Duration::from_secs(60), || {
        let srv = hello();
        let s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        let one = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let burst: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
        let start = Instant::now();
        let mut w = &s;
        // Its responses fill both socket buffers; then the server's write times out (500 ms)
        // and it closes, so these writes fail instead of blocking forever.
        let failed = (0..100_000).any(|_| w.write_all(&burst).is_err());
        assert!(
            failed,
            "the server went on reading from a client that never reads"
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            start.elapsed()
        );
        let t = Instant::now();
        while srv.connections() > 0 && t.elapsed() < Duration::from_secs(5) {
            greenlet::sleep(ms(10));
        }
        assert_eq!(srv.connections(), 0, "its greenlet ended");
        srv.stop(Duration::from_secs(1));
    });
}
