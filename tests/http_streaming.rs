//! `http::Server` bodies as streams: chunked request bodies (extensions, trailers, limits,
//! malformed chunks), `Expect: 100-continue`, unread bodies, `HEAD`, `date`, responses of
//! unknown length (chunked, close-delimited), failing response bodies, files and echoes.
//! Every case is bounded: it fails, never hangs.

mod support;

use std::io::{self, Read, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use greenlet::http::{Body, Request, Response, Server, StatusCode};
use greenlet::net::TcpStream;
use support::Failing;
use support::ms;
use support::watchdog::bounded;
use support::{http_raw as raw, status_of};

fn server() -> Server {
    let server = Server::bind("127.0.0.1:0", |mut req: Request<Body>| {
        let path = req.uri().path().to_owned();
        match path.as_str() {
            "/count" => match io::copy(req.body_mut(), &mut io::sink()) {
                Ok(n) => {
                    let trailer = req
                        .body()
                        .trailers()
                        .and_then(|t| t.get("x-sum").map(|v| v.to_str().unwrap().to_owned()));
                    Response::new(format!("{n} bytes, trailer {trailer:?}").into())
                }
                Err(e) => Response::new(format!("read failed: {e}").into()),
            },
            "/ignore" => Response::new("ignored".into()),
            "/echo" => Response::new(req.into_body()),
            "/stream" => Response::new(Body::from_reader(io::Cursor::new(b"abcdef".to_vec()))),
            "/declared" => Response::builder()
                .header("content-length", "6")
                .body(Body::from_reader(io::Cursor::new(b"abcdef".to_vec())))
                .unwrap(),
            "/broken-early" => Response::new(Body::from_reader(Failing { good: 0 })),
            "/broken-late" => Response::new(Body::from_reader(Failing { good: 100_000 })),
            "/short" => Response::new(Body::sized(Failing { good: 100_000 }, 200_000)),
            "/missing" => Response::builder()
                .status(404)
                .body("no such thing".into())
                .unwrap(),
            _ => Response::new("hello".into()),
        }
    })
    .unwrap()
    .max_body_bytes(100_000)
    .body_timeout(Duration::from_secs(5));
    server.start().unwrap();
    server
}

fn chunked_post(path: &str, chunks: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunks}"
    )
    .into_bytes()
}

#[test]
fn chunked_bodies_are_decoded_with_extensions_and_trailers() {
    bounded("chunked decode", Duration::from_secs(30), || {
        let srv = server();
        let got = raw(
            srv.local_addr(),
            &chunked_post(
                "/count",
                "5;name=\"v\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n",
            ),
        );
        assert!(got.ends_with("11 bytes, trailer Some(\"11\")"), "{got}");
        let got = raw(
            srv.local_addr(),
            &chunked_post("/echo", "3\r\nabc\r\n0\r\n\r\n"),
        );
        assert!(
            got.contains("content-length: 3\r\n") || got.contains("transfer-encoding: chunked"),
            "{got}"
        );
        assert!(got.contains("abc"), "{got}");
        srv.stop(Duration::from_secs(1));
    });
}

#[test]
fn a_chunked_body_in_pieces_keeps_the_connection() {
    bounded("chunked pieces", Duration::from_secs(30), || {
        let srv = server();
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r")
            .unwrap();
        for piece in [&b"\nab"[..], b"cd", b"\r", b"\n0\r\n", b"\r\n"] {
            greenlet::sleep(ms(20));
            s.write_all(piece).unwrap();
        }
        s.write_all(b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.contains("4 bytes, trailer None"), "{out}");
        assert!(out.ends_with("hello"), "the next request was served: {out}");
        srv.stop(Duration::from_secs(1));
    });
}

#[test]
fn chunked_bodies_over_the_limit_get_413_and_malformed_ones_400() {
    bounded("chunked limits", Duration::from_secs(30), || {
        let srv = server();
        let a = srv.local_addr();
        // 0x20000 = 131,072 > max_body_bytes (100,000): refused at the size line.
        assert_eq!(
            status_of(&raw(a, &chunked_post("/count", "20000\r\n"))),
            413
        );
        // Many small chunks crossing the limit.
        let many: String = (0..120)
            .map(|_| format!("3e8\r\n{}\r\n", "x".repeat(1000)))
            .collect();
        assert_eq!(status_of(&raw(a, &chunked_post("/count", &many))), 413);
        for bad in [
            "5\nhello\r\n0\r\n\r\n",                  // bare LF after the size
            "5\r\nhello\n0\r\n\r\n",                  // bare LF after the data
            "5\r\nhelloXX0\r\n\r\n",                  // no CRLF after the data
            "-5\r\nhello\r\n0\r\n\r\n",               // a sign
            "0x5\r\nhello\r\n0\r\n\r\n",              // a prefix
            "11111111111111111\r\nx\r\n",             // 17 hex digits
            "5;a\x01b\r\nhello\r\n0\r\n\r\n",         // a control character in an extension
            "zz\r\n",                                 // not hex
            "5\r\nhello\r\n0\r\nbad trailer\r\n\r\n", // a malformed trailer
        ] {
            let got = raw(a, &chunked_post("/count", bad));
            assert_eq!(status_of(&got), 400, "{bad:?}: {got}");
        }
        // The echo answers 400 too, not a truncated 200.
        assert_eq!(status_of(&raw(a, &chunked_post("/echo", "zz\r\n"))), 400);
        // A client that stops half-way gets no response and no hang (the body deadline is 5 s).
        let mut s = TcpStream::connect(a).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(
            b"POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe",
        )
        .unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        srv.stop(Duration::from_secs(1));
    });
}

#[test]
fn expect_100_continue_is_answered_when_the_handler_reads() {
    bounded("100-continue", Duration::from_secs(30), || {
        let srv = server();
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(
            b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
        let mut interim = [0; 25];
        s.read_exact(&mut interim).unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        s.write_all(b"hello").unwrap();
        let mut head = [0; 12];
        s.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");

        // A handler that never reads: the final response at once, then the connection closes
        // (the client never had its 100, so the body would be read as a request).
        let got = raw(
            srv.local_addr(),
            b"POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        );
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        assert!(got.contains("connection: close\r\n"), "{got}");
        assert!(!got.contains("100 Continue"), "{got}");
        // An expectation the server cannot meet.
        let got = raw(
            srv.local_addr(),
            b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: something\r\n\r\nhello",
        );
        assert_eq!(status_of(&got), 417, "{got}");
        srv.stop(Duration::from_secs(1));
    });
}

#[test]
fn unread_bodies_are_drained_or_the_connection_closes() {
    bounded("unread bodies", Duration::from_secs(30), || {
        let srv = server();
        let a = srv.local_addr();
        // A small unread body is drained: the next pipelined request is served.
        let got = raw(
            a,
            b"POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(
            got.ends_with("hello") && got.matches("HTTP/1.1 200").count() == 2,
            "{got}"
        );
        // A large unread body closes the connection, and says so.
        let mut s = TcpStream::connect(a).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 90000\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(
            out.contains("connection: close\r\n") && out.ends_with("ignored"),
            "{out}"
        );
        srv.stop(Duration::from_secs(1));
    });
}

#[test]
fn head_gets_the_headers_of_get_and_no_body() {
    bounded("HEAD", Duration::from_secs(30), || {
        let srv = server();
        let got = raw(
            srv.local_addr(),
            b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nHEAD /stream HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let responses: Vec<&str> = got.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(responses.len(), 3, "{got}");
        assert!(responses[0].contains("content-length: 5\r\n"), "{got}");
        assert!(responses[0].ends_with("\r\n\r\n"), "no body: {got}");
        assert!(
            responses[1].contains("transfer-encoding: chunked\r\n"),
            "{got}"
        );
        assert!(responses[1].ends_with("\r\n\r\n"), "no body: {got}");
        assert!(responses[2].ends_with("\r\n\r\nhello"), "{got}");
        srv.stop(Duration::from_secs(1));
    });
}

#[test]
fn every_response_has_a_date() {
    bounded("date", Duration::from_secs(30), || {
        let srv = server();
        let a = srv.local_addr();
        for req in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
            b"GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GARBAGE\x01\r\n\r\n",
        ] {
            let got = raw(a, req);
            let date = got
                .lines()
                .find_map(|l| l.strip_prefix("date: "))
                .unwrap_or_else(|| panic!("no date: {got}"));
            // IMF-fixdate: "Fri, 27 Nov 2026 06:54:30 GMT".
            assert!(date.len() == 29 && date.ends_with(" GMT"), "{date}");
        }
        srv.stop(Duration::from_secs(1));
    });
}

#[test]
fn unknown_lengths_are_chunked_for_1_1_and_close_delimited_for_1_0() {
    bounded("unknown lengths", Duration::from_secs(30), || {
        let srv = server();
        let a = srv.local_addr();
        let got = raw(
            a,
            b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(got.contains("transfer-encoding: chunked\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\n6\r\nabcdef\r\n0\r\n\r\n"), "{got}");
        let got = raw(a, b"GET /stream HTTP/1.0\r\n\r\n");
        assert!(
            !got.contains("transfer-encoding") && !got.contains("content-length"),
            "{got}"
        );
        assert!(
            got.contains("connection: close\r\n") && got.ends_with("\r\n\r\nabcdef"),
            "{got}"
        );
        // A length the handler declares is used.
        let got = raw(
            a,
            b"GET /declared HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(
            got.contains("content-length: 6\r\n") && got.ends_with("\r\n\r\nabcdef"),
            "{got}"
        );
        srv.stop(Duration::from_secs(1));
    });
}

#[test]
fn a_failing_response_body_is_never_a_complete_response() {
    bounded("failing bodies", Duration::from_secs(30), || {
        let srv = server();
        let a = srv.local_addr();
        // Before the reader gave anything: a 500 instead (what it gives goes out at once, so
        // a failure after that can only cut the response short).
        let got = raw(a, b"GET /broken-early HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status_of(&got), 500, "{got}");
        // After part of it was sent: cut short, no terminating chunk, connection closed.
        let got = raw(a, b"GET /broken-late HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(got.starts_with("HTTP/1.1 200"), "{}", &got[..40]);
        assert!(
            !got.ends_with("0\r\n\r\n"),
            "the chunked body looks complete"
        );
        // A sized body that ends early: fewer bytes than its content-length, then close.
        let got = raw(a, b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n");
        let body = got.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
        assert!(
            got.contains("content-length: 200000\r\n") && body < 200_000,
            "{body}"
        );
        srv.stop(Duration::from_secs(1));
    });
}

#[test]
fn a_large_upload_echoes_back_as_it_streams() {
    bounded("echo stream", Duration::from_secs(60), || {
        let srv = Server::bind("127.0.0.1:0", |req: Request<Body>| {
            Response::new(req.into_body())
        })
        .unwrap()
        .max_body_bytes(64 << 20);
        srv.start().unwrap();
        const LEN: usize = 8 << 20;
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut w = s.try_clone().unwrap();
        // The writer and the reader run at once: the echo streams, it does not buffer 8 MiB.
        let writer = greenlet::spawn(move || {
            w.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")?;
            let chunk = vec![b'z'; 65536];
            for _ in 0..LEN / chunk.len() {
                write!(w, "{:x}\r\n", chunk.len())?;
                w.write_all(&chunk)?;
                w.write_all(b"\r\n")?;
            }
            w.write_all(b"0\r\n\r\n")
        });
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        writer.get().unwrap().unwrap();
        let text = String::from_utf8_lossy(&out[..out.len().min(200)]).into_owned();
        assert!(text.contains("transfer-encoding: chunked"), "{text}");
        let zs = out.iter().filter(|&&b| b == b'z').count();
        assert_eq!(zs, LEN);
        srv.stop(Duration::from_secs(1));
    });
}

#[test]
fn files_are_sent_with_their_length() {
    bounded("file body", Duration::from_secs(30), || {
        let path = std::env::temp_dir().join(format!("greenlet-file-body-{}", std::process::id()));
        std::fs::write(&path, vec![b'f'; 100_000]).unwrap();
        let p = path.clone();
        let srv = Server::bind("127.0.0.1:0", move |_| {
            Response::new(std::fs::File::open(&p).unwrap())
        })
        .unwrap();
        srv.start().unwrap();
        let got = raw(
            srv.local_addr(),
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(
            got.contains("content-length: 100000\r\n"),
            "{}",
            &got[..100]
        );
        assert!(got.ends_with(&"f".repeat(100_000)));
        std::fs::remove_file(path).unwrap();
        srv.stop(Duration::from_secs(1));
    });
}

#[test]
fn a_body_read_after_its_response_fails_cleanly() {
    bounded("late body read", Duration::from_secs(30), || {
        static LATE: Mutex<Option<String>> = Mutex::new(None);
        let srv = Server::bind("127.0.0.1:0", |req: Request<Body>| {
            if req.method() != "POST" {
                return Response::new("answered");
            }
            let mut body = req.into_body();
            let _reader = greenlet::spawn(move || {
                greenlet::sleep(ms(200));
                let r = body.read(&mut [0; 16]);
                *LATE.lock().unwrap() = Some(format!("{r:?}"));
            });
            Response::new("answered")
        })
        .unwrap();
        srv.start().unwrap();
        let got = raw(
            srv.local_addr(),
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(got.matches("answered").count(), 2, "{got}");
        greenlet::sleep(ms(400));
        let late = LATE.lock().unwrap().clone().expect("the late read ran");
        assert!(
            late.contains("Err") && late.contains("after its response"),
            "{late}"
        );
        srv.stop(Duration::from_secs(1));
    });
}

#[test]
fn a_handler_status_survives_and_panics_get_500() {
    bounded("status", Duration::from_secs(30), || {
        let srv = Server::bind("127.0.0.1:0", |req: Request<Body>| {
            if req.uri().path() == "/panic" {
                panic!("asked to");
            }
            let mut r = Response::new(());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        })
        .unwrap();
        srv.start().unwrap();
        let got = raw(
            srv.local_addr(),
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /panic HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(got.starts_with("HTTP/1.1 204 No Content\r\n"), "{got}");
        assert!(
            !got.split("HTTP/1.1 500")
                .next()
                .unwrap()
                .contains("content-length"),
            "{got}"
        );
        assert!(
            got.contains("HTTP/1.1 500 Internal Server Error\r\n"),
            "{got}"
        );
        srv.stop(Duration::from_secs(1));
    });
}

// Found while building examples/rproxy.rs on the server: a streamed body was held in the
// server's buffer until 32 KiB gathered, so a trickling origin showed nothing for as long.
/// How long the reader waits before its second piece.
const PAUSE: Duration = Duration::from_secs(3);

/// Yields `event 1`, then waits `PAUSE` (as a slow origin would), yields `event 2` and ends:
/// 16 bytes in all.
struct Trickle {
    step: u8,
}

impl Read for Trickle {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.step += 1;
        let piece: &[u8] = match self.step {
            1 => b"event 1\n",
            2 => {
                greenlet::sleep(PAUSE);
                b"event 2\n"
            }
            _ => b"",
        };
        out[..piece.len()].copy_from_slice(piece);
        Ok(piece.len())
    }
}

/// How long the first bytes of the body took to reach the client.
fn first_bytes_after(sized: bool) -> Duration {
    let server = Server::bind("127.0.0.1:0", move |_req: Request<Body>| {
        let reader = Trickle { step: 0 };
        if sized {
            Response::new(Body::sized(reader, 16))
        } else {
            Response::new(Body::from_reader(reader))
        }
    })
    .unwrap();
    server.start().unwrap();
    let mut c = TcpStream::connect(server.local_addr()).unwrap();
    c.set_read_timeout(Some(PAUSE * 2)).unwrap();
    let start = Instant::now();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 1024];
    while !got.windows(8).any(|w| w == b"event 1\n") {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let took = start.elapsed();
    server.stop(Duration::from_secs(1));
    took
}

#[test]
fn a_streamed_body_is_sent_as_it_is_produced_chunked() {
    bounded("from_reader flush", Duration::from_secs(30), || {
        let took = first_bytes_after(false);
        assert!(
            took < PAUSE / 2,
            "the first 8 bytes of a chunked stream arrived after {took:?}, held until the \
             reader went on"
        );
    });
}

#[test]
fn a_streamed_body_is_sent_as_it_is_produced_sized() {
    bounded("sized flush", Duration::from_secs(30), || {
        let took = first_bytes_after(true);
        assert!(
            took < PAUSE / 2,
            "the first 8 bytes of a sized stream arrived after {took:?}, held until the \
             reader went on"
        );
    });
}
