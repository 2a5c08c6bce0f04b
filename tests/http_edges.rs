//! `http::Server` edges a hostile review of v2 (issue 17) found, one case each (each failed
//! before its fix): smuggling through trailers, bodies relayed across connections or wrapped,
//! the connection cap, stop with queued responses, interim statuses, HEAD lengths, chunk
//! extensions, ready responses held back, HTTP/1.0 keep-alive, truncated bodies, `/proc`
//! files, CONNECT, buffers kept, echoes, background body readers and upgrades with a body.
//! Every case is bounded (it fails, never hangs); network on 127.0.0.1:0 only.

mod support;

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use greenlet::http::{Body, HeaderValue, Method, Request, Response, Server, header};
use greenlet::net::TcpStream;
use greenlet::queue::Queue;
use greenlet::sync::Event;
use support::Failing;
use support::http_serve as serve;
use support::ms;
use support::watchdog::bounded;
use support::{http_raw as raw, status_of};

/// Final (non-1xx) status lines in a raw byte stream.
fn finals(got: &str) -> usize {
    got.match_indices("HTTP/1.1 ")
        .filter(|(i, _)| !got[i + 9..].starts_with('1'))
        .count()
}

// 1. Smuggling: a bare LF ends the trailer section (httparse is lenient there), while the
//    chunk-size lines refuse bare LF for exactly this reason. A CRLF-strict front end (hyper
//    reads `\nGET /smuggled HTTP/1.1` as a trailer line) forwards one request; we serve two.
#[test]
fn bare_lf_in_chunked_trailers_is_refused() {
    bounded("trailer LF", Duration::from_secs(30), || {
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let s = seen.clone();
        let srv = serve(move |mut req| {
            s.lock().unwrap().push(req.uri().path().to_owned());
            let _ = io::copy(req.body_mut(), &mut io::sink());
            Response::new("ok".into())
        });
        for ending in ["0\r\n\n", "0\r\nX-T: 1\n\n", "0\r\nX-T: 1\r\n\n"] {
            seen.lock().unwrap().clear();
            let req = format!(
                "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                 {ending}GET /smuggled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let got = raw(srv.local_addr(), req.as_bytes());
            let paths = seen.lock().unwrap().clone();
            assert!(
                !paths.iter().any(|p| p == "/smuggled"),
                "{ending:?}: a second request was read out of the trailer section: {paths:?}\n{got}"
            );
        }
        srv.stop(Duration::from_secs(1));
    });
}

// 2. Lost data: a handler that answers with *another connection's* request body (a relay,
//    as piping-server does) gets this connection's body instead, whenever both requests have
//    the same sequence number (always true for two first requests): an empty `200`.
#[test]
fn a_foreign_request_body_is_relayed() {
    bounded("relay", Duration::from_secs(30), || {
        let bodies: Arc<Queue<Body>> = Arc::new(Queue::unbounded());
        let done = Arc::new(Event::new());
        let (b, d) = (bodies.clone(), done.clone());
        let srv = serve(move |req| {
            if req.method() == Method::PUT {
                let _ = b.put(req.into_body());
                d.wait_timeout(Duration::from_secs(5));
                Response::new("sent".into())
            } else {
                match b.get_timeout(Duration::from_secs(5)) {
                    Ok(body) => Response::new(body),
                    Err(_) => Response::new("nothing".into()),
                }
            }
        });
        let a = srv.local_addr();
        let mut sender = TcpStream::connect(a).unwrap();
        sender
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        sender
            .write_all(b"PUT /pipe HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap();
        let got = raw(
            a,
            b"GET /pipe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        done.set();
        assert!(got.ends_with("\r\n\r\nhello"), "the receiver got: {got:?}");
        srv.stop(Duration::from_secs(1));
    });
}

// 3. API: a request body wrapped in any reader (`from_reader`, `sized`, `take`, a
//    transform) cannot be the response body: the connection holds the wire's lock while it
//    writes, the body's `try_lock` fails with `ResourceBusy`, and the client gets a 500.
#[test]
fn a_wrapped_request_body_can_be_the_response() {
    bounded("wrapped echo", Duration::from_secs(30), || {
        let srv = serve(|req| match req.uri().path() {
            "/sized" => Response::new(Body::sized(req.into_body(), 5)),
            _ => Response::new(Body::from_reader(req.into_body())),
        });
        for path in ["/reader", "/sized"] {
            let req = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
            );
            let got = raw(srv.local_addr(), req.as_bytes());
            assert_eq!(status_of(&got), 200, "{path}: {got}");
            assert!(got.contains("hello"), "{path}: {got}");
        }
        srv.stop(Duration::from_secs(1));
    });
}

// 4. The cap locks clients out: eviction runs only when a connection *joins*, and the
//    accept loop waits for a permit before accepting. Reach the cap while every connection is
//    busy; once they all go idle (keep-alive), nothing ever joins again, so nothing is
//    evicted: new clients wait in the backlog until an idle time-out (60 s by default).
#[test]
fn the_cap_makes_room_when_connections_go_idle_after_joining() {
    bounded("cap lockout", Duration::from_secs(30), || {
        let srv = Server::bind("127.0.0.1:0", |req: Request<Body>| {
            if req.uri().path() == "/slow" {
                greenlet::sleep(ms(300));
            }
            Response::new("hello")
        })
        .unwrap()
        .max_connections(2);
        srv.start().unwrap();
        let a = srv.local_addr();
        let busy = |path: &'static str| {
            let mut s = TcpStream::connect(a).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .unwrap();
            s
        };
        // Both connections are busy when the second one joins at the cap.
        let mut one = busy("/slow");
        greenlet::sleep(ms(100));
        let mut two = busy("/slow");
        for s in [&mut one, &mut two] {
            let mut buf = [0; 512];
            assert!(s.read(&mut buf).unwrap() > 0, "answered");
        }
        // Both are now idle keep-alive connections at the cap.
        greenlet::sleep(ms(100));
        let t = Instant::now();
        let mut c = TcpStream::connect(a).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        let got = String::from_utf8_lossy(&out);
        assert_eq!(
            status_of(&got),
            200,
            "a new client was locked out for {:?} by two idle connections at the cap",
            t.elapsed()
        );
        drop((one, two));
        srv.stop(Duration::from_secs(1));
    });
}

// 5. Lost responses: a connection is marked idle *before* it flushes the responses it has
//    queued (`Wire::read` flushes first). `stop` (and eviction at the cap) kills it there:
//    requests the handler has already run never get their responses, although `stop`
//    promises a grace period to requests in flight.
#[test]
fn stop_lets_queued_responses_reach_the_client() {
    bounded("stop vs flush", Duration::from_secs(60), || {
        const N: usize = 200;
        let handled = Arc::new(AtomicUsize::new(0));
        let h = handled.clone();
        let pad = HeaderValue::from_str(&"p".repeat(64 * 1024)).unwrap();
        let srv = serve(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
            Response::builder()
                .header("x-pad", pad.clone())
                .body(Body::empty())
                .unwrap()
        });
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let one = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n";
        let burst: Vec<u8> = one.iter().copied().cycle().take(one.len() * N).collect();
        s.write_all(&burst).unwrap();
        // The client does not read: the server answers until the socket buffers are full
        // (it does not queue responses without bound), then waits in a write.
        let mut last = 0;
        loop {
            greenlet::sleep(ms(200));
            let now = handled.load(Ordering::SeqCst);
            if now == last {
                break;
            }
            last = now;
        }
        assert!(
            last > 0 && last < N,
            "{last} handled before the client read"
        );
        let stopper = {
            let srv = srv.clone();
            std::thread::spawn(move || srv.stop(Duration::from_secs(20)))
        };
        greenlet::sleep(ms(200));
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let got = String::from_utf8_lossy(&out);
        let delivered = got.matches("HTTP/1.1 200 OK").count();
        let _ = stopper.join();
        let handled = handled.load(Ordering::SeqCst);
        assert_eq!(
            delivered, handled,
            "handled {handled} requests, delivered {delivered} responses"
        );
    });
}

// 6. A 1xx returned by the handler (103 Early Hints, or 101 without `upgrade`) is written
//    as if it were the final response: the client reads it as interim and waits for a final
//    response that never comes (keep-alive), or the next response is paired with the wrong
//    request. hyper turns it into a 500.
#[test]
fn a_1xx_from_the_handler_is_never_the_only_answer() {
    bounded("1xx final", Duration::from_secs(30), || {
        let srv = serve(|req| {
            let status = match req.uri().path() {
                "/hints" => 103,
                "/switch" => 101,
                _ => 200,
            };
            Response::builder()
                .status(status)
                .body("hello".into())
                .unwrap()
        });
        for path in ["/hints", "/switch"] {
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let got = raw(srv.local_addr(), req.as_bytes());
            assert_eq!(
                finals(&got),
                2,
                "{path}: two requests, final responses: {got}"
            );
        }
        srv.stop(Duration::from_secs(1));
    });
}

// 7. RFC 9110 §9.3.2/§8.6: a HEAD handler that declares the GET's length without building
//    the body (what hyper allows) gets `content-length: 0` sent: a wrong length.
#[test]
fn head_keeps_the_declared_content_length() {
    bounded("HEAD length", Duration::from_secs(30), || {
        let srv = serve(|req| {
            let body = if req.method() == Method::HEAD {
                Body::empty()
            } else {
                Body::from(vec![b'x'; 1000])
            };
            Response::builder()
                .header(header::CONTENT_LENGTH, "1000")
                .body(body)
                .unwrap()
        });
        let got = raw(
            srv.local_addr(),
            b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(got.contains("content-length: 1000\r\n"), "{got}");
        srv.stop(Duration::from_secs(1));
    });
}

// 8. Chunk extensions are bounded per line (4 KiB) but not in total: a body of 4,000 data
//    bytes can make the server read 16 MB (CVE-2023-39326 in Go; hyper caps extensions at
//    16 KiB per body). `max_body_bytes` and the drain budget count data bytes only.
#[test]
fn chunk_extensions_cannot_multiply_the_bytes_read() {
    bounded("chunk extensions", Duration::from_secs(60), || {
        const CHUNKS: usize = 4000;
        let srv = serve(|mut req| match io::copy(req.body_mut(), &mut io::sink()) {
            Ok(n) => Response::new(format!("{n} bytes").into()),
            Err(e) => Response::new(e.to_string().into()),
        });
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut w = s.try_clone().unwrap();
        let writer = greenlet::spawn(move || {
            w.write_all(
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            )?;
            let chunk = format!("1;{}\r\na\r\n", "e".repeat(4000));
            for _ in 0..CHUNKS {
                w.write_all(chunk.as_bytes())?;
            }
            w.write_all(b"0\r\n\r\n")
        });
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let _ = writer.get();
        let got = String::from_utf8_lossy(&out);
        assert_ne!(
            status_of(&got),
            200,
            "16 MB read for a {CHUNKS}-byte body: {got}"
        );
        srv.stop(Duration::from_secs(1));
    });
}

// 9. Head-of-line: pipelined responses wait in `out` until the server next reads the
//    socket. A fast response queued behind a slow handler is held for the slow handler's
//    whole run (hyper flushes each response); a client that needs the first answer before
//    it can release the second waits for a time-out.
#[test]
fn a_ready_response_is_not_held_by_the_next_handler() {
    bounded("held response", Duration::from_secs(30), || {
        let first_seen = Arc::new(Event::new());
        let f = first_seen.clone();
        let srv = serve(move |req| {
            if req.uri().path() == "/slow" {
                f.wait_timeout(Duration::from_secs(4));
            }
            Response::new("hello".into())
        });
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(
            b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\nGET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let t = Instant::now();
        let mut buf = [0; 256];
        let first = s.read(&mut buf);
        let waited = t.elapsed();
        first_seen.set();
        assert!(
            first.is_ok_and(|n| n > 0),
            "the ready response to /fast was held {waited:?} behind /slow's handler"
        );
        srv.stop(Duration::from_secs(1));
    });
}

// 10. HTTP/1.0 keep-alive: the server keeps the connection open but never says so
//     (`Connection: keep-alive`), so a 1.0 client (ab -k) cannot tell; hyper echoes it.
#[test]
fn http_1_0_keep_alive_is_acknowledged() {
    bounded("1.0 keep-alive", Duration::from_secs(30), || {
        let srv = serve(|_| Response::new("hello".into()));
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        let mut buf = [0; 1024];
        while !out.ends_with(b"hello") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        let got = String::from_utf8_lossy(&out).to_ascii_lowercase();
        assert!(
            got.contains("connection: keep-alive\r\n") || got.contains("connection: close\r\n"),
            "persistent, but the 1.0 client is not told: {got}"
        );
        srv.stop(Duration::from_secs(1));
    });
}

// 11. A close-delimited response (HTTP/1.0, unknown length) whose body fails after some
//     bytes went out ends with a clean FIN: it looks complete. `Body::from_reader` promises
//     "the client can tell a truncated body from a whole one"; only a reset (SO_LINGER 0)
//     can say so here.
#[test]
fn a_failed_close_delimited_body_is_not_a_clean_end() {
    bounded("close-delimited failure", Duration::from_secs(30), || {
        let srv = serve(|_| Response::new(Body::from_reader(Failing { good: 100_000 })));
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut out = Vec::new();
        let r = s.read_to_end(&mut out);
        assert!(
            r.is_err(),
            "a truncated close-delimited body ended cleanly after {} bytes",
            out.len()
        );
        srv.stop(Duration::from_secs(1));
    });
}

// 12. `From<File>` trusts `metadata().len()`: procfs/sysfs files report 0 (or 4096), so
//     `Body::from(File::open("/proc/self/status"))` is sent as a complete, empty response.
#[test]
fn a_file_whose_size_lies_is_not_sent_empty() {
    bounded("proc file", Duration::from_secs(30), || {
        let srv = serve(|_| match std::fs::File::open("/proc/self/status") {
            Ok(f) => Response::new(Body::from(f)),
            Err(e) => Response::new(e.to_string().into()),
        });
        let got = raw(
            srv.local_addr(),
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(got.contains("Name:"), "{got}");
        srv.stop(Duration::from_secs(1));
    });
}

// 13. RFC 9110 §9.3.6: a 2xx to CONNECT makes the client switch to a tunnel, and the server
//     MUST NOT send Content-Length or Transfer-Encoding in it. A handler that does not know
//     CONNECT (the usual catch-all) answers 200 with `content-length`, and the server keeps
//     reading HTTP from what the client now treats as a tunnel.
#[test]
fn connect_2xx_without_upgrade_is_not_framed_as_a_response() {
    bounded("CONNECT 2xx", Duration::from_secs(30), || {
        let srv = serve(|_| Response::new("hello".into()));
        let got = raw(
            srv.local_addr(),
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        );
        let status = status_of(&got);
        let framed = got.contains("content-length:") || got.contains("transfer-encoding:");
        assert!(
            !(200..300).contains(&status) || !framed,
            "a framed 2xx to CONNECT: {got}"
        );
        srv.stop(Duration::from_secs(1));
    });
}

// Not a defect on Linux loopback (kept as a guard): a 413 sent while the client is still
// uploading reaches it although the server closes with unread input (a reset).
#[test]
fn a_413_reaches_a_client_still_uploading() {
    bounded("413 while uploading", Duration::from_secs(30), || {
        let srv = serve(|mut req| match io::copy(req.body_mut(), &mut io::sink()) {
            Ok(n) => Response::new(format!("{n}").into()),
            Err(e) => Response::new(e.to_string().into()),
        })
        .max_body_bytes(1000);
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut w = s.try_clone().unwrap();
        let writer = greenlet::spawn(move || {
            w.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")?;
            let block = [b'x'; 65536];
            for _ in 0..150 {
                w.write_all(&block)?;
            }
            Ok::<(), io::Error>(())
        });
        greenlet::sleep(ms(200));
        let mut out = Vec::new();
        let r = s.read_to_end(&mut out);
        let _ = writer.get();
        let got = String::from_utf8_lossy(&out);
        assert_eq!(status_of(&got), 413, "{r:?} {got}");
        srv.stop(Duration::from_secs(1));
    });
}

/// Reads one response with a `content-length` off `s`, returning its body's length.
fn read_one(s: &mut TcpStream) -> usize {
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).unwrap() == 0 {
            panic!("closed inside the head");
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("a content-length");
    let mut left = len;
    let mut buf = vec![0; 64 * 1024];
    while left > 0 {
        let n = s.read(&mut buf[..left.min(64 * 1024)]).unwrap();
        assert!(n > 0, "closed inside the body");
        left -= n;
    }
    len
}

// 14. Memory: an in-memory body (`Bytes`, `Vec`, `String`) is copied whole into the
//     connection's `out` buffer, and `out` keeps that capacity for the connection's life
//     (`Vec::clear` does not shrink). Serving one shared 16 MiB `Bytes` once to each of eight
//     keep-alive clients leaves ~128 MiB resident in idle connections (plus a full copy per
//     response while it is sent).
#[test]
fn idle_connections_do_not_keep_a_large_response_buffer() {
    bounded("out retention", Duration::from_secs(60), || {
        const SIZE: usize = 16 << 20;
        const CLIENTS: usize = 8;
        let big = bytes_of(SIZE);
        let srv = serve(move |_| Response::new(Body::from(big.clone())));
        let a = srv.local_addr();
        let before = support::proc_status::status_bytes("VmRSS").unwrap();
        let clients: Vec<TcpStream> = (0..CLIENTS)
            .map(|_| {
                let mut s = TcpStream::connect(a).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                assert_eq!(read_one(&mut s), SIZE);
                s
            })
            .collect();
        greenlet::sleep(ms(200));
        let after = support::proc_status::status_bytes("VmRSS").unwrap();
        let grown = after.saturating_sub(before) >> 20;
        drop(clients);
        srv.stop(Duration::from_secs(1));
        assert!(
            grown < 48,
            "{CLIENTS} idle keep-alive connections hold {grown} MiB after one shared {} MiB body each",
            SIZE >> 20
        );
    });
}

fn bytes_of(n: usize) -> bytes::Bytes {
    bytes::Bytes::from(vec![b'b'; n])
}

// 15. `Body::read_to_vec(usize::MAX)` ("no limit") computes `limit as u64 + 1`: a panic in
//     debug builds, and in release a wrap to `take(0)` that returns an empty body as `Ok`.
#[test]
fn read_to_vec_without_a_limit_reads_the_body() {
    bounded("read_to_vec(MAX)", Duration::from_secs(10), || {
        let got = Body::from("hello").read_to_vec(usize::MAX).unwrap();
        assert_eq!(got, b"hello");
    });
}

// 16. As 5, through the cap: the connection with responses still queued counts as idle
//     and is the one evicted when another client arrives, although it is the only one doing
//     work; its already-handled requests lose their responses.
#[test]
fn the_cap_does_not_evict_a_connection_with_queued_responses() {
    bounded("cap vs flush", Duration::from_secs(60), || {
        const N: usize = 200;
        let handled = Arc::new(AtomicUsize::new(0));
        let h = handled.clone();
        let pad = HeaderValue::from_str(&"p".repeat(64 * 1024)).unwrap();
        let srv = Server::bind("127.0.0.1:0", move |_: Request<Body>| {
            h.fetch_add(1, Ordering::SeqCst);
            Response::builder()
                .header("x-pad", pad.clone())
                .body(Body::empty())
                .unwrap()
        })
        .unwrap()
        .max_connections(2);
        srv.start().unwrap();
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let one = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n";
        let burst: Vec<u8> = one.iter().copied().cycle().take(one.len() * N).collect();
        s.write_all(&burst).unwrap();
        let t = Instant::now();
        while handled.load(Ordering::SeqCst) < N && t.elapsed() < Duration::from_secs(10) {
            greenlet::sleep(ms(10));
        }
        greenlet::sleep(ms(200));
        // A second client arrives: the cap (2) is reached.
        let other = TcpStream::connect(srv.local_addr()).unwrap();
        greenlet::sleep(ms(200));
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let got = String::from_utf8_lossy(&out);
        let delivered = got.matches("HTTP/1.1 200 OK").count();
        drop(other);
        srv.stop(Duration::from_secs(1));
        assert_eq!(
            delivered, N,
            "handled {N} requests, delivered {delivered} responses"
        );
    });
}

// 17. Wrong keep-alive decision: whether an unread body closes the connection is decided
//     before the response is written, so echoing the request's own body (which reads it all)
//     still closes the connection when the body is over the 64 KiB drain budget, or was sent
//     with `Expect: 100-continue`: every large echo or upload-through costs a new connection.
#[test]
fn an_echo_keeps_the_connection_alive() {
    bounded("echo keep-alive", Duration::from_secs(30), || {
        let srv = serve(|req| Response::new(req.into_body())).max_body_bytes(1 << 20);
        for (size, expect) in [(10usize, "Expect: 100-continue\r\n"), (100_000, "")] {
            let mut s = TcpStream::connect(srv.local_addr()).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut req =
                format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n{expect}\r\n")
                    .into_bytes();
            if expect.is_empty() {
                req.extend(std::iter::repeat_n(b'e', size));
            } else {
                s.write_all(&req).unwrap();
                let mut interim = [0; 25];
                s.read_exact(&mut interim).unwrap();
                req = vec![b'e'; size];
            }
            req.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(&req).unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            let got = String::from_utf8_lossy(&out);
            assert_eq!(
                got.matches("HTTP/1.1 200 OK").count(),
                2,
                "{size}-byte echo {expect:?}: the connection closed after it: {}",
                &got[..got.len().min(300)]
            );
        }
        srv.stop(Duration::from_secs(1));
    });
}

// 18. A body read from another greenlet holds the wire's `std::sync::Mutex` while it is
//     parked in the socket read; when the handler returns meanwhile (ack an upload at once,
//     consume it in the background), the connection's `try_lock` fails and the response is
//     silently dropped: the client gets no answer at all, and the socket stays open (held by
//     the reading greenlet) until the body's deadline.
#[test]
fn a_response_is_sent_while_another_greenlet_reads_the_body() {
    bounded("background body", Duration::from_secs(30), || {
        let srv = serve(|mut req| {
            let reader = greenlet::spawn(move || io::copy(req.body_mut(), &mut io::sink()));
            greenlet::sleep(ms(100));
            drop(reader);
            Response::new("accepted".into())
        });
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
            .unwrap();
        // The response waits while the background greenlet still reads the body (at most
        // until the body's deadline); once the body is complete, it is sent, not dropped.
        greenlet::sleep(ms(300));
        s.write_all(b"world").unwrap();
        let mut buf = [0; 512];
        let got = match s.read(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) => format!("no response: {e}"),
        };
        assert_eq!(status_of(&got), 200, "{got}");
        srv.stop(Duration::from_secs(1));
    });
}

// 19. Upgrade with a request body: `upgrade` hands the unread request body over as if it
//     were the new protocol's first bytes (RFC 9110 §7.8 / RFC 7540 §3.2: the content is
//     received in full before the switch), and with `Expect: 100-continue` it sends 101
//     without the 100 the client waits for (RFC 9110 §7.8: 100 MUST precede 101).
#[test]
fn an_upgrade_does_not_leak_the_request_body_into_the_new_protocol() {
    bounded("upgrade body", Duration::from_secs(30), || {
        let pending = Arc::new(Mutex::new(Vec::new()));
        let p = pending.clone();
        let srv = serve(move |mut req| {
            let switch = || {
                Response::builder()
                    .status(101)
                    .header("connection", "upgrade")
                    .header("upgrade", "toy")
                    .body(())
                    .unwrap()
            };
            // With its body unread, the upgrade is refused (its bytes are not the new
            // protocol's); once the body is read, it goes through.
            if greenlet::http::upgrade(&mut req, switch()).is_ok() {
                return Response::new(Body::from("upgraded over an unread body"));
            }
            let _ = req.body_mut().read_to_vec(100);
            if let Ok(up) = greenlet::http::upgrade(&mut req, switch()) {
                *p.lock().unwrap() = up.into_parts().1.to_vec();
            }
            Response::new(Body::empty())
        });
        let got = raw(
            srv.local_addr(),
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: toy\r\nContent-Length: 5\r\n\r\nhelloPING",
        );
        assert!(got.starts_with("HTTP/1.1 101"), "{got}");
        let pending = pending.lock().unwrap().clone();
        assert_eq!(
            String::from_utf8_lossy(&pending),
            "PING",
            "the new protocol's first bytes"
        );
        srv.stop(Duration::from_secs(1));
    });
}
