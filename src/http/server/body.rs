//! [`Body`]: a request's body as the handler reads it, and any response body.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use http::HeaderMap;

use super::wire::{Decoder, Wire, try_lock};

/// A body, read with [`std::io::Read`]: the request body a handler receives, and anything a
/// handler answers with.
///
/// - **A request's body** is read from the connection as the handler consumes it:
///   `Content-Length` and `chunked` bodies are decoded (chunk extensions skipped, trailers in
///   [`trailers`](Self::trailers)), so a 1 GiB upload never sits in memory. A body over
///   [`max_body_bytes`](super::Server::max_body_bytes) fails the read and the client gets
///   **413**; one that stops arriving within
///   [`body_timeout`](super::Server::body_timeout) fails with `TimedOut` and the client gets
///   **408**; a malformed one fails with `InvalidData` and **400**. A request sent with
///   `Expect: 100-continue` gets its `100 Continue` at the first read. What the handler
///   leaves unread is drained after the response (up to 64 KiB), else the connection closes,
///   so keep-alive never reads a body as the next request. A handler may hand its body to
///   another greenlet; the response then waits until that greenlet is no longer reading it
///   (at most until the body's deadline), and a read after the response fails.
/// - **A response's body** converts from `()`, `String`, `&'static str`, `Vec<u8>`,
///   `&'static [u8]`, [`Bytes`], a [`File`] (sent with its length), a request's `Body`
///   (echoed as it arrives), or any reader: [`Body::from_reader`] (length unknown: sent
///   `chunked` to HTTP/1.1 clients, until the connection closes to HTTP/1.0 ones) and
///   [`Body::sized`] (length known).
///
/// # Examples
///
/// ```
/// use greenlet::http::{Body, Request, Response, Server};
///
/// // Counts the bytes of any upload, however large, without keeping them.
/// let server = Server::bind("127.0.0.1:0", |mut req: Request<Body>| {
///     let n = std::io::copy(req.body_mut(), &mut std::io::sink());
///     match n {
///         Ok(n) => Response::new(format!("{n} bytes")),
///         Err(e) => Response::new(e.to_string()), // the client gets 400, 408 or 413
///     }
/// })?;
/// server.start()?;
/// let url = format!("http://{}/", server.local_addr());
/// let mut reply = greenlet::http::post(&url, &[7u8; 100_000][..])?;
/// assert_eq!(reply.body_mut().read_to_string()?, "100000 bytes");
/// server.stop(std::time::Duration::from_secs(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Body {
    kind: Kind,
}

enum Kind {
    Bytes(Bytes),
    Reader {
        reader: Box<dyn Read + Send>,
        len: Option<u64>,
    },
    Incoming(Incoming),
}

/// A request body still on its connection.
pub(super) struct Incoming {
    pub wire: Arc<Mutex<Wire>>,
    pub seq: u64,
}

impl Body {
    /// An empty body.
    pub fn empty() -> Body {
        Body {
            kind: Kind::Bytes(Bytes::new()),
        }
    }

    /// A body read from `reader` until its end, its length unknown in advance: sent
    /// `chunked` to HTTP/1.1 clients, and until the connection closes to HTTP/1.0 ones. Each
    /// piece the reader gives is written at once (server-sent events, a slow origin). A read
    /// error ends the connection without completing the response (with a reset), so the
    /// client can tell a truncated body from a whole one; one before any byte becomes a 500. (To send a length the handler knows, set
    /// `Content-Length` on the response, or use [`sized`](Self::sized).)
    ///
    /// # Examples
    ///
    /// ```
    /// use greenlet::http::{Body, Response};
    ///
    /// let lines = std::io::Cursor::new(b"one\ntwo\n".to_vec());
    /// let response = Response::new(Body::from_reader(lines));
    /// assert_eq!(response.body().len(), None);
    /// ```
    pub fn from_reader(reader: impl Read + Send + 'static) -> Body {
        Body {
            kind: Kind::Reader {
                reader: Box::new(reader),
                len: None,
            },
        }
    }

    /// A body of exactly `len` bytes read from `reader`, sent with `Content-Length`. A reader
    /// that ends early ends the connection (the client sees a truncated response); bytes
    /// after `len` are not read.
    ///
    /// # Examples
    ///
    /// ```
    /// use greenlet::http::{Body, Response};
    ///
    /// let response = Response::new(Body::sized(std::io::repeat(b'x'), 1 << 20));
    /// assert_eq!(response.body().len(), Some(1 << 20));
    /// ```
    pub fn sized(reader: impl Read + Send + 'static, len: u64) -> Body {
        Body {
            kind: Kind::Reader {
                reader: Box::new(reader.take(len)),
                len: Some(len),
            },
        }
    }

    pub(super) fn incoming(wire: Arc<Mutex<Wire>>, seq: u64) -> Body {
        Body {
            kind: Kind::Incoming(Incoming { wire, seq }),
        }
    }

    /// The bytes left to read, if known: a request body's remaining `Content-Length`, an
    /// owned body's size, a [`sized`](Self::sized) reader's length; `None` for a chunked
    /// request body and a [`from_reader`](Self::from_reader) body.
    pub fn len(&self) -> Option<u64> {
        match &self.kind {
            Kind::Bytes(b) => Some(b.len() as u64),
            Kind::Reader { len, .. } => *len,
            Kind::Incoming(i) => match i.wire.try_lock().ok()?.body.decoder {
                Decoder::Length(n) => Some(n),
                Decoder::Done => Some(0),
                Decoder::Chunked(_) => None,
            },
        }
    }

    /// Whether the body is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The trailer fields of a chunked request body, once it has been read to its end
    /// (`None` before, or if it had none or was not chunked).
    pub fn trailers(&self) -> Option<HeaderMap> {
        match &self.kind {
            Kind::Incoming(i) => {
                let wire = i.wire.try_lock().ok()?;
                (wire.body.seq == i.seq)
                    .then(|| wire.body.trailers.clone())
                    .flatten()
            }
            _ => None,
        }
    }

    /// Reads the whole body into memory, refusing one over `limit` bytes (`InvalidData`).
    ///
    /// # Errors
    ///
    /// As [`Read::read`], and `InvalidData` over `limit`.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut body = greenlet::http::Body::from("hello");
    /// assert_eq!(body.read_to_vec(1024)?, b"hello");
    /// assert!(greenlet::http::Body::from("hello").read_to_vec(4).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn read_to_vec(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let n = self
            .by_ref()
            .take((limit as u64).saturating_add(1))
            .read_to_end(&mut out)?;
        if n > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the body is over {limit} bytes"),
            ));
        }
        Ok(out)
    }

    /// The request's connection, if this is a request body.
    pub(super) fn as_incoming(&self) -> Option<&Incoming> {
        match &self.kind {
            Kind::Incoming(i) => Some(i),
            _ => None,
        }
    }

    /// The owned bytes, if the body is in memory (written in one piece with the head).
    pub(super) fn as_bytes(&self) -> Option<&Bytes> {
        match &self.kind {
            Kind::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

impl Read for Body {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match &mut self.kind {
            Kind::Bytes(b) => {
                let n = out.len().min(b.len());
                out[..n].copy_from_slice(&b[..n]);
                b.advance(n);
                Ok(n)
            }
            Kind::Reader { reader, .. } => reader.read(out),
            Kind::Incoming(i) => {
                let Some(mut wire) = try_lock(&i.wire) else {
                    return Err(io::Error::new(
                        io::ErrorKind::ResourceBusy,
                        "the request body is being read by another greenlet",
                    ));
                };
                if wire.body.seq != i.seq {
                    return Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "the request body was read after its response was sent",
                    ));
                }
                wire.read_body(out)
            }
        }
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Bytes(_) => "bytes",
            Kind::Reader { .. } => "reader",
            Kind::Incoming(_) => "request",
        };
        f.debug_struct("Body")
            .field("kind", &kind)
            .field("len", &self.len())
            .finish()
    }
}

impl From<()> for Body {
    fn from((): ()) -> Body {
        Body::empty()
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Body {
        Body {
            kind: Kind::Bytes(b),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Body {
        Bytes::from(v).into()
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Bytes::from(s).into()
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Body {
        Bytes::from_static(s.as_bytes()).into()
    }
}

impl From<&'static [u8]> for Body {
    fn from(s: &'static [u8]) -> Body {
        Bytes::from_static(s).into()
    }
}

impl From<File> for Body {
    /// The file from its current position, sent with its length (a file whose size cannot
    /// be read, or is reported as 0 as in `/proc`, is sent as
    /// [`from_reader`](Body::from_reader)).
    fn from(mut file: File) -> Body {
        use std::io::Seek;
        let len = match (file.metadata(), file.stream_position()) {
            // Files in /proc and /sys report a size of 0 whatever they hold.
            (Ok(m), Ok(pos)) if m.is_file() && m.len() > 0 => Some(m.len().saturating_sub(pos)),
            _ => None,
        };
        match len {
            Some(len) => Body::sized(file, len),
            None => Body::from_reader(file),
        }
    }
}
