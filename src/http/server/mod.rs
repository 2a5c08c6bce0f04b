//! `http::Server`: HTTP/1.1 with keep-alive and pipelining, one greenlet per connection
//! (gevent's pywsgi), speaking the `http` crate's types, with streaming bodies, size limits,
//! deadlines, a connection cap, panic isolation, upgrades and graceful stop.

mod body;
mod conn;
mod framing;
mod idle;
mod response;
mod upgrade;
mod wire;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};

pub use body::Body;
pub use upgrade::{Upgraded, upgrade};

use crate::net::ToSocketAddrs;
use crate::server::StreamServer;
use crate::sync::lock;

/// Facts about the connection a request arrived on, in every request's extensions.
///
/// # Examples
///
/// ```
/// use greenlet::http::{Body, ConnInfo, Request, Response, Server};
///
/// let server = Server::bind("127.0.0.1:0", |req: Request<Body>| {
///     let info = req.extensions().get::<ConnInfo>().expect("set by the server");
///     Response::new(format!("you are {}", info.peer.ip()))
/// })?;
/// server.start()?;
/// let url = format!("http://{}/", server.local_addr());
/// let body = greenlet::http::get(&url)?.body_mut().read_to_string()?;
/// assert_eq!(body, "you are 127.0.0.1");
/// server.stop(std::time::Duration::from_secs(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The server's address the client connected to.
    pub local: SocketAddr,
}

impl ConnInfo {
    /// Connection facts, e.g. to call a handler directly in a unit test.
    ///
    /// # Examples
    ///
    /// ```
    /// use greenlet::http::{Body, ConnInfo, Request};
    ///
    /// let mut req = Request::new(Body::empty());
    /// let info = ConnInfo::new("127.0.0.1:5000".parse()?, "127.0.0.1:80".parse()?);
    /// req.extensions_mut().insert(info);
    /// assert_eq!(req.extensions().get::<ConnInfo>().unwrap().peer.port(), 5000);
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn new(peer: SocketAddr, local: SocketAddr) -> ConnInfo {
        ConnInfo { peer, local }
    }
}

type Handler = dyn Fn(Request<Body>) -> Response<Body> + Send + Sync + 'static;

/// Limits and time-outs of a [`Server`].
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_head: usize,
    max_headers: usize,
    max_body: usize,
    timeout: Duration,
    head_timeout: Duration,
    body_timeout: Duration,
    write_timeout: Duration,
}

/// The default connection cap: the descriptor limit less a reserve of a quarter (at least
/// 64), so that `accept`, the handlers' own sockets and files find descriptors under a flood.
fn default_cap() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; RLIMIT_NOFILE is a valid resource.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    };
    let soft = usize::try_from(soft).unwrap_or(usize::MAX).min(1 << 20);
    soft.saturating_sub((soft / 4).max(64)).max(1)
}

/// An HTTP/1.1 server (gevent's pywsgi): `handler(http::Request<Body>) -> http::Response<B>`
/// runs in the connection's greenlet, in plain blocking style, with the `http` crate's types
/// (`B` is anything that converts [`Into<Body>`](Body): `String`, `&'static str`, `Vec<u8>`,
/// `Bytes`, `()`, a `File`, a reader, the request's own body).
///
/// - Bodies stream both ways: the handler reads the request's [`Body`] as it arrives
///   (`Content-Length` or `chunked`, `Expect: 100-continue` answered at the first read), and a
///   response body of unknown length is sent `chunked` (HTTP/1.1) or until close (HTTP/1.0).
///   A `HEAD` request gets the headers a `GET` would, without the body. Every response
///   carries `date`; `content-length`, `transfer-encoding` and `connection` are the
///   server's to set (a handler's `Connection: close` is honoured).
/// - Connection facts ([`ConnInfo`]: the peer's address) are in each request's extensions.
/// - A handler can answer `101 Switching Protocols` (or 2xx to `CONNECT`) and take the
///   connection over with [`upgrade`].
/// - Keep-alive and pipelining: requests on one connection are answered in order; the
///   connection stays open unless the client asks otherwise (or speaks HTTP/1.0).
/// - Limits, each configurable, enforced here while reading (not by the handler): a request
///   head over [`max_head_bytes`](Self::max_head_bytes) or with more than
///   [`max_headers`](Self::max_headers) headers gets **431**; a body over
///   [`max_body_bytes`](Self::max_body_bytes) gets **413** (at once for a `Content-Length`
///   over it, when the limit is crossed for a chunked body); a malformed request or chunked
///   body gets **400**; an `Expect` other than `100-continue` gets **417**; each then closes
///   the connection. A connection that sends nothing for [`timeout`](Self::timeout) is
///   closed.
/// - Framing is checked as hyper and nginx check it (RFC 9112 §6.3, §7.1, §3.2), so that no
///   front end can read a different request out of the same bytes: **400** for a
///   `Content-Length` that is not plain digits (`+5`, `0x5`, `5,5`, Unicode spaces), for two
///   that differ, for `Content-Length` with `Transfer-Encoding`, for a `Transfer-Encoding`
///   not ending in `chunked`, for chunk-size lines with a bare LF, a sign or over 16 hex
///   digits, and for an HTTP/1.1 request without exactly one `Host` (HTTP/1.0: at most one).
/// - A connection cap ([`max_connections`](Self::max_connections)) below the descriptor limit
///   by default, so `accept` never runs out of descriptors under a flood; at the cap, the
///   longest idle keep-alive connection is closed to make room.
/// - Deadlines that a trickling client cannot stretch: a whole request head within
///   [`head_timeout`](Self::head_timeout) (30 s) and its body within
///   [`body_timeout`](Self::body_timeout) (60 s), else **408**; each response write within
///   [`write_timeout`](Self::write_timeout) (30 s), else the connection closes.
/// - A handler that panics gets its request a **500**; the connection and the server go on.
/// - Responses in memory are written head and body in one buffer on `TCP_NODELAY` sockets
///   (pywsgi's two writes and Nagle cost it 8–12×).
/// - [`stop`](Self::stop) closes the listener and idle keep-alive connections at once, lets
///   requests in flight finish for a grace period, then kills the rest.
/// - Each request is logged through `log` at debug level (peer, method, path, status, size,
///   time).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use greenlet::http::{Body, Request, Response, Server};
///
/// let server = Server::bind("127.0.0.1:0", |req: Request<Body>| {
///     Response::builder()
///         .header("content-type", "text/plain")
///         .body(format!("hello {}", req.uri().path()))
///         .unwrap()
/// })?;
/// server.start()?;
///
/// let url = format!("http://{}/world", server.local_addr());
/// let body = greenlet::http::get(&url)?.body_mut().read_to_string()?;
/// assert_eq!(body, "hello /world");
/// server.stop(Duration::from_secs(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Server {
    stream: StreamServer,
    limits: Arc<Mutex<Limits>>,
    idle: Arc<idle::Idle>,
}

impl Server {
    /// Binds to `addr`; nothing is served until [`start`](Self::start) or
    /// [`serve_forever`](Self::serve_forever).
    ///
    /// # Errors
    ///
    /// As [`TcpListener::bind`](crate::net::TcpListener::bind).
    pub fn bind<A, H, B>(addr: A, handler: H) -> io::Result<Server>
    where
        A: ToSocketAddrs,
        H: Fn(Request<Body>) -> Response<B> + Send + Sync + 'static,
        B: Into<Body>,
    {
        let limits = Arc::new(Mutex::new(Limits {
            max_head: 16 * 1024,
            max_headers: 64,
            max_body: 8 * 1024 * 1024,
            timeout: Duration::from_secs(60),
            head_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
        }));
        let idle = Arc::new(idle::Idle::default());
        let cap = default_cap();
        idle.cap.store(cap, Ordering::Relaxed);
        let handler: Arc<Handler> = Arc::new(move |req| handler(req).map(Into::into));
        let (l, i, full) = (limits.clone(), idle.clone(), idle.clone());
        let stream = StreamServer::bind(addr, move |conn, peer| {
            let limits = *lock(&l);
            let member = i.join();
            let local = conn.local_addr().unwrap_or(peer);
            let info = ConnInfo { peer, local };
            conn::Connection::new(conn, info, limits, &*handler, &member).serve();
        })?
        .max_connections(cap)
        .on_full(Arc::new(move || full.evict()));
        Ok(Server {
            stream,
            limits,
            idle,
        })
    }

    fn set(self, f: impl FnOnce(&mut Limits)) -> Server {
        f(&mut lock(&self.limits));
        self
    }

    /// Largest request head (request line and headers) in bytes; default 16 KiB (431 above).
    pub fn max_head_bytes(self, n: usize) -> Server {
        self.set(|l| l.max_head = n)
    }

    /// Most headers in a request; default 64 (431 above).
    pub fn max_headers(self, n: usize) -> Server {
        self.set(|l| l.max_headers = n)
    }

    /// Largest request body in bytes; default 8 MiB (413 above).
    pub fn max_body_bytes(self, n: usize) -> Server {
        self.set(|l| l.max_body = n)
    }

    /// How long a connection may stay silent (between or within requests) before it is
    /// closed; default 60 s.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    pub fn timeout(self, d: Duration) -> Server {
        self.set(|l| l.timeout = d)
    }

    /// How long a client may take to send a whole request head, from its first byte; default
    /// 30 s. A head still incomplete then gets **408** and the connection closes, however
    /// steadily its bytes trickle in (slowloris: the idle [`timeout`](Self::timeout) alone
    /// restarts at every byte).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use greenlet::http::{Response, Server};
    ///
    /// let server = Server::bind("127.0.0.1:0", |_| Response::new("hi"))?
    ///     .head_timeout(Duration::from_secs(10))
    ///     .body_timeout(Duration::from_secs(20))
    ///     .write_timeout(Duration::from_secs(10));
    /// server.start()?;
    /// server.stop(Duration::from_secs(1));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn head_timeout(self, d: Duration) -> Server {
        self.set(|l| l.head_timeout = d)
    }

    /// How long a client may take to send a request's whole body, from the end of its head;
    /// default 60 s. A body still incomplete then gets **408** and the connection closes.
    pub fn body_timeout(self, d: Duration) -> Server {
        self.set(|l| l.body_timeout = d)
    }

    /// How long one write of a response may wait for the client to read; default 30 s. A
    /// client that stops reading then loses the connection instead of holding its greenlet.
    pub fn write_timeout(self, d: Duration) -> Server {
        self.set(|l| l.write_timeout = d)
    }

    /// Most connections served at once (0: no limit); see
    /// [`StreamServer::max_connections`]. The default is the process's descriptor limit
    /// (`RLIMIT_NOFILE` when the server is bound) less a quarter (at least 64) kept in
    /// reserve. When the cap is reached, the connection idle the longest (waiting for its
    /// next request, or for its first) is closed to make room: a flood of idle connections
    /// cannot lock other clients out. Set it before [`start`](Self::start).
    pub fn max_connections(self, n: usize) -> Server {
        self.idle.cap.store(n, Ordering::Relaxed);
        Server {
            stream: self.stream.max_connections(n),
            ..self
        }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr()
    }

    /// Open connections (each served by its own greenlet).
    pub fn connections(&self) -> usize {
        self.stream.connections()
    }

    /// Starts serving in the background.
    ///
    /// # Errors
    ///
    /// As [`StreamServer::start`].
    pub fn start(&self) -> io::Result<()> {
        self.stream.start()
    }

    /// Serves until stopped.
    ///
    /// # Errors
    ///
    /// As [`StreamServer::serve_forever`].
    pub fn serve_forever(&self) -> io::Result<()> {
        self.stream.serve_forever()
    }

    /// Stops: closes the listener and the idle keep-alive connections at once, lets requests
    /// in flight finish within `grace`, then kills what is left. Returns how many connections
    /// had to be killed.
    pub fn stop(&self, grace: Duration) -> usize {
        self.idle.stop();
        self.stream.stop(grace)
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}
