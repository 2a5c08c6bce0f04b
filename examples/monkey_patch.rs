//! The seed's gevent program, line for line: patch, then unmodified blocking HTTP calls
//! (ureq's default agent on std sockets) in greenlets, joined with `joinall`.
//!
//! ```python
//! from gevent import monkey; monkey.patch_all()
//! import gevent, requests
//! jobs = [gevent.spawn(requests.get, url) for url in urls]
//! gevent.joinall(jobs)
//! ```
//!
//! Run with: `cargo run --release --features monkey --example monkey_patch [-- --n 50 --delay-ms 200]`

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use greenlet::net::TcpStream;
use greenlet::server::StreamServer;

mod common;

fn main() -> std::io::Result<()> {
    greenlet::monkey::patch_all();

    let (n, delay) = (
        common::num("--n", 50),
        Duration::from_millis(common::num("--delay-ms", 200)),
    );
    // A local server whose every answer takes `delay`.
    let server = StreamServer::bind("127.0.0.1:0", move |mut c: TcpStream, _| {
        let mut buf = [0; 1024];
        let _ = c.read(&mut buf);
        greenlet::sleep(delay);
        let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    })?;
    server.start()?;
    let urls: Vec<String> = (0..n)
        .map(|i| format!("http://{}/{i}", server.local_addr()))
        .collect();

    let start = Instant::now();
    let jobs: Vec<_> = urls
        .into_iter()
        .map(|url| {
            greenlet::spawn(move || {
                let t = Instant::now();
                let status = ureq::get(&url).call().map(|r| r.status().as_u16());
                (url, status, t.elapsed())
            })
        })
        .collect();
    for job in greenlet::joinall(jobs) {
        let (url, status, took) = job.expect("fetch greenlet");
        println!("{url}: {status:?} in {took:.0?}");
    }
    println!(
        "{n} fetches of {delay:?} each in {:.2?} (one after another: about {:.1?})",
        start.elapsed(),
        delay * n as u32
    );
    server.stop(Duration::from_secs(1));
    Ok(())
}
