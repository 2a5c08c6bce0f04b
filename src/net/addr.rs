//! Socket addresses and name resolution that never block a worker thread.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::threadpool;

/// Resolves `host` to socket addresses with `port`, without blocking the worker thread.
///
/// IP literals are parsed at once. Host names go to the system resolver (`getaddrinfo`) on
/// the blocking [thread pool](crate::threadpool), as gevent's default resolver does, and the
/// calling greenlet parks meanwhile. From a plain thread the lookup runs on that thread.
///
/// # Errors
///
/// An `io::Error` naming the host, of kind [`io::ErrorKind::NotFound`] when the name does not
/// resolve (the resolver's answer: unknown name, no address, no reachable name server), or of
/// the operating system's kind when the lookup itself failed (`EAI_SYSTEM`, e.g. out of file
/// descriptors).
///
/// # Examples
///
/// ```
/// let addrs = greenlet::net::resolve("localhost", 8080)?;
/// assert!(addrs.iter().all(|a| a.port() == 8080 && a.ip().is_loopback()));
/// let unknown = greenlet::net::resolve("no-such-host.invalid", 80).unwrap_err();
/// assert_eq!(unknown.kind(), std::io::ErrorKind::NotFound);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let lookup = {
        let host = host.to_owned();
        move || {
            std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                .map(Iterator::collect::<Vec<_>>)
        }
    };
    let found = if may::coroutine::is_coroutine() {
        threadpool::spawn_blocking(lookup)
            .get()
            .map_err(io::Error::other)?
    } else {
        lookup()
    };
    match found {
        Ok(addrs) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("host {host:?} resolved to no addresses"),
        )),
        Err(e) => {
            // getaddrinfo's own failures carry no OS error (std gives them a kind that cannot be
            // matched on stable); `EAI_SYSTEM` carries errno, whose kind is kept.
            let kind = match e.raw_os_error() {
                Some(_) => e.kind(),
                None => io::ErrorKind::NotFound,
            };
            Err(io::Error::new(
                kind,
                format!("cannot resolve host {host:?}: {e}"),
            ))
        }
    }
}

/// What a connect or bind function accepts as an address: like [`std::net::ToSocketAddrs`],
/// but host names are resolved with [`resolve`], so they never block the worker thread.
///
/// Implemented for `SocketAddr` and its V4/V6 forms, `(IpAddr, u16)` and its V4/V6 forms,
/// `(&str, u16)`, `(String, u16)`, `"host:port"` strings, slices of `SocketAddr`, and
/// references to any of these. It is sealed: other types cannot implement it.
pub trait ToSocketAddrs: sealed::Sealed {}

pub(crate) mod sealed {
    use std::io;
    use std::net::SocketAddr;

    /// The hidden half of [`ToSocketAddrs`](super::ToSocketAddrs).
    pub trait Sealed {
        /// Every address, resolving host names cooperatively.
        fn to_addrs(&self) -> io::Result<Vec<SocketAddr>>;
    }
}

macro_rules! direct {
    ($($t:ty => |$s:ident| $e:expr),* $(,)?) => {$(
        impl ToSocketAddrs for $t {}
        impl sealed::Sealed for $t {
            fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
                let $s = self;
                Ok(vec![$e])
            }
        }
    )*};
}

direct! {
    SocketAddr => |s| *s,
    SocketAddrV4 => |s| SocketAddr::V4(*s),
    SocketAddrV6 => |s| SocketAddr::V6(*s),
    (IpAddr, u16) => |s| SocketAddr::new(s.0, s.1),
    (Ipv4Addr, u16) => |s| SocketAddr::new(IpAddr::V4(s.0), s.1),
    (Ipv6Addr, u16) => |s| SocketAddr::new(IpAddr::V6(s.0), s.1),
}

impl ToSocketAddrs for (&str, u16) {}
impl sealed::Sealed for (&str, u16) {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        resolve(self.0, self.1)
    }
}

impl ToSocketAddrs for (String, u16) {}
impl sealed::Sealed for (String, u16) {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        resolve(&self.0, self.1)
    }
}

impl ToSocketAddrs for str {}
impl sealed::Sealed for str {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        if let Ok(addr) = self.parse::<SocketAddr>() {
            return Ok(vec![addr]);
        }
        let invalid = || io::Error::new(io::ErrorKind::InvalidInput, "invalid socket address");
        let (host, port) = self.rsplit_once(':').ok_or_else(invalid)?;
        let port = port.parse().map_err(|_| invalid())?;
        resolve(host, port)
    }
}

impl ToSocketAddrs for String {}
impl sealed::Sealed for String {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.as_str().to_addrs()
    }
}

impl ToSocketAddrs for [SocketAddr] {}
impl sealed::Sealed for [SocketAddr] {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(self.to_vec())
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}
impl<T: ToSocketAddrs + ?Sized> sealed::Sealed for &T {
    fn to_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        (**self).to_addrs()
    }
}

/// Tries `f` on each address in turn, as `std` does: the first success, or the last error.
pub(crate) fn each_addr<A, F, T>(addr: &A, mut f: F) -> io::Result<T>
where
    A: ToSocketAddrs + ?Sized,
    F: FnMut(SocketAddr) -> io::Result<T>,
{
    let mut last = None;
    for addr in sealed::Sealed::to_addrs(addr)? {
        match f(addr) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::sealed::Sealed;
    use super::*;

    #[test]
    fn literals_need_no_lookup() {
        let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!("127.0.0.1:80".to_addrs().unwrap(), vec![v4]);
        assert_eq!(("127.0.0.1", 80).to_addrs().unwrap(), vec![v4]);
        assert_eq!(v4.to_addrs().unwrap(), vec![v4]);
        let v6: SocketAddr = "[::1]:443".parse().unwrap();
        assert_eq!("[::1]:443".to_addrs().unwrap(), vec![v6]);
        assert_eq!(resolve("[::1]", 443).unwrap(), vec![v6]);
    }

    #[test]
    fn malformed_addresses_are_invalid_input() {
        for bad in ["no-port", "host:notaport", "host:99999"] {
            let e = bad.to_addrs().unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
        let none: &[SocketAddr] = &[];
        let e = each_addr(none, Ok).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
