//! Cooperative sockets (gevent.socket).
//!
//! [`TcpStream`], [`TcpListener`], [`UdpSocket`] and the Unix-domain [`UnixStream`],
//! [`UnixListener`] and [`UnixDatagram`] have the API of their `std` namesakes, but a read,
//! write, accept or connect that would block parks only the calling greenlet, and the worker
//! thread runs other greenlets meanwhile. Called from a plain thread, they block that thread,
//! like `std`.
//!
//! They wrap may's sockets, adding what a std user expects: host names are resolved on the
//! [thread pool](crate::threadpool) ([`resolve`]) so a lookup never stalls a worker, time-outs
//! fail with `TimedOut`, binding a port in use fails with `AddrInUse`, and a [`TcpStream`] can
//! be read by one greenlet while another writes to it through `&TcpStream`. Their read and
//! write time-outs keep the crate's [time-out contract](crate#time-outs-never-hang) (a
//! sub-millisecond one is kept exactly, never dropped).
//!
//! Do not use `std::net` sockets inside greenlets: a blocking `std` call stalls the whole
//! worker thread (see the crate's `# Caveats`).
//!
//! # Examples
//!
//! An echo round trip on loopback:
//!
//! ```
//! use std::io::{Read, Write};
//! use greenlet::net::{TcpListener, TcpStream};
//!
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let addr = listener.local_addr()?;
//! let server = greenlet::spawn(move || -> std::io::Result<()> {
//!     let (mut conn, _) = listener.accept()?;
//!     let mut buf = [0; 5];
//!     conn.read_exact(&mut buf)?;
//!     conn.write_all(&buf)
//! });
//!
//! let mut client = TcpStream::connect(addr)?;
//! client.write_all(b"hello")?;
//! let mut reply = [0; 5];
//! client.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"hello");
//! server.get()??;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod addr;
pub(crate) mod registered;
mod tcp;
#[cfg(feature = "tls")]
pub mod tls;
mod udp;
mod unix;
pub(crate) mod wait;

pub use addr::{ToSocketAddrs, resolve};
pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixIncoming, UnixListener, UnixStream};
