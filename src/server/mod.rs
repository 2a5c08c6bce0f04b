//! Servers that run a handler greenlet per connection or datagram (gevent.server).
//!
//! [`StreamServer`] accepts TCP connections and calls `handler(stream, peer)` in a new
//! greenlet for each; [`DatagramServer`] does the same for UDP datagrams. Handlers are plain
//! blocking-style code. Both can be started in the background ([`StreamServer::start`]) or
//! run on the caller ([`StreamServer::serve_forever`]), bound the number of handlers running
//! at once, and stop gracefully ([`StreamServer::stop`]): stop accepting, give running
//! handlers a grace period, then kill the rest.
//!
//! # Examples
//!
//! A line-based upper-casing service, served from a plain thread:
//!
//! ```
//! use std::io::{BufRead, BufReader, Write};
//! use std::time::Duration;
//! use greenlet::net::TcpStream;
//! use greenlet::server::StreamServer;
//!
//! let server = StreamServer::bind("127.0.0.1:0", |conn: TcpStream, _| {
//!     let mut writer = conn.try_clone().expect("clone");
//!     for line in BufReader::new(conn).lines().map_while(Result::ok) {
//!         if writeln!(writer, "{}", line.to_uppercase()).is_err() {
//!             break;
//!         }
//!     }
//! })?
//! .max_connections(100);
//! let handle = server.clone();
//! let serving = std::thread::spawn(move || handle.serve_forever());
//!
//! let mut client = TcpStream::connect(server.local_addr())?;
//! client.write_all(b"hello\n")?;
//! let mut line = String::new();
//! BufReader::new(&client).read_line(&mut line)?;
//! assert_eq!(line, "HELLO\n");
//!
//! drop(client);
//! server.stop(Duration::from_secs(1));
//! serving.join().unwrap()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod core;
mod datagram;
mod stream;

pub use datagram::DatagramServer;
pub use stream::StreamServer;
