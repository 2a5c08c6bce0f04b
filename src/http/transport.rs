//! ureq's pluggable transport over greenlet sockets: a connector that opens our cooperative
//! [`TcpStream`] to allowed destinations, and a resolver that uses
//! [`net::resolve`](crate::net::resolve).

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;

use socket2::SockRef;
use ureq::Error;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
};

use super::destination::Destinations;
use crate::net::TcpStream;

/// Opens plain TCP connections with [`TcpStream`] to the addresses `allowed` lets through
/// (ureq chains TLS on top where needed).
#[derive(Debug, Default)]
pub(crate) struct GreenletConnector {
    pub(crate) allowed: Destinations,
}

/// One HTTP connection over a [`TcpStream`].
#[derive(Debug)]
pub(crate) struct GreenletTransport {
    stream: TcpStream,
    buffers: LazyBuffers,
    /// The server closed the connection while the request was being sent, after answering
    /// (a 413 before the whole body arrived): the rest of the request is dropped so that ureq
    /// reads that answer, and reads never wait (see `switch_to_cut_off`).
    cut_off: bool,
}

/// Maps an I/O error to ureq's, naming the deadline when it was a time-out.
fn io_error(e: io::Error, timeout: &NextTimeout) -> Error {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout(timeout.reason),
        _ => Error::Io(e),
    }
}

/// The time left, or a time-out error if none is (ureq's own `check`).
fn time_left(timeout: &NextTimeout) -> Result<Option<std::time::Duration>, Error> {
    if timeout.after.is_zero() {
        return Err(Error::Timeout(timeout.reason));
    }
    Ok(timeout.not_zero().map(|d| *d))
}

fn connect_one(addr: SocketAddr, details: &ConnectionDetails<'_>) -> Result<TcpStream, Error> {
    let stream = match time_left(&details.timeout)? {
        Some(left) => TcpStream::connect_timeout(&addr, left),
        None => TcpStream::connect(addr),
    }
    .map_err(|e| io_error(e, &details.timeout))?;
    if details.config.no_delay() {
        stream.set_nodelay(true)?;
    }
    Ok(stream)
}

impl<In: Transport> Connector<In> for GreenletConnector {
    type Out = Either<In, GreenletTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails<'_>,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        if chained.is_some() {
            return Ok(chained.map(Either::A));
        }
        let host = details.uri.host().unwrap_or_default();
        let (mut refused, mut failed) = (None, None);
        // Each address is checked as it is about to be connected to, after resolution, so a
        // name that resolves to a refused address (DNS rebinding) cannot pass.
        for &addr in details.addrs.iter() {
            if !self.allowed.allows(addr) {
                log::debug!(
                    "http: not connecting to {host} at {addr}: refused by allow_destination"
                );
                refused.get_or_insert(addr);
                continue;
            }
            match connect_one(addr, details) {
                Ok(stream) => {
                    let config = details.config;
                    let buffers =
                        LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size());
                    let transport = GreenletTransport {
                        stream,
                        buffers,
                        cut_off: false,
                    };
                    return Ok(Some(Either::B(transport)));
                }
                Err(e @ Error::Timeout(_)) => return Err(e),
                Err(e) => failed = Some(e),
            }
        }
        let host = host.to_owned();
        Err(match (failed, refused) {
            (Some(e), _) => e,
            (None, Some(addr)) => super::Error::DestinationRefused { host, addr }.through_ureq(),
            (None, None) => super::Error::HostNotFound(host).through_ureq(),
        })
    }
}

/// Whether a failed write means the server closed (reset) the connection.
fn closed_by_server(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    matches!(
        e.kind(),
        K::BrokenPipe | K::ConnectionReset | K::ConnectionAborted
    )
}

/// Whether received bytes wait in `stream`'s socket, without waiting or consuming them.
fn input_waiting(stream: &TcpStream) -> bool {
    let peek = SockRef::from(stream).recv_with_flags(
        &mut [MaybeUninit::uninit()],
        libc::MSG_PEEK | libc::MSG_DONTWAIT,
    );
    matches!(peek, Ok(n) if n > 0)
}

impl GreenletTransport {
    /// Switches to cut-off mode if `e` is the server closing the connection with its answer
    /// already received: the answer (typically 413 to a body over its limit, sent before the
    /// body arrived) is then read as curl does, rather than reporting the failed write.
    ///
    /// This is sound because on Linux a write fails with `EPIPE`/`ECONNRESET` only once the
    /// connection is reset (or shut for writing, which this transport never does): nothing
    /// more can arrive, so what is received when the write fails is all there will be. It is read without waiting (see
    /// [`read_cut_off`](Self::read_cut_off)); an incomplete answer fails in ureq as a
    /// truncated one, and the connection is never reused ([`is_open`](Transport::is_open)).
    fn switch_to_cut_off(&mut self, e: &io::Error) -> bool {
        if closed_by_server(e) && input_waiting(&self.stream) {
            log::debug!(
                "http: the server closed the connection while the request was being sent \
                 ({e}); reading its answer"
            );
            self.cut_off = true;
        }
        self.cut_off
    }

    /// A read in cut-off mode: what the socket holds, without waiting. Finding nothing (end
    /// of file, or the reset) is an error that ureq takes as the server having closed the
    /// connection; so is "nothing yet", which a reset connection cannot give.
    fn read_cut_off(&mut self) -> Result<bool, Error> {
        let input = self.buffers.input_append_buf();
        let socket = SockRef::from(&self.stream);
        let read = loop {
            match (&*socket).read(&mut *input) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let amount = match read {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "the server closed the connection while the request was being sent",
                )));
            }
        };
        self.buffers.input_appended(amount);
        Ok(true)
    }
}

impl Transport for GreenletTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        if self.cut_off {
            return Ok(()); // the server is gone; the rest of the request goes nowhere
        }
        let timeout = timeout.for_write();
        self.stream.set_write_timeout(time_left(&timeout)?)?;
        let output = &self.buffers.output()[..amount];
        match self.stream.write_all(output) {
            Err(e) if self.switch_to_cut_off(&e) => Ok(()),
            other => other.map_err(|e| io_error(e, &timeout)),
        }
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        if self.cut_off {
            return self.read_cut_off();
        }
        let timeout = timeout.for_read();
        self.stream.set_read_timeout(time_left(&timeout)?)?;
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match self.stream.read(input) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other.map_err(|e| io_error(e, &timeout))?,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        // A pooled connection is reusable if the server has neither closed it nor sent
        // anything unasked (which would be out of step with the next response), and the
        // request was sent in full.
        !self.cut_off && self.stream.probe_open()
    }
}

/// Resolves host names with [`crate::net::resolve`]: on the thread pool, off the worker.
#[derive(Debug, Default)]
pub(crate) struct GreenletResolver;

/// Why this client cannot fetch `uri`, if it cannot: a scheme other than `http` and
/// `https` (or `https` without the `tls` feature), no host, or a port out of range.
pub(crate) fn unusable(uri: &Uri) -> Option<String> {
    match uri.scheme_str() {
        None => return Some("no scheme (expected http:// or https://)".into()),
        Some("http") => {}
        Some("https") if cfg!(feature = "tls") => {}
        Some("https") => return Some("https needs greenlet's `tls` feature".into()),
        Some(other) => {
            return Some(format!(
                "unsupported scheme `{other}` (only http and https)"
            ));
        }
    }
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Some("no host".into());
    };
    // `Uri` accepts any digits as a port, and then `port_u16` is `None`, as for no port.
    let text = authority.as_str();
    let host_port = text.rsplit_once('@').map_or(text, |(_, h)| h);
    let after_host = &host_port[host_port.rfind(']').map_or(0, |i| i + 1)..];
    match after_host.rsplit_once(':') {
        Some((_, port)) if !port.is_empty() && port.parse::<u16>().is_err() => {
            Some(format!("port {port} out of range"))
        }
        _ => None,
    }
}

impl Resolver for GreenletResolver {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, Error> {
        // ureq checks the URL only loosely (it accepts socks schemes, https without TLS and
        // ports over 65535): check again, for redirects and calls through `Client::agent`.
        if let Some(reason) = unusable(uri) {
            return Err(super::Error::bad_url(&uri.to_string(), reason).through_ureq());
        }
        let host = uri.host().unwrap_or_default();
        let port = match (uri.port_u16(), uri.scheme_str()) {
            (Some(p), _) => p,
            (None, Some("https")) => 443,
            (None, _) => 80,
        };
        let not_found = || super::Error::HostNotFound(host.to_owned()).through_ureq();
        let addrs = crate::net::resolve(host, port).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                log::debug!("http: {e}");
                not_found()
            }
            _ => Error::Io(e),
        })?;
        let mut resolved = self.empty();
        for addr in addrs.into_iter().take(16) {
            resolved.push(addr);
        }
        if resolved.is_empty() {
            return Err(not_found());
        }
        Ok(resolved)
    }
}
