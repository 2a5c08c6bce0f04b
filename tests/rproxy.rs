//! The `rproxy` example: it relays `GET` over keep-alive and tunnels `CONNECT`, for a
//! thousand tunnels at once.

#[path = "../examples/rproxy.rs"]
#[allow(dead_code)]
mod rproxy;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use greenlet::http::{Body, Request, Response, Server};
use greenlet::net::TcpStream;
use greenlet::server::StreamServer;

const TUNNELS: usize = 1_000;

/// Reads one response with a Content-Length body from a keep-alive connection.
fn read_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut b = [0; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).unwrap(),
            1,
            "early eof: {}",
            String::from_utf8_lossy(&got)
        );
        got.push(b[0]);
    }
    let head = String::from_utf8_lossy(&got).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    let mut body = vec![0; len];
    s.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

#[test]
fn relays_get_over_keep_alive() {
    let origin = Server::bind("127.0.0.1:0", |req: Request<Body>| {
        match req.uri().path() {
            "/missing" => Response::builder().status(404).body("nope".to_string()),
            p => Response::builder()
                .header("X-Origin", "yes")
                .body(format!("origin {p}")),
        }
        .unwrap()
    })
    .unwrap();
    origin.start().unwrap();
    let proxy = rproxy::start_proxy("127.0.0.1:0").unwrap();
    let mut s = TcpStream::connect(proxy.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let o = origin.local_addr();
    for path in ["/a", "/b", "/missing"] {
        write!(s, "GET http://{o}{path} HTTP/1.1\r\nHost: {o}\r\n\r\n").unwrap();
        let r = read_response(&mut s);
        if path == "/missing" {
            assert!(r.starts_with("HTTP/1.1 404") && r.ends_with("nope"), "{r}");
        } else {
            assert!(
                r.starts_with("HTTP/1.1 200") && r.ends_with(&format!("origin {path}")),
                "{r}"
            );
            assert!(r.to_ascii_lowercase().contains("x-origin: yes"), "{r}");
        }
    }
    proxy.stop(Duration::from_secs(1));
    origin.stop(Duration::from_secs(1));
}

fn tunnel_round_trip(proxy: SocketAddr, target: SocketAddr, n: usize) -> std::io::Result<()> {
    let mut s = TcpStream::connect(proxy)?;
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n")?;
    let mut head = Vec::new();
    let mut b = [0; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b)?;
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let msg = format!("through the tunnel {n}");
    s.write_all(msg.as_bytes())?;
    let mut back = vec![0; msg.len()];
    s.read_exact(&mut back)?;
    assert_eq!(back, msg.as_bytes());
    Ok(())
}

#[test]
fn tunnels_connect_a_thousand_at_once() {
    let echo = StreamServer::bind("127.0.0.1:0", |mut c: TcpStream, _| {
        let mut buf = [0; 1024];
        while let Ok(n @ 1..) = c.read(&mut buf) {
            if c.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
    .unwrap();
    echo.start().unwrap();
    let proxy = rproxy::start_proxy("127.0.0.1:0").unwrap();
    let (p, e) = (proxy.local_addr(), echo.local_addr());
    let gs: Vec<_> = (0..TUNNELS)
        .map(|n| greenlet::spawn(move || tunnel_round_trip(p, e, n)))
        .collect();
    for r in greenlet::joinall(gs) {
        r.unwrap().unwrap();
    }
    // A target that refuses: 502.
    let closed = greenlet::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut s = TcpStream::connect(p).unwrap();
    write!(s, "CONNECT {closed} HTTP/1.1\r\n\r\n").unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    proxy.stop(Duration::from_secs(1));
    echo.stop(Duration::from_secs(1));
}
