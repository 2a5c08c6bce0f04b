//! `DatagramServer`: one greenlet per UDP datagram (gevent.server.DatagramServer).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::core::{Backoff, Core, Slots};
use crate::greenlet::Builder;
use crate::net::{ToSocketAddrs, UdpSocket};

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

type Handler = dyn Fn(&UdpSocket, &[u8], SocketAddr) + Send + Sync + 'static;

/// A UDP server that runs `handler(socket, datagram, sender)` in a greenlet of its own for
/// every datagram received. Reply with [`UdpSocket::send_to`] on the socket it is given.
///
/// [`max_handlers`](Self::max_handlers) bounds the handlers running at once (receiving waits
/// meanwhile, and the kernel buffers or drops datagrams as UDP does). Start and stop work as
/// for [`StreamServer`](super::StreamServer).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use greenlet::net::UdpSocket;
/// use greenlet::server::DatagramServer;
///
/// let server = DatagramServer::bind("127.0.0.1:0", |sock: &UdpSocket, data: &[u8], from| {
///     let _ = sock.send_to(&data.to_ascii_uppercase(), from);
/// })?;
/// server.start()?;
///
/// let client = UdpSocket::bind("127.0.0.1:0")?;
/// client.set_read_timeout(Some(Duration::from_secs(5)))?;
/// client.send_to(b"shout", server.local_addr())?;
/// let mut buf = [0; 16];
/// let (n, _) = client.recv_from(&mut buf)?;
/// assert_eq!(&buf[..n], b"SHOUT");
/// server.stop(Duration::from_secs(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct DatagramServer {
    inner: Arc<Inner>,
}

struct Inner {
    core: Arc<Core>,
    addr: SocketAddr,
    socket: Arc<UdpSocket>,
    handler: Arc<Handler>,
}

impl DatagramServer {
    /// Binds a UDP socket on `addr`. Nothing is received until [`start`](Self::start).
    ///
    /// # Errors
    ///
    /// As [`UdpSocket::bind`].
    pub fn bind<A, H>(addr: A, handler: H) -> io::Result<DatagramServer>
    where
        A: ToSocketAddrs,
        H: Fn(&UdpSocket, &[u8], SocketAddr) + Send + Sync + 'static,
    {
        let socket = UdpSocket::bind(addr)?;
        Ok(DatagramServer {
            inner: Arc::new(Inner {
                core: Arc::new(Core::new("DatagramServer")),
                addr: socket.local_addr()?,
                socket: Arc::new(socket),
                handler: Arc::new(handler),
            }),
        })
    }

    /// Limits the handlers running at once to `n` (0, the default, means no limit).
    pub fn max_handlers(self, n: usize) -> DatagramServer {
        self.inner.core.set_limit(n);
        self
    }

    /// The address the server receives on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Starts receiving in a greenlet of its own and returns at once.
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if already started (or stopped); or the spawn error.
    pub fn start(&self) -> io::Result<()> {
        let inner = self.inner.clone();
        let name = format!("DatagramServer-{}", self.inner.addr);
        self.inner
            .core
            .start(name, move |slots| inner.receive_loop(&slots))
    }

    /// Starts (if not yet started) and waits until the server is stopped.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), except that an already started server is waited for.
    pub fn serve_forever(&self) -> io::Result<()> {
        self.inner.core.serve_forever(|| self.start())
    }

    /// Stops receiving, gives running handlers `grace` to finish, kills the rest, and returns
    /// how many were killed. See [`StreamServer::stop`](super::StreamServer::stop).
    pub fn stop(&self, grace: Duration) -> usize {
        self.inner.core.stop(grace)
    }
}

impl Inner {
    fn receive_loop(&self, slots: &Slots) {
        let mut buf = vec![0; MAX_DATAGRAM];
        let mut backoff = Backoff::new();
        loop {
            let mut ticket = slots.reserve();
            let (n, from) = match self.socket.recv_from(&mut buf) {
                Ok(received) => received,
                Err(e) => {
                    drop(ticket);
                    backoff.failed("DatagramServer receive", &e);
                    continue;
                }
            };
            backoff.succeeded();
            ticket.admit();
            let data = buf[..n].to_vec();
            let (socket, handler) = (self.socket.clone(), self.handler.clone());
            let spawned = Builder::new().spawn(move || {
                ticket.started();
                handler(&socket, &data, from);
                drop(ticket);
            });
            if let Err(e) = spawned {
                log::warn!("DatagramServer: cannot handle a datagram from {from}: {e}");
            }
        }
    }
}

impl fmt::Debug for DatagramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramServer")
            .field("addr", &self.inner.addr)
            .finish()
    }
}
