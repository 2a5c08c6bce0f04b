//! `Client`, `get`, `post`: ureq over greenlet sockets (requests under monkey patching).

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ureq::Agent;
use ureq::http::Uri;
#[cfg(feature = "tls")]
use ureq::unversioned::transport::Connector;

use super::destination::Destinations;
use super::error::Error;
use super::transport::{self, GreenletConnector, GreenletResolver};

/// What the client returns (documented at [`ClientResponse`](super::ClientResponse)).
pub(crate) type Response = ureq::http::Response<ureq::Body>;

/// An HTTP/1.1 client whose requests park only the calling greenlet.
///
/// It keeps idle connections for reuse (keep-alive), resolves names on the thread pool, and
/// speaks `https` with the `tls` feature. Cheap to clone; share one per configuration. A
/// response with a 4xx or 5xx status is an [`Error::Status`], also when the server answers
/// before the request body is sent in full and closes the connection (a 413 to an upload
/// over its limit), as curl reports it. Connections go straight to the host: proxies named in
/// the environment (`HTTP_PROXY`, `ALL_PROXY`, ...) are not used. For headers, other methods
/// and streaming bodies, use ureq's full API through [`agent`](Self::agent) and convert its
/// errors with `http::Error::from`.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use greenlet::http::Client;
///
/// let client = Client::builder().timeout(Duration::from_secs(10)).build();
/// let pages: Vec<_> = ["http://127.0.0.1:8080/a", "http://127.0.0.1:8080/b"]
///     .into_iter()
///     .map(|url| {
///         let client = client.clone();
///         greenlet::spawn(move || client.get(url)?.body_mut().read_to_string().map_err(Into::into))
///     })
///     .collect();
/// for page in greenlet::joinall(pages) {
///     let text: Result<String, greenlet::http::Error> = page.unwrap();
///     println!("{} bytes", text?.len());
/// }
/// # Ok::<(), greenlet::http::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    agent: Agent,
}

/// Configures a [`Client`]: time-outs and the user agent. Made by [`Client::builder`].
#[derive(Debug, Clone, Default)]
#[must_use = "a ClientBuilder does nothing until `build` is called"]
pub struct ClientBuilder {
    total: Option<Duration>,
    connect: Option<Duration>,
    read: Option<Duration>,
    user_agent: Option<String>,
    /// Pass 4xx/5xx responses through instead of failing (and do not follow redirects).
    raw_statuses: bool,
    /// Extra trusted root certificates (DER); when given, they replace Mozilla's roots.
    #[cfg(feature = "tls")]
    roots: Vec<Vec<u8>>,
    /// The checks every address must pass before it is connected to.
    allowed: Destinations,
}

/// A time-out for ureq, which adds it to an `Instant` (and panics on overflow): one over a
/// year means none.
fn finite(d: Duration) -> Option<Duration> {
    /// The longest time-out handed to ureq.
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    (d <= YEAR).then_some(d)
}

impl ClientBuilder {
    /// A deadline for the whole request, from resolving to the end of the body
    /// ([`Deadline::Total`](super::Deadline::Total)). Default: none.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.total = finite(d);
        self
    }

    /// A deadline for establishing the connection
    /// ([`Deadline::Connect`](super::Deadline::Connect)). Default: none.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect = finite(d);
        self
    }

    /// A deadline for each read of the response ([`Deadline::Read`](super::Deadline::Read)):
    /// a server that stops sending for this long fails the request. Default: none.
    pub fn read_timeout(mut self, d: Duration) -> Self {
        self.read = finite(d);
        self
    }

    /// The `User-Agent` header (default: ureq's).
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = Some(ua.into());
        self
    }

    /// Trusts only the given root certificates (DER) for `https`, instead of Mozilla's roots;
    /// call once per certificate. For private CAs and tests with self-signed certificates.
    #[cfg(feature = "tls")]
    pub fn root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.roots.push(der.into());
        self
    }

    /// Returns every response as it is: a 4xx or 5xx status is a response rather than an
    /// [`Error::Status`], and redirects are not followed. For proxies and API clients that
    /// inspect error bodies.
    pub fn pass_through(mut self) -> Self {
        self.raw_statuses = true;
        self
    }

    /// Connects only to addresses that `allow` accepts: a request whose host resolves to none
    /// fails with [`Error::DestinationRefused`] before anything is sent. Calling it again adds
    /// a check: an address must pass all of them.
    ///
    /// The check sees each address the host resolved to, just before connecting to it (also
    /// for redirects), so a name that resolves to a refused address cannot pass; with
    /// [`is_public`](super::is_public) it keeps a server that fetches URLs for its users
    /// (a proxy, a webhook sender) off its own network (server-side request forgery). A panic
    /// in `allow` reaches the caller of the request.
    ///
    /// # Examples
    ///
    /// ```
    /// use greenlet::http::{self, Client, Error};
    ///
    /// let client = Client::builder().allow_destination(|addr| http::is_public(addr.ip())).build();
    /// let e = client.get("http://127.0.0.1:8080/admin").unwrap_err();
    /// assert!(matches!(e, Error::DestinationRefused { .. }), "{e:?}");
    /// assert_eq!(e.to_string(), "not an allowed destination: 127.0.0.1 at 127.0.0.1:8080");
    /// ```
    pub fn allow_destination(
        mut self,
        allow: impl Fn(SocketAddr) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.allowed.add(Arc::new(allow));
        self
    }

    /// Builds the client.
    pub fn build(self) -> Client {
        let mut config = Agent::config_builder()
            // The connector goes straight to the host: it speaks no proxy protocol (an
            // environment proxy made every request fail), and the destination checks must see
            // the host's own addresses.
            .proxy(None)
            .timeout_global(self.total)
            .timeout_connect(self.connect)
            .timeout_per_read(self.read);
        if self.raw_statuses {
            config = config.http_status_as_error(false).max_redirects(0);
        }
        if let Some(ua) = self.user_agent {
            config = config.user_agent(ua);
        }
        #[cfg(feature = "tls")]
        if !self.roots.is_empty() {
            use ureq::tls::{Certificate, RootCerts, TlsConfig};
            let certs: Vec<Certificate<'static>> = self
                .roots
                .iter()
                .map(|der| Certificate::from_der(der).to_owned())
                .collect();
            let tls = TlsConfig::builder()
                .root_certs(RootCerts::new_with_certs(&certs))
                .build();
            config = config.tls_config(tls);
        }
        let config = config.build();
        let connector = GreenletConnector {
            allowed: self.allowed,
        };
        #[cfg(feature = "tls")]
        let connector = connector.chain(ureq::unversioned::transport::RustlsConnector::default());
        Client {
            agent: Agent::with_parts(config, connector, GreenletResolver),
        }
    }
}

impl Client {
    /// A client with no time-outs.
    pub fn new() -> Client {
        Client::builder().build()
    }

    /// Configures a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// `GET url`.
    ///
    /// # Errors
    ///
    /// [`Error::Status`] for a 4xx/5xx answer, [`Error::Timeout`] naming the deadline that
    /// passed, [`Error::HostNotFound`] with the host, [`Error::BadUrl`] with the URL and what
    /// is wrong with it, [`Error::DestinationRefused`], [`Error::Io`] (refused, reset...).
    pub fn get(&self, url: &str) -> Result<Response, Error> {
        crate::config::ensure_started();
        Ok(self.agent.get(parse(url)?).call()?)
    }

    /// `POST url` with `body`.
    ///
    /// If the server answers before the body is sent in full and closes the connection (a 413
    /// to a body over its limit), that answer is the result, not the failed write.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn post(&self, url: &str, body: impl AsRef<[u8]>) -> Result<Response, Error> {
        crate::config::ensure_started();
        Ok(self.agent.post(parse(url)?).send(body.as_ref())?)
    }

    /// The underlying ureq agent, for the rest of ureq's API (headers, methods, streaming).
    pub fn agent(&self) -> &Agent {
        &self.agent
    }
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// `url` as a `Uri` this client can fetch, or [`Error::BadUrl`] naming it.
fn parse(url: &str) -> Result<Uri, Error> {
    let uri: Uri = url
        .parse()
        .map_err(|e| Error::bad_url(url, format!("{e}")))?;
    match transport::unusable(&uri) {
        Some(reason) => Err(Error::bad_url(url, reason)),
        None => Ok(uri),
    }
}

fn shared() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(Client::new)
}

/// `GET url` with a shared default [`Client`] (gevent + `requests.get`).
///
/// # Errors
///
/// As [`Client::get`].
///
/// # Examples
///
/// ```no_run
/// let mut page = greenlet::http::get("http://127.0.0.1:8080/")?;
/// assert_eq!(page.status(), 200);
/// let text = page.body_mut().read_to_string()?;
/// # let _ = text;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn get(url: &str) -> Result<Response, Error> {
    shared().get(url)
}

/// `POST url` with `body`, with a shared default [`Client`].
///
/// # Errors
///
/// As [`Client::get`].
pub fn post(url: &str, body: impl AsRef<[u8]>) -> Result<Response, Error> {
    shared().post(url, body)
}
