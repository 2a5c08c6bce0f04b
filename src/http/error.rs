//! `http::Error`: what went wrong with a request, with the deadline that fired.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use ureq::http::uri::{InvalidUri, InvalidUriParts};

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
/// [`into_io`](Self::into_io) for functions that return `io::Result`. Its `Display` names the
/// host or URL at fault.
///
/// # Examples
///
/// ```
/// use greenlet::http::{self, Error};
///
/// match http::get("http://no-such-host.invalid/") {
///     Err(Error::HostNotFound(host)) => assert_eq!(host, "no-such-host.invalid"),
///     other => panic!("{other:?}"),
/// }
/// let e = http::get("ftp://example.com/").unwrap_err();
/// assert!(matches!(e, Error::BadUrl { .. }), "{e:?}");
/// assert_eq!(
///     e.to_string(),
///     "bad url \"ftp://example.com/\": unsupported scheme `ftp` (only http and https)"
/// );
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with a 4xx or 5xx status.
    Status(u16),
    /// A deadline passed.
    Timeout(Deadline),
    /// The host did not resolve, or resolved to no address. Carries the host name (empty when
    /// ureq reported it without one); the resolver's own reason is logged at debug level.
    HostNotFound(String),
    /// The URL cannot be fetched: malformed, a scheme other than `http` and `https` (or
    /// `https` without the `tls` feature), no host, or a port out of range.
    BadUrl {
        /// The URL as given; empty when ureq reported the problem without it (a redirect's
        /// `Location`, or a call through [`Client::agent`](super::Client::agent)).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Every address of the host was refused by the client's
    /// [`allow_destination`](super::ClientBuilder::allow_destination) filter; nothing was sent.
    DestinationRefused {
        /// The host of the URL.
        host: String,
        /// The (first) address it resolved to that the filter refused.
        addr: SocketAddr,
    },
    /// A socket error: refused, reset, closed early, ...
    Io(io::Error),
    /// Any other failure reported by ureq (protocol violation, TLS, redirects, ...).
    Other(ureq::Error),
}

impl Error {
    /// Converts into an `io::Error` with a fitting kind (`TimedOut`, `NotFound`,
    /// `InvalidInput`, `PermissionDenied`, ...).
    pub fn into_io(self) -> io::Error {
        let kind = match self {
            Error::Io(e) => return e,
            Error::Timeout(_) => io::ErrorKind::TimedOut,
            Error::HostNotFound(_) => io::ErrorKind::NotFound,
            Error::BadUrl { .. } => io::ErrorKind::InvalidInput,
            Error::DestinationRefused { .. } => io::ErrorKind::PermissionDenied,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, self)
    }

    /// A [`BadUrl`](Self::BadUrl) for `url`.
    pub(crate) fn bad_url(url: &str, reason: impl Into<String>) -> Error {
        Error::BadUrl {
            url: url.to_owned(),
            reason: reason.into(),
        }
    }

    /// Wraps `self` for a trip through ureq, which reports our resolver's and connector's
    /// failures as `ureq::Error::Io`; `From<ureq::Error>` takes it out again.
    pub(crate) fn through_ureq(self) -> ureq::Error {
        ureq::Error::Io(self.into_io())
    }

    /// An I/O error from ureq, or one of ours that [`through_ureq`](Self::through_ureq) wrapped.
    fn from_io(e: io::Error) -> Error {
        if !e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return Error::Io(e);
        }
        let kind = e.kind();
        match e.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(ours)) => *ours,
            // Not reached: the check above found an `Error` inside.
            Some(Err(inner)) => Error::Io(io::Error::new(kind, inner)),
            None => Error::Io(kind.into()),
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
            ureq::Error::HostNotFound => Error::HostNotFound(String::new()),
            ureq::Error::BadUri(reason) => Error::bad_url("", reason),
            ureq::Error::Http(e) if e.is::<InvalidUri>() || e.is::<InvalidUriParts>() => {
                Error::bad_url("", e.to_string())
            }
            ureq::Error::Io(e) => Error::from_io(e),
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
            Error::HostNotFound(host) if host.is_empty() => f.write_str("host not found"),
            Error::HostNotFound(host) => write!(f, "host not found: {host}"),
            Error::BadUrl { url, reason } if url.is_empty() => write!(f, "bad url: {reason}"),
            Error::BadUrl { url, reason } => write!(f, "bad url {url:?}: {reason}"),
            Error::DestinationRefused { host, addr } => {
                write!(f, "not an allowed destination: {host} at {addr}")
            }
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
