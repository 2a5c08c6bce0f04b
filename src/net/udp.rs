//! `UdpSocket`: may's cooperative UDP socket with cooperative name resolution.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use super::addr::{ToSocketAddrs, each_addr};
use super::registered::{Again, Registered, register_fd};
use super::tcp::check_timeout;
use super::wait::{self, Interest, IoTimeout};

/// A UDP socket whose receives (and sends, when the buffer is full) park only the calling
/// greenlet. The API is [`std::net::UdpSocket`]'s; all methods take `&self`, so one socket
/// can be shared, e.g. in an `Arc`.
///
/// # Errors
///
/// As std's; a receive whose time-out passes fails with `TimedOut`.
///
/// # Kill safety
///
/// A kill while parked in a receive ends the greenlet; no datagram is taken.
///
/// # Examples
///
/// ```
/// use greenlet::net::UdpSocket;
///
/// let server = UdpSocket::bind("127.0.0.1:0")?;
/// let client = UdpSocket::bind("127.0.0.1:0")?;
/// client.send_to(b"hi", server.local_addr()?)?;
/// let mut buf = [0; 16];
/// let (n, from) = server.recv_from(&mut buf)?;
/// assert_eq!((&buf[..n], from), (&b"hi"[..], client.local_addr()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct UdpSocket {
    inner: Registered<may::net::UdpSocket>,
    /// The receive time-out, kept here rather than by may (see `net::wait`).
    read_timeout: IoTimeout,
    /// One receiver at a time on the registration; the others queue (`net::wait`).
    gate: wait::Gate,
    /// Where sends wait (a second registration, made on the first send that would block).
    send_side: wait::SendSide<may::net::UdpSocket>,
}

impl UdpSocket {
    /// Binds to `addr` (host names resolved cooperatively).
    ///
    /// # Errors
    ///
    /// `AddrInUse`, ... as std, or the resolver's error.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        crate::config::ensure_started();
        each_addr(&addr, |a| {
            Ok(UdpSocket {
                inner: Registered::new(register_fd(
                    std::net::UdpSocket::bind(a)?.into(),
                    "socket",
                )?),
                read_timeout: IoTimeout::default(),
                gate: wait::Gate::default(),
                send_side: wait::SendSide::default(),
            })
        })
    }

    /// Sets the default peer for [`send`](Self::send) and [`recv`](Self::recv).
    ///
    /// # Errors
    ///
    /// As std, or the resolver's error.
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        each_addr(&addr, |a| self.inner.connect(a))
    }

    /// Sends a datagram to `addr` (the first address it resolves to).
    ///
    /// # Errors
    ///
    /// As std, or the resolver's error.
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let to =
            addr.to_addrs()?.into_iter().next().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "no address to send to")
            })?;
        self.wait("UdpSocket::send_to", Interest::Write, |s| {
            s.send_to(buf, to)
        })
    }

    /// Waits (parks) for a datagram; returns its length and sender.
    ///
    /// # Errors
    ///
    /// `TimedOut` when the read time-out passes; otherwise as std.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.wait("UdpSocket::recv_from", Interest::Read, |s| s.recv_from(buf))
    }

    /// Sends to the connected peer.
    ///
    /// # Errors
    ///
    /// As std (e.g. `ConnectionRefused` after an ICMP port-unreachable).
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.wait("UdpSocket::send", Interest::Write, |s| s.send(buf))
    }

    /// Waits (parks) for a datagram from the connected peer.
    ///
    /// # Errors
    ///
    /// `TimedOut` when the read time-out passes; otherwise as std.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.wait("UdpSocket::recv", Interest::Read, |s| s.recv(buf))
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The connected peer's address.
    ///
    /// # Errors
    ///
    /// `NotConnected` when not connected.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.inner().peer_addr()
    }

    /// Sets the receive time-out (`None`: wait forever).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration, as std.
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        check_timeout(d)?;
        self.read_timeout.set(d);
        Ok(())
    }

    /// Runs `op` on the std socket underneath (non-blocking) through the crate's wait
    /// (`net::wait`): receives keep the read time-out and wait on the socket's registration,
    /// sends have none and wait on their own ([`wait::SendSide`]).
    fn wait<R>(
        &self,
        what: &'static str,
        interest: Interest,
        mut op: impl FnMut(&std::net::UdpSocket) -> io::Result<R>,
    ) -> io::Result<R> {
        match interest {
            Interest::Read => {
                let sys = self.inner.inner();
                wait::io(
                    what,
                    &self.inner,
                    Some(&self.gate),
                    interest,
                    self.read_timeout.get(),
                    || op(sys),
                )
            }
            Interest::Write => self
                .send_side
                .send(what, &self.inner, None, |s| op(s.inner())),
        }
    }

    /// The receive time-out, exactly as set.
    ///
    /// # Errors
    ///
    /// Never; `io::Result` as std.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.read_timeout.get())
    }

    /// Allows sending to broadcast addresses.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.inner.set_broadcast(on)
    }

    /// A second handle to the same socket.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            inner: Registered::new(self.inner.again()?),
            read_timeout: self.read_timeout.copy(),
            gate: wait::Gate::default(),
            send_side: wait::SendSide::default(),
        })
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    ///
    /// # Errors
    ///
    /// As std.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.take_error()
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.inner().as_fd()
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("UdpSocket");
        if let Ok(addr) = self.local_addr() {
            d.field("addr", &addr);
        }
        d.field("fd", &self.as_raw_fd()).finish()
    }
}
