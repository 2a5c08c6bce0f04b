//! Unix-domain sockets: std's, registered with may, waited on through the crate's own wait.
//!
//! Like the TCP and UDP types, every operation is the non-blocking std call followed, when it
//! would block, by [`wait::io`]: time-outs are the crate's (exact, never early), kills are
//! delivered by the crate, and may's own socket operations, with their timers and their
//! `subscribe` use-after-free window (`docs/upstream.md`, items 9 and 13), are never used.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{self as std_unix, SocketAddr};
use std::path::Path;
use std::time::Duration;

use may::io::{AsIoData, CoIo, IoData};

use super::registered::Registered;
use super::wait::{self, Interest, IoTimeout};

/// A descriptor that may's `CoIo` watches without owning it.
struct Watched(RawFd);

impl AsRawFd for Watched {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// A std socket and its may registration. The registration is declared first, so it is
/// dropped first: may's `EPOLL_CTL_DEL` runs while the descriptor is still open. (A `CoIo`
/// that owns its socket closes it before deregistering; with a `try_clone`d handle keeping
/// the socket open, epoll would then keep watching it for a registration may has freed.)
struct Sock<S: AsRawFd> {
    io: CoIo<Watched>,
    sock: S,
}

impl<S: AsRawFd + From<OwnedFd> + Into<OwnedFd>> Sock<S> {
    /// Registers `sock` (and makes it non-blocking), on the calling greenlet's worker.
    fn new(sock: S) -> io::Result<Sock<S>> {
        crate::config::ensure_started();
        let sock = S::from(crate::deadline::home::place_fd(sock.into()));
        let io = CoIo::new(Watched(sock.as_raw_fd())).map_err(io::Error::from)?;
        Ok(Sock { io, sock })
    }
}

macro_rules! again_via_try_clone {
    ($($t:ty),*) => {$(
        impl super::registered::Again for Sock<$t> {
            fn again(&self) -> io::Result<Self> {
                Sock::new(self.sock.try_clone()?)
            }
        }
    )*};
}

again_via_try_clone!(
    std_unix::UnixStream,
    std_unix::UnixListener,
    std_unix::UnixDatagram
);

impl<S: AsRawFd> AsIoData for Sock<S> {
    fn as_io_data(&self) -> &IoData {
        self.io.as_io_data()
    }
}

impl<S: AsRawFd> AsRawFd for Sock<S> {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// `recv(2)` with `MSG_PEEK` on socket `fd`, non-blocking as the socket is (std's `peek` on
/// Unix sockets is unstable).
fn recv_peek(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes; `fd` is an open socket of the caller's.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

fn register<S: AsRawFd + From<OwnedFd> + Into<OwnedFd> + Send + 'static>(
    sock: S,
) -> io::Result<Registered<Sock<S>>> {
    Sock::new(sock).map(Registered::new)
}

/// A Unix-domain stream socket whose blocking calls park only the calling greenlet. The API is
/// [`std::os::unix::net::UnixStream`]'s.
///
/// # Errors
///
/// As std's; a read or write whose time-out passes fails with `TimedOut`.
///
/// # Kill safety
///
/// A kill while parked in a read or write ends the greenlet; what was already written stays
/// written.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use greenlet::net::UnixStream;
///
/// let (mut a, mut b) = UnixStream::pair()?;
/// let echo = greenlet::spawn(move || -> std::io::Result<()> {
///     let mut buf = [0; 4];
///     b.read_exact(&mut buf)?;
///     b.write_all(&buf)
/// });
/// a.write_all(b"ping")?;
/// let mut reply = [0; 4];
/// a.read_exact(&mut reply)?;
/// assert_eq!(&reply, b"ping");
/// echo.get()??;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct UnixStream {
    inner: Registered<Sock<std_unix::UnixStream>>,
    read_timeout: IoTimeout,
    write_timeout: IoTimeout,
    /// One waiter at a time for `peek` (through `&self`).
    gate: wait::Gate,
}

impl UnixStream {
    fn from_std(s: std_unix::UnixStream) -> io::Result<UnixStream> {
        Ok(UnixStream {
            inner: register(s)?,
            read_timeout: IoTimeout::default(),
            write_timeout: IoTimeout::default(),
            gate: wait::Gate::default(),
        })
    }

    /// Connects to the socket at `path`, without blocking the worker.
    ///
    /// # Errors
    ///
    /// As std: `NotFound` when nothing is bound there, `ConnectionRefused` when nothing listens.
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        use socket2::{Domain, SockAddr, Socket, Type};
        let addr = SockAddr::unix(path)?;
        let socket = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)?;
        socket.set_nonblocking(true)?;
        loop {
            match socket.connect(&addr) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The listener's backlog is full: Unix sockets report that as `EAGAIN` and
                // need the call again (nothing becomes writable); try every millisecond.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    crate::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e),
            }
        }
        UnixStream::from_std(std_unix::UnixStream::from(std::os::fd::OwnedFd::from(
            socket,
        )))
    }

    /// A connected pair of sockets.
    ///
    /// # Errors
    ///
    /// As std (e.g. out of file descriptors).
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = std_unix::UnixStream::pair()?;
        Ok((UnixStream::from_std(a)?, UnixStream::from_std(b)?))
    }

    /// A second handle to the same connection, with its own registration (and a copy of the
    /// time-outs): each handle can be used by its own greenlet.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        let mut clone = UnixStream::from_std(self.sys().try_clone()?)?;
        clone.read_timeout = self.read_timeout.copy();
        clone.write_timeout = self.write_timeout.copy();
        Ok(clone)
    }

    fn sys(&self) -> &std_unix::UnixStream {
        &self.inner.sock
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sys().local_addr()
    }

    /// The peer's address.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sys().peer_addr()
    }

    wait::socket_timeouts!();

    /// Reads without removing the data from the queue, waiting (parking) for some.
    ///
    /// # Errors
    ///
    /// `TimedOut` when the read time-out passes; otherwise as std.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.sys().as_raw_fd();
        wait::io(
            "UnixStream::peek",
            &self.inner,
            Some(&self.gate),
            Interest::Read,
            self.read_timeout.get(),
            || recv_peek(fd, buf),
        )
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.sys().take_error()
    }

    /// Shuts down the read half, the write half or both.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.sys().shutdown(how)
    }

    fn write_with(
        &mut self,
        what: &'static str,
        mut op: impl FnMut(&std_unix::UnixStream) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let timeout = self.write_timeout.get();
        let sys = &self.inner.sock;
        wait::io(what, &self.inner, None, Interest::Write, timeout, || {
            op(sys)
        })
    }
}

impl Read for UnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = self.read_timeout.get();
        let sys = &self.inner.sock;
        wait::io(
            "UnixStream::read",
            &self.inner,
            None,
            Interest::Read,
            timeout,
            || (&*sys).read(buf),
        )
    }
}

impl Write for UnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_with("UnixStream::write", |mut s| s.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_with("UnixStream::write", |mut s| s.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.sys().as_raw_fd()
    }
}

impl AsFd for UnixStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sys().as_fd()
    }
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("fd", &self.as_raw_fd())
            .finish_non_exhaustive()
    }
}

/// A Unix-domain listening socket whose `accept` parks only the calling greenlet. The API is
/// [`std::os::unix::net::UnixListener`]'s; several greenlets may accept on one listener.
///
/// # Kill safety
///
/// A kill while parked in `accept` ends the greenlet; no connection is taken.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use greenlet::net::{UnixListener, UnixStream};
///
/// let dir = std::env::temp_dir().join(format!("greenlet-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("sock");
/// let _ = std::fs::remove_file(&path);
/// let listener = UnixListener::bind(&path)?;
/// let server = greenlet::spawn(move || -> std::io::Result<()> {
///     let (mut conn, _) = listener.accept()?;
///     conn.write_all(b"hi")
/// });
/// let mut client = UnixStream::connect(&path)?;
/// let mut buf = [0; 2];
/// client.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"hi");
/// server.get()??;
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct UnixListener {
    inner: Registered<Sock<std_unix::UnixListener>>,
    /// One waiter at a time on the registration; the others queue (`net::wait`).
    gate: wait::Gate,
}

impl UnixListener {
    /// Binds to `path` and listens.
    ///
    /// # Errors
    ///
    /// As std: `AddrInUse` when a socket file already exists there.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        Ok(UnixListener {
            inner: register(std_unix::UnixListener::bind(path)?)?,
            gate: wait::Gate::default(),
        })
    }

    /// Waits (parks) for a connection.
    ///
    /// # Errors
    ///
    /// As std; e.g. `EMFILE` when out of file descriptors.
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let sys = &self.inner.sock;
        let (s, a) = wait::io(
            "UnixListener::accept",
            &self.inner,
            Some(&self.gate),
            Interest::Read,
            None,
            || sys.accept(),
        )?;
        Ok((UnixStream::from_std(s)?, a))
    }

    /// An endless iterator over accepted connections.
    pub fn incoming(&self) -> UnixIncoming<'_> {
        UnixIncoming { listener: self }
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.sock.local_addr()
    }

    /// A second handle to the same listener, with its own registration.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn try_clone(&self) -> io::Result<UnixListener> {
        Ok(UnixListener {
            inner: register(self.inner.sock.try_clone()?)?,
            gate: wait::Gate::default(),
        })
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.sock.take_error()
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.sock.as_raw_fd()
    }
}

impl AsFd for UnixListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.sock.as_fd()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("fd", &self.as_raw_fd())
            .finish_non_exhaustive()
    }
}

impl<'a> IntoIterator for &'a UnixListener {
    type Item = io::Result<UnixStream>;
    type IntoIter = UnixIncoming<'a>;

    fn into_iter(self) -> UnixIncoming<'a> {
        self.incoming()
    }
}

/// The iterator of [`UnixListener::incoming`]: each item is an `accept`.
///
/// # Examples
///
/// ```
/// use std::io::Write;
/// use greenlet::net::{UnixListener, UnixStream};
///
/// let dir = std::env::temp_dir().join(format!("greenlet-doc-inc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("sock");
/// let _ = std::fs::remove_file(&path);
/// let listener = UnixListener::bind(&path)?;
/// let server = greenlet::spawn(move || -> std::io::Result<()> {
///     for conn in listener.incoming().take(2) {
///         conn?.write_all(b"hi")?;
///     }
///     Ok(())
/// });
/// for _ in 0..2 {
///     let mut c = UnixStream::connect(&path)?;
///     let mut buf = Vec::new();
///     std::io::Read::read_to_end(&mut c, &mut buf)?;
///     assert_eq!(buf, b"hi");
/// }
/// server.get()??;
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct UnixIncoming<'a> {
    listener: &'a UnixListener,
}

impl Iterator for UnixIncoming<'_> {
    type Item = io::Result<UnixStream>;

    fn next(&mut self) -> Option<io::Result<UnixStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

/// A Unix-domain datagram socket whose receives (and sends, when the buffer is full) park
/// only the calling greenlet. The API is [`std::os::unix::net::UnixDatagram`]'s; all methods
/// take `&self`, so one socket can be shared.
///
/// # Kill safety
///
/// A kill while parked in a receive ends the greenlet; no datagram is taken.
///
/// # Examples
///
/// ```
/// use greenlet::net::UnixDatagram;
///
/// let (a, b) = UnixDatagram::pair()?;
/// a.send(b"hi")?;
/// let mut buf = [0; 8];
/// let n = greenlet::spawn(move || b.recv(&mut buf).map(|n| buf[..n].to_vec())).get()??;
/// assert_eq!(n, b"hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct UnixDatagram {
    inner: Registered<Sock<std_unix::UnixDatagram>>,
    read_timeout: IoTimeout,
    write_timeout: IoTimeout,
    /// One receiver at a time on the registration; the others queue (`net::wait`).
    gate: wait::Gate,
    /// Where sends wait (a second registration, made on the first send that would block).
    send_side: wait::SendSide<Sock<std_unix::UnixDatagram>>,
}

impl UnixDatagram {
    fn from_std(s: std_unix::UnixDatagram) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            inner: register(s)?,
            read_timeout: IoTimeout::default(),
            write_timeout: IoTimeout::default(),
            gate: wait::Gate::default(),
            send_side: wait::SendSide::default(),
        })
    }

    /// Binds to `path`.
    ///
    /// # Errors
    ///
    /// As std: `AddrInUse` when a socket file already exists there.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        UnixDatagram::from_std(std_unix::UnixDatagram::bind(path)?)
    }

    /// A socket bound to no address.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::from_std(std_unix::UnixDatagram::unbound()?)
    }

    /// A connected pair of sockets.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = std_unix::UnixDatagram::pair()?;
        Ok((UnixDatagram::from_std(a)?, UnixDatagram::from_std(b)?))
    }

    /// Sets the default peer for [`send`](Self::send) and [`recv`](Self::recv) (does not
    /// block).
    ///
    /// # Errors
    ///
    /// As std.
    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.inner.sock.connect(path)
    }

    /// A second handle to the same socket, with its own registration (and a copy of the
    /// time-outs).
    ///
    /// # Errors
    ///
    /// As std.
    pub fn try_clone(&self) -> io::Result<UnixDatagram> {
        let mut clone = UnixDatagram::from_std(self.inner.sock.try_clone()?)?;
        clone.read_timeout = self.read_timeout.copy();
        clone.write_timeout = self.write_timeout.copy();
        Ok(clone)
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.sock.local_addr()
    }

    /// The connected peer's address.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.sock.peer_addr()
    }

    /// Waits (parks) for a datagram; returns its length and sender.
    ///
    /// # Errors
    ///
    /// `TimedOut` when the read time-out passes; otherwise as std.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.wait("UnixDatagram::recv_from", Interest::Read, |s| {
            s.recv_from(buf)
        })
    }

    /// Waits (parks) for a datagram from the connected peer.
    ///
    /// # Errors
    ///
    /// `TimedOut` when the read time-out passes; otherwise as std.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.wait("UnixDatagram::recv", Interest::Read, |s| s.recv(buf))
    }

    /// Waits (parks) for a datagram and reads it without removing it from the queue.
    ///
    /// # Errors
    ///
    /// `TimedOut` when the read time-out passes; otherwise as std.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.wait("UnixDatagram::peek", Interest::Read, |s| {
            recv_peek(s.as_raw_fd(), buf)
        })
    }

    /// Sends a datagram to the socket at `path`.
    ///
    /// # Errors
    ///
    /// `TimedOut` when the write time-out passes; otherwise as std.
    pub fn send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        let path = path.as_ref();
        self.wait("UnixDatagram::send_to", Interest::Write, |s| {
            s.send_to(buf, path)
        })
    }

    /// Sends a datagram to the connected peer.
    ///
    /// # Errors
    ///
    /// `TimedOut` when the write time-out passes; otherwise as std.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.wait("UnixDatagram::send", Interest::Write, |s| s.send(buf))
    }

    wait::socket_timeouts!();

    /// Takes the pending socket error (`SO_ERROR`), if any.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.sock.take_error()
    }

    /// Shuts down the read half, the write half or both.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.sock.shutdown(how)
    }

    /// Runs `op` on the std socket (non-blocking) through the crate's wait, with the read or
    /// write time-out.
    fn wait<R>(
        &self,
        what: &'static str,
        interest: Interest,
        mut op: impl FnMut(&std_unix::UnixDatagram) -> io::Result<R>,
    ) -> io::Result<R> {
        match interest {
            Interest::Read => {
                let sys = &self.inner.sock;
                wait::io(
                    what,
                    &self.inner,
                    Some(&self.gate),
                    interest,
                    self.read_timeout.get(),
                    || op(sys),
                )
            }
            Interest::Write => {
                self.send_side
                    .send(what, &self.inner, self.write_timeout.get(), |s| op(&s.sock))
            }
        }
    }
}

impl AsRawFd for UnixDatagram {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.sock.as_raw_fd()
    }
}

impl AsFd for UnixDatagram {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.sock.as_fd()
    }
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixDatagram")
            .field("fd", &self.as_raw_fd())
            .finish_non_exhaustive()
    }
}
