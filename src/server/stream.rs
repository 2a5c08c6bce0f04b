//! `StreamServer`: one greenlet per TCP connection (gevent.server.StreamServer).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::core::{Backoff, Core, Slots};
use crate::greenlet::Builder;
use crate::net::{TcpListener, TcpStream, ToSocketAddrs};
use crate::sync::lock;

type Handler = dyn Fn(TcpStream, SocketAddr) + Send + Sync + 'static;

/// A TCP server that runs `handler(stream, peer)` in a greenlet of its own for every
/// connection, and closes the connection when the handler returns (or panics).
///
/// Handles are cheap clones of one server: one can [`serve_forever`](Self::serve_forever)
/// while another [`stop`](Self::stop)s it.
///
/// - Accepted sockets get `TCP_NODELAY` by default ([`nodelay`](Self::nodelay)): a reply
///   written in pieces is not held back by Nagle's algorithm (gevent's pywsgi loses 8–12×
///   to that stall).
/// - [`max_connections`](Self::max_connections) bounds the handlers running at once: accept
///   waits while the limit is reached (gevent's pool-limited server).
/// - A handler that panics closes only its connection; the panic is logged through `log`.
/// - A failing `accept` (e.g. out of file descriptors) is logged and retried with a back-off
///   from 10 ms to 1 s, instead of spinning or ending the server.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// use greenlet::net::TcpStream;
/// use greenlet::server::StreamServer;
///
/// let server = StreamServer::bind("127.0.0.1:0", |mut conn: TcpStream, _peer| {
///     let mut buf = [0; 64];
///     while let Ok(n @ 1..) = conn.read(&mut buf) {
///         if conn.write_all(&buf[..n]).is_err() {
///             break;
///         }
///     }
/// })?;
/// server.start()?;
///
/// let mut client = TcpStream::connect(server.local_addr())?;
/// client.write_all(b"echo")?;
/// let mut reply = [0; 4];
/// client.read_exact(&mut reply)?;
/// assert_eq!(&reply, b"echo");
///
/// drop(client);
/// server.stop(Duration::from_secs(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct StreamServer {
    inner: Arc<Inner>,
}

struct Inner {
    core: Arc<Core>,
    addr: SocketAddr,
    listener: Mutex<Option<TcpListener>>,
    handler: Arc<Handler>,
    nodelay: AtomicBool,
}

impl StreamServer {
    /// Binds a listener on `addr` (port 0 picks a free port; see
    /// [`local_addr`](Self::local_addr)). Nothing is accepted until
    /// [`start`](Self::start) or [`serve_forever`](Self::serve_forever).
    ///
    /// # Errors
    ///
    /// As [`TcpListener::bind`] (`AddrInUse`, ...).
    pub fn bind<A, H>(addr: A, handler: H) -> io::Result<StreamServer>
    where
        A: ToSocketAddrs,
        H: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
    {
        StreamServer::from_listener(TcpListener::bind(addr)?, handler)
    }

    /// Serves connections from a listener you bound yourself.
    ///
    /// # Errors
    ///
    /// If the listener's address cannot be read.
    pub fn from_listener<H>(listener: TcpListener, handler: H) -> io::Result<StreamServer>
    where
        H: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
    {
        Ok(StreamServer {
            inner: Arc::new(Inner {
                core: Arc::new(Core::new("StreamServer")),
                addr: listener.local_addr()?,
                listener: Mutex::new(Some(listener)),
                handler: Arc::new(handler),
                nodelay: AtomicBool::new(true),
            }),
        })
    }

    /// Limits the handlers running at once to `n` (0, the default, means no limit). While the
    /// limit is reached, connections wait in the listen backlog. Set before starting.
    pub fn max_connections(self, n: usize) -> StreamServer {
        self.inner.core.set_limit(n);
        self
    }

    /// Whether accepted sockets get `TCP_NODELAY` (default `true`). Set before starting.
    pub fn nodelay(self, on: bool) -> StreamServer {
        self.inner.nodelay.store(on, Ordering::Relaxed);
        self
    }

    /// At the [`max_connections`](Self::max_connections) limit, accepts the next connection
    /// before its slot is free and calls `f` (at once, then every 100 ms) until one is.
    pub(crate) fn on_full(self, f: super::core::OnFull) -> StreamServer {
        self.inner.core.set_on_full(f);
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// How many handlers are running (or about to).
    pub fn connections(&self) -> usize {
        self.inner.core.handlers()
    }

    /// Starts accepting in a greenlet of its own and returns at once.
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if the server was already started (or stopped); or the spawn error.
    pub fn start(&self) -> io::Result<()> {
        let listener = lock(&self.inner.listener).take();
        let Some(listener) = listener else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "this StreamServer was already started",
            ));
        };
        let inner = self.inner.clone();
        let name = format!("StreamServer-{}", self.inner.addr);
        self.inner
            .core
            .start(name, move |slots| inner.accept_loop(&listener, &slots))
    }

    /// Starts (if not yet started) and waits until the server is stopped.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), except that an already started server is waited for.
    pub fn serve_forever(&self) -> io::Result<()> {
        self.inner.core.serve_forever(|| self.start())
    }

    /// Stops the server gracefully and returns how many handlers were still running after
    /// `grace` and had to be killed.
    ///
    /// The listener closes at once (new connections are refused). Handlers already running
    /// get `grace` to finish; those still running then are killed (they unwind at their next
    /// blocking point, closing their connections) and `stop` waits for them. Every accepted
    /// connection has its handler run: one accepted just before the stop but started after
    /// the grace period runs until its first blocking point.
    ///
    /// # Caveats
    ///
    /// A handler that never blocks cannot be killed, and `stop` waits for it.
    pub fn stop(&self, grace: Duration) -> usize {
        self.inner.core.stop(grace)
    }

    /// Whether [`stop`](Self::stop) has been called.
    pub fn is_stopped(&self) -> bool {
        self.inner.core.is_stopped()
    }
}

impl Inner {
    fn accept_loop(&self, listener: &TcpListener, slots: &Slots) {
        let mut backoff = Backoff::new();
        let on_full = slots.on_full();
        loop {
            // At the limit with an `on_full` hook, the connection is accepted first and room
            // made for it then: nothing is closed while no client waits.
            let early = match &on_full {
                Some(_) => slots.try_reserve(),
                None => Some(slots.reserve()),
            };
            let (conn, peer) = match listener.accept_std() {
                Ok(accepted) => accepted,
                Err(e) => {
                    drop(early);
                    backoff.failed("StreamServer accept", &e);
                    continue;
                }
            };
            backoff.succeeded();
            let mut ticket = match (early, &on_full) {
                (Some(ticket), _) => ticket,
                (None, Some(f)) => slots.reserve_making_room(f),
                (None, None) => slots.reserve(),
            };
            ticket.admit();
            if self.nodelay.load(Ordering::Relaxed)
                && let Err(e) = conn.set_nodelay(true)
            {
                log::debug!("{}: cannot set TCP_NODELAY for {peer}: {e}", slots.what());
            }
            let handler = self.handler.clone();
            // Handlers are spread over the workers; each registers its connection on its own.
            let home = crate::deadline::home::round_robin();
            let spawned = Builder::new().on_worker(home).spawn(move || {
                ticket.started();
                match TcpStream::from_std(conn) {
                    Ok(conn) => handler(conn, peer),
                    Err(e) => log::warn!("StreamServer: cannot serve {peer}: {e}"),
                }
                drop(ticket);
            });
            match spawned {
                Ok(g) => drop(g),
                Err(e) => log::warn!("StreamServer: cannot serve {peer}: {e}"),
            }
        }
    }
}

impl fmt::Debug for StreamServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamServer")
            .field("addr", &self.inner.addr)
            .field("connections", &self.connections())
            .field("stopped", &self.is_stopped())
            .finish()
    }
}
