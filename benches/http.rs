//! Hello-world HTTP requests per second: `greenlet::http::Server` beside hyper 1.x (tokio
//! multi-thread) and raw may_minihttp 0.1.11, all loaded by the same in-process generator.
//!
//! Run with: `cargo bench --bench http` (`GREENLET_BENCH_QUICK=1` for a short run).
//!
//! The generator opens `CONNECTIONS` keep-alive connections from as many blocking std threads
//! (so it treats every server alike), sends `GET /` back to back on each for a fixed duration,
//! checks every response, and counts them. The figure is the median of `ROUNDS` runs. Server
//! and generator share the machine's cores, as wrk does in gevent's measurements.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::quick;
#[path = "peers/hello.rs"]
mod peers;

const CONNECTIONS: usize = 64;
const ROUNDS: usize = 3;
/// What each server answers `GET /` with (`examples/http_hello`'s greeting).
const BODY: &str = "Hello, world!\n";
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

/// Reads one response (head, then a Content-Length body) and checks it is the hello body.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).map_err(io::Error::other)?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let l = l.to_ascii_lowercase();
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .ok_or_else(|| io::Error::other("no content-length"))?;
            if buf.len() >= end + 4 + len {
                if &buf[end + 4..end + 4 + len] != BODY.as_bytes() {
                    return Err(io::Error::other("unexpected body"));
                }
                buf.drain(..end + 4 + len);
                return Ok(());
            }
        }
        let mut chunk = [0; 4096];
        match s.read(&mut chunk)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Requests per second that `CONNECTIONS` keep-alive clients get from `addr` in `duration`.
fn load(addr: SocketAddr, duration: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (done, stop) = (done.clone(), stop.clone());
            std::thread::spawn(move || -> io::Result<()> {
                let mut s = TcpStream::connect(addr)?;
                s.set_nodelay(true)?;
                let mut buf = Vec::with_capacity(4096);
                while !stop.load(Ordering::Relaxed) {
                    s.write_all(REQUEST)?;
                    read_response(&mut s, &mut buf)?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join()
            .expect("load thread")
            .expect("load connection failed");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn greenlet_server() -> SocketAddr {
    let server = greenlet::http::Server::bind(
        "127.0.0.1:0",
        |req: greenlet::http::Request<greenlet::http::Body>| {
            greenlet::http::Response::builder()
                .header("content-type", "text/plain")
                .body(peers::greeting(req.uri().path()))
                .unwrap()
        },
    )
    .unwrap();
    server.start().unwrap();
    server.local_addr()
}

fn hyper_server(rt: &tokio::runtime::Runtime) -> SocketAddr {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(peers::hyper_serve(listener));
    addr
}

fn may_minihttp_server() -> SocketAddr {
    // Detached: may_minihttp has no stop; the process ends it.
    peers::minihttp_start(0).unwrap().0
}

fn main() {
    let duration = if quick() {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(3)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let servers = [
        ("greenlet http::Server", greenlet_server()),
        ("hyper 1.x (tokio)", hyper_server(&rt)),
        ("may_minihttp 0.1.11", may_minihttp_server()),
    ];
    std::thread::sleep(Duration::from_millis(200));
    println!(
        "hello world, {CONNECTIONS} keep-alive connections, {duration:?} × {ROUNDS} rounds (median)"
    );
    let mut results = Vec::new();
    for (name, addr) in servers {
        load(addr, Duration::from_millis(300)); // warm-up
        let rps = median((0..ROUNDS).map(|_| load(addr, duration)).collect());
        println!("http/{name:<24} {rps:>10.0} req/s");
        results.push((name, rps));
    }
    let hyper = results[1].1;
    for (name, rps) in &results {
        println!("http/{name:<24} {:>10.2}× hyper", rps / hyper);
    }
}
