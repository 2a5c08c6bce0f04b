//! Writing a response: its head (status, the handler's headers, `Date`, the framing the
//! server chooses) and its body (in one piece, by length, `chunked`, or until close).

use std::cell::Cell;
use std::io::{self, Read};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method, Response, StatusCode, Version, header};

use super::body::Body;
use super::wire::{Decoder, Failure, Wire, try_lock};

/// Response bytes gathered before they are written (more goes out at once).
const FLUSH_AT: usize = 32 * 1024;
/// The most read from a streamed body per write.
const CHUNK: usize = 16 * 1024;

/// What the request says about how to answer it.
pub(super) struct Answer {
    pub head_only: bool,
    pub version: Version,
    /// The connection ends after this response.
    pub close: bool,
}

impl Answer {
    pub(super) fn new(method: &Method, version: Version, close: bool) -> Answer {
        Answer {
            head_only: method == Method::HEAD,
            version,
            close,
        }
    }
}

/// How the body is delimited on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// No body may be sent (1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (HTTP/1.0, length unknown).
    Close,
}

thread_local! {
    /// The `Date` value of the current second, as formatted (29 bytes).
    static DATE: Cell<(u64, [u8; 29])> = const { Cell::new((0, [0; 29])) };
}

/// Appends `Date: <IMF-fixdate>\r\n` (RFC 9110 §6.6.1), formatted once a second per thread.
fn date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (cached, mut text) = DATE.get();
    if cached != secs {
        let s = httpdate::fmt_http_date(now);
        if s.len() == text.len() {
            text.copy_from_slice(s.as_bytes());
            DATE.set((secs, text));
        }
    }
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(&text);
    out.extend_from_slice(b"\r\n");
}

fn number(out: &mut Vec<u8>, mut n: u64, radix: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n % radix) as usize];
        n /= radix;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends the head: status line, the handler's headers (less those the server sets),
/// `date`, and the framing and connection headers.
fn head(out: &mut Vec<u8>, status: StatusCode, headers: &HeaderMap, frame: Frame, how: Keep) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || (name == header::CONNECTION && how != Keep::AsIs)
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !headers.contains_key(header::DATE) {
        date(out);
    }
    match frame {
        Frame::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            number(out, n, 10);
            out.extend_from_slice(b"\r\n");
        }
        Frame::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Frame::None | Frame::Close => {}
    }
    match how {
        Keep::Close => out.extend_from_slice(b"connection: close\r\n"),
        Keep::Alive10 => out.extend_from_slice(b"connection: keep-alive\r\n"),
        Keep::AsIs => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// The `connection` header the server writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// The handler's, if any (an HTTP/1.1 connection that stays open; an upgrade).
    AsIs,
    Close,
    /// An HTTP/1.0 connection that stays open says so.
    Alive10,
}

/// Whether the handler asked for the connection to end.
fn asks_close(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

/// The length the handler declared with `Content-Length`, for a body of unknown length.
fn declared(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Locks the connection, unless someone else holds it.
fn lock(wire: &Mutex<Wire>) -> io::Result<MutexGuard<'_, Wire>> {
    try_lock(wire).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::ResourceBusy,
            "the connection is in use by another greenlet",
        )
    })
}

/// Whether `body` is the body of the request being answered on `wire`.
pub(super) fn is_own(body: &Body, shared: &Mutex<Wire>, wire: &Wire) -> bool {
    body.as_incoming().is_some_and(|i| {
        std::ptr::eq(&*i.wire, shared) && i.seq == wire.body.seq && wire.conn.is_some()
    })
}

/// Writes a response; `Ok(true)` if the connection must end after it (asked for, or the
/// body was delimited by the close, or cut short). A body that streams from a reader is
/// read without the connection locked, so that it may wrap the request's own body.
pub(super) fn write(
    shared: &Mutex<Wire>,
    response: Response<Body>,
    answer: &Answer,
) -> io::Result<bool> {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    let mut wire = lock(shared)?;
    let own = is_own(&body, shared, &wire);
    let len = if own {
        match wire.body.decoder {
            Decoder::Length(n) => Some(n),
            Decoder::Done => Some(0),
            Decoder::Chunked(_) => None,
        }
    } else if answer.head_only && body.is_empty() {
        // A HEAD handler may declare the length a GET would have.
        declared(&parts.headers).or(Some(0))
    } else {
        body.len()
    }
    .or_else(|| declared(&parts.headers));
    let frame = if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Frame::None
    } else if let Some(n) = len {
        Frame::Length(n)
    } else if answer.version == Version::HTTP_11 {
        Frame::Chunked
    } else {
        Frame::Close
    };
    let close = answer.close || asks_close(&parts.headers) || frame == Frame::Close;
    let how = match (close, answer.version) {
        (true, _) => Keep::Close,
        (false, Version::HTTP_10) => Keep::Alive10,
        (false, _) => Keep::AsIs,
    };
    if answer.head_only || frame == Frame::None {
        head(&mut wire.out, status, &parts.headers, frame, how);
        return Ok(close);
    }
    if let Some(bytes) = body.as_bytes() {
        head(&mut wire.out, status, &parts.headers, frame, how);
        // In memory: its length is the frame's (`Body::len`).
        if bytes.len() >= FLUSH_AT {
            // Written from where it is, after the head: not copied.
            wire.flush_with(bytes)?;
        } else {
            wire.out.extend_from_slice(bytes);
        }
        return Ok(close);
    }
    // A streamed body: the request's own, or a reader that may wrap it. A 100 Continue still
    // owed goes out before the final head (the body's first read would send it after).
    wire.send_continue()?;
    let until = wire
        .body
        .deadline
        .unwrap_or_else(|| deadline(wire.limits.write_timeout));
    // The first piece is read before the head is committed, so that a body that fails at
    // once is answered with its own status (400, 408, 413), else 500, not a success cut short.
    let mut left = budget(frame);
    let mut chunk = vec![0; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
    let first = if chunk.is_empty() {
        Some(0)
    } else if own {
        pull(|| wire.read_body(&mut chunk))
    } else {
        drop(wire);
        let first = pull(|| body.read(&mut chunk));
        wire = lock_until(shared, until)?;
        first
    };
    let Some(n) = first else {
        let status = match wire.body.failure {
            Some(Failure::Reject(s)) => s,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        head(
            &mut wire.out,
            status,
            &HeaderMap::new(),
            Frame::Length(0),
            Keep::Close,
        );
        return Ok(true);
    };
    head(&mut wire.out, status, &parts.headers, frame, how);
    frame_onto(&mut wire.out, frame, &chunk[..n]);
    left -= n as u64;
    let whole = if n == 0 {
        finish(&mut wire.out, frame, left)
    } else if own {
        stream_own(&mut wire, frame, left, &mut chunk)?
    } else {
        // What the reader gave goes out now: it may be slow to give more.
        wire.flush()?;
        drop(wire);
        let whole = stream_unlocked(shared, &mut body, frame, left, &mut chunk, until)?;
        wire = lock_until(shared, until)?;
        whole
    };
    if !whole {
        // Part of it went out: the client must see an error, not an end. Where nothing else
        // delimits the body (until close), the close is a reset.
        wire.flush()?;
        if frame == Frame::Close {
            wire.reset();
        }
    }
    Ok(close || !whole)
}

/// The connection, waiting (polling, backing off to 50 ms) while another greenlet holds it
/// (one still reading the request body), at most until `until`.
pub(super) fn lock_until(shared: &Mutex<Wire>, until: Instant) -> io::Result<MutexGuard<'_, Wire>> {
    let mut nap = Duration::from_millis(1);
    loop {
        match lock(shared) {
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy && Instant::now() < until => {
                crate::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// `now + limit`, or a year from now for a limit too large to add.
pub(super) fn deadline(limit: Duration) -> Instant {
    crate::deadline::deadline(limit)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365))
}

/// Frames `data` onto `out` as `frame` says.
fn frame_onto(out: &mut Vec<u8>, frame: Frame, data: &[u8]) {
    if frame == Frame::Chunked {
        number(out, data.len() as u64, 16);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

/// How much of a body is left to send under `frame`.
fn budget(frame: Frame) -> u64 {
    match frame {
        Frame::Length(n) => n,
        _ => u64::MAX,
    }
}

/// One read of a streamed body (again if interrupted); `None` if it failed.
fn pull(mut read: impl FnMut() -> io::Result<usize>) -> Option<usize> {
    loop {
        match read() {
            Ok(n) => return Some(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::debug!("response body failed: {e}");
                return None;
            }
        }
    }
}

/// Ends a streamed body: the last chunk, or `false` if it came up short of its length.
fn finish(out: &mut Vec<u8>, frame: Frame, left: u64) -> bool {
    match frame {
        Frame::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
        Frame::Length(_) if left > 0 => {
            log::debug!("response body ended {left} bytes short of its length");
            return false;
        }
        _ => {}
    }
    true
}

/// Copies the rest of the request's own body back (an echo) under `frame`, the connection
/// locked; `Ok(false)` if it ended early or failed (the response is left incomplete).
fn stream_own(wire: &mut Wire, frame: Frame, mut left: u64, chunk: &mut [u8]) -> io::Result<bool> {
    while left > 0 {
        let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match pull(|| wire.read_body(&mut chunk[..want])) {
            Some(0) => break,
            Some(n) => n,
            None => return Ok(false),
        };
        frame_onto(&mut wire.out, frame, &chunk[..n]);
        left -= n as u64;
        if wire.out.len() >= FLUSH_AT {
            wire.flush()?;
        }
    }
    Ok(finish(&mut wire.out, frame, left))
}

/// Copies the rest of a body from its reader under `frame`, locking the connection only to
/// write, and writing out each piece as the reader gives it.
fn stream_unlocked(
    shared: &Mutex<Wire>,
    body: &mut Body,
    frame: Frame,
    mut left: u64,
    chunk: &mut [u8],
    until: Instant,
) -> io::Result<bool> {
    while left > 0 {
        let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match pull(|| body.read(&mut chunk[..want])) {
            Some(0) => break,
            Some(n) => n,
            None => return Ok(false),
        };
        let mut wire = lock_until(shared, until)?;
        frame_onto(&mut wire.out, frame, &chunk[..n]);
        left -= n as u64;
        wire.flush()?;
    }
    Ok(finish(&mut lock_until(shared, until)?.out, frame, left))
}

/// Writes a response head right away (an upgrade's 101), after what was pending.
pub(super) fn write_head_now(
    wire: &mut Wire,
    status: StatusCode,
    headers: &HeaderMap,
) -> io::Result<()> {
    head(&mut wire.out, status, headers, Frame::None, Keep::AsIs);
    wire.flush()
}
