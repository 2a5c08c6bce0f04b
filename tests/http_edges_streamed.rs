//! `http::Server` edges a second hostile review found (each case failed before its fix):
//! streamed responses beside a greenlet that reads the request body, `100 Continue` and 413
//! with a body that wraps the request's, the connection cap with no client waiting, a reset
//! that must not cut an earlier pipelined response; and read and write time-outs on one
//! socket (`IoTimer`). Each bounded (it fails, never hangs); network on 127.0.0.1:0 only.

mod support;

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use greenlet::http::{Body, Request, Response, Server};
use support::Failing;
use support::http_serve as serve;
use support::ms;
use support::status_of;
use support::watchdog::bounded;

fn client(addr: std::net::SocketAddr, timeout: u64) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(timeout)))
        .unwrap();
    s
}

/// Reads until EOF, an error or the read time-out; what came, and how it ended.
fn read_all(s: &mut std::net::TcpStream) -> (Vec<u8>, String) {
    let mut out = Vec::new();
    let mut buf = [0; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, "eof".into()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, format!("{:?}", e.kind())),
        }
    }
}

/// Reads one `content-length: 5` response ("hello"); its text, or the error.
fn one_hello(s: &mut std::net::TcpStream) -> Result<String, String> {
    let mut out = Vec::new();
    let mut buf = [0; 4096];
    while !out.ends_with(b"\r\n\r\nhello") {
        match s.read(&mut buf) {
            Ok(0) => return Err(format!("eof after {:?}", String::from_utf8_lossy(&out))),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("{e} after {:?}", String::from_utf8_lossy(&out))),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

// R1. `on_full` runs whenever the accept loop waits for a permit, which it does *before*
//     `accept`: it evicts with nobody waiting. At max_connections(2), the second client's
//     arrival fills the cap, the loop immediately reserves the next slot, finds none, and kills
//     the first (healthy, idle keep-alive) connection. The cap is in effect N-1 keep-alive
//     connections, and a connection that goes idle at the cap is killed within 100 ms.
#[test]
fn the_cap_does_not_evict_when_no_client_waits() {
    bounded("cap evicts for nobody", Duration::from_secs(30), || {
        let srv = Server::bind("127.0.0.1:0", |_req: Request<Body>| Response::new("hello"))
            .unwrap()
            .max_connections(2);
        srv.start().unwrap();
        let a = srv.local_addr();
        let mut one = client(a, 5);
        one.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        one_hello(&mut one).expect("first answer on one");
        let mut two = client(a, 5);
        two.write_all(b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        one_hello(&mut two).expect("first answer on two");
        // Two keep-alive connections at a cap of two, and nobody else: nothing to make room for.
        std::thread::sleep(ms(500));
        let mut lost = Vec::new();
        for (name, s) in [("one", &mut one), ("two", &mut two)] {
            let _ = s.write_all(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n");
            if let Err(e) = one_hello(s) {
                lost.push(format!("{name}: {e}"));
            }
        }
        srv.stop(Duration::from_secs(1));
        assert!(
            lost.is_empty(),
            "idle keep-alive connections closed at the cap with no client waiting: {lost:?}"
        );
    });
}

// R2. `100 Continue` after the final head: a body that wraps the request's own body
//     (`from_reader(req.into_body())`, which 97b7b60 made work) is read with the connection
//     unlocked, *after* the final head was put in `out`. Its first read sends the owed
//     `100 Continue` (`Wire::send_continue`), appended after the final head: the client reads
//     `HTTP/1.1 100 Continue` as the first chunk-size line of the 200's body.
#[test]
fn a_wrapped_body_never_sends_100_continue_after_the_final_head() {
    bounded("100 after 200", Duration::from_secs(30), || {
        let srv = serve(|req| Response::new(Body::from_reader(req.into_body())));
        let mut s = client(srv.local_addr(), 5);
        s.write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
        std::thread::sleep(ms(300));
        s.write_all(b"hello").unwrap();
        let (out, _) = read_all(&mut s);
        let got = String::from_utf8_lossy(&out).into_owned();
        srv.stop(Duration::from_secs(1));
        let interim = got.find("HTTP/1.1 100");
        let fin = got.find("HTTP/1.1 200");
        assert!(
            interim.is_none_or(|i| fin.is_none_or(|f| i < f)),
            "a 100 Continue came after the final head (inside its body): {got:?}"
        );
        assert!(
            got.contains("5\r\nhello\r\n0\r\n\r\n"),
            "the echo is not a well-formed chunked body: {got:?}"
        );
    });
}

// R3. The fix of defect 18 waits for a background body reader once, before the response;
//     a *streamed* response then retakes the wire with `try_lock` for each piece
//     (`stream_unlocked`). When the background greenlet is parked in a socket read of the
//     body at that moment, `lock` fails with `ResourceBusy`, `write` returns `Err` and the
//     connection is abandoned: the client has the 200 head (flushed by the background read)
//     and never any of the body, and the socket stays open until the body completes or its
//     deadline passes.
#[test]
fn a_streamed_response_survives_a_background_body_reader() {
    bounded("stream vs background", Duration::from_secs(30), || {
        struct Slow(u8);
        impl Read for Slow {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                self.0 += 1;
                let piece: &[u8] = match self.0 {
                    1 => b"part1",
                    2 => b"part2",
                    _ => return Ok(0),
                };
                greenlet::sleep(ms(150));
                out[..piece.len()].copy_from_slice(piece);
                Ok(piece.len())
            }
        }
        let srv = serve(|mut req| {
            let reader = greenlet::spawn(move || {
                greenlet::sleep(ms(50));
                io::copy(req.body_mut(), &mut io::sink())
            });
            drop(reader);
            Response::new(Body::from_reader(Slow(0)))
        });
        let mut s = client(srv.local_addr(), 3);
        s.write_all(b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
            .unwrap();
        std::thread::sleep(ms(800));
        s.write_all(b"world").unwrap();
        let (out, end) = read_all(&mut s);
        let got = String::from_utf8_lossy(&out).into_owned();
        srv.stop(Duration::from_secs(1));
        assert!(
            got.contains("part1") && got.contains("part2") && got.ends_with("0\r\n\r\n"),
            "streamed response lost while another greenlet read the body ({end}): {got:?}"
        );
    });
}

// R4. A wrapped request body over `max_body_bytes` cannot get its 413: the response head is
//     put in `out` before the wrapper reads, and the wrapper's first socket read
//     (`Wire::read`) flushes `out` first. The failure is then "after part of the response
//     went out": the client gets `200 OK` and a reset instead of the 413 (or the 400/408)
//     that `write` means to send when nothing of the response was sent.
#[test]
fn a_wrapped_body_over_the_limit_gets_413() {
    bounded("wrapped 413", Duration::from_secs(30), || {
        let srv =
            serve(|req| Response::new(Body::from_reader(req.into_body()))).max_body_bytes(1000);
        let mut s = client(srv.local_addr(), 5);
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        std::thread::sleep(ms(200));
        let _ = s.write_all(b"800\r\n");
        let _ = s.write_all(&[b'a'; 2048]);
        let (out, end) = read_all(&mut s);
        let got = String::from_utf8_lossy(&out).into_owned();
        srv.stop(Duration::from_secs(1));
        assert_eq!(status_of(&got), 413, "({end}) {got:?}");
    });
}

// R5. The reset on a truncated body (`SO_LINGER 0`) throws away what is still in the
//     socket's send buffer: a complete earlier pipelined response that the client has not
//     read yet is cut, and the client sees `ConnectionReset` in the middle of a response that
//     the server finished correctly.
#[test]
fn a_reset_does_not_cut_an_earlier_pipelined_response() {
    bounded("reset vs pipelined", Duration::from_secs(60), || {
        const BIG: usize = 16 << 20;
        let srv = serve(|req| match req.uri().path() {
            "/big" => Response::new(Body::from(vec![b'b'; BIG])),
            _ => Response::new(Body::from_reader(Failing { good: 10 })),
        });
        let mut s = client(srv.local_addr(), 10);
        s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /broken HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        // A slow reader: the server's send buffer stays full.
        let mut out = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        let end = loop {
            match s.read(&mut buf) {
                Ok(0) => break "eof".to_owned(),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => break format!("{:?}", e.kind()),
            }
            std::thread::sleep(ms(3));
        };
        srv.stop(Duration::from_secs(1));
        let head = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |p| p + 4);
        let body = out.len().saturating_sub(head).min(BIG);
        assert_eq!(
            body, BIG,
            "the complete first response was cut at {body} of {BIG} bytes ({end})"
        );
    });
}

// R6 (probe). `IoTimer`: one socket read with a short time-out in one greenlet while another
//     greenlet writes to it with a long one, and time-outs changed after a long one was kept.
#[test]
fn io_timer_read_and_write_time_outs_on_one_socket() {
    bounded("io timer", Duration::from_secs(30), || {
        let l = greenlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        let g = greenlet::spawn(move || {
            let peer = greenlet::net::TcpStream::connect(a).unwrap();
            let (s, _) = l.accept().unwrap();
            let s = std::sync::Arc::new(s);
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            let w = s.clone();
            let writer = greenlet::spawn(move || {
                let big = vec![0u8; 1 << 20];
                let mut n = 0;
                // The peer never reads: this blocks until its 5 s time-out.
                while (&*w).write(&big).is_ok() {
                    n += 1;
                    if n > 1000 {
                        break;
                    }
                }
            });
            let mut late = Vec::new();
            for t in [60_000_000u64, 1_000, 1, 20_000_000, 5_000_000] {
                s.set_read_timeout(Some(Duration::from_nanos(t))).unwrap();
                let start = Instant::now();
                let r = (&*s).read(&mut [0; 16]);
                let took = start.elapsed();
                if t == 60_000_000 {
                    continue;
                }
                let want = Duration::from_nanos(t);
                if !matches!(&r, Err(e) if e.kind() == io::ErrorKind::TimedOut)
                    || took < want
                    || took > want + ms(100)
                {
                    late.push(format!("{want:?}: {r:?} after {took:?}"));
                }
            }
            drop(writer);
            drop(peer);
            late
        });
        let late = g.get().unwrap();
        assert!(late.is_empty(), "read time-outs off: {late:?}");
    });
}
