//! `http::Server` against requests as an attacker sends them (RFC 9112 §6.3, §3.2; hyper and
//! nginx as the bar): smuggling through the body's framing, a missing or doubled `Host`,
//! slowloris heads, slow bodies and clients that never read. Each case is bounded.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use greenlet::http::{Body, Request, Response, Server};
use greenlet::net::TcpStream;
use support::ms;
use support::watchdog::bounded;
use support::{http_raw as raw, status_of};

fn server() -> Server {
    let server = Server::bind("127.0.0.1:0", |mut req: Request<Body>| {
        if req.uri().path() == "/big" {
            return Response::new(Body::from(vec![b'x'; 64 << 20]));
        }
        match req.body_mut().read_to_vec(1 << 20) {
            Ok(body) => Response::new(format!("{} bytes", body.len()).into()),
            Err(e) => Response::new(e.to_string().into()),
        }
    })
    .unwrap()
    .head_timeout(ms(300))
    .body_timeout(ms(300))
    .write_timeout(ms(200))
    .timeout(Duration::from_secs(30));
    server.start().unwrap();
    server
}

/// A POST with these extra header lines and a 5-byte body, closing.
fn post(headers: &str) -> Vec<u8> {
    format!("POST / HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\nhello").into_bytes()
}

#[test]
fn content_length_must_be_digits_and_agree() {
    bounded("Content-Length framing", Duration::from_secs(30), || {
        let srv = server();
        let a = srv.local_addr();
        for (headers, want) in [
            ("Content-Length: 5\r\n", 200),
            ("Content-Length:  5 \t\r\n", 200), // optional whitespace around it
            ("Content-Length: 5\r\nContent-Length: 5\r\n", 200), // equal duplicates
            ("Content-Length: 5\r\nContent-Length: 3\r\n", 400), // differing: smuggling
            ("Content-Length: 3\r\nContent-Length: 5\r\n", 400),
            ("Content-Length: +5\r\n", 400),
            ("Content-Length: -5\r\n", 400),
            ("Content-Length: 0x5\r\n", 400),
            ("Content-Length: 5,5\r\n", 400),
            ("Content-Length: 5 5\r\n", 400),
            ("Content-Length: \u{a0}5\r\n", 400), // Unicode whitespace
            ("Content-Length: 5\u{3000}\r\n", 400),
            ("Content-Length: \r\n", 400),
            ("Content-Length: 99999999999999999999999999\r\n", 400),
            ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400), // CL + TE
            ("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 400),
        ] {
            let got = raw(a, &post(headers));
            assert_eq!(status_of(&got), want, "{headers:?}: {got}");
            if want == 200 {
                assert!(got.ends_with("5 bytes"), "{headers:?}: {got}");
            }
        }
        srv.stop(Duration::from_secs(1));
    });
}

#[test]
fn http_1_1_needs_exactly_one_host() {
    bounded("Host", Duration::from_secs(30), || {
        let srv = server();
        let a = srv.local_addr();
        let cases: [(&[u8], u16); 5] = [
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
                400,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                200,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", 200), // HTTP/1.0 may omit it
            (b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        ];
        for (request, want) in cases {
            let got = raw(a, request);
            assert_eq!(
                status_of(&got),
                want,
                "{:?}: {got}",
                String::from_utf8_lossy(request)
            );
        }
        srv.stop(Duration::from_secs(1));
    });
}

/// One byte at a time, each well within the idle time-out: the head's deadline still ends it.
#[test]
fn a_slowloris_head_gets_408_at_its_deadline() {
    bounded("slowloris", Duration::from_secs(30), || {
        let srv = server();
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let start = Instant::now();
        let head =
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for &b in head.iter() {
            if s.write_all(&[b]).is_err() {
                break; // closed on us
            }
            greenlet::sleep(ms(20));
            if start.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let got = String::from_utf8_lossy(&out);
        assert_eq!(status_of(&got), 408, "{got}");
        let took = start.elapsed();
        assert!(took < Duration::from_secs(2), "closed after {took:?}");
        srv.stop(Duration::from_secs(1));
    });
}

#[test]
fn a_slow_body_gets_408_at_its_deadline() {
    bounded("slow body", Duration::from_secs(30), || {
        let srv = server();
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            .unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            if s.write_all(b"b").is_err() {
                break;
            }
            greenlet::sleep(ms(20));
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let got = String::from_utf8_lossy(&out);
        assert_eq!(status_of(&got), 408, "{got}");
        srv.stop(Duration::from_secs(1));
    });
}

/// A head that arrives in pieces within its deadline is served, and the next request on the
/// connection gets a deadline of its own.
#[test]
fn heads_in_pieces_within_the_deadline_are_served() {
    bounded("heads in pieces", Duration::from_secs(30), || {
        let srv = server();
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for round in 0..3 {
            for piece in [&b"GET / HTTP/1.1\r\n"[..], b"Host: x\r\n", b"\r\n"] {
                s.write_all(piece).unwrap();
                greenlet::sleep(ms(50));
            }
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).unwrap();
            let got = String::from_utf8_lossy(&buf[..n]);
            assert!(got.starts_with("HTTP/1.1 200"), "round {round}: {got}");
            greenlet::sleep(ms(400)); // idle between requests: no head deadline runs
        }
        srv.stop(Duration::from_secs(1));
    });
}

/// A client that asks for a large response and never reads it loses the connection at the
/// write time-out, instead of holding the connection's greenlet for good.
#[test]
fn a_client_that_never_reads_is_dropped() {
    bounded("never reads", Duration::from_secs(30), || {
        let srv = server();
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let start = Instant::now();
        while srv.connections() > 0 && start.elapsed() < Duration::from_secs(10) {
            greenlet::sleep(ms(20));
        }
        assert_eq!(
            srv.connections(),
            0,
            "still held after {:?}",
            start.elapsed()
        );
        drop(s);
        srv.stop(Duration::from_secs(1));
    });
}

/// A zero or sub-millisecond head deadline: a request that arrives whole is still served; one
/// whose head stops half-way gets 408 at once.
#[test]
fn zero_and_sub_millisecond_head_deadlines() {
    bounded("tiny head deadlines", Duration::from_secs(30), || {
        for d in [Duration::ZERO, Duration::from_micros(300), ms(1)] {
            // The handler reads the body: its deadline then gives 408.
            let srv = Server::bind("127.0.0.1:0", |mut req: Request<Body>| {
                let _ = req.body_mut().read_to_vec(1024);
                Response::new("ok")
            })
            .unwrap()
            .head_timeout(d)
            .body_timeout(d);
            srv.start().unwrap();
            let a = srv.local_addr();
            let whole = raw(a, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            assert_eq!(status_of(&whole), 200, "{d:?}: {whole}");
            let start = Instant::now();
            let half = raw(a, b"GET / HTTP/1.1\r\nHost: x\r\n");
            assert_eq!(status_of(&half), 408, "{d:?}: {half}");
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{d:?}: {:?}",
                start.elapsed()
            );
            let body = raw(
                a,
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nabc",
            );
            assert_eq!(status_of(&body), 408, "{d:?}: {body}");
            srv.stop(Duration::from_secs(1));
        }
    });
}
