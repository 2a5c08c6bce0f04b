//! The peers of `examples/http_hello` in the HTTP benchmarks: the same hello-world service on
//! hyper 1.x (tokio) and on may_minihttp 0.1.11, shared by `benches/http.rs` (in-process load)
//! and the standalone servers `hyper_hello` and `minihttp_hello` that `benches/wrk.sh` loads.
//!
//! Each answers like `http_hello`: `Hello, {name}!\n` (`name` is the request target without
//! its leading `/`, `world` when empty), `Content-Type: text/plain`, and `Content-Length`.
//! All three send `date`, as RFC 9110 asks of an origin server; may_minihttp also adds
//! `Server`.
#![allow(dead_code)] // each user takes one of the two servers

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;

/// The body `examples/http_hello` answers `target` (e.g. `/`) with.
pub fn greeting(target: &str) -> String {
    let name = target.trim_start_matches('/');
    let name = if name.is_empty() { "world" } else { name };
    format!("Hello, {name}!\n")
}

/// Serves the greeting on `listener` with hyper 1.x: HTTP/1.1 only, keep-alive, one tokio
/// task per connection on `TCP_NODELAY` sockets, until the runtime shuts down.
pub async fn hyper_serve(listener: tokio::net::TcpListener) {
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
                let mut rsp = hyper::Response::new(Full::new(bytes::Bytes::from(greeting(target))));
                rsp.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("text/plain"),
                );
                Ok::<_, Infallible>(rsp)
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[derive(Clone)]
struct Hello;

impl may_minihttp::HttpService for Hello {
    fn call(
        &mut self,
        req: may_minihttp::Request,
        rsp: &mut may_minihttp::Response,
    ) -> io::Result<()> {
        rsp.header("Content-Type: text/plain")
            .body_vec(greeting(req.path()).into_bytes());
        Ok(())
    }
}

/// Starts serving the greeting with may_minihttp on `port` of 127.0.0.1 (0: a free port,
/// picked with a probe listener because may_minihttp does not report the one it gets), on
/// may's default configuration. Returns the address and the accept loop's handle (it runs
/// until the process ends: may_minihttp has no stop).
///
/// # Errors
///
/// If the port cannot be bound.
pub fn minihttp_start(port: u16) -> io::Result<(SocketAddr, may::coroutine::JoinHandle<()>)> {
    let port = match port {
        0 => std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port(),
        p => p,
    };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let handle = may_minihttp::HttpServer(Hello).start(addr)?;
    Ok((addr, handle))
}
