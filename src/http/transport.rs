//! ureq's pluggable transport over greenlet sockets: a connector that opens our cooperative
//! [`TcpStream`], and a resolver that uses [`net::resolve`](crate::net::resolve).

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use ureq::Error;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
};

use crate::net::TcpStream;

/// Opens plain TCP connections with [`TcpStream`] (ureq chains TLS on top where needed).
#[derive(Debug, Default)]
pub(crate) struct GreenletConnector;

/// One HTTP connection over a [`TcpStream`].
#[derive(Debug)]
pub(crate) struct GreenletTransport {
    stream: TcpStream,
    buffers: LazyBuffers,
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
        let mut last = None;
        for &addr in details.addrs.iter() {
            match connect_one(addr, details) {
                Ok(stream) => {
                    let config = details.config;
                    let buffers =
                        LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size());
                    return Ok(Some(Either::B(GreenletTransport { stream, buffers })));
                }
                Err(e @ Error::Timeout(_)) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| super::Error::HostNotFound(host.to_owned()).through_ureq()))
    }
}

impl Transport for GreenletTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        let timeout = timeout.for_write();
        self.stream.set_write_timeout(time_left(&timeout)?)?;
        let output = &self.buffers.output()[..amount];
        self.stream
            .write_all(output)
            .map_err(|e| io_error(e, &timeout))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
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
        // anything unasked (which would be out of step with the next response).
        self.stream.probe_open()
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
