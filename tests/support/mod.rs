//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use greenlet::net::{TcpListener, TcpStream};

pub mod hostile;
pub mod proc_status;
pub mod watchdog;

/// Applies `config().workers(1)` once per test binary, before its first spawn, and checks it
/// took effect (the runtime starts once per process).
pub fn apply_one_worker() {
    static APPLIED: OnceLock<()> = OnceLock::new();
    APPLIED.get_or_init(|| {
        greenlet::config()
            .workers(1)
            .apply()
            .expect("applied before the runtime starts");
    });
    assert_eq!(greenlet::settings().workers, 1);
}

/// Configures two workers and the blocked-worker monitor at `max_blocking`, with the
/// capturing logger, once per test binary; the guard runs the binary's tests one at a time
/// (each blocks workers on purpose, which must not delay another's greenlets).
pub fn monitored_serially(max_blocking: Duration) -> std::sync::MutexGuard<'static, ()> {
    static CONFIG: std::sync::Once = std::sync::Once::new();
    static SERIAL: Mutex<()> = Mutex::new(());
    CONFIG.call_once(|| {
        capture_log();
        greenlet::config()
            .workers(2)
            .monitor(max_blocking)
            .apply()
            .expect("before the first spawn");
    });
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `Duration::from_millis`, short.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A logger that keeps every record, so tests can check what the crate reported.
pub struct Captured;

static RECORDS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

impl log::Log for Captured {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let mut records = RECORDS.lock().unwrap_or_else(|e| e.into_inner());
        records.push((record.level(), record.args().to_string()));
    }
    fn flush(&self) {}
}

/// Installs the capturing logger (once per test binary).
pub fn capture_log() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        log::set_logger(&Captured).expect("no other logger");
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// Log records whose text contains `needle`.
pub fn logged(needle: &str) -> Vec<(log::Level, String)> {
    let records = RECORDS.lock().unwrap_or_else(|e| e.into_inner());
    records
        .iter()
        .filter(|(_, m)| m.contains(needle))
        .cloned()
        .collect()
}

/// A loopback server whose every connection reads one request head, waits `delay`, answers
/// `200 OK` with the body `hello` and closes. Stops (kills its greenlets) on drop.
pub struct DelayServer {
    pub addr: std::net::SocketAddr,
    acceptor: Option<greenlet::Greenlet<()>>,
}

impl DelayServer {
    pub fn start(delay: Duration) -> DelayServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let acceptor = greenlet::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                drop(greenlet::spawn(move || {
                    let mut head = Vec::new();
                    let mut buf = [0; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    greenlet::sleep(delay);
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                    );
                }));
            }
        });
        DelayServer {
            addr,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for DelayServer {
    fn drop(&mut self) {
        if let Some(g) = self.acceptor.take() {
            g.kill();
        }
    }
}

/// One blocking-style HTTP GET of `/` over `greenlet::net`; returns the body.
pub fn fetch(addr: std::net::SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

/// Sends raw bytes to an HTTP server and returns everything it writes back until it closes
/// (reads time out after 5 s).
pub fn http_raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP response (0 when there is none).
pub fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A reader that gives `good` bytes of `x`, then fails (a response body whose source breaks).
pub struct Failing {
    pub good: usize,
}

impl Read for Failing {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.good == 0 {
            return Err(std::io::Error::other("the source broke"));
        }
        let n = out.len().min(self.good);
        out[..n].fill(b'x');
        self.good -= n;
        Ok(n)
    }
}

/// An `http::Server` on a free loopback port running `handler`, started, with a 10 s body
/// deadline.
pub fn http_serve<H>(handler: H) -> greenlet::http::Server
where
    H: Fn(
            greenlet::http::Request<greenlet::http::Body>,
        ) -> greenlet::http::Response<greenlet::http::Body>
        + Send
        + Sync
        + 'static,
{
    let server = greenlet::http::Server::bind("127.0.0.1:0", handler)
        .unwrap()
        .body_timeout(Duration::from_secs(10));
    server.start().unwrap();
    server
}
