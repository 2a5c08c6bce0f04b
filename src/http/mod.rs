//! HTTP in blocking style: a server (gevent's pywsgi) and a client (gevent + `requests`)
//! whose waits park only the calling greenlet.
//!
//! [`Server`] runs a `handler(Request<Body>) -> Response<B>` per request (the `http` crate's
//! types, re-exported here), one greenlet per connection, with streaming bodies both ways,
//! keep-alive, pipelining, size limits (431/413/400), deadlines, a connection cap, panic
//! isolation (500), upgrades ([`upgrade`]) and a graceful [`stop`](Server::stop).
//!
//! [`get`], [`post`] and [`Client`] are ureq 3 running over greenlet sockets: connections are
//! [`net::TcpStream`](crate::net::TcpStream)s, host names resolve on the thread pool, idle
//! connections are reused (keep-alive), and `https` works with the `tls` feature (rustls).
//! Called from a plain thread, they block that thread. Failures are one [`Error`] enum that
//! names the deadline that passed ([`Deadline`]), or the host or URL at fault.
//! [`ClientBuilder::allow_destination`] with [`is_public`] keeps a client that fetches URLs
//! for others (a proxy, a webhook sender) off private networks.
//!
//! # Examples
//!
//! Many slow fetches at once take as long as the slowest (here against a local server):
//!
//! ```
//! use std::io::{Read, Write};
//! use std::time::{Duration, Instant};
//! use greenlet::server::StreamServer;
//!
//! // A server that answers every request after 100 ms.
//! let server = StreamServer::bind("127.0.0.1:0", |mut c: greenlet::net::TcpStream, _| {
//!     let mut buf = [0; 1024];
//!     let _ = c.read(&mut buf);
//!     greenlet::sleep(Duration::from_millis(100));
//!     let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
//! })?;
//! server.start()?;
//! let url = format!("http://{}/", server.local_addr());
//!
//! let start = Instant::now();
//! let fetches: Vec<_> = (0..50)
//!     .map(|_| {
//!         let url = url.clone();
//!         greenlet::spawn(move || greenlet::http::get(&url)?.body_mut().read_to_string().map_err(Into::into))
//!     })
//!     .collect();
//! for body in greenlet::joinall(fetches) {
//!     let body: Result<String, greenlet::http::Error> = body?;
//!     assert_eq!(body?, "ok");
//! }
//! assert!(start.elapsed() < Duration::from_secs(3)); // not 50 × 100 ms
//! server.stop(Duration::from_secs(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod destination;
mod error;
mod server;
mod transport;

pub use client::{Client, ClientBuilder, get, post};
pub use destination::is_public;
pub use server::{Body, ConnInfo, Server, Upgraded, upgrade};

/// The `http` crate (1.x), for what the re-exports above leave out.
pub use ::http as types;
/// The `http` crate's types, the request and response types of [`Server`] and [`Client`].
pub use ::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header,
};
/// Shared bytes (the `bytes` crate), which a [`Body`] converts from without a copy.
pub use bytes::Bytes;

/// A client response: status, headers and a streaming body (ureq's, re-exported). Read the
/// body with `response.body_mut().read_to_string()` (bounded to 10 MB by default).
pub type ClientResponse = client::Response;
pub use error::{Deadline, Error};
pub use ureq;
