//! A crawler-style fan-out: fetch many pages of a local server, at most N at a time.
//!
//! Run with: `cargo run --release --example pool_map [-- --pages 200 --size 20 --delay-ms 50]`

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use greenlet::net::TcpStream;
use greenlet::pool::Pool;
use greenlet::server::StreamServer;

mod common;

/// A server whose page `/N` answers after `delay` with a body of N bytes.
fn start_server(delay: Duration) -> io::Result<StreamServer> {
    let server = StreamServer::bind("127.0.0.1:0", move |mut conn: TcpStream, _| {
        let mut head = Vec::new();
        let mut buf = [0; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let path = String::from_utf8_lossy(&head);
        let len: usize = path
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.trim_start_matches('/').parse().ok())
            .unwrap_or(0);
        greenlet::sleep(delay);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{}",
            "x".repeat(len)
        );
        let _ = conn.write_all(response.as_bytes());
    })?;
    server.start()?;
    Ok(server)
}

/// Fetches one page in blocking style and returns its body length.
fn fetch(addr: SocketAddr, page: u64) -> io::Result<usize> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "GET /{page} HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)?;
    let body = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| i + 4);
    Ok(response.len() - body)
}

fn main() -> io::Result<()> {
    let (pages, size) = (
        common::num("--pages", 200),
        common::num("--size", 20) as usize,
    );
    let delay = Duration::from_millis(common::num("--delay-ms", 50));
    let server = start_server(delay)?;
    let addr = server.local_addr();
    println!("{pages} pages, each {delay:?} away, at most {size} at a time");

    let pool = Pool::new(size);
    let (now, peak, done) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let start = Instant::now();
    let (n, p, d) = (now.clone(), peak.clone(), done.clone());
    let mut bytes = 0;
    for (i, result) in pool
        .imap(0..pages, move |page| {
            let running = n.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(running, Ordering::SeqCst);
            let r = fetch(addr, page);
            n.fetch_sub(1, Ordering::SeqCst);
            d.fetch_add(1, Ordering::SeqCst);
            r
        })
        .enumerate()
    {
        bytes += result.expect("fetch greenlet failed")?;
        if (i + 1) % 50 == 0 || i + 1 == pages as usize {
            println!(
                "  {:>4}/{pages} done, {} running now, {:.0?} elapsed",
                done.load(Ordering::SeqCst),
                now.load(Ordering::SeqCst),
                start.elapsed()
            );
        }
    }
    let took = start.elapsed();
    println!(
        "fetched {bytes} bytes in {took:.2?}; peak concurrency {} (limit {size}); \
         one by one it would take about {:.1?}",
        peak.load(Ordering::SeqCst),
        delay * pages as u32
    );
    server.stop(Duration::from_secs(1));
    Ok(())
}
