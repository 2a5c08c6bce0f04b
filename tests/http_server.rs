//! `http::Server`: keep-alive at scale, limits, malformed input, panics, pipelining,
//! time-outs and stop.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use greenlet::http::{Body, Client, Request, Response, Server};
use greenlet::net::TcpStream;
use support::ms;
use support::{http_raw as raw, status_of};

const CONNECTIONS: usize = 100;
const PER_CONNECTION: usize = 100;

fn server() -> Server {
    let server = Server::bind("127.0.0.1:0", |req: Request<Body>| match req.uri().path() {
        "/panic" => panic!("handler asked to panic"),
        "/echo" => Response::new(req.into_body()),
        "/slow" => {
            greenlet::sleep(ms(300));
            Response::new("slow".into())
        }
        p => Response::new(format!("{} {p}", req.method()).into()),
    })
    .unwrap()
    .max_head_bytes(1024)
    .max_headers(16)
    .max_body_bytes(1000)
    .timeout(Duration::from_secs(5));
    server.start().unwrap();
    server
}

#[test]
fn ten_thousand_requests_over_a_hundred_keep_alive_connections() {
    let srv = server();
    let base = format!("http://{}", srv.local_addr());
    let gs: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let base = base.clone();
            greenlet::spawn(move || -> Result<usize, greenlet::http::Error> {
                let client = Client::new(); // one connection, reused
                for r in 0..PER_CONNECTION {
                    let body = client
                        .get(&format!("{base}/{c}/{r}"))?
                        .body_mut()
                        .read_to_string()?;
                    assert_eq!(body, format!("GET /{c}/{r}"));
                }
                Ok(PER_CONNECTION)
            })
        })
        .collect();
    let answered: usize = greenlet::joinall(gs)
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .sum();
    assert_eq!(answered, CONNECTIONS * PER_CONNECTION);
    srv.stop(Duration::from_secs(5));
}

#[test]
fn bad_requests_get_400_431_413_and_the_server_goes_on() {
    let srv = server();
    let addr = srv.local_addr();
    assert_eq!(status_of(&raw(addr, b"NONSENSE\x01\r\n\r\n")), 400);
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(2000));
    assert_eq!(status_of(&raw(addr, long.as_bytes())), 431);
    let many: String = (0..20).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    assert_eq!(status_of(&raw(addr, many.as_bytes())), 431);
    let big = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n";
    assert_eq!(status_of(&raw(addr, big)), 413);
    let bad_len = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n";
    assert_eq!(status_of(&raw(addr, bad_len)), 400);
    let chunked = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(status_of(&raw(addr, chunked)), 200);
    let bad_chunk = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    assert_eq!(status_of(&raw(addr, bad_chunk)), 400);
    // Still serving.
    let ok = raw(
        addr,
        b"GET /fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        ok.starts_with("HTTP/1.1 200 OK") && ok.ends_with("GET /fine"),
        "{ok}"
    );
    srv.stop(Duration::from_secs(1));
}

#[test]
fn a_panicking_handler_gives_500_and_the_connection_goes_on() {
    let srv = server();
    let both = raw(
        srv.local_addr(),
        b"GET /panic HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(both.starts_with("HTTP/1.1 500"), "{both}");
    assert!(
        both.contains("HTTP/1.1 200 OK") && both.ends_with("GET /after"),
        "{both}"
    );
    srv.stop(Duration::from_secs(1));
}

#[test]
fn pipelined_requests_are_answered_in_order_and_bodies_echo() {
    let srv = server();
    let out = raw(
        srv.local_addr(),
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.0\r\n\r\n",
    );
    let bodies: Vec<&str> = out
        .split("\r\n\r\n")
        .skip(1)
        .map(|b| b.split("HTTP/1.1").next().unwrap())
        .collect();
    assert_eq!(bodies, vec!["abc", "GET /2", "GET /3"], "{out}");
    assert!(
        out.to_ascii_lowercase().contains("connection: close"),
        "HTTP/1.0 closes: {out}"
    );
}

#[test]
fn a_silent_connection_is_closed_after_the_timeout() {
    let srv = Server::bind("127.0.0.1:0", |_| Response::new("x"))
        .unwrap()
        .timeout(ms(100));
    srv.start().unwrap();
    // Timed from before the connection exists: the server's idle clock starts when it
    // accepts, which can come before `connect` returns here.
    let t = Instant::now();
    let mut s = TcpStream::connect(srv.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(s.read(&mut [0; 16]).unwrap_or(0), 0, "closed by the server");
    assert!(t.elapsed() >= ms(100) && t.elapsed() < Duration::from_secs(5));
    srv.stop(Duration::from_secs(1));
}

#[test]
fn stop_closes_idle_keep_alive_connections_at_once_and_drains_requests() {
    let srv = server();
    let addr = srv.local_addr();
    // An idle keep-alive connection: one request answered, then silence.
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0; 256];
    assert!(idle.read(&mut buf).unwrap() > 0);
    // A request in flight.
    let inflight = greenlet::spawn(move || raw(addr, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"));
    greenlet::sleep(ms(50));
    let t = Instant::now();
    assert_eq!(
        srv.stop(Duration::from_secs(10)),
        0,
        "nothing needed killing"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "idle connections did not hold stop: {:?}",
        t.elapsed()
    );
    assert!(
        inflight.get().unwrap().ends_with("slow"),
        "the request in flight finished"
    );
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        idle.read(&mut buf).unwrap_or(0),
        0,
        "the idle connection was closed"
    );
}
