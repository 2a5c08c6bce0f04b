//! A hello-world HTTP server on `greenlet::http::Server`.
//!
//! Run with: `cargo run --release --example http_hello [-- --port 8080 --secs 30]`
//! It prints its address and serves until `--secs` have passed (default 30; 0 serves until
//! Ctrl-C). Try `curl http://127.0.0.1:8080/you`.

use std::time::Duration;

use greenlet::http::{Body, Request, Response, Server, header};

mod common;

fn main() -> std::io::Result<()> {
    env_logger::init(); // RUST_LOG=debug shows the access log
    let (port, secs) = (
        common::num("--port", 8080) as u16,
        common::num("--secs", 30),
    );
    let server = Server::bind(("127.0.0.1", port), |req: Request<Body>| {
        let name = req.uri().path().trim_start_matches('/');
        let name = if name.is_empty() { "world" } else { name };
        let mut response = Response::new(format!("Hello, {name}!\n"));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain"),
        );
        response
    })?;
    println!("listening on http://{}", server.local_addr());
    if secs == 0 {
        return server.serve_forever();
    }
    server.start()?;
    greenlet::sleep(Duration::from_secs(secs));
    server.stop(Duration::from_secs(1));
    println!("stopped after {secs} s");
    Ok(())
}
