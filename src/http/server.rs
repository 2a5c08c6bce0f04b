//! `http::Server`: HTTP/1.1 with keep-alive and pipelining, one greenlet per connection
//! (gevent's pywsgi), with size limits, time-outs, panic isolation and graceful stop.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::greenlet::GreenletRef;
use crate::net::{TcpStream, ToSocketAddrs};
use crate::server::StreamServer;
use crate::sync::lock;

/// A parsed request: method, path, headers and the whole body.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    path: String,
    version: u8,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    peer: SocketAddr,
}

impl Request {
    /// The method, e.g. `GET`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target, e.g. `/search?q=x` (for a proxy: `http://host/path`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The first header with this name (case-insensitive), if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Every header, in order, as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The body (empty without `Content-Length`).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }
}

/// A response: status, headers and body, written to the socket in one piece.
///
/// `Content-Length` (and `Connection: close` when the connection ends) is added for you.
///
/// # Examples
///
/// ```
/// use greenlet::http::Response;
///
/// let r = Response::new(201).header("Location", "/items/7").body("created");
/// assert_eq!(r.status(), 201);
/// ```
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with this status.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `200 OK` with a body.
    pub fn ok(body: impl Into<Vec<u8>>) -> Response {
        Response::new(200).body(body)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Appends the encoded response (head and body in one buffer: no Nagle stall).
    fn encode(&self, close: bool, out: &mut Vec<u8>) {
        use std::fmt::Write as _;
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (n, v) in &self.headers {
            let _ = write!(head, "{n}: {v}\r\n");
        }
        let _ = write!(head, "Content-Length: {}\r\n", self.body.len());
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&self.body);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync + 'static;

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

/// Connections parked between requests, so that `stop` can close them at once.
#[derive(Default)]
struct Idle {
    stopping: AtomicBool,
    waiting: Mutex<HashMap<u64, GreenletRef>>,
}

/// An HTTP/1.1 server (gevent's pywsgi): `handler(&Request) -> Response` runs in the
/// connection's greenlet, in plain blocking style.
///
/// - Keep-alive and pipelining: requests on one connection are answered in order; the
///   connection stays open unless the client asks otherwise (or speaks HTTP/1.0).
/// - Limits, each configurable, enforced here while reading (not by the handler): a request
///   head over [`max_head_bytes`](Self::max_head_bytes) or with more than
///   [`max_headers`](Self::max_headers) headers gets **431**; a body over
///   [`max_body_bytes`](Self::max_body_bytes) gets **413**; a malformed request gets **400**;
///   a chunked request body gets **501**; each then closes the connection. A connection that
///   sends nothing for [`timeout`](Self::timeout) is closed.
/// - Framing is checked as hyper and nginx check it (RFC 9112 §6.3, §3.2), so that no front
///   end can read a different request out of the same bytes: **400** for a `Content-Length`
///   that is not plain digits (`+5`, `0x5`, `5,5`, Unicode spaces), for two that differ, for
///   `Content-Length` with `Transfer-Encoding`, and for an HTTP/1.1 request without exactly one
///   `Host` (HTTP/1.0: at most one).
/// - Deadlines that a trickling client cannot stretch: a whole request head within
///   [`head_timeout`](Self::head_timeout) (30 s) and its body within
///   [`body_timeout`](Self::body_timeout) (60 s), else **408**; each response write within
///   [`write_timeout`](Self::write_timeout) (30 s), else the connection closes.
/// - A handler that panics gets its request a **500**; the connection and the server go on.
/// - Responses are written head and body in one buffer on `TCP_NODELAY` sockets (pywsgi's
///   two writes and Nagle cost it 8–12×).
/// - [`stop`](Self::stop) closes the listener and idle keep-alive connections at once, lets
///   requests in flight finish for a grace period, then kills the rest.
/// - Each request is logged through `log` at debug level (peer, method, path, status, size,
///   time).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use greenlet::http::{Response, Server};
///
/// let server = Server::bind("127.0.0.1:0", |req| {
///     Response::ok(format!("hello {}", req.path())).header("Content-Type", "text/plain")
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
    idle: Arc<Idle>,
}

impl Server {
    /// Binds to `addr`; nothing is served until [`start`](Self::start) or
    /// [`serve_forever`](Self::serve_forever).
    ///
    /// # Errors
    ///
    /// As [`TcpListener::bind`](crate::net::TcpListener::bind).
    pub fn bind<A, H>(addr: A, handler: H) -> io::Result<Server>
    where
        A: ToSocketAddrs,
        H: Fn(&Request) -> Response + Send + Sync + 'static,
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
        let idle = Arc::new(Idle::default());
        let handler: Arc<Handler> = Arc::new(handler);
        let (l, i) = (limits.clone(), idle.clone());
        let stream = StreamServer::bind(addr, move |conn, peer| {
            let limits = *lock(&l);
            Connection::new(conn, peer, limits, &*handler, &i).serve();
        })?;
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
    /// let server = Server::bind("127.0.0.1:0", |_| Response::ok("hi"))?
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
    /// [`StreamServer::max_connections`].
    pub fn max_connections(self, n: usize) -> Server {
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
        self.idle.stopping.store(true, Ordering::SeqCst);
        let idle: Vec<GreenletRef> = {
            let waiting = lock(&self.idle.waiting);
            waiting.values().cloned().collect()
        };
        for g in &idle {
            g.kill_nowait();
        }
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

/// What reading the next request gave.
enum Next {
    Request(Request, usize),
    /// Answer with this status and close.
    Reject(u16),
    Closed,
}

/// What the buffer holds so far.
enum Parsed {
    Done(Next),
    /// Part of a request head.
    NeedHead,
    /// A whole head, part of its body.
    NeedBody,
}

/// How a read ended.
enum ReadEnd {
    More,
    /// End of file, an error, or the idle time-out: the connection closes.
    Closed,
    /// The head's or the body's deadline passed.
    Late,
}

struct Connection<'a> {
    conn: TcpStream,
    peer: SocketAddr,
    limits: Limits,
    handler: &'a Handler,
    idle: &'a Idle,
    buf: Vec<u8>,
    out: Vec<u8>,
    /// When the request being read must be complete: its head's deadline, then its body's.
    deadline: Option<Instant>,
    /// Whether `deadline` is the body's.
    body_deadline: bool,
    /// The socket's read time-out now (it changes only near a deadline).
    read_timeout: Duration,
}

impl<'a> Connection<'a> {
    fn new(
        conn: TcpStream,
        peer: SocketAddr,
        limits: Limits,
        handler: &'a Handler,
        idle: &'a Idle,
    ) -> Self {
        Connection {
            conn,
            peer,
            limits,
            handler,
            idle,
            buf: Vec::with_capacity(4096),
            out: Vec::with_capacity(4096),
            deadline: None,
            body_deadline: false,
            read_timeout: limits.timeout.max(Duration::from_nanos(1)),
        }
    }

    fn serve(mut self) {
        if self
            .conn
            // A zero idle time-out closes a silent connection as soon as possible (std refuses
            // a zero socket time-out).
            .set_read_timeout(Some(self.read_timeout))
            .is_err()
            || self
                .conn
                .set_write_timeout(Some(self.limits.write_timeout.max(Duration::from_nanos(1))))
                .is_err()
        {
            return;
        }
        loop {
            match self.next_request() {
                Next::Request(req, used) => {
                    self.buf.drain(..used);
                    self.deadline = None;
                    self.body_deadline = false;
                    let close = wants_close(&req) || self.idle.stopping.load(Ordering::SeqCst);
                    let started = Instant::now();
                    let response = self.call(&req);
                    response.encode(close, &mut self.out);
                    log::debug!(
                        "{} \"{} {}\" {} {} {:?}",
                        self.peer,
                        req.method,
                        req.path,
                        response.status,
                        response.body.len(),
                        started.elapsed()
                    );
                    if close {
                        let _ = self.flush();
                        return;
                    }
                }
                Next::Reject(status) => {
                    log::debug!("{}: rejected with {status}", self.peer);
                    Response::new(status).encode(true, &mut self.out);
                    let _ = self.flush();
                    return;
                }
                Next::Closed => {
                    let _ = self.flush();
                    return;
                }
            }
        }
    }

    /// Runs the handler; a panic becomes a 500 for this request only. A kill (the server
    /// stopping) is not a panic: it goes on unwinding the connection's greenlet.
    fn call(&self, req: &Request) -> Response {
        catch_unwind(AssertUnwindSafe(|| (self.handler)(req))).unwrap_or_else(|p| {
            if crate::panic::is_cancel(&*p) {
                std::panic::resume_unwind(p);
            }
            log::error!(
                "{}: handler panicked on \"{} {}\": {}",
                self.peer,
                req.method,
                req.path,
                crate::panic::message(&*p)
            );
            Response::new(500).body("internal server error")
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.conn.write_all(&self.out);
        self.out.clear();
        r
    }

    /// Parses the next request from the buffer, reading more as needed.
    fn next_request(&mut self) -> Next {
        loop {
            let deadline = match self.parse() {
                Parsed::Done(next) => return next,
                Parsed::NeedHead if self.buf.is_empty() => None,
                Parsed::NeedHead => Some(self.deadline(false)),
                Parsed::NeedBody => Some(self.deadline(true)),
            };
            // Pipelined responses go out before we wait for more input.
            if !self.out.is_empty() && self.flush().is_err() {
                return Next::Closed;
            }
            match self.read_more(deadline) {
                ReadEnd::More => {}
                ReadEnd::Closed => return Next::Closed,
                ReadEnd::Late => return Next::Reject(408),
            }
        }
    }

    /// The deadline of the head being read (`body` false) or of its body, set when first
    /// asked for.
    fn deadline(&mut self, body: bool) -> Instant {
        match self.deadline {
            Some(d) if self.body_deadline == body => d,
            _ => {
                let limit = if body {
                    self.limits.body_timeout
                } else {
                    self.limits.head_timeout
                };
                let d = crate::deadline::deadline(limit)
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
                self.deadline = Some(d);
                self.body_deadline = body;
                d
            }
        }
    }

    /// One read, waiting at most for the idle time-out and until `deadline`.
    fn read_more(&mut self, deadline: Option<Instant>) -> ReadEnd {
        let idle = self.buf.is_empty();
        let mut wait = self.limits.timeout.max(Duration::from_nanos(1));
        if let Some(d) = deadline {
            match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => wait = wait.min(left),
                _ => return ReadEnd::Late,
            }
        }
        // Changed only near a deadline: a request that arrives whole never gets here.
        if wait != self.read_timeout {
            if self.conn.set_read_timeout(Some(wait)).is_err() {
                return ReadEnd::Closed;
            }
            self.read_timeout = wait;
        }
        if idle && !self.mark_idle(true) {
            return ReadEnd::Closed;
        }
        let mut chunk = [0; 8192];
        let r = self.conn.read(&mut chunk);
        if idle {
            self.mark_idle(false);
        }
        match r {
            Ok(0) => ReadEnd::Closed,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                ReadEnd::More
            }
            Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => ReadEnd::Late,
            Err(_) => ReadEnd::Closed,
        }
    }

    /// Registers (or unregisters) this connection as idle; `false` if the server is stopping.
    fn mark_idle(&self, idle: bool) -> bool {
        let Some(me) = crate::current() else {
            return true;
        };
        let mut waiting = lock(&self.idle.waiting);
        if !idle {
            waiting.remove(&me.id());
            return true;
        }
        if self.idle.stopping.load(Ordering::SeqCst) {
            return false;
        }
        waiting.insert(me.id(), me);
        true
    }

    /// What the buffer holds: a whole request or a reason to reject, or part of one.
    fn parse(&self) -> Parsed {
        // No allocation per attempt for the usual limits; a larger one gets a heap buffer.
        const ON_STACK: usize = 64;
        let mut stack = [httparse::EMPTY_HEADER; ON_STACK];
        let mut heap = Vec::new();
        let headers: &mut [httparse::Header<'_>] = if self.limits.max_headers <= ON_STACK {
            &mut stack[..self.limits.max_headers]
        } else {
            heap.resize(self.limits.max_headers, httparse::EMPTY_HEADER);
            &mut heap
        };
        let mut parsed = httparse::Request::new(headers);
        let head_len = match parsed.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if self.buf.len() > self.limits.max_head => {
                return Parsed::Done(Next::Reject(431));
            }
            Ok(httparse::Status::Partial) => return Parsed::NeedHead,
            Err(httparse::Error::TooManyHeaders) => return Parsed::Done(Next::Reject(431)),
            Err(_) => return Parsed::Done(Next::Reject(400)),
        };
        if head_len > self.limits.max_head {
            return Parsed::Done(Next::Reject(431));
        }
        let version = parsed.version.unwrap_or(1);
        let Some(length) = framing(parsed.headers, version) else {
            return Parsed::Done(Next::Reject(400));
        };
        let length = match length {
            Framing::Length(n) => n,
            Framing::Chunked => return Parsed::Done(Next::Reject(501)),
        };
        if length > self.limits.max_body {
            return Parsed::Done(Next::Reject(413));
        }
        if self.buf.len() < head_len + length {
            return Parsed::NeedBody;
        }
        let request = Request {
            method: parsed.method.unwrap_or_default().to_owned(),
            path: parsed.path.unwrap_or_default().to_owned(),
            version,
            headers: parsed
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect(),
            body: self.buf[head_len..head_len + length].to_vec(),
            peer: self.peer,
        };
        Parsed::Done(Next::Request(request, head_len + length))
    }
}

/// How a request's body is delimited.
enum Framing {
    Length(usize),
    Chunked,
}

/// The body's framing from the head's headers, or `None` for a request to refuse with 400
/// (RFC 9112 §6.3, §3.2; as hyper and nginx refuse them):
/// - `Content-Length` must be `1*DIGIT` (no sign, no inner spaces, no other whitespace than
///   the optional spaces and tabs around it) and fit in `usize`; several must all be equal
///   (two that differ are a request-smuggling vector: a front end using the other one reads a
///   different body);
/// - `Transfer-Encoding` together with `Content-Length` is refused;
/// - an HTTP/1.1 request must carry exactly one `Host`, an HTTP/1.0 one at most one.
fn framing(headers: &[httparse::Header<'_>], version: u8) -> Option<Framing> {
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut hosts = 0;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value)?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
        }
    }
    let hosts_ok = if version == 1 { hosts == 1 } else { hosts <= 1 };
    if !hosts_ok || (chunked && length.is_some()) {
        return None;
    }
    Some(if chunked {
        Framing::Chunked
    } else {
        Framing::Length(length.unwrap_or(0))
    })
}

/// A `Content-Length` value: `1*DIGIT` between optional spaces and tabs.
fn content_length(value: &[u8]) -> Option<usize> {
    let start = value.iter().position(|b| !matches!(b, b' ' | b'\t'))?;
    let end = value.iter().rposition(|b| !matches!(b, b' ' | b'\t'))? + 1;
    let digits = &value[start..end];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Whether the connection ends after this request (HTTP/1.0 without keep-alive, or
/// `Connection: close`).
fn wants_close(req: &Request) -> bool {
    match req.header("connection").map(str::to_ascii_lowercase) {
        Some(c) if c.contains("close") => true,
        Some(c) if c.contains("keep-alive") => false,
        _ => req.version == 0,
    }
}
