//! `http::Error`: what went wrong with a request, with the deadline that fired.

use std::fmt;
use std::io;

/// Which time-out of a request fired (see [`ClientBuilder`](super::ClientBuilder)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Deadline {
    /// The whole request, from start to the end of the body ([`ClientBuilder::timeout`](super::ClientBuilder::timeout)).
    Total,
    /// Resolving the host name.
    Resolve,
    /// Establishing the connection ([`ClientBuilder::connect_timeout`](super::ClientBuilder::connect_timeout)).
    Connect,
    /// Sending the request or its body.
    Write,
    /// Waiting for the response head or body, or for one read
    /// ([`ClientBuilder::read_timeout`](super::ClientBuilder::read_timeout)).
    Read,
}

impl fmt::Display for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Deadline::Total => "total",
            Deadline::Resolve => "resolve",
            Deadline::Connect => "connect",
            Deadline::Write => "write",
            Deadline::Read => "read",
        })
    }
}

/// An HTTP request failed.
///
/// One `#[non_exhaustive]` enum, as ureq's, with a `source` (which ureq's lacks) and
/// [`into_io`](Self::into_io) for functions that return `io::Result`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with a 4xx or 5xx status.
    Status(u16),
    /// A deadline passed.
    Timeout(Deadline),
    /// The host name did not resolve.
    HostNotFound,
    /// The URL is malformed or not `http`/`https` (or `https` without the `tls` feature).
    BadUrl(String),
    /// A socket error: refused, reset, closed early, ...
    Io(io::Error),
    /// Any other failure reported by ureq (protocol violation, TLS, redirects, ...).
    Other(ureq::Error),
}

impl Error {
    /// Converts into an `io::Error` with a fitting kind (`TimedOut`, `NotFound`, ...).
    pub fn into_io(self) -> io::Error {
        match self {
            Error::Io(e) => e,
            Error::Timeout(_) => io::Error::new(io::ErrorKind::TimedOut, self),
            Error::HostNotFound => io::Error::new(io::ErrorKind::NotFound, self),
            Error::BadUrl(_) => io::Error::new(io::ErrorKind::InvalidInput, self),
            other => io::Error::other(other),
        }
    }
}

impl From<ureq::Error> for Error {
    fn from(e: ureq::Error) -> Self {
        use ureq::Timeout as T;
        match e {
            ureq::Error::StatusCode(code) => Error::Status(code),
            ureq::Error::Timeout(t) => Error::Timeout(match t {
                T::Global | T::PerCall => Deadline::Total,
                T::Resolve => Deadline::Resolve,
                T::Connect => Deadline::Connect,
                T::SendRequest | T::SendBody | T::PerWrite | T::Await100 => Deadline::Write,
                _ => Deadline::Read,
            }),
            ureq::Error::HostNotFound => Error::HostNotFound,
            ureq::Error::BadUri(s) => Error::BadUrl(s),
            ureq::Error::Io(e) => Error::Io(e),
            other => Error::Other(other),
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        e.into_io()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Status(code) => write!(f, "http status {code}"),
            Error::Timeout(d) => write!(f, "{d} deadline passed"),
            Error::HostNotFound => f.write_str("host not found"),
            Error::BadUrl(s) => write!(f, "bad url: {s}"),
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::Other(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Other(e) => Some(e),
            _ => None,
        }
    }
}
