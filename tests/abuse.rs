//! Servers under abuse, on loopback: 10,000 connections that send nothing, random bytes,
//! half-closed and reset connections. Well-formed clients are answered throughout, idle
//! connections are closed by the time-out, and no descriptor leaks.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use greenlet::http::{Client, Response, Server};
use greenlet::net::TcpStream;
use support::ms;

const IDLE: usize = 10_000;
const CHILD: &str = "GREENLET_ABUSE_CHILD";
const IDLE_TIMEOUT: Duration = Duration::from_millis(1500);

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn hello_server() -> Server {
    let server = Server::bind("127.0.0.1:0", |_| Response::new("hello"))
        .unwrap()
        .timeout(IDLE_TIMEOUT);
    server.start().unwrap();
    server
}

/// One well-formed request on a fresh connection, answered within a few seconds.
fn well_formed(server: &Server) {
    let client = Client::builder().timeout(Duration::from_secs(5)).build();
    let url = format!("http://{}/", server.local_addr());
    let body = client
        .get(&url)
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert_eq!(body, "hello");
}

/// Waits (bounded) until `f` holds.
fn wait_for(what: &str, limit: Duration, f: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        greenlet::sleep(ms(20));
    }
}

#[test]
fn ten_thousand_silent_connections_are_closed_and_block_no_one() {
    if let Ok(addr) = std::env::var(CHILD) {
        return silent_child(&addr);
    }
    let server = hello_server();
    well_formed(&server); // warm-up: the client machinery's own descriptors
    let fds0 = open_fds();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "ten_thousand_silent_connections_are_closed_and_block_no_one",
            "--nocapture",
        ])
        .env(CHILD, server.local_addr().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let connected = lines.find(|l| l.as_ref().is_ok_and(|l| l.starts_with("CONNECTED")));
    assert!(connected.is_some(), "the child did not connect");
    // While thousands of connections sit silent, new clients are still answered.
    let t = Instant::now();
    well_formed(&server);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // The idle time-out closes them all.
    wait_for("idle connections to close", Duration::from_secs(60), || {
        server.connections() == 0
    });
    drop(child.stdin.take()); // the child exits
    assert!(child.wait().unwrap().success());
    well_formed(&server);
    wait_for("descriptors to return", Duration::from_secs(10), || {
        open_fds() <= fds0 + 2
    });
    server.stop(Duration::from_secs(1));
}

/// Opens `IDLE` connections that never send, and holds them until stdin closes.
fn silent_child(addr: &str) {
    let socks: Vec<_> = (0..IDLE)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    println!("CONNECTED {}", socks.len());
    std::io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

#[test]
fn garbage_half_closes_and_resets_leave_the_server_serving() {
    const ROUNDS: usize = 50;
    let server = hello_server();
    let addr = server.local_addr();
    well_formed(&server);
    let fds0 = open_fds();
    let abusers: Vec<_> = (0..ROUNDS)
        .map(|i| {
            greenlet::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                match i % 3 {
                    // Random bytes: a 400 and a close.
                    0 => {
                        let junk: Vec<u8> = (0..512).map(|b| (b * 7 + i) as u8).collect();
                        let _ = s.write_all(&junk);
                        let mut out = Vec::new();
                        let _ = s.read_to_end(&mut out);
                    }
                    // Half-closed mid-request: the server sees end of file and closes.
                    1 => {
                        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n");
                        let _ = s.shutdown(std::net::Shutdown::Write);
                        let mut out = Vec::new();
                        let _ = s.read_to_end(&mut out);
                    }
                    // Reset mid-request.
                    _ => {
                        let _ = s.write_all(
                            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial",
                        );
                        socket2::SockRef::from(&s)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap();
                        drop(s);
                    }
                }
            })
        })
        .collect();
    for _ in 0..10 {
        well_formed(&server);
    }
    assert!(greenlet::joinall(abusers).iter().all(Result::is_ok));
    wait_for(
        "abusive connections to close",
        Duration::from_secs(10),
        || server.connections() == 0,
    );
    wait_for("descriptors to return", Duration::from_secs(10), || {
        open_fds() <= fds0 + 2
    });
    well_formed(&server);
    server.stop(Duration::from_secs(1));
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random input for the request path: pure noise, or a valid request with bytes flipped,
/// cut short or repeated.
fn fuzz_input(rng: &mut Rng) -> Vec<u8> {
    const VALID: &[u8] =
        b"POST /path?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nX-A: b\r\n\r\nbody";
    match rng.below(4) {
        0 => (0..rng.below(2048)).map(|_| rng.next() as u8).collect(),
        1 => {
            let mut v = VALID.to_vec();
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            v
        }
        2 => VALID[..rng.below(VALID.len())].to_vec(),
        _ => VALID.repeat(1 + rng.below(5)),
    }
}

#[test]
fn randomized_request_bytes_never_break_the_server() {
    const CASES: usize = 300;
    let server = hello_server();
    let addr = server.local_addr();
    well_formed(&server);
    let fds0 = open_fds();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let inputs: Vec<Vec<u8>> = (0..CASES).map(|_| fuzz_input(&mut rng)).collect();
    let gs: Vec<_> = inputs
        .into_iter()
        .enumerate()
        .map(|(case, input)| {
            greenlet::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let _ = s.write_all(&input);
                let _ = s.shutdown(std::net::Shutdown::Write);
                let mut out = Vec::new();
                let _ = s.read_to_end(&mut out);
                // Whatever came back is a sequence of whole HTTP/1.1 responses.
                let text = String::from_utf8_lossy(&out);
                assert!(
                    out.is_empty() || text.starts_with("HTTP/1.1 "),
                    "case {case}: {text:?}"
                );
            })
        })
        .collect();
    for (case, r) in greenlet::joinall(gs).into_iter().enumerate() {
        assert!(r.is_ok(), "case {case}: {r:?}");
    }
    well_formed(&server);
    wait_for("connections to close", Duration::from_secs(10), || {
        server.connections() == 0
    });
    wait_for("descriptors to return", Duration::from_secs(10), || {
        open_fds() <= fds0 + 2
    });
    server.stop(Duration::from_secs(1));
}
