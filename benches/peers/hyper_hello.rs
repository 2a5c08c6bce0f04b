//! `examples/http_hello` on hyper 1.x: tokio's multi-thread runtime with 2 worker threads,
//! HTTP/1.1 with keep-alive (a peer for `benches/wrk.sh`).
//!
//! Run with: `cargo run --release --example hyper_hello [-- --port 8080 --secs 30]`
//! It prints its address and serves until `--secs` have passed (default 30; 0 serves until
//! Ctrl-C).

use std::time::Duration;

#[path = "../../examples/common/mod.rs"]
mod common;
mod hello;

fn main() -> std::io::Result<()> {
    let (port, secs) = (
        common::num("--port", 8080) as u16,
        common::num("--secs", 30),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))?;
    println!("listening on http://{}", listener.local_addr()?);
    if secs == 0 {
        rt.block_on(hello::hyper_serve(listener));
        return Ok(());
    }
    rt.spawn(hello::hyper_serve(listener));
    std::thread::sleep(Duration::from_secs(secs));
    println!("stopped after {secs} s");
    Ok(())
}
