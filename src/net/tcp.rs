//! `TcpStream` and `TcpListener`: may's cooperative sockets with std's API, cooperative name
//! resolution, `Read`/`Write` for `&TcpStream`, and std's error kinds.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::addr::{ToSocketAddrs, each_addr};
use super::registered::{Again, Registered, register_fd};
use super::wait::{self, Interest, IoTimeout};

/// A TCP connection whose blocking calls park only the calling greenlet (gevent's socket).
///
/// It has the API of [`std::net::TcpStream`]. Reads and writes that would block park the
/// greenlet until the socket is ready or its time-out passes; from a plain thread they block
/// the thread.
///
/// # Sharing between greenlets
///
/// `Read` and `Write` are also implemented for `&TcpStream`, so one greenlet can read while
/// another writes through a shared reference (for example an `Arc<TcpStream>`). Two greenlets
/// reading (or two writing) at the same moment get an [`io::ErrorKind::ResourceBusy`] error
/// instead of corrupting each other's data (gevent raises `ConcurrentObjectUseError`).
///
/// # Errors
///
/// As std's, with these kinds: `ConnectionRefused` when nothing listens, `TimedOut` when a
/// read, write or connect time-out passes, `ConnectionReset` when the peer resets,
/// `UnexpectedEof` from `read_exact` when the peer closes early.
///
/// # Kill safety
///
/// A kill while a read, write or connect is parked ends the greenlet at once. Bytes already
/// read into the caller's buffer are lost with the greenlet; the stream itself stays usable
/// by whoever else holds it.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use greenlet::net::{TcpListener, TcpStream};
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// let echo = greenlet::spawn(move || -> std::io::Result<()> {
///     let (mut conn, _) = listener.accept()?;
///     std::io::copy(&mut conn.try_clone()?, &mut conn)?;
///     Ok(())
/// });
/// let mut client = TcpStream::connect(addr)?;
/// client.write_all(b"ping")?;
/// client.shutdown(std::net::Shutdown::Write)?;
/// let mut reply = String::new();
/// client.read_to_string(&mut reply)?;
/// assert_eq!(reply, "ping");
/// echo.get()??;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TcpStream {
    inner: Registered<may::net::TcpStream>,
    /// A read through `&TcpStream` is in progress.
    reading: AtomicBool,
    /// A clone with its own readiness registration, for writes through `&TcpStream`.
    writer: OnceLock<Writer>,
    /// The time-outs, kept here rather than by may (see `net::wait`).
    read_timeout: IoTimeout,
    write_timeout: IoTimeout,
    /// One waiter at a time on `inner`'s registration (`peek` and reads through `&TcpStream`).
    gate: wait::Gate,
}

/// The clone that writes through `&TcpStream` go to (its own registration), one at a time.
struct Writer {
    /// A write through `&TcpStream` is in progress.
    busy: AtomicBool,
    io: Registered<may::net::TcpStream>,
}

/// std refuses a zero time-out instead of treating it as "none"; so do we.
pub(crate) fn check_timeout(d: Option<Duration>) -> io::Result<()> {
    if d == Some(Duration::ZERO) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot set a 0 duration timeout",
        ));
    }
    Ok(())
}

fn busy(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        format!("another greenlet is already {what} this TcpStream"),
    )
}

impl TcpStream {
    /// Registers a std socket (accepted, or connecting) with may's event loop, on the calling
    /// greenlet's worker.
    pub(crate) fn from_std(s: std::net::TcpStream) -> io::Result<TcpStream> {
        register_fd(s.into(), "connection").map(TcpStream::from_may)
    }

    pub(crate) fn from_may(inner: may::net::TcpStream) -> TcpStream {
        TcpStream {
            inner: Registered::new(inner),
            reading: AtomicBool::new(false),
            writer: OnceLock::new(),
            read_timeout: IoTimeout::default(),
            write_timeout: IoTimeout::default(),
            gate: wait::Gate::default(),
        }
    }

    /// Opens a connection to `addr`, resolving host names without blocking the worker and
    /// trying each address in turn.
    ///
    /// # Errors
    ///
    /// The last address's error (`ConnectionRefused`, ...), or the resolver's.
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        crate::config::ensure_started();
        each_addr(&addr, |a| TcpStream::connect_until(&a, None))
    }

    /// Opens a connection to `addr`, failing with `TimedOut` if it is not established within
    /// `timeout`.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    ///
    /// # Errors
    ///
    /// `TimedOut` after `timeout`; `InvalidInput` for a zero `timeout`; otherwise as
    /// [`connect`](Self::connect).
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        check_timeout(Some(timeout))?;
        crate::config::ensure_started();
        TcpStream::connect_until(addr, crate::deadline::deadline(timeout))
    }

    /// Connects to `addr`, failing with `TimedOut` once `deadline` passes. A non-blocking
    /// connect and the crate's own wait for its outcome: may's `connect_timeout` keeps the
    /// time-out in its socket timer, which resumes the connecting greenlet inside the worker's
    /// event loop, where whatever it wakes then waits for the worker's next `epoll_wait` to
    /// time out (`docs/upstream.md`, item 10).
    fn connect_until(
        addr: &SocketAddr,
        deadline: Option<std::time::Instant>,
    ) -> io::Result<TcpStream> {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(*addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        sock.set_nonblocking(true)?;
        match sock.connect(&(*addr).into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let stream = TcpStream::from_std(sock.into())?;
        let sys = stream.sys();
        wait::io_until(
            "TcpStream::connect",
            &stream.inner,
            None,
            Interest::Write,
            deadline,
            || match sys.take_error()? {
                Some(e) => Err(e),
                None => match sys.peer_addr() {
                    Ok(_) => Ok(()),
                    // Still in progress.
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    Err(e) => Err(e),
                },
            },
        )?;
        Ok(stream)
    }

    /// The remote address.
    ///
    /// # Errors
    ///
    /// As [`std::net::TcpStream::peer_addr`] (e.g. `NotConnected`).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// As [`std::net::TcpStream::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Shuts down the read half, the write half or both. Shutting down the read half wakes a
    /// greenlet parked in a read (it reads end of file).
    ///
    /// # Errors
    ///
    /// As [`std::net::TcpStream::shutdown`].
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm).
    ///
    /// # Errors
    ///
    /// As [`std::net::TcpStream::set_nodelay`].
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.set_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    ///
    /// # Errors
    ///
    /// As [`std::net::TcpStream::nodelay`].
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.inner().nodelay()
    }

    /// Sets the IP time-to-live.
    ///
    /// # Errors
    ///
    /// As [`std::net::TcpStream::set_ttl`].
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.set_ttl(ttl)
    }

    /// The IP time-to-live.
    ///
    /// # Errors
    ///
    /// As [`std::net::TcpStream::ttl`].
    pub fn ttl(&self) -> io::Result<u32> {
        self.inner.ttl()
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    ///
    /// # Errors
    ///
    /// As [`std::net::TcpStream::take_error`].
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.take_error()
    }

    wait::socket_timeouts!();

    /// Reads without consuming: waits (parks) until data is available.
    ///
    /// # Errors
    ///
    /// As [`read`](Read::read).
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = self.read_timeout.get();
        let sys = self.sys();
        wait::io(
            "TcpStream::peek",
            &self.inner,
            Some(&self.gate),
            Interest::Read,
            timeout,
            || sys.peek(buf),
        )
    }

    /// The std socket underneath (non-blocking), for the crate's own waits (`net::wait`).
    fn sys(&self) -> &std::net::TcpStream {
        self.inner.inner()
    }

    /// A second handle to the same connection (a duplicated descriptor), with the same
    /// time-outs. Each handle can be used by its own greenlet.
    ///
    /// # Errors
    ///
    /// As [`std::net::TcpStream::try_clone`] (e.g. out of file descriptors).
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        let mut clone = TcpStream::from_std(self.inner.inner().try_clone()?)?;
        clone.read_timeout = self.read_timeout.copy();
        clone.write_timeout = self.write_timeout.copy();
        Ok(clone)
    }

    /// Whether the connection is open and idle: a non-blocking read finds neither end of file,
    /// nor an error, nor unasked-for data. (Used to vet pooled HTTP connections.)
    pub(crate) fn probe_open(&self) -> bool {
        let sys: &std::net::TcpStream = self.inner.inner();
        matches!((&*sys).read(&mut [0]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    fn shared_writer(&self) -> io::Result<&Writer> {
        if let Some(w) = self.writer.get() {
            return Ok(w);
        }
        let clone = self.inner.again()?;
        // If another greenlet raced us here, keep its clone and drop ours.
        Ok(self.writer.get_or_init(|| Writer {
            busy: AtomicBool::new(false),
            io: Registered::new(clone),
        }))
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = self.read_timeout.get();
        let sys = self.sys();
        wait::io(
            "TcpStream::read",
            &self.inner,
            None,
            Interest::Read,
            timeout,
            || (&*sys).read(buf),
        )
    }
}

impl TcpStream {
    /// A write (`op` on the non-blocking socket) through the crate's wait, with the write
    /// time-out. Only through `&mut self`: nobody else waits on the registration.
    fn writing(
        &mut self,
        mut op: impl FnMut(&std::net::TcpStream) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let sys = self.sys();
        wait::io(
            "TcpStream::write",
            &self.inner,
            None,
            Interest::Write,
            self.write_timeout.get(),
            || op(sys),
        )
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writing(|mut s| s.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.writing(|mut s| s.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Clears an "a shared read (or write) is in progress" flag, also when the greenlet is killed.
struct Reading<'a>(&'a AtomicBool);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.reading.swap(true, Ordering::AcqRel) {
            return Err(busy("reading from"));
        }
        let _reading = Reading(&self.reading);
        let sys = self.sys();
        wait::io(
            "TcpStream::read",
            &self.inner,
            // A `peek` can wait beside it.
            Some(&self.gate),
            Interest::Read,
            self.read_timeout.get(),
            || (&*sys).read(buf),
        )
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let writer = self.shared_writer()?;
        if writer.busy.swap(true, Ordering::AcqRel) {
            return Err(busy("writing to"));
        }
        let _writing = Reading(&writer.busy);
        let timeout = self.write_timeout.get();
        let sys: &std::net::TcpStream = writer.io.inner();
        wait::io(
            "TcpStream::write",
            &writer.io,
            None,
            Interest::Write,
            timeout,
            || (&*sys).write(buf),
        )
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.inner().as_fd()
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TcpStream");
        if let Ok(addr) = self.local_addr() {
            d.field("local", &addr);
        }
        if let Ok(addr) = self.peer_addr() {
            d.field("peer", &addr);
        }
        d.field("fd", &self.as_raw_fd()).finish()
    }
}

/// A TCP listening socket whose `accept` parks only the calling greenlet.
///
/// Binding a port that is in use fails with `AddrInUse`, as with std. (may's own listener
/// sets `SO_REUSEPORT` and would silently share the port with another such listener; `bind`
/// checks the port with a plain listener first.)
///
/// # Kill safety
///
/// A kill while parked in `accept` ends the greenlet; no connection is taken from the queue.
///
/// # Examples
///
/// ```
/// use greenlet::net::{TcpListener, TcpStream};
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// let client = greenlet::spawn(move || TcpStream::connect(addr).map(|_| ()));
/// let (_conn, peer) = listener.accept()?;
/// assert!(peer.ip().is_loopback());
/// client.get()??;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TcpListener {
    inner: Registered<may::net::TcpListener>,
    /// One waiter at a time on the registration; other acceptors queue (`net::wait`).
    gate: wait::Gate,
}

impl TcpListener {
    /// Binds to `addr` (host names are resolved cooperatively; the first address that binds
    /// wins) and listens with a backlog of 1,024.
    ///
    /// # Errors
    ///
    /// `AddrInUse`, `PermissionDenied`, ... as std, or the resolver's error.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        crate::config::ensure_started();
        each_addr(&addr, |a| {
            // As may's bind, without its SO_REUSEPORT (which would silently share a port that
            // is in use by another such listener: here that is `AddrInUse`, as with std).
            let sock = socket2::Socket::new(
                socket2::Domain::for_address(a),
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            sock.set_reuse_address(true)?;
            sock.bind(&a.into())?;
            sock.listen(1024)?;
            Ok(TcpListener {
                inner: Registered::new(register_fd(sock.into(), "listener")?),
                gate: wait::Gate::default(),
            })
        })
    }

    /// Waits (parks) for the next connection.
    ///
    /// # Errors
    ///
    /// As [`std::net::TcpListener::accept`]; e.g. `EMFILE` when out of file descriptors.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, a) = self.accept_std()?;
        Ok((TcpStream::from_std(s)?, a))
    }

    /// [`accept`](Self::accept), the connection not yet registered: a server registers it in
    /// the handler's greenlet, on that greenlet's worker.
    pub(crate) fn accept_std(&self) -> io::Result<(std::net::TcpStream, SocketAddr)> {
        // Through the crate's own wait (`net::wait`), not may's `accept`: may decides whether
        // to raise a kill from `thread::panicking()`, per OS thread, so a greenlet killed in
        // `accept` beside one parked mid-unwind on its worker never saw the kill and retried
        // the accept in a loop, holding the worker for good.
        let sys = self.inner.inner();
        wait::io(
            "TcpListener::accept",
            &self.inner,
            Some(&self.gate),
            Interest::Read,
            None,
            || sys.accept(),
        )
    }

    /// An endless iterator over accepted connections.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The local address (with the port chosen, when bound to port 0).
    ///
    /// # Errors
    ///
    /// As [`std::net::TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// A second handle to the same listening socket.
    ///
    /// # Errors
    ///
    /// As [`std::net::TcpListener::try_clone`].
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        Ok(TcpListener {
            inner: Registered::new(self.inner.again()?),
            gate: wait::Gate::default(),
        })
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    ///
    /// # Errors
    ///
    /// As [`std::net::TcpListener::take_error`].
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.take_error()
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.inner().as_fd()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TcpListener");
        if let Ok(addr) = self.local_addr() {
            d.field("addr", &addr);
        }
        d.field("fd", &self.as_raw_fd()).finish()
    }
}

/// The iterator returned by [`TcpListener::incoming`]; it never ends.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;

    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}
