//! One connection's socket, its read buffer and the decoding of the request body being read
//! (`Content-Length` or `chunked`), with the deadlines a trickling client cannot stretch.

use std::io::{self, Read, Write};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use http::{HeaderMap, StatusCode};

use super::Limits;
use super::framing::{self, SizeLine};
use crate::net::TcpStream;

/// How reading from the socket ended, when it gave no bytes.
pub(super) enum Stop {
    /// End of file, an error, or the idle time-out: the connection closes.
    Closed,
    /// The head's or the body's deadline passed.
    Late,
}

/// Why the request body cannot be read on: the connection answers with the status (if any)
/// instead of the handler's response, and closes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Failure {
    Reject(StatusCode),
    Closed,
}

/// Where the decoding of a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailers,
}

/// What is left of the request body being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decoder {
    Length(u64),
    Chunked(Chunk),
    Done,
}

/// The request body the connection is reading, as the handler's `Body` sees it.
pub(super) struct BodyState {
    /// The request this state belongs to: a `Body` of an earlier request reads nothing.
    pub seq: u64,
    pub decoder: Decoder,
    /// Decoded bytes so far.
    pub received: u64,
    /// Chunk-extension bytes so far (bounded: they are not data, but they are read).
    pub extensions: u64,
    /// When the whole body must have arrived.
    pub deadline: Option<Instant>,
    /// A `100 Continue` is owed before the first read.
    pub owe_continue: bool,
    pub failure: Option<Failure>,
    pub trailers: Option<HeaderMap>,
    /// The request asked for a protocol upgrade: it may be answered with 101 and the
    /// connection taken over.
    pub upgradable: bool,
    /// The request is a `CONNECT`: a 2xx answer hands the connection over as a tunnel.
    pub connect: bool,
}

/// The connection as its greenlet and its request's `Body` share it.
pub(super) struct Wire {
    /// `None` once a handler took the connection over (an upgrade).
    pub conn: Option<TcpStream>,
    /// Bytes read and not yet used.
    pub buf: BytesMut,
    /// What one read into the buffer lands in first (zeroed once, not at every read).
    scratch: Box<[u8; 8192]>,
    /// Response bytes not yet written.
    pub out: Vec<u8>,
    pub limits: Limits,
    /// The socket's read time-out now (it changes only near a deadline).
    pub read_timeout: Duration,
    pub body: BodyState,
}

/// The most chunk-extension bytes read for one body (hyper's bound).
const MAX_EXTENSIONS: u64 = 16 * 1024;

/// The connection, unless another greenlet holds it now (it is only ever tried, never
/// waited for: holding it across a socket wait would block a worker). A poisoned lock is
/// taken as it is: the wire's state stays consistent between calls.
pub(super) fn try_lock(wire: &Mutex<Wire>) -> Option<MutexGuard<'_, Wire>> {
    match wire.try_lock() {
        Ok(w) => Some(w),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection was taken over")
}

impl Wire {
    pub(super) fn new(conn: TcpStream, limits: Limits) -> Wire {
        Wire {
            conn: Some(conn),
            buf: BytesMut::with_capacity(8192),
            scratch: Box::new([0; 8192]),
            out: Vec::with_capacity(4096),
            limits,
            read_timeout: limits.timeout.max(Duration::from_nanos(1)),
            body: BodyState {
                seq: 0,
                decoder: Decoder::Done,
                received: 0,
                extensions: 0,
                deadline: None,
                owe_continue: false,
                failure: None,
                trailers: None,
                upgradable: false,
                connect: false,
            },
        }
    }

    /// Writes out what `out` holds.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        self.flush_with(&[])
    }

    /// Writes out what `out` holds, then `more` from where it is (a large body is not
    /// copied into `out`).
    pub(super) fn flush_with(&mut self, more: &[u8]) -> io::Result<()> {
        if self.out.is_empty() && more.is_empty() {
            return Ok(());
        }
        let conn = self.conn.as_mut().ok_or_else(closed)?;
        let mut bufs = [io::IoSlice::new(&self.out), io::IoSlice::new(more)];
        let mut bufs = &mut bufs[..];
        io::IoSlice::advance_slices(&mut bufs, 0);
        let mut r = Ok(());
        while !bufs.is_empty() {
            match conn.write_vectored(bufs) {
                Ok(0) => {
                    r = Err(io::ErrorKind::WriteZero.into());
                    break;
                }
                Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        self.out.clear();
        // A large response leaves no large buffer behind on an idle connection.
        if self.out.capacity() > 64 * 1024 {
            self.out = Vec::with_capacity(4096);
        }
        r
    }

    /// Makes the connection's close a reset, so that the client sees a response cut short
    /// as an error even where nothing else delimits it (a close-delimited body).
    pub(super) fn reset(&self) {
        if let Some(conn) = &self.conn {
            let _ = socket2::SockRef::from(conn).set_linger(Some(Duration::ZERO));
        }
    }

    /// Sets the socket's read time-out to the idle time-out, or less to end at `deadline`;
    /// `Err(Late)` if the deadline has passed.
    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<(), Stop> {
        let mut wait = self.limits.timeout.max(Duration::from_nanos(1));
        if let Some(d) = deadline {
            match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => wait = wait.min(left),
                _ => return Err(Stop::Late),
            }
        }
        // Changed only near a deadline: a request that arrives whole never gets here.
        if wait != self.read_timeout {
            let conn = self.conn.as_ref().ok_or(Stop::Closed)?;
            conn.set_read_timeout(Some(wait))
                .map_err(|_| Stop::Closed)?;
            self.read_timeout = wait;
        }
        Ok(())
    }

    /// One read into `into` (the buffer's spare room when `None`), after writing out pending
    /// responses, waiting at most for the idle time-out and until `deadline`.
    fn read(&mut self, deadline: Option<Instant>, into: Option<&mut [u8]>) -> Result<usize, Stop> {
        // Pipelined responses go out before we wait for more input.
        self.flush().map_err(|_| Stop::Closed)?;
        self.wait_until(deadline)?;
        let conn = self.conn.as_mut().ok_or(Stop::Closed)?;
        let r = match into {
            Some(into) => conn.read(into),
            None => {
                let r = conn.read(&mut self.scratch[..]);
                if let Ok(n) = r {
                    self.buf.extend_from_slice(&self.scratch[..n]);
                }
                r
            }
        };
        match r {
            Ok(0) => Err(Stop::Closed),
            Ok(n) => Ok(n),
            Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => Err(Stop::Late),
            Err(_) => Err(Stop::Closed),
        }
    }

    /// Reads more into the buffer.
    pub(super) fn fill(&mut self, deadline: Option<Instant>) -> Result<usize, Stop> {
        self.read(deadline, None)
    }

    /// Sends the `100 Continue` owed, if any (before the body is read, and before a response
    /// that streams the body back).
    pub(super) fn send_continue(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.body.owe_continue) {
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.flush()?;
        }
        Ok(())
    }

    /// Records why the body cannot be read on, and the error the handler's read returns.
    fn fail(&mut self, failure: Failure, msg: String) -> io::Error {
        self.body.failure = Some(failure);
        self.body.decoder = Decoder::Done;
        let kind = match failure {
            Failure::Reject(StatusCode::REQUEST_TIMEOUT) => io::ErrorKind::TimedOut,
            Failure::Reject(_) => io::ErrorKind::InvalidData,
            Failure::Closed => io::ErrorKind::UnexpectedEof,
        };
        io::Error::new(kind, msg)
    }

    fn stopped(&mut self, stop: Stop) -> io::Error {
        match stop {
            Stop::Late => {
                let limit = self.limits.body_timeout;
                self.fail(
                    Failure::Reject(StatusCode::REQUEST_TIMEOUT),
                    format!("the request body did not arrive within {limit:?} (body_timeout)"),
                )
            }
            Stop::Closed => self.fail(
                Failure::Closed,
                "the client closed the connection before the end of the request body".into(),
            ),
        }
    }

    fn malformed(&mut self, what: &str) -> io::Error {
        self.fail(
            Failure::Reject(StatusCode::BAD_REQUEST),
            format!("malformed chunked request body: {what}"),
        )
    }

    /// Up to `want` bytes of body data into `out`: buffered ones first, else one read from
    /// the socket straight into `out`.
    fn data(&mut self, out: &mut [u8], want: u64) -> io::Result<usize> {
        let want = out.len().min(usize::try_from(want).unwrap_or(usize::MAX));
        if !self.buf.is_empty() {
            let n = want.min(self.buf.len());
            out[..n].copy_from_slice(&self.buf[..n]);
            self.buf.advance(n);
            return Ok(n);
        }
        match self.read(self.body.deadline, Some(&mut out[..want])) {
            Ok(n) => Ok(n),
            Err(stop) => Err(self.stopped(stop)),
        }
    }

    /// Reads more into the buffer for the body's framing lines.
    fn fill_body(&mut self) -> io::Result<()> {
        match self.fill(self.body.deadline) {
            Ok(_) => Ok(()),
            Err(stop) => Err(self.stopped(stop)),
        }
    }

    /// Reads decoded body bytes into `out`; `Ok(0)` at the body's end.
    pub(super) fn read_body(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(f) = self.body.failure {
            let msg = "the request body could not be read (an earlier read failed)";
            return Err(self.fail(f, msg.into()));
        }
        if out.is_empty() || self.body.decoder == Decoder::Done {
            return Ok(0);
        }
        self.send_continue()?;
        loop {
            match self.body.decoder {
                Decoder::Done | Decoder::Length(0) => {
                    self.body.decoder = Decoder::Done;
                    return Ok(0);
                }
                Decoder::Length(left) => {
                    let n = self.data(out, left)?;
                    self.body.decoder = Decoder::Length(left - n as u64);
                    self.body.received += n as u64;
                    return Ok(n);
                }
                Decoder::Chunked(Chunk::Data(left)) => {
                    let n = self.data(out, left)?;
                    let left = left - n as u64;
                    self.body.decoder = Decoder::Chunked(if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    });
                    self.body.received += n as u64;
                    return Ok(n);
                }
                Decoder::Chunked(Chunk::Size) => match framing::size_line(&self.buf) {
                    SizeLine::Partial => self.fill_body()?,
                    SizeLine::Invalid => return Err(self.malformed("a bad chunk-size line")),
                    SizeLine::Size(n, used) => {
                        let digits = self
                            .buf
                            .iter()
                            .take_while(|b| b.is_ascii_hexdigit())
                            .count();
                        self.body.extensions += (used - digits - 2) as u64;
                        if self.body.extensions > MAX_EXTENSIONS {
                            return Err(self.malformed("over 16 KiB of chunk extensions"));
                        }
                        self.buf.advance(used);
                        let max = self.limits.max_body as u64;
                        if self.body.received.saturating_add(n) > max {
                            return Err(self.fail(
                                Failure::Reject(StatusCode::PAYLOAD_TOO_LARGE),
                                format!("the request body is over {max} bytes (max_body_bytes)"),
                            ));
                        }
                        self.body.decoder = Decoder::Chunked(if n == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(n)
                        });
                    }
                },
                Decoder::Chunked(Chunk::DataEnd) => {
                    if self.buf.len() < 2 {
                        self.fill_body()?;
                    } else if &self.buf[..2] == b"\r\n" {
                        self.buf.advance(2);
                        self.body.decoder = Decoder::Chunked(Chunk::Size);
                    } else {
                        return Err(self.malformed("no CRLF after a chunk's data"));
                    }
                }
                Decoder::Chunked(Chunk::Trailers) => {
                    if self.trailers()? {
                        self.body.decoder = Decoder::Done;
                        return Ok(0);
                    }
                    self.fill_body()?;
                }
            }
        }
    }

    /// Parses the trailer section if it is complete (bounded like a head); `Ok(false)` if
    /// more must be read.
    fn trailers(&mut self) -> io::Result<bool> {
        if self.buf.starts_with(b"\r\n") {
            self.buf.advance(2);
            return Ok(true);
        }
        // Lines end with CRLF only: a front end that reads a bare LF otherwise would see a
        // different end of the body (and a smuggled request after it).
        let end = self
            .buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(self.buf.len(), |p| p + 4);
        let bare = self.buf[..end]
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'\n' && (i == 0 || self.buf[i - 1] != b'\r'));
        if bare {
            return Err(self.malformed("a bare LF in the trailer section"));
        }
        let mut headers = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        match httparse::parse_headers(&self.buf, &mut headers) {
            Ok(httparse::Status::Complete((used, parsed))) => {
                let mut map = HeaderMap::with_capacity(parsed.len());
                for h in parsed {
                    let (Ok(name), Ok(value)) = (
                        http::HeaderName::from_bytes(h.name.as_bytes()),
                        http::HeaderValue::from_bytes(h.value),
                    ) else {
                        return Err(self.malformed("a bad trailer field"));
                    };
                    map.append(name, value);
                }
                self.buf.advance(used);
                self.body.trailers = Some(map);
                Ok(true)
            }
            Ok(httparse::Status::Partial) if self.buf.len() > self.limits.max_head => Err(self
                .fail(
                    Failure::Reject(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
                    "the request's trailer section is too large (max_head_bytes)".into(),
                )),
            Ok(httparse::Status::Partial) => Ok(false),
            Err(httparse::Error::TooManyHeaders) => Err(self.fail(
                Failure::Reject(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
                "the request has too many trailer fields (max_headers)".into(),
            )),
            Err(_) => Err(self.malformed("a bad trailer section")),
        }
    }

    /// Reads and drops what is left of the body, up to `budget` bytes, so that the next
    /// request can be read; `false` if the connection must close instead.
    pub(super) fn drain(&mut self, budget: u64) -> bool {
        if self.body.owe_continue {
            // The client waits for our word before sending the body: it never had it.
            return false;
        }
        if let Decoder::Length(left) = self.body.decoder
            && left > budget
        {
            return false;
        }
        let mut scratch = [0; 4096];
        let mut drained = 0;
        while drained <= budget {
            match self.read_body(&mut scratch) {
                Ok(0) => return self.body.failure.is_none(),
                Ok(n) => drained += n as u64,
                Err(_) => return false,
            }
        }
        false
    }
}

impl Read for Wire {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.read_body(out)
    }
}
