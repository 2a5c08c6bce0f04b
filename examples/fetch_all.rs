//! The motivating demo: N slow fetches one after another, then as greenlets.
//!
//! A local HTTP server answers every request after a fixed delay. Fetched one after another,
//! N requests take N × delay; fetched from N greenlets joined with `joinall`, the same plain
//! blocking-style code takes about one delay. Fetches use `greenlet::http::get` (requests'
//! `get`); `--raw` fetches with a hand-written request over a `TcpStream` instead.
//!
//! Run with: `cargo run --release --example fetch_all [-- --n 100 --delay-ms 200 --raw]`

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use greenlet::net::{TcpListener, TcpStream};

mod common;

/// One HTTP GET with the blocking-style client (`requests.get` under gevent).
fn fetch(addr: SocketAddr, path: &str) -> io::Result<(u16, Duration)> {
    if common::flag("--raw") {
        return fetch_raw(addr, path);
    }
    let start = Instant::now();
    let mut response = greenlet::http::get(&format!("http://{addr}{path}"))?;
    response
        .body_mut()
        .read_to_string()
        .map_err(io::Error::other)?;
    Ok((response.status().as_u16(), start.elapsed()))
}

/// The same GET by hand over a `TcpStream`: connect, write, read to the end.
fn fetch_raw(addr: SocketAddr, path: &str) -> io::Result<(u16, Duration)> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no status line"))?;
    Ok((status, start.elapsed()))
}

/// A server whose every response takes `delay`: one greenlet per connection.
fn start_slow_server(delay: Duration) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let _detached = greenlet::spawn(move || {
        for conn in listener.incoming().flatten() {
            let _detached = greenlet::spawn(move || serve(conn, delay));
        }
    });
    Ok(addr)
}

fn serve(mut conn: TcpStream, delay: Duration) -> io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf)? {
            0 => return Ok(()),
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    greenlet::sleep(delay);
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
}

fn main() -> io::Result<()> {
    let n = common::num("--n", 100) as usize;
    let delay = Duration::from_millis(common::num("--delay-ms", 200));
    let addr = start_slow_server(delay)?;
    println!("server on {addr}: every response takes {delay:?}; {n} fetches each way\n");

    println!("one after another:");
    let start = Instant::now();
    for i in 0..n {
        let (status, took) = fetch(addr, &format!("/{i}"))?;
        println!("  fetch {i:>3}: {status} in {took:.0?}");
    }
    let sequential = start.elapsed();

    println!("\nas greenlets (spawn + joinall):");
    let start = Instant::now();
    let greenlets: Vec<_> = (0..n)
        .map(|i| greenlet::spawn(move || fetch(addr, &format!("/{i}"))))
        .collect();
    for (i, result) in greenlet::joinall(greenlets).into_iter().enumerate() {
        let (status, took) = result.expect("fetch greenlet panicked")?;
        println!("  fetch {i:>3}: {status} in {took:.0?}");
    }
    let concurrent = start.elapsed();

    println!("\nsequential: {sequential:.2?} (about {n} × {delay:?})");
    println!("greenlets:  {concurrent:.2?} (about the slowest fetch)");
    println!(
        "speed-up:   {:.0}×",
        sequential.as_secs_f64() / concurrent.as_secs_f64()
    );
    Ok(())
}
