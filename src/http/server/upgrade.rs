//! Protocol upgrades (101 Switching Protocols, e.g. WebSocket) and `CONNECT` tunnels: the
//! handler answers and takes the connection over in its own greenlet.

use std::fmt;
use std::io::{self, Read, Write};

use bytes::{Buf, Bytes};
use http::{Request, Response, StatusCode};

use super::body::Body;
use super::response;
use crate::net::TcpStream;

/// A connection taken over from the server by [`upgrade`]: the socket, plus the bytes the
/// client sent after the request head that the server had already read. Reading returns
/// those first. Its read time-out is the server's idle [`timeout`](super::Server::timeout)
/// and its write time-out the server's [`write_timeout`](super::Server::write_timeout);
/// change them with [`get_ref`](Self::get_ref)`().set_read_timeout(...)`.
pub struct Upgraded {
    conn: TcpStream,
    pending: Bytes,
}

impl Upgraded {
    /// The socket.
    pub fn get_ref(&self) -> &TcpStream {
        &self.conn
    }

    /// The socket and the bytes already read from it that belong to the new protocol.
    pub fn into_parts(self) -> (TcpStream, Bytes) {
        (self.conn, self.pending)
    }
}

impl Read for Upgraded {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pending.is_empty() {
            return self.conn.read(out);
        }
        let n = out.len().min(self.pending.len());
        out[..n].copy_from_slice(&self.pending[..n]);
        self.pending.advance(n);
        Ok(n)
    }
}

impl Write for Upgraded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.conn.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.conn.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.conn.flush()
    }
}

impl fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgraded")
            .field("conn", &self.conn)
            .field("pending", &self.pending.len())
            .finish()
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned())
}

/// Answers `req` with `response` right away and hands the connection over, in the handler's
/// own greenlet: `101 Switching Protocols` to a request that asked for an upgrade
/// (`Connection: upgrade` with an `Upgrade` header, e.g. a WebSocket handshake), or a 2xx to
/// a `CONNECT` (a tunnel). The server then leaves the connection alone: what the handler
/// returns afterwards is not sent, and the connection closes when the [`Upgraded`] is
/// dropped. The response's headers go out as given (the server adds `date`).
///
/// # Errors
///
/// `InvalidInput` if the request did not ask for this (or is not one the server received),
/// its body has not been read to its end, or the status does not fit it; the request is then answered as usual with what the
/// handler returns. An I/O error if the response could not be written.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use greenlet::http::{Body, Request, Response, Server, StatusCode, upgrade};
///
/// // A toy protocol: after the 101, the server echoes one line.
/// let server = Server::bind("127.0.0.1:0", |mut req: Request<Body>| {
///     let switch = Response::builder()
///         .status(StatusCode::SWITCHING_PROTOCOLS)
///         .header("connection", "upgrade")
///         .header("upgrade", "echo")
///         .body(())
///         .unwrap();
///     match upgrade(&mut req, switch) {
///         Ok(mut conn) => {
///             let mut line = [0; 5];
///             if conn.read_exact(&mut line).is_ok() {
///                 let _ = conn.write_all(&line);
///             }
///             Response::new(Body::empty()) // not sent: the connection was taken over
///         }
///         Err(e) => Response::builder().status(400).body(e.to_string().into()).unwrap(),
///     }
/// })?;
/// server.start()?;
///
/// let mut c = greenlet::net::TcpStream::connect(server.local_addr())?;
/// c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\nhello")?;
/// let mut reply = Vec::new();
/// c.read_to_end(&mut reply)?;
/// let reply = String::from_utf8(reply)?;
/// assert!(reply.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
/// assert!(reply.ends_with("\r\n\r\nhello"));
/// server.stop(std::time::Duration::from_secs(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn upgrade(req: &mut Request<Body>, response: Response<()>) -> io::Result<Upgraded> {
    let not_ours = "upgrade: the request was not received by a greenlet http::Server";
    let incoming = req.body().as_incoming().ok_or_else(|| invalid(not_ours))?;
    let Some(mut wire) = super::wire::try_lock(&incoming.wire) else {
        return Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            "upgrade: the request body is being read by another greenlet",
        ));
    };
    if wire.body.seq != incoming.seq || wire.conn.is_none() {
        return Err(invalid("upgrade: the request was already answered"));
    }
    if wire.body.decoder != super::wire::Decoder::Done {
        return Err(invalid(
            "upgrade: read the request body to its end first (its bytes are not the new protocol's)",
        ));
    }
    let status = response.status();
    let fits = if wire.body.connect {
        status.is_success()
    } else {
        wire.body.upgradable && status == StatusCode::SWITCHING_PROTOCOLS
    };
    if !fits {
        return Err(invalid(if wire.body.connect {
            "upgrade: a CONNECT is taken over with a 2xx response"
        } else if wire.body.upgradable {
            "upgrade: an upgrade is answered with 101 Switching Protocols"
        } else {
            "upgrade: the request asked for no upgrade (Connection: upgrade and Upgrade)"
        }));
    }
    response::write_head_now(&mut wire, status, response.headers())?;
    let idle = wire.limits.timeout.max(std::time::Duration::from_nanos(1));
    let conn = wire.conn.take().ok_or_else(|| invalid(not_ours))?;
    conn.set_read_timeout(Some(idle))?;
    let pending = wire.buf.split().freeze();
    Ok(Upgraded { conn, pending })
}
