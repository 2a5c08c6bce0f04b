//! The rows: each is one kind of blocking call, made unmodified by 50 greenlets at once
//! against a loopback server (or child process, or pipe writer) that answers after 100 ms.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{self, CALLS, DELAY, WATCHDOG, diagnosis, fifty};
use crate::pq;
use crate::servers::{Server, UdpEcho};
use crate::services;
use crate::support::watchdog::bounded;

fn fail(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn expect(got: &str, want: &str) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("got {got:?}, expected {want:?}"))
    }
}

pub fn std_tcp_stream() {
    let server = Server::http(DELAY);
    let addr = server.addr;
    fifty("std TcpStream", move |_| {
        let mut s = TcpStream::connect(addr).map_err(fail)?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: compat\r\nConnection: close\r\n\r\n")
            .map_err(fail)?;
        let mut response = String::new();
        s.read_to_string(&mut response).map_err(fail)?;
        expect(
            response.split("\r\n\r\n").nth(1).unwrap_or_default(),
            "hello",
        )
    });
}

pub fn std_udp_socket() {
    let server = UdpEcho::start(DELAY);
    let addr = server.addr;
    fifty("std UdpSocket", move |i| {
        let s = UdpSocket::bind("127.0.0.1:0").map_err(fail)?;
        let ping = format!("ping {i}");
        s.send_to(ping.as_bytes(), addr).map_err(fail)?;
        let mut buf = [0; 64];
        let (n, from) = s.recv_from(&mut buf).map_err(fail)?;
        if from != addr {
            return Err(format!("a datagram from {from}"));
        }
        expect(&String::from_utf8_lossy(&buf[..n]), &ping)
    });
}

pub fn std_thread_sleep() {
    fifty("std::thread::sleep", |_| {
        let start = Instant::now();
        std::thread::sleep(DELAY);
        match start.elapsed() {
            slept if slept >= DELAY => Ok(()),
            slept => Err(format!("woke after {slept:?}")),
        }
    });
}

pub fn command_output() {
    fifty("Command::output", |_| {
        let out = Command::new("sh")
            .args(["-c", "sleep 0.1; echo hi"])
            .output()
            .map_err(fail)?;
        if !out.status.success() {
            return Err(format!("{out:?}"));
        }
        expect(&String::from_utf8_lossy(&out.stdout), "hi\n")
    });
}

pub fn command_status() {
    fifty("Command::status", |_| {
        let status = Command::new("sleep").arg("0.1").status().map_err(fail)?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("sleep: {status}"))
        }
    });
}

/// A pipe whose writer (a plain thread) writes 100 ms after the greenlet starts reading.
pub fn pipe_read() {
    fifty("std::io::pipe read", |i| {
        let (mut reader, mut writer) = std::io::pipe().map_err(fail)?;
        let text = format!("pipe {i}");
        let sent = text.clone();
        std::thread::spawn(move || {
            std::thread::sleep(DELAY);
            let _ = writer.write_all(sent.as_bytes());
        });
        let mut got = String::new();
        reader.read_to_string(&mut got).map_err(fail)?;
        expect(&got, &text)
    });
}

/// Full duplex on one socket: each call's greenlet reads a `try_clone`d std `TcpStream` while
/// a second greenlet writes 512 KiB through the other handle. The server answers `hello`
/// after 100 ms and only then starts reading (so the writer fills the small socket buffers
/// and must wait), then sends back the count of bytes it got before the writer's end.
pub fn try_clone_duplex() {
    const BYTES: usize = 512 * 1024;
    const BUFFER: usize = 32 * 1024;
    let server = Server::serve(listener(128, Some(BUFFER)), |mut conn| {
        std::thread::sleep(DELAY);
        if conn.write_all(b"hello").is_err() {
            return;
        }
        let (mut count, mut buf) = (0u64, [0; 16 * 1024]);
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => count += n as u64,
                Err(_) => return,
            }
        }
        let _ = conn.write_all(&count.to_be_bytes());
    });
    let addr = server.addr;
    fifty("try_clone duplex", move |_| {
        let mut reader = TcpStream::connect(addr).map_err(fail)?;
        socket2::SockRef::from(&reader)
            .set_send_buffer_size(BUFFER)
            .map_err(fail)?;
        let mut writer = reader.try_clone().map_err(fail)?;
        let written = greenlet::spawn(move || {
            let r = writer.write_all(&vec![7; BYTES]);
            let _ = writer.shutdown(Shutdown::Write); // the server's read ends either way
            r
        });
        let mut got = Vec::new();
        let read = reader.read_to_end(&mut got);
        match written.get() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("write_all: {e} ({:?})", e.kind())),
            Err(e) => return Err(format!("the writer's greenlet: {e}")),
        }
        read.map_err(|e| format!("read_to_end: {e} ({:?})", e.kind()))?;
        let mut want = b"hello".to_vec();
        want.extend_from_slice(&(BYTES as u64).to_be_bytes());
        if got == want {
            Ok(())
        } else {
            Err(format!("read {got:?}, expected {want:?}"))
        }
    });
}

/// 4,000 connects to a std `TcpListener` that a greenlet accepts on: 50 greenlets connect 80
/// times each, one after another. Bound: 10 s (issue 15 measured 30 s; about 0.1 s here).
///
/// The listener's backlog is 4,096: with std's 128, the accept queue overflows on two cores
/// even when a plain thread accepts, and each dropped SYN costs its connect a 1 s
/// retransmission (11 s for 50 plain threads connecting, 75 ms with the larger backlog), which
/// would measure the kernel, not greenlet.
pub fn four_thousand_connects() {
    const CONNECTS: usize = 4_000;
    const BOUND: Duration = Duration::from_secs(10);
    let row = "4,000 std connects and accepts";
    let (took, failures) = bounded(row, Duration::from_secs(120), move || {
        let listener = listener(4_096, None);
        let addr = listener.local_addr().expect("the listener's address");
        let start = Instant::now();
        let acceptor = greenlet::Builder::new()
            .name("compat acceptor")
            .spawn(move || {
                for _ in 0..CONNECTS {
                    listener.accept()?;
                }
                io::Result::Ok(())
            })
            .expect("spawn the acceptor");
        let clients: Vec<_> = (0..CALLS)
            .map(|_| {
                greenlet::spawn(move || {
                    for _ in 0..CONNECTS / CALLS {
                        TcpStream::connect(addr)?;
                    }
                    io::Result::Ok(())
                })
            })
            .collect();
        let mut failures: Vec<String> = greenlet::joinall(clients)
            .into_iter()
            .filter_map(|r| match r {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("connect: {e}")),
                Err(e) => Some(format!("a client's greenlet: {e}")),
            })
            .collect();
        match acceptor.get() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("accept: {e}")),
            Err(e) => failures.push(format!("the acceptor's greenlet: {e}")),
        }
        (start.elapsed(), failures)
    });
    let per_connect = took / CONNECTS as u32;
    let slow = format!("{per_connect:.2?} per connect; a few hundred ms in all is expected");
    harness::verdict(row, took, BOUND, &failures, &slow);
}

/// A loopback std `TcpListener` with this `backlog` and, if given, receive buffer size (which
/// the accepted sockets inherit).
fn listener(backlog: i32, recv_buffer: Option<usize>) -> TcpListener {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    if let Some(bytes) = recv_buffer {
        socket
            .set_recv_buffer_size(bytes)
            .expect("a receive buffer size");
    }
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    socket.bind(&loopback.into()).expect("bind");
    socket.listen(backlog).expect("listen");
    TcpListener::from(socket)
}

pub fn ureq_2_get() {
    let server = Server::http(DELAY);
    let url = server.url();
    fifty("ureq 2", move |_| {
        let body = ureq2::get(&url)
            .call()
            .map_err(fail)?
            .into_string()
            .map_err(fail)?;
        expect(&body, "hello")
    });
}

pub fn ureq_3_get() {
    let server = Server::http(DELAY);
    let url = server.url();
    fifty("ureq 3", move |_| {
        let body = ureq::get(&url)
            .call()
            .map_err(fail)?
            .body_mut()
            .read_to_string()
            .map_err(fail)?;
        expect(&body, "hello")
    });
}

pub fn minreq_get() {
    let server = Server::http(DELAY);
    let url = server.url();
    fifty("minreq", move |_| {
        let response = minreq::get(&url).send().map_err(fail)?;
        expect(response.as_str().map_err(fail)?, "hello")
    });
}

pub fn attohttpc_get() {
    let server = Server::http(DELAY);
    let url = server.url();
    fifty("attohttpc", move |_| {
        let body = attohttpc::get(&url)
            .send()
            .map_err(fail)?
            .text()
            .map_err(fail)?;
        expect(&body, "hello")
    });
}

/// libcurl's easy interface: `perform` blocks until the transfer ends.
pub fn curl_easy_perform() {
    let server = Server::http(DELAY);
    let url = server.url();
    fifty("curl (libcurl easy)", move |_| {
        let mut body = Vec::new();
        let mut easy = curl::easy::Easy::new();
        easy.url(&url).map_err(fail)?;
        {
            let mut transfer = easy.transfer();
            transfer
                .write_function(|data| {
                    body.extend_from_slice(data);
                    Ok(data.len())
                })
                .map_err(fail)?;
            transfer.perform().map_err(fail)?;
        }
        expect(&String::from_utf8_lossy(&body), "hello")
    });
}

/// `BLPOP` on an empty list with a 0.1 s time-out: the server answers nil after 100 ms.
pub fn redis_blpop() {
    let addr = services::redis();
    fifty("redis", move |i| {
        let client = redis::Client::open(format!("redis://{addr}/")).map_err(fail)?;
        let mut con = client.get_connection().map_err(fail)?;
        let popped: Option<(String, String)> = redis::cmd("BLPOP")
            .arg(format!("greenlet-compat:{}:{i}", std::process::id()))
            .arg(DELAY.as_secs_f64())
            .query(&mut con)
            .map_err(fail)?;
        match popped {
            None => Ok(()),
            Some(item) => Err(format!("popped {item:?} from a list that should be empty")),
        }
    });
}

/// PostgreSQL through libpq (the C client): connect, then `SELECT pg_sleep(0.1)`.
pub fn libpq_pg_sleep() {
    let conninfo = services::postgres();
    fifty("PostgreSQL via libpq", move |_| {
        pq::Connection::new(conninfo)?.query("SELECT pg_sleep(0.1)")
    });
}

/// A websocket round trip: connect (handshake), send, get the echo after 100 ms, close.
pub fn tungstenite_echo() {
    let server = Server::websocket_echo(DELAY);
    let url = format!("ws://{}/", server.addr);
    fifty("tungstenite", move |i| {
        let (mut ws, _) = tungstenite::connect(url.as_str()).map_err(fail)?;
        let text = format!("hello {i}");
        ws.send(tungstenite::Message::text(text.clone()))
            .map_err(fail)?;
        let echo = ws.read().map_err(fail)?;
        let _ = ws.close(None);
        expect(echo.to_text().map_err(fail)?, &text)
    });
}

/// `reqwest::blocking` waits on a futex for its runtime's thread: not cooperative. The
/// monitor must name the greenlet and say it waits in a futex. The server answers after
/// 300 ms, so the worker comes free by itself.
pub fn reqwest_blocking_is_diagnosed() {
    let server = Server::http(Duration::from_millis(300));
    let url = server.url();
    let name = "compat reqwest::blocking caller";
    let (body, took) = one_named(name, move || {
        reqwest::blocking::get(&url)
            .and_then(|r| r.text())
            .map_err(fail)
    });
    assert_eq!(body, Ok("hello".to_owned()));
    let report = diagnosis(name, &["futex"]);
    eprintln!("compat row `reqwest::blocking`: one call in {took:.2?}; diagnosed: {report}");
}

/// The sync `postgres` client drives a tokio runtime on the caller's thread (it waits in
/// `epoll_wait`): not cooperative. The monitor must name the greenlet and the wait.
pub fn postgres_sync_is_diagnosed() {
    let conninfo = services::postgres();
    let name = "compat postgres sync caller";
    let (rows, took) = one_named(name, move || {
        let mut client = postgres::Client::connect(conninfo, postgres::NoTls).map_err(fail)?;
        client
            .simple_query("SELECT pg_sleep(0.3)")
            .map(|messages| messages.len())
            .map_err(fail)
    });
    assert!(rows.is_ok(), "{rows:?}");
    let report = diagnosis(name, &["futex", "epoll"]);
    eprintln!("compat row `postgres (sync)`: one call in {took:.2?}; diagnosed: {report}");
}

/// Runs `call` in one greenlet called `name`, under the watchdog; returns its value and time.
fn one_named<T, F>(name: &'static str, call: F) -> (T, Duration)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    bounded(name, WATCHDOG, move || {
        let start = Instant::now();
        let g = greenlet::Builder::new()
            .name(name)
            .spawn(call)
            .expect("spawn the greenlet");
        let value = g.get().expect("the greenlet finishes");
        (value, start.elapsed())
    })
}

/// One `#[test]` per row, each holding the binary's row lock from `crate::setup()`.
macro_rules! rows {
    () => {
        $crate::cases::rows!(
            std_tcp_stream,
            std_udp_socket,
            std_thread_sleep,
            command_output,
            command_status,
            pipe_read,
            try_clone_duplex,
            four_thousand_connects,
            ureq_2_get,
            ureq_3_get,
            minreq_get,
            attohttpc_get,
            curl_easy_perform,
            redis_blpop,
            libpq_pg_sleep,
            tungstenite_echo,
            reqwest_blocking_is_diagnosed,
            postgres_sync_is_diagnosed,
        );
    };
    ($($row:ident),* $(,)?) => {
        $(
            #[test]
            fn $row() {
                let _rows = crate::setup();
                crate::cases::$row();
            }
        )*
    };
}
pub(crate) use rows;
