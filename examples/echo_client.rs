//! Opens many connections at once to an echo server and checks every byte that comes back.
//!
//! Run with: `cargo run --release --example echo_client [-- --addr 127.0.0.1:7000 --conns 1000
//! --msgs 100 --size 64]`. Without `--addr` it starts its own echo server.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use greenlet::net::TcpStream;
use greenlet::server::StreamServer;

mod common;

/// One client: `msgs` messages of `size` bytes, each read back and compared.
fn client(addr: SocketAddr, id: usize, msgs: usize, size: usize) -> std::io::Result<usize> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut back = vec![0; size];
    for m in 0..msgs {
        let msg: Vec<u8> = (0..size).map(|i| (id + m + i) as u8).collect();
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
        if back != msg {
            return Err(std::io::Error::other(format!(
                "client {id}: message {m} differs"
            )));
        }
    }
    Ok(msgs * size)
}

fn main() -> std::io::Result<()> {
    let (conns, msgs, size) = (
        common::num("--conns", 1000) as usize,
        common::num("--msgs", 100) as usize,
        common::num("--size", 64) as usize,
    );
    let own_server;
    let addr: SocketAddr = match common::arg("--addr") {
        Some(a) => a.parse().expect("--addr takes ip:port"),
        None => {
            own_server = StreamServer::bind("127.0.0.1:0", |mut c: TcpStream, _| {
                let mut buf = [0; 16 * 1024];
                while let Ok(n @ 1..) = c.read(&mut buf) {
                    if c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            })?;
            own_server.start()?;
            own_server.local_addr()
        }
    };
    println!("{conns} connections × {msgs} messages × {size} bytes to {addr}");
    let start = Instant::now();
    let clients: Vec<_> = (0..conns)
        .map(|id| greenlet::spawn(move || client(addr, id, msgs, size)))
        .collect();
    let mut bytes = 0;
    let mut failures = 0;
    for result in greenlet::joinall(clients) {
        match result {
            Ok(Ok(n)) => bytes += n,
            Ok(Err(e)) => {
                failures += 1;
                eprintln!("{e}");
            }
            Err(e) => {
                failures += 1;
                eprintln!("client greenlet: {e}");
            }
        }
    }
    let took = start.elapsed();
    let round_trips = (bytes / size.max(1)) as f64;
    println!(
        "{} bytes echoed and checked in {took:.2?}: {:.0} round trips/s, {failures} failed",
        bytes,
        round_trips / took.as_secs_f64()
    );
    if failures > 0 {
        std::process::exit(1);
    }
    Ok(())
}
