//! An HTTP forward proxy in blocking style on `greenlet::http::Server`, streaming both ways.
//!
//! Run with: `cargo run --release --example rproxy [-- --port 8888 --secs 30 --allow 127.0.0.1]`,
//! then e.g. `curl -x http://127.0.0.1:8888 http://127.0.0.1:8080/` against `http_hello`
//! (loopback destinations need `--allow 127.0.0.1`: they are refused by default).
//!
//! - `GET http://host/path` (any method with an absolute `http://` URL) is forwarded with one
//!   shared keep-alive [`Client`] (upstream connections are reused). Bodies stream both ways
//!   and are never held whole: the client's request body (`Content-Length` or `chunked`, as
//!   [`Server`] decodes and checks it) becomes the upstream body with the same length, or
//!   `chunked`; the origin's body is relayed with its length, or `chunked` (close-delimited to
//!   HTTP/1.0 clients). An origin response that breaks off leaves the client's response
//!   incomplete (the connection closes short of the length or of the last chunk), so it is
//!   never taken for a whole one; if it breaks off before any of it was sent, the server
//!   answers 500 instead.
//! - Hop-by-hop headers (`Connection` and the fields it names, `Keep-Alive`, `TE`,
//!   `Transfer-Encoding`, `Upgrade`, `Proxy-*`, ...) are removed both ways (RFC 9110 §7.6.1),
//!   `Via` is added (§7.6.3) and the target's authority is sent as `Host` (RFC 9112 §3.2.2).
//! - `CONNECT host:443` opens a tunnel ([`upgrade`] with a 200) and two greenlets copy bytes
//!   each way until both sides close, or until neither has sent anything for the idle time-out.
//! - Safe by default (no SSRF): each destination is resolved here and every address vetted;
//!   the proxy connects to the vetted address itself (plain `http` goes to the IP literal with
//!   the target's `Host`), so a name that resolves again to something else (DNS rebinding)
//!   cannot slip through. Loopback, private (RFC 1918), link-local, unique-local,
//!   unspecified, CGNAT, documentation, benchmarking, multicast and reserved addresses, and
//!   IPv4-mapped forms of them, get **403**, as does `CONNECT` to a port other than 443,
//!   unless `--allow <cidr | ip | ip:port>` (repeatable) says otherwise (plain `http` may go
//!   to any port of a public address). 403 and not 502: the proxy refuses by policy, it did
//!   not fail to reach anything.
//! - Errors carry no internal text: **400** for a malformed request (the server's own 400s for
//!   framing: CL+TE, bad or differing `Content-Length`s, bad chunks) or a target that is not
//!   `http://` or `host:port`; **501** for a transfer coding other than `chunked`; **502**
//!   when the origin cannot be reached or answers badly; **504** when it times out. Details
//!   go to `log` (`RUST_LOG=rproxy=info`).
//! - Time-outs: the server's for clients (an idle connection, a request head, a response
//!   write; a request body must arrive within an hour), and `origin_timeout` for the origin
//!   (connect, and each read and write). `Connection: close` and HTTP/1.0 are honoured by the
//!   server.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use greenlet::http::ureq::{self, SendBody};
use greenlet::http::{
    Body, Client, ConnInfo, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Server,
    StatusCode, Uri, Version, header, upgrade,
};
use greenlet::net::{TcpStream, ToSocketAddrs};

#[path = "common/mod.rs"]
mod common;

/// Hop-by-hop fields (RFC 9110 §7.6.1), and the framing ones the proxy sets itself.
const HOP_BY_HOP: [&str; 11] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "content-length",
    // Answered by this hop: the server sends `100 Continue` when the body is first read.
    "expect",
];

/// How long a request body may take to arrive (the server's whole-body deadline, raised from
/// its 60 s for large uploads; a client that stalls still loses the connection after the idle
/// `client_timeout`).
const BODY_DEADLINE: Duration = Duration::from_secs(3600);

/// Bytes copied per read in a tunnel.
const TUNNEL_CHUNK: usize = 16 * 1024;

/// A destination let through despite the default policy: a network (`10.0.0.0/8`), an
/// address (`127.0.0.1`, `::1`: every port) or an address and port (`127.0.0.1:8080`,
/// `[::1]:8080`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allow {
    net: IpAddr,
    prefix: u8,
    port: Option<u16>,
}

impl FromStr for Allow {
    type Err = String;

    fn from_str(s: &str) -> Result<Allow, String> {
        let bad = || format!("--allow takes a cidr, an ip or an ip:port, not {s:?}");
        let (net, prefix, port) = if let Some((ip, bits)) = s.split_once('/') {
            let ip: IpAddr = ip.parse().map_err(|_| bad())?;
            (ip, bits.parse::<u8>().map_err(|_| bad())?, None)
        } else if let Ok(sa) = s.parse::<SocketAddr>() {
            (sa.ip(), u8::MAX, Some(sa.port()))
        } else {
            let ip: IpAddr = s.trim_matches(['[', ']']).parse().map_err(|_| bad())?;
            (ip, u8::MAX, None)
        };
        let net = net.to_canonical();
        let bits = if net.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix == u8::MAX { bits } else { prefix };
        if prefix > bits {
            return Err(bad());
        }
        Ok(Allow { net, prefix, port })
    }
}

impl Allow {
    /// Whether `addr` (canonical: no IPv4-mapped IPv6) is in this network, on this port.
    pub fn matches(&self, addr: SocketAddr) -> bool {
        let same_net = match (self.net, addr.ip()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(
                n.to_bits().into(),
                a.to_bits().into(),
                32 - u32::from(self.prefix),
            ),
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                prefix_eq(n.to_bits(), a.to_bits(), 128 - u32::from(self.prefix))
            }
            _ => false,
        };
        same_net && self.port.is_none_or(|p| p == addr.port())
    }
}

/// Whether `a` and `b` agree but for their last `host_bits` bits.
fn prefix_eq(a: u128, b: u128, host_bits: u32) -> bool {
    a.checked_shr(host_bits).unwrap_or(0) == b.checked_shr(host_bits).unwrap_or(0)
}

/// Whether `ip` may be a destination without `--allow`: the crate's SSRF check (not loopback,
/// private, link-local, unique-local, CGNAT, documentation, multicast, reserved, nor an IPv6
/// form of those).
pub fn is_public(ip: IpAddr) -> bool {
    greenlet::http::is_public(ip)
}

/// What the proxy lets through and how long it waits.
#[derive(Debug, Clone)]
pub struct Config {
    allow: Vec<Allow>,
    origin_timeout: Duration,
    client_timeout: Duration,
}

impl Default for Config {
    /// Public destinations only (`CONNECT` to port 443 only), 30 s for the origin (connect,
    /// each read and write) and 60 s of silence from a client.
    fn default() -> Config {
        Config {
            allow: Vec::new(),
            origin_timeout: Duration::from_secs(30),
            client_timeout: Duration::from_secs(60),
        }
    }
}

impl Config {
    /// Lets `spec` through (`10.0.0.0/8`, `127.0.0.1`, `127.0.0.1:8080`, `[::1]:8080`): any
    /// port of it, `CONNECT` included, unless it names one.
    ///
    /// # Errors
    ///
    /// If `spec` is none of those forms.
    pub fn allow(mut self, spec: &str) -> Result<Config, String> {
        self.allow.push(spec.parse()?);
        Ok(self)
    }

    /// How long to wait for the origin to connect, and for each read and write.
    pub fn origin_timeout(mut self, d: Duration) -> Config {
        self.origin_timeout = d;
        self
    }

    /// How long a client may stay silent (between requests, within one, in a tunnel).
    pub fn client_timeout(mut self, d: Duration) -> Config {
        self.client_timeout = d;
        self
    }

    /// Whether the proxy may connect to `addr` (`tunnel`: for a `CONNECT`).
    pub fn permits(&self, addr: SocketAddr, tunnel: bool) -> bool {
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        self.allow.iter().any(|a| a.matches(addr))
            || (is_public(addr.ip()) && (!tunnel || addr.port() == 443))
    }
}

/// Why a request is not forwarded: the status it gets, and the detail that goes to the log.
#[derive(Debug)]
enum Refusal {
    BadRequest(String),
    Forbidden(String),
    NotImplemented(String),
    BadGateway(String),
    GatewayTimeout(String),
}

impl Refusal {
    /// A short, generic answer (the detail is logged, never sent).
    fn respond(self, peer: SocketAddr) -> Response<Body> {
        let (status, text, detail) = match self {
            Refusal::BadRequest(d) => (StatusCode::BAD_REQUEST, "bad request\n", d),
            Refusal::Forbidden(d) => (StatusCode::FORBIDDEN, "destination not allowed\n", d),
            Refusal::NotImplemented(d) => (StatusCode::NOT_IMPLEMENTED, "not implemented\n", d),
            Refusal::BadGateway(d) => (StatusCode::BAD_GATEWAY, "bad gateway\n", d),
            Refusal::GatewayTimeout(d) => (StatusCode::GATEWAY_TIMEOUT, "gateway timeout\n", d),
        };
        log::info!("rproxy: {peer}: {status}: {detail}");
        let mut response = Response::new(Body::from(text));
        *response.status_mut() = status;
        let plain = HeaderValue::from_static("text/plain");
        response.headers_mut().insert(header::CONTENT_TYPE, plain);
        response
    }

    /// An upstream failure: 504 for a time-out, else 502.
    fn upstream(e: &io::Error, what: &str) -> Refusal {
        let detail = format!("{what}: {e}");
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Refusal::GatewayTimeout(detail),
            _ => Refusal::BadGateway(detail),
        }
    }
}

impl From<ureq::Error> for Refusal {
    fn from(e: ureq::Error) -> Refusal {
        match e {
            ureq::Error::Timeout(t) => Refusal::GatewayTimeout(format!("origin: {t}")),
            e => Refusal::BadGateway(format!("origin: {e}")),
        }
    }
}

/// The proxy's state, shared by its connections.
struct Proxy {
    config: Config,
    upstream: Client,
}

/// Starts a proxy on `addr` in the background.
///
/// # Errors
///
/// As [`Server::bind`] and [`Server::start`].
pub fn start_proxy<A: ToSocketAddrs>(addr: A, config: Config) -> io::Result<Server> {
    let upstream = Client::builder()
        .connect_timeout(config.origin_timeout)
        .read_timeout(config.origin_timeout)
        .user_agent("") // no User-Agent of ours: the client's goes through as it is
        .pass_through()
        .build();
    let client_timeout = config.client_timeout;
    let proxy = Arc::new(Proxy { config, upstream });
    let server = Server::bind(addr, move |req: Request<Body>| proxy.handle(req))?
        .max_body_bytes(usize::MAX)
        .timeout(client_timeout)
        .body_timeout(BODY_DEADLINE);
    server.start()?;
    Ok(server)
}

impl Proxy {
    fn handle(&self, req: Request<Body>) -> Response<Body> {
        let peer = req
            .extensions()
            .get::<ConnInfo>()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |i| i.peer);
        let answer = if req.method() == Method::CONNECT {
            self.tunnel(req)
        } else {
            self.forward(req)
        };
        answer.unwrap_or_else(|refusal| refusal.respond(peer))
    }

    /// Resolves `host` here and picks the first address the policy permits.
    fn destination(&self, host: &str, port: u16, tunnel: bool) -> Result<SocketAddr, Refusal> {
        let addrs = greenlet::net::resolve(host, port)
            .map_err(|e| Refusal::BadGateway(format!("resolving {host}: {e}")))?;
        addrs
            .into_iter()
            .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
            .find(|&a| self.config.permits(a, tunnel))
            .ok_or_else(|| Refusal::Forbidden(format!("{host}:{port}: no permitted address")))
    }

    /// Forwards a request with an absolute `http://` target and relays the answer.
    fn forward(&self, req: Request<Body>) -> Result<Response<Body>, Refusal> {
        let target = Target::of(req.uri())?;
        let (parts, body) = req.into_parts();
        let mut headers = end_to_end(&parts.headers);
        let send = upstream_body(&parts.headers, body, &mut headers)?;
        let addr = self.destination(&target.host, target.port, false)?;
        headers.insert(header::HOST, target.host_header()?);
        add_via(&mut headers, parts.version);
        // To the vetted address itself, never to the name again (DNS rebinding).
        let uri = format!("http://{addr}{}", target.path);
        let mut out = Request::new(send);
        *out.method_mut() = parts.method.clone();
        *out.uri_mut() = uri
            .parse::<Uri>()
            .map_err(|e| Refusal::BadRequest(format!("{uri}: {e}")))?;
        *out.headers_mut() = headers;
        let agent = self.upstream.agent();
        let out = agent
            .configure_request(out)
            .timeout_per_write(Some(self.config.origin_timeout))
            .accept("") // no Accept of ours either
            .allow_non_standard_methods(true)
            .build();
        let response = agent.run(out)?;
        Ok(relay(response, parts.method == Method::HEAD, &target.host))
    }

    /// `CONNECT host:port`: connects, answers 200 and copies bytes both ways.
    fn tunnel(&self, mut req: Request<Body>) -> Result<Response<Body>, Refusal> {
        let uri = req.uri();
        let bad = || Refusal::BadRequest(format!("CONNECT {uri}: not host:port"));
        let authority = match (uri.scheme(), uri.path_and_query(), uri.authority()) {
            (None, None, Some(a)) if !a.as_str().contains('@') => a.clone(),
            _ => return Err(bad()),
        };
        let port = authority.port_u16().ok_or_else(bad)?;
        let addr = self.destination(authority.host(), port, true)?;
        let timeout = self.config.origin_timeout;
        let upstream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| Refusal::upstream(&e, &format!("connecting to {authority}")))?;
        let ok = Response::new(());
        let client = upgrade(&mut req, ok)
            .map_err(|e| Refusal::BadRequest(format!("CONNECT {authority}: {e}")))?;
        let (client, pending) = client.into_parts();
        if let Err(e) = splice(client, upstream, &pending, self.config.client_timeout) {
            log::info!("rproxy: tunnel to {authority}: {e}");
        }
        Ok(Response::new(Body::empty())) // not sent: the connection was taken over
    }
}

/// An absolute `http://` request target.
struct Target {
    host: String,
    port: u16,
    /// The authority as the client gave it (the `Host` to send).
    authority: String,
    path: String,
}

impl Target {
    fn of(uri: &Uri) -> Result<Target, Refusal> {
        let bad = |why: &str| Refusal::BadRequest(format!("{why}: {uri}"));
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => return Err(bad("only http:// targets are forwarded")),
            None => return Err(bad("not an absolute http:// target")),
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return Err(bad("user info or no host in the target"));
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        Ok(Target {
            host: authority.host().to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_owned(),
            path: if path.starts_with('/') { path } else { "/" }.to_owned(),
        })
    }

    fn host_header(&self) -> Result<HeaderValue, Refusal> {
        HeaderValue::from_str(&self.authority)
            .map_err(|_| Refusal::BadRequest(format!("bad host {:?}", self.authority)))
    }
}

/// The client's body as the upstream request's, framed as the client framed it: with its
/// `Content-Length` (set in `out`), `chunked` (no length: ureq sends it chunked), or none.
fn upstream_body(
    headers: &HeaderMap,
    body: Body,
    out: &mut HeaderMap,
) -> Result<SendBody<'static>, Refusal> {
    if let Some(te) = headers.get(header::TRANSFER_ENCODING) {
        // The server decodes `chunked` only: another coding would reach the origin still
        // applied, and unlabelled (RFC 9112 §6.1: 501).
        let mut codings = te.as_bytes().split(|&b| b == b',');
        if !codings.all(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked")) {
            return Err(Refusal::NotImplemented(format!("transfer coding {te:?}")));
        }
        Ok(SendBody::from_owned_reader(body))
    } else if headers.contains_key(header::CONTENT_LENGTH) {
        // The server checked it (one value, digits only) and decodes by it.
        out.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(body.len().unwrap_or(0)),
        );
        Ok(SendBody::from_owned_reader(body))
    } else {
        Ok(SendBody::none())
    }
}

/// The fields of `headers` that are not hop-by-hop: neither a fixed one nor one that a
/// `Connection` field names.
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if !HOP_BY_HOP.contains(&name.as_str()) && !named.contains(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Appends this hop to `Via` (RFC 9110 §7.6.3): the protocol version it received.
fn add_via(headers: &mut HeaderMap, received: Version) {
    // The proxy's pseudonym is `rproxy`.
    let hop = if received == Version::HTTP_10 {
        "1.0 rproxy"
    } else {
        "1.1 rproxy"
    };
    headers.append(header::VIA, HeaderValue::from_static(hop));
}

/// The origin's response as the client gets it: its body streamed, with the origin's length
/// when it gave one.
fn relay(
    response: ureq::http::Response<ureq::Body>,
    head_only: bool,
    host: &str,
) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let mut headers = end_to_end(&parts.headers);
    add_via(&mut headers, parts.version);
    let no_body = head_only
        || parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    let body = if no_body {
        // Reads the (empty) body's end, which returns the connection to the pool.
        let _ = body.into_reader().read(&mut [0; 1]);
        // The length a GET would have had, if the origin said.
        let declared = parts.headers.get(header::CONTENT_LENGTH);
        match declared.and_then(|v| v.to_str().ok()?.parse().ok()) {
            Some(n) => Body::sized(io::empty(), n),
            None => Body::from_reader(io::empty()),
        }
    } else {
        let len = body.content_length();
        let reader = Relay {
            reader: body.into_reader(),
            left: len,
            host: host.to_owned(),
        };
        match len {
            Some(n) => Body::sized(reader, n),
            None => Body::from_reader(reader),
        }
    };
    let mut out = Response::new(body);
    *out.status_mut() = parts.status;
    *out.headers_mut() = headers;
    out
}

/// The origin's response body, logging why it broke off (the server then leaves the
/// client's response incomplete).
struct Relay {
    reader: ureq::BodyReader<'static>,
    /// What is left of the origin's `Content-Length`, if it gave one.
    left: Option<u64>,
    host: String,
}

impl Read for Relay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf).inspect_err(|e| {
            log::info!("rproxy: the response from {} broke off: {e}", self.host);
        })?;
        if let Some(left) = &mut self.left {
            *left = left.saturating_sub(n as u64);
            if *left == 0 && n > 0 {
                // The server reads no further than the length: one more read sees the end,
                // which returns the connection to the pool for the next request.
                let _ = self.reader.read(&mut [0; 1]);
            }
        }
        Ok(n)
    }
}

/// When either side of a tunnel last sent something.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Kills the other direction's greenlet when dropped: it has finished by then, unless this
/// one is unwinding (the server stopping).
struct KillOnDrop(greenlet::GreenletRef);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill_nowait();
    }
}

/// Copies both ways between `client` and `upstream` (`pending`: bytes the client sent after
/// its `CONNECT`) until both sides have closed, one fails, or neither sent anything for `idle`.
fn splice(
    client: TcpStream,
    upstream: TcpStream,
    pending: &[u8],
    idle: Duration,
) -> io::Result<()> {
    let idle = idle.max(Duration::from_millis(1));
    for s in [&client, &upstream] {
        s.set_read_timeout(Some(idle))?;
        s.set_write_timeout(Some(idle))?;
    }
    let mut to_origin = upstream.try_clone()?;
    to_origin.write_all(pending)?;
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    });
    let (mut from_client, a) = (client.try_clone()?, activity.clone());
    let outbound = greenlet::spawn(move || pump(&mut from_client, &mut to_origin, &a, idle));
    let _guard = KillOnDrop(outbound.handle());
    let (mut from_origin, mut to_client) = (upstream, client);
    let inbound = pump(&mut from_origin, &mut to_client, &activity, idle);
    let outbound = outbound
        .get()
        .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
    inbound.and(outbound)
}

/// Copies `from` to `to` until `from` ends (then half-closes `to`), or an error or the tunnel's
/// idle time-out (then shuts both down, which ends the other direction too).
fn pump(
    from: &mut TcpStream,
    to: &mut TcpStream,
    activity: &Activity,
    idle: Duration,
) -> io::Result<()> {
    let mut buf = vec![0; TUNNEL_CHUNK];
    let r = loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) && activity.quiet_for() < idle => continue,
            Err(e) => break Err(e),
        };
        if let Err(e) = to.write_all(&buf[..n]) {
            break Err(e);
        }
        activity.touch();
    };
    match r {
        Ok(()) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        Err(_) => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        }
    }
    r
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

#[allow(dead_code)] // the proxy test includes this file as a module
fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init(); // RUST_LOG=rproxy=info shows refusals and upstream failures
    let (port, secs) = (
        common::num("--port", 8888) as u16,
        common::num("--secs", 30),
    );
    let mut config = Config::default();
    for spec in common::all("--allow") {
        config = config.allow(&spec)?;
    }
    let proxy = start_proxy(("127.0.0.1", port), config)?;
    println!("proxy on http://{} for {secs} s", proxy.local_addr());
    greenlet::sleep(Duration::from_secs(secs));
    proxy.stop(Duration::from_secs(1));
    Ok(())
}
