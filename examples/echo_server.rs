//! An echo server: one greenlet per connection, on `StreamServer`.
//!
//! Run with: `cargo run --release --example echo_server [-- --port 7000 --secs 30]`
//! (it stops by itself after `--secs`, default 30; 0 serves until Ctrl-C), then point
//! `echo_client` at it.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use greenlet::net::TcpStream;
use greenlet::server::StreamServer;

mod common;

fn echo(mut conn: TcpStream, peer: SocketAddr) {
    let mut buf = [0; 16 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if let Err(e) = conn.write_all(&buf[..n]) {
                    eprintln!("{peer}: write failed: {e}");
                    return;
                }
            }
            Err(e) => {
                eprintln!("{peer}: read failed: {e}");
                return;
            }
        }
    }
}

fn main() -> std::io::Result<()> {
    let port = common::num("--port", 7000) as u16;
    let secs = common::num("--secs", 30);
    let server = StreamServer::bind(("127.0.0.1", port), echo)?;
    println!("echo server on {}", server.local_addr());
    if secs == 0 {
        return server.serve_forever();
    }
    server.start()?;
    greenlet::sleep(Duration::from_secs(secs));
    let killed = server.stop(Duration::from_secs(1));
    println!("stopped after {secs} s ({killed} connections cut)");
    Ok(())
}
