//! `examples/http_hello` on may_minihttp 0.1.11, with may's default configuration (one worker
//! per core, pinned) (a peer for `benches/wrk.sh`).
//!
//! Run with: `cargo run --release --example minihttp_hello [-- --port 8080 --secs 30]`
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
    let (addr, server) = hello::minihttp_start(port)?;
    println!("listening on http://{addr}");
    if secs == 0 {
        let _ = server.join();
        return Ok(());
    }
    std::thread::sleep(Duration::from_secs(secs));
    // may_minihttp has no stop: the process's end closes the listener and the connections.
    println!("stopped after {secs} s");
    Ok(())
}
