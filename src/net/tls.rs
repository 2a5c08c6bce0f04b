//! TLS over greenlet sockets (gevent.ssl), with rustls. Feature `tls`.
//!
//! rustls is a state machine over any `Read + Write`, so its blocking [`StreamOwned`] over a
//! [`TcpStream`] is cooperative as it stands: every read or write that would block parks the
//! greenlet. This module adds the glue: [`TlsConnector`] and [`TlsAcceptor`] complete the
//! handshake eagerly (so a bad certificate is an error from `connect`/`accept`, not from the
//! first read) and give back a [`ClientStream`] or [`ServerStream`].
//!
//! The `rustls` crate is re-exported as [`rustls`], so configurations are
//! built with the very version this crate uses.
//!
//! # Examples
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use greenlet::net::TcpStream;
//! use greenlet::net::tls::TlsConnector;
//!
//! let tcp = TcpStream::connect("example.com:443")?;
//! let mut tls = TlsConnector::new().connect("example.com", tcp)?;
//! tls.write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")?;
//! let mut page = Vec::new();
//! tls.read_to_end(&mut page)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Errors
//!
//! Handshake and protocol failures are `io::Error`s of kind [`io::ErrorKind::InvalidData`]
//! whose source is the [`rustls::Error`] (e.g. an unknown issuer); socket failures keep their
//! kind (`ConnectionReset`, `TimedOut` from the socket's time-outs, ...).

use std::fmt;
use std::io;
use std::sync::Arc;

pub use rustls;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection, StreamOwned};

use super::TcpStream;

/// A client-side TLS stream: read and write plaintext; `sock` is the [`TcpStream`] and `conn`
/// the rustls session (peer certificates, negotiated ALPN protocol, ...).
pub type ClientStream = StreamOwned<ClientConnection, TcpStream>;

/// A server-side TLS stream; see [`ClientStream`].
pub type ServerStream = StreamOwned<ServerConnection, TcpStream>;

/// Runs the handshake to completion over `sock`.
fn handshake<C, D>(conn: &mut C, sock: &mut TcpStream) -> io::Result<()>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>>,
{
    while conn.is_handshaking() {
        conn.complete_io(sock)?;
    }
    // Flush what the last handshake step produced (e.g. a session ticket).
    while conn.wants_write() {
        conn.write_tls(sock)?;
    }
    Ok(())
}

/// Opens TLS client sessions. Cheap to clone; share one per configuration.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use greenlet::net::tls::{TlsConnector, rustls};
///
/// // Mozilla's roots (the default) ...
/// let connector = TlsConnector::new();
/// // ... or any rustls configuration.
/// let roots = rustls::RootCertStore::empty();
/// let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
/// let custom = TlsConnector::from(Arc::new(config));
/// # let _ = (connector, custom);
/// ```
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
}

impl TlsConnector {
    /// A connector that trusts Mozilla's root certificates (the `webpki-roots` crate), with
    /// rustls's `ring` provider and its safe default protocol versions.
    ///
    /// # Panics
    ///
    /// Never in practice: the `ring` provider supports the default protocol versions.
    pub fn new() -> TlsConnector {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        // Name the provider: `ClientConfig::builder()` panics when the dependency graph enables
        // more than one (e.g. aws-lc-rs through another crate).
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }

    /// Runs a TLS handshake for `domain` over `stream` and returns the encrypted stream.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a malformed `domain`; `InvalidData` (with the [`rustls::Error`] as
    /// source) when the handshake fails, e.g. the certificate does not match or is not
    /// trusted; the socket's own errors otherwise.
    ///
    /// # Kill safety
    ///
    /// A kill during the handshake ends the greenlet; the half-open session is dropped.
    pub fn connect(&self, domain: &str, mut stream: TcpStream) -> io::Result<ClientStream> {
        let name = ServerName::try_from(domain.to_owned()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid TLS server name {domain:?}: {e}"),
            )
        })?;
        let mut conn =
            ClientConnection::new(self.config.clone(), name).map_err(io::Error::other)?;
        handshake(&mut conn, &mut stream)?;
        Ok(StreamOwned::new(conn, stream))
    }
}

impl Default for TlsConnector {
    fn default() -> Self {
        TlsConnector::new()
    }
}

impl From<Arc<ClientConfig>> for TlsConnector {
    fn from(config: Arc<ClientConfig>) -> Self {
        TlsConnector { config }
    }
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector").finish_non_exhaustive()
    }
}

/// Accepts TLS server sessions with a rustls [`ServerConfig`]. Cheap to clone.
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
}

impl TlsAcceptor {
    /// Runs the server side of a TLS handshake over an accepted `stream`.
    ///
    /// # Errors
    ///
    /// `InvalidData` (with the [`rustls::Error`] as source) when the client's hello is not
    /// TLS or the handshake fails; the socket's own errors otherwise.
    ///
    /// # Kill safety
    ///
    /// As [`TlsConnector::connect`].
    pub fn accept(&self, mut stream: TcpStream) -> io::Result<ServerStream> {
        let mut conn = ServerConnection::new(self.config.clone()).map_err(io::Error::other)?;
        handshake(&mut conn, &mut stream)?;
        Ok(StreamOwned::new(conn, stream))
    }
}

impl From<Arc<ServerConfig>> for TlsAcceptor {
    fn from(config: Arc<ServerConfig>) -> Self {
        TlsAcceptor { config }
    }
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor").finish_non_exhaustive()
    }
}
