//! HTTP in blocking style (gevent + `requests`): a client whose requests park only the
//! calling greenlet.
//!
//! [`get`], [`post`] and [`Client`] are ureq 3 running over greenlet sockets: connections are
//! [`net::TcpStream`](crate::net::TcpStream)s, host names resolve on the thread pool, idle
//! connections are reused (keep-alive), and `https` works with the `tls` feature (rustls).
//! Called from a plain thread, they block that thread. Failures are one [`Error`] enum that
//! names the deadline that passed ([`Deadline`]).
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
mod error;
mod transport;

pub use client::{Client, ClientBuilder, Response, get, post};
pub use error::{Deadline, Error};
pub use ureq;
