//! An HTTP forward proxy in blocking style, one greenlet per client connection.
//!
//! - `GET http://host/path` (any method with an absolute URL) is forwarded with the
//!   keep-alive `http::Client`, and the answer relayed; the client connection stays open.
//! - `CONNECT host:port` opens a tunnel: two greenlets copy bytes each way (how browsers
//!   reach `https` sites through a proxy).
//!
//! Run with: `cargo run --release --example rproxy [-- --port 8888 --secs 30]`, then e.g.
//! `curl -x http://127.0.0.1:8888 http://127.0.0.1:8080/` against `http_hello`.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use greenlet::http::Client;
use greenlet::net::{TcpStream, ToSocketAddrs};
use greenlet::server::StreamServer;

#[path = "common/mod.rs"]
mod common;

/// Largest request head the proxy accepts.
const MAX_HEAD: usize = 64 * 1024;

/// Headers that describe one hop, not the message: never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "proxy-authorization",
];

/// Starts a proxy on `addr` in the background.
pub fn start_proxy<A: ToSocketAddrs>(addr: A) -> io::Result<StreamServer> {
    let upstream = Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .pass_through()
        .build();
    let server = StreamServer::bind(addr, move |conn: TcpStream, _| {
        let _ = serve(conn, &upstream);
    })?;
    server.start()?;
    Ok(server)
}

/// One parsed request head and the bytes after it.
struct Head {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    rest: Vec<u8>,
}

/// Reads one request head (more bytes may follow in `Head::rest`); `None` at end of file.
fn read_head(conn: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<Head>> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req
            .parse(buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        {
            httparse::Status::Complete(n) => {
                let head = Head {
                    method: req.method.unwrap_or_default().to_owned(),
                    target: req.path.unwrap_or_default().to_owned(),
                    headers: req
                        .headers
                        .iter()
                        .map(|h| (h.name.to_owned(), h.value.to_vec()))
                        .collect(),
                    rest: buf[n..].to_vec(),
                };
                buf.clear();
                return Ok(Some(head));
            }
            httparse::Status::Partial if buf.len() > MAX_HEAD => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request head too large",
                ));
            }
            httparse::Status::Partial => {}
        }
        let mut chunk = [0; 8192];
        match conn.read(&mut chunk)? {
            0 => return Ok(None),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Serves one client connection until it closes.
fn serve(mut conn: TcpStream, upstream: &Client) -> io::Result<()> {
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut conn, &mut buf)? {
        if head.method.eq_ignore_ascii_case("CONNECT") {
            return tunnel(conn, &head);
        }
        let length: usize = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = head.rest.clone();
        while body.len() < length {
            let mut chunk = [0; 8192];
            match conn.read(&mut chunk)? {
                0 => return Ok(()),
                n => body.extend_from_slice(&chunk[..n]),
            }
        }
        buf = body.split_off(length); // a pipelined next request
        forward(&mut conn, upstream, &head, body)?;
    }
    Ok(())
}

fn header<'h>(head: &'h Head, name: &str) -> Option<&'h str> {
    head.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// Forwards one request with the pooled client and writes the answer back.
fn forward(conn: &mut TcpStream, upstream: &Client, head: &Head, body: Vec<u8>) -> io::Result<()> {
    let mut request = greenlet::http::ureq::http::Request::builder()
        .method(head.method.as_str())
        .uri(head.target.as_str());
    for (name, value) in &head.headers {
        if !HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            request = request.header(name.as_str(), value.as_slice());
        }
    }
    let reply = request
        .body(body)
        .map_err(|e| e.to_string())
        .and_then(|req| upstream.agent().run(req).map_err(|e| e.to_string()));
    let (status, headers, body) = match reply {
        Ok(mut response) => {
            let body = response.body_mut().read_to_vec().unwrap_or_default();
            let headers: Vec<(String, String)> = response
                .headers()
                .iter()
                .filter(|(n, _)| {
                    !HOP_BY_HOP
                        .iter()
                        .any(|h| n.as_str().eq_ignore_ascii_case(h))
                })
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            (response.status().as_u16(), headers, body)
        }
        Err(e) => (502, Vec::new(), format!("bad gateway: {e}\n").into_bytes()),
    };
    let mut out = format!(
        "HTTP/1.1 {status} Proxied\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    conn.write_all(&[out.as_bytes(), &body].concat())
}

/// Opens the tunnel for `CONNECT host:port` and copies bytes both ways until both close.
fn tunnel(mut client: TcpStream, head: &Head) -> io::Result<()> {
    let mut upstream = match TcpStream::connect(head.target.as_str()) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("cannot reach {}: {e}\n", head.target);
            let reply = format!(
                "HTTP/1.1 502 Bad Gateway\r\nContent-Length: {}\r\n\r\n{msg}",
                msg.len()
            );
            return client.write_all(reply.as_bytes());
        }
    };
    client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")?;
    upstream.write_all(&head.rest)?;
    let (mut client_in, mut upstream_out) = (client.try_clone()?, upstream.try_clone()?);
    let outbound = greenlet::spawn(move || {
        let _ = io::copy(&mut client_in, &mut upstream_out);
        let _ = upstream_out.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(Shutdown::Write);
    outbound.join();
    Ok(())
}

#[allow(dead_code)] // the proxy test includes this file as a module
fn main() -> io::Result<()> {
    let (port, secs) = (
        common::num("--port", 8888) as u16,
        common::num("--secs", 30),
    );
    let proxy = start_proxy(("127.0.0.1", port))?;
    println!("proxy on http://{} for {secs} s", proxy.local_addr());
    greenlet::sleep(Duration::from_secs(secs));
    proxy.stop(Duration::from_secs(1));
    Ok(())
}
