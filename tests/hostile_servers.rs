//! Issue 13's table (`tests/hostile/table.rs`) for the timed APIs of the servers and the HTTP
//! client: `StreamServer::stop(grace)`, `http::Client` `timeout`, `read_timeout` and
//! `connect_timeout`.
//!
//! The cases run in greenlets only: on plain threads, socket time-outs can hang (see
//! `hostile_races::socket_timeouts_on_threads_never_hang`; an `http::Client` request with a
//! 1 ms time-out from a plain thread hung here once).
//!
//! A process of its own: stopping a server kills greenlets parked in may's socket waits, and
//! on a worker where another greenlet is parked in the middle of a kill's unwind (as the
//! `kill_timeout` cases of `hostile_timed.rs` make) such a kill is never raised and the
//! killed greenlet spins on its socket for good (see
//! `hostile_kill::a_socket_wait_killed_beside_an_unwinding_greenlet_ends`).

mod support;
#[path = "hostile/table.rs"]
mod table;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use greenlet::sync::Event;
use support::watchdog::in_greenlet;
use table::{Api, Case, Expires, NO_READY, WATCH, full_backlog, table};

/// A loopback HTTP endpoint whose handlers answer (`200 ok`) once `go` is set; stopped
/// (its handlers killed) with the last handle.
fn gated_http_server(go: Arc<Event>) -> greenlet::server::StreamServer {
    let server = greenlet::server::StreamServer::bind(
        "127.0.0.1:0",
        move |mut c: greenlet::net::TcpStream, _| {
            let mut head = Vec::new();
            let mut buf = [0; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            go.wait();
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        },
    )
    .unwrap();
    server.start().unwrap();
    server
}

fn http_case(build: fn(Duration) -> greenlet::http::Client) -> Case {
    let go = Arc::new(Event::new());
    let server = gated_http_server(go.clone());
    let url = format!("http://{}/", server.local_addr());
    let stopper = server.clone();
    Case::new(
        move |d| {
            let r = build(d).get(&url);
            match r {
                Ok(resp) => {
                    assert_eq!(resp.status(), 200);
                    true
                }
                Err(greenlet::http::Error::Timeout(_)) => false,
                Err(e) => panic!("unexpected error {e:?}"),
            }
        },
        move || {
            go.set();
            // The response still has to travel: not visible from here.
            false
        },
    )
    .check(move |_, _| {
        stopper.stop(Duration::ZERO);
    })
}

#[test]
fn http_client_timeout() {
    table(
        Api::new("http::Client timeout", || {
            http_case(|d| greenlet::http::Client::builder().timeout(d).build())
        })
        .greenlets_only()
        .modes(NO_READY)
        .skip_max(),
    );
}

#[test]
fn http_client_read_timeout() {
    table(
        Api::new("http::Client read_timeout", || {
            http_case(|d| greenlet::http::Client::builder().read_timeout(d).build())
        })
        .greenlets_only()
        .modes(NO_READY),
    );
}

#[test]
fn http_client_connect_timeout() {
    table(
        Api::new("http::Client connect_timeout", || {
            let (full, full_addr, fillers) = full_backlog();
            let go = Arc::new(Event::new());
            go.set();
            let open = gated_http_server(go);
            let target = Arc::new(StdMutex::new(full_addr));
            let (target2, open_addr) = (target.clone(), open.local_addr());
            Case::new(
                move |d| {
                    let url = format!("http://{}/", *target.lock().unwrap());
                    let client = greenlet::http::Client::builder().connect_timeout(d).build();
                    let r = client.get(&url);
                    match r {
                        Ok(_) => true,
                        Err(greenlet::http::Error::Timeout(_)) => false,
                        Err(e) => panic!("unexpected error {e:?}"),
                    }
                },
                move || {
                    *target2.lock().unwrap() = open_addr;
                    true
                },
            )
            .check(move |_, _| {
                drop((full, fillers));
                open.stop(Duration::ZERO);
            })
        })
        // Zero: "check once" cannot connect.
        .greenlets_only()
        .modes(&[Expires]),
    );
}

#[test]
fn stream_server_stop_grace() {
    table(
        Api::new("StreamServer::stop (grace)", || {
            let go = Arc::new(Event::new());
            let started = Arc::new(Event::new());
            let (go2, started2) = (go.clone(), started.clone());
            let server = greenlet::server::StreamServer::bind(
                "127.0.0.1:0",
                move |_c: greenlet::net::TcpStream, _| {
                    started2.set();
                    go2.wait();
                },
            )
            .unwrap();
            server.start().unwrap();
            let client = greenlet::net::TcpStream::connect(server.local_addr()).unwrap();
            started.wait();
            Case::new(
                move |d| {
                    let killed = server.stop(d);
                    drop(client);
                    assert!(killed <= 1, "stop killed {killed} of 1 handler");
                    killed == 0
                },
                move || {
                    go.set();
                    // The handler still has to be counted out: not visible from here.
                    false
                },
            )
        })
        .greenlets_only()
        .modes(NO_READY),
    );
}

/// Regression (fixed in a82a921: time-outs over a year mean none). Before: `ClientBuilder::timeout`
/// and `connect_timeout` document "`Duration::MAX` means no
/// deadline", but a request made with either panics inside ureq: "overflow when adding
/// duration to instant" (`Duration::from_secs(u64::MAX)` too; 600 years works, and
/// `read_timeout(Duration::MAX)` works).
#[test]
fn http_client_timeouts_of_duration_max_mean_no_deadline() {
    let go = Arc::new(Event::new());
    go.set();
    let server = gated_http_server(go);
    let url = format!("http://{}/", server.local_addr());
    for (what, build) in [
        (
            "timeout",
            (|| greenlet::http::Client::builder().timeout(Duration::MAX)) as fn() -> _,
        ),
        ("connect_timeout", || {
            greenlet::http::Client::builder().connect_timeout(Duration::MAX)
        }),
    ] {
        let url = url.clone();
        let r = in_greenlet(
            &format!("http::Client {what}(Duration::MAX)"),
            WATCH,
            move || {
                build()
                    .build()
                    .get(&url)
                    .map(|r| r.status().as_u16())
                    .map_err(|e| e.to_string())
            },
        );
        assert_eq!(r, Ok(200), "{what}(Duration::MAX)");
    }
    server.stop(Duration::ZERO);
}

/// Regression (fixed in #13's follow-up: `connect_timeout` waits through `net::wait`): after a
/// `TcpStream::connect_timeout` expired in a greenlet (here 200 µs, to a listener whose accept
/// queue is full), that greenlet's kill of another greenlet parked in `TcpListener::accept`
/// took about 9 ms instead of about 0.1 ms, and about 2 s in some rounds: may's socket timer
/// resumed the connecting greenlet inside the worker's event loop, and the greenlet it then
/// woke waited for the worker's next `epoll_wait` to time out (`docs/upstream.md`, item 10).
/// `StreamServer::stop` is such a kill.
#[test]
fn a_kill_after_a_connect_timeout_is_prompt() {
    let slow = in_greenlet("kill after a connect time-out", WATCH, || {
        let mut slow = Vec::new();
        for round in 0..12 {
            let (full, addr, fillers) = full_backlog();
            let l = greenlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let acceptor = greenlet::spawn(move || l.accept().map(drop));
            greenlet::sleep(Duration::from_millis(2));
            let r = greenlet::net::TcpStream::connect_timeout(&addr, Duration::from_micros(200));
            assert!(r.is_err(), "the connect to a full accept queue timed out");
            drop((full, fillers));
            let t = std::time::Instant::now();
            assert!(acceptor.kill_timeout(Duration::from_secs(5)));
            let took = t.elapsed();
            if took > Duration::from_millis(5) {
                slow.push(format!("round {round}: the kill took {took:?}"));
            }
        }
        slow
    });
    assert!(slow.is_empty(), "{}", slow.join("\n"));
}
