//! One connection's loop: read a request head, hand the handler an `http::Request<Body>`
//! whose body streams from the socket, write its response, and go on (keep-alive,
//! pipelining) or close.

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};

use super::body::Body;
use super::framing::{self, Framing};
use super::idle::Member;
use super::response::{self, Answer};
use super::wire::{Decoder, Failure, Stop, Wire, try_lock};
use super::{ConnInfo, Handler};
use crate::net::TcpStream;

/// What is left unread of a request body is drained up to this much; past it, or past its
/// deadline, the connection closes instead.
const DRAIN: u64 = 64 * 1024;

/// What reading the next request gave.
// Moved once per request: boxing the request would cost an allocation each time.
#[allow(clippy::large_enum_variant)]
enum Next {
    Request(Request<Body>, Answer),
    /// Answer with this status and close.
    Reject(StatusCode),
    Closed,
}

pub(super) struct Connection<'a> {
    wire: Arc<Mutex<Wire>>,
    info: ConnInfo,
    handler: &'a Handler,
    idle: &'a Member<'a>,
    /// When the head being read must be complete (set at its first byte).
    head_deadline: Option<Instant>,
    /// How long a body may take (the longest a response waits for another greenlet reading it).
    body_timeout: Duration,
    /// Header names and where their values lie in the head (reused).
    names: Vec<(HeaderName, Range<usize>)>,
}

impl<'a> Connection<'a> {
    pub(super) fn new(
        conn: TcpStream,
        info: ConnInfo,
        limits: super::Limits,
        handler: &'a Handler,
        idle: &'a Member<'a>,
    ) -> Self {
        Connection {
            wire: Arc::new(Mutex::new(Wire::new(conn, limits))),
            info,
            handler,
            idle,
            head_deadline: None,
            body_timeout: limits.body_timeout,
            names: Vec::new(),
        }
    }

    pub(super) fn serve(mut self) {
        {
            let Some(wire) = try_lock(&self.wire) else {
                return;
            };
            let conn = wire.conn.as_ref().expect("a new connection");
            // A zero idle time-out closes a silent connection as soon as possible (std
            // refuses a zero socket time-out).
            let write = wire.limits.write_timeout.max(Duration::from_nanos(1));
            if conn.set_read_timeout(Some(wire.read_timeout)).is_err()
                || conn.set_write_timeout(Some(write)).is_err()
            {
                return;
            }
        }
        loop {
            let shared = self.wire.clone();
            let next = match try_lock(&shared) {
                Some(mut wire) => self.next_request(&mut wire),
                None => return,
            };
            let (req, answer) = match next {
                Next::Request(req, answer) => (req, answer),
                Next::Reject(status) => {
                    log::debug!("{}: rejected with {status}", self.info.peer);
                    if let Some(wire) = try_lock(&self.wire) {
                        reject(&self.wire, wire, status);
                    }
                    return;
                }
                Next::Closed => {
                    if let Some(mut wire) = try_lock(&self.wire) {
                        let _ = wire.flush();
                    }
                    return;
                }
            };
            if !self.answer(req, answer) {
                return;
            }
        }
    }

    /// Runs the handler and writes its response; `false` if the connection ends.
    fn answer(&mut self, req: Request<Body>, mut answer: Answer) -> bool {
        let (method, uri) = (req.method().clone(), req.uri().clone());
        // The access log's clock is read only when the log is on.
        let started = log::log_enabled!(log::Level::Debug).then(Instant::now);
        let response = self.call(req, &method, &uri);
        let Some(wire) = self.lock_after_handler() else {
            log::warn!(
                "{}: \"{method} {uri}\": the request body was still being read elsewhere at its \
                 deadline; closing the connection",
                self.info.peer
            );
            return false;
        };
        if wire.conn.is_none() {
            log::debug!("{} \"{method} {uri}\" upgraded", self.info.peer);
            return false;
        }
        match wire.body.failure {
            Some(Failure::Reject(status)) => {
                log::debug!(
                    "{} \"{method} {uri}\" {status} (request body)",
                    self.info.peer
                );
                reject(&self.wire, wire, status);
                return false;
            }
            Some(Failure::Closed) => return false,
            None => {}
        }
        let response = self.check(response, &method, &uri);
        let own = response::is_own(response.body(), &self.wire, &wire);
        if !own {
            // Past the drain budget, or owed a 100 Continue it never got: say so now.
            answer.close |= match wire.body.decoder {
                Decoder::Done => false,
                Decoder::Length(n) => n > DRAIN || wire.body.owe_continue,
                Decoder::Chunked(_) => wire.body.owe_continue,
            };
        }
        answer.close |= self.idle.stopping();
        let status = response.status();
        drop(wire);
        let close = match response::write(&self.wire, response, &answer) {
            Ok(close) => close,
            Err(_) => return false,
        };
        let Some(mut wire) = try_lock(&self.wire) else {
            return false;
        };
        let keep = !close && (wire.body.decoder == Decoder::Done || wire.drain(DRAIN));
        // The request's `Body` reads nothing from now on.
        wire.body.seq += 1;
        wire.body.decoder = Decoder::Done;
        if let Some(started) = started {
            log::debug!(
                "{} \"{method} {uri}\" {status} {:?}",
                self.info.peer,
                started.elapsed()
            );
        }
        if !keep {
            let _ = wire.flush();
        }
        keep
    }

    /// The connection after the handler returned. While a greenlet the handler gave the body
    /// to still reads it, the response waits, at most until the body's deadline.
    fn lock_after_handler(&self) -> Option<MutexGuard<'_, Wire>> {
        response::lock_until(&self.wire, response::deadline(self.body_timeout)).ok()
    }

    /// A response the connection can send: an interim status (1xx, which only the server
    /// may send, and 101 only through `upgrade`) or a 2xx to `CONNECT` that did not take the
    /// connection over would desynchronise the client, so it becomes a 500.
    fn check(&self, response: Response<Body>, method: &Method, uri: &Uri) -> Response<Body> {
        let status = response.status();
        let bad = if status.is_informational() {
            "an interim (1xx) status; 101 is sent by http::upgrade"
        } else if method == Method::CONNECT && status.is_success() {
            "a 2xx to CONNECT without http::upgrade"
        } else {
            return response;
        };
        log::error!(
            "{}: the handler of \"{method} {uri}\" answered {status}: {bad}; sending 500",
            self.info.peer
        );
        internal_error()
    }

    /// Runs the handler; a panic becomes a 500 for this request only. A kill (the server
    /// stopping) is not a panic: it goes on unwinding the connection's greenlet.
    fn call(&self, req: Request<Body>, method: &Method, uri: &Uri) -> Response<Body> {
        catch_unwind(AssertUnwindSafe(|| (self.handler)(req))).unwrap_or_else(|p| {
            if crate::panic::is_cancel(&*p) {
                std::panic::resume_unwind(p);
            }
            log::error!(
                "{}: handler panicked on \"{method} {uri}\": {}",
                self.info.peer,
                crate::panic::message(&*p)
            );
            internal_error()
        })
    }

    /// Parses the next request head from the buffer, reading more as needed.
    fn next_request(&mut self, wire: &mut Wire) -> Next {
        loop {
            if let Some(next) = self.parse(wire) {
                self.head_deadline = None;
                // A response ready for an earlier pipelined request goes out before this
                // one's handler runs (it may be slow).
                if matches!(next, Next::Request(..)) && wire.flush().is_err() {
                    return Next::Closed;
                }
                return next;
            }
            let idle = wire.buf.is_empty();
            // Idle means parked on a read: responses still queued go out first (a stop or
            // the cap must not cut them off).
            if idle && wire.flush().is_err() {
                return Next::Closed;
            }
            let deadline = if idle {
                None
            } else {
                Some(
                    *self
                        .head_deadline
                        .get_or_insert_with(|| response::deadline(wire.limits.head_timeout)),
                )
            };
            if idle && !self.idle.waiting() {
                return Next::Closed;
            }
            let r = wire.fill(deadline);
            if idle && !self.idle.busy() {
                return Next::Closed;
            }
            match r {
                Ok(_) => {}
                Err(Stop::Closed) => return Next::Closed,
                Err(Stop::Late) => return Next::Reject(StatusCode::REQUEST_TIMEOUT),
            }
        }
    }

    /// A whole request head from the buffer (or a reason to reject it); `None` if more must
    /// be read.
    fn parse(&mut self, wire: &mut Wire) -> Option<Next> {
        let limits = wire.limits;
        // No allocation per attempt for the usual limits; a larger one gets a heap buffer.
        const ON_STACK: usize = 64;
        let mut stack = [httparse::EMPTY_HEADER; ON_STACK];
        let mut heap = Vec::new();
        let headers: &mut [httparse::Header<'_>] = if limits.max_headers <= ON_STACK {
            &mut stack[..limits.max_headers]
        } else {
            heap.resize(limits.max_headers, httparse::EMPTY_HEADER);
            &mut heap
        };
        let mut parsed = httparse::Request::new(headers);
        let reject = |s| Some(Next::Reject(s));
        let head_len = match parsed.parse(&wire.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if wire.buf.len() > limits.max_head => {
                return reject(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
            }
            Ok(httparse::Status::Partial) => return None,
            Err(httparse::Error::TooManyHeaders) => {
                return reject(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
            }
            Err(_) => return reject(StatusCode::BAD_REQUEST),
        };
        if head_len > limits.max_head {
            return reject(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        let minor = parsed.version.unwrap_or(1);
        let Some(framing) = framing::framing(parsed.headers, minor) else {
            return reject(StatusCode::BAD_REQUEST);
        };
        let facts = framing::facts(parsed.headers, minor);
        if facts.expect_other {
            return reject(StatusCode::EXPECTATION_FAILED);
        }
        let decoder = match framing {
            Framing::Length(n) if n > limits.max_body as u64 => {
                return reject(StatusCode::PAYLOAD_TOO_LARGE);
            }
            Framing::Length(0) => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::Chunked(super::wire::Chunk::Size),
        };
        let Ok(method) = Method::from_bytes(parsed.method.unwrap_or_default().as_bytes()) else {
            return reject(StatusCode::BAD_REQUEST);
        };
        // Where each part lies in the head, to slice it out of one shared buffer.
        let base = wire.buf.as_ptr() as usize;
        let at = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        let path = at(parsed.path.unwrap_or_default().as_bytes());
        self.names.clear();
        for h in parsed.headers.iter() {
            let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
                return reject(StatusCode::BAD_REQUEST);
            };
            self.names.push((name, at(h.value)));
        }
        let head = wire.buf.split_to(head_len).freeze();
        let Ok(uri) = Uri::from_maybe_shared(head.slice(path)) else {
            return reject(StatusCode::BAD_REQUEST);
        };
        let mut map = HeaderMap::with_capacity(self.names.len());
        for (name, range) in self.names.drain(..) {
            let Ok(value) = HeaderValue::from_maybe_shared(head.slice(range)) else {
                return reject(StatusCode::BAD_REQUEST);
            };
            map.append(name, value);
        }

        let connect = method == Method::CONNECT;
        let body = &mut wire.body;
        body.decoder = decoder;
        body.received = 0;
        body.deadline = (decoder != Decoder::Done).then(|| response::deadline(limits.body_timeout));
        body.owe_continue = facts.expect_continue && decoder != Decoder::Done;
        body.failure = None;
        body.trailers = None;
        body.upgradable = facts.upgrade;
        body.connect = connect;
        let body = if decoder == Decoder::Done && !facts.upgrade && !connect {
            Body::empty()
        } else {
            Body::incoming(self.wire.clone(), body.seq)
        };
        let version = if minor == 0 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let answer = Answer::new(&method, version, facts.close);
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.version_mut() = version;
        *req.headers_mut() = map;
        req.extensions_mut().insert(self.info);
        Some(Next::Request(req, answer))
    }
}

/// The 500 that replaces a handler's response (a panic, a status the connection cannot send).
fn internal_error() -> Response<Body> {
    let mut r = Response::new(Body::from("internal server error"));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}

/// Answers with `status` and an empty body, closing.
fn reject(shared: &Mutex<Wire>, guard: MutexGuard<'_, Wire>, status: StatusCode) {
    drop(guard);
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    let answer = Answer::new(&Method::GET, Version::HTTP_11, true);
    let _ = response::write(shared, r, &answer);
    if let Some(mut wire) = try_lock(shared) {
        let _ = wire.flush();
    }
}
