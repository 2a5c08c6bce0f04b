//! `http::Client`, `http::get`, `http::post` against loopback servers.

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use greenlet::http::{self, Client, Deadline, Error};
use greenlet::net::TcpStream;
use greenlet::server::StreamServer;
use support::ms;

const FETCHES: usize = 200;

/// A keep-alive HTTP/1.1 server: answers `/status/N` with status N, `/slow` after 200 ms,
/// `/hang` never, and echoes POST bodies. Counts accepted connections.
fn server() -> (StreamServer, Arc<AtomicUsize>) {
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    let server = StreamServer::bind("127.0.0.1:0", move |conn: TcpStream, _| {
        counted.fetch_add(1, Ordering::SeqCst);
        let mut writer = conn.try_clone().unwrap();
        let mut reader = BufReader::new(conn);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let mut length = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 {
                    return;
                }
                if h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let (status, reply) = match path.as_str() {
                "/slow" => {
                    greenlet::sleep(ms(200));
                    (200, b"slow".to_vec())
                }
                "/hang" => {
                    greenlet::sleep(Duration::from_secs(3600));
                    return;
                }
                p if p.starts_with("/status/") => (p[8..].parse().unwrap_or(500), Vec::new()),
                _ if length > 0 => (200, body),
                _ => (200, b"hello".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n",
                reply.len()
            );
            if writer
                .write_all(&[head.as_bytes(), &reply].concat())
                .is_err()
            {
                return;
            }
        }
    })
    .unwrap();
    server.start().unwrap();
    (server, conns)
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

#[test]
fn concurrent_gets_take_as_long_as_one() {
    let (srv, _) = server();
    let u = url(srv.local_addr(), "/slow");
    let t = Instant::now();
    let gs: Vec<_> = (0..FETCHES)
        .map(|_| {
            let u = u.clone();
            greenlet::spawn(move || -> Result<String, Error> {
                Ok(http::get(&u)?.body_mut().read_to_string()?)
            })
        })
        .collect();
    for r in greenlet::joinall(gs) {
        assert_eq!(r.unwrap().unwrap(), "slow");
    }
    // 200 × 200 ms would be 40 s one after another.
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    srv.stop(Duration::from_secs(1));
}

#[test]
fn a_client_reuses_its_connection() {
    let (srv, conns) = server();
    let client = Client::new();
    for _ in 0..20 {
        let body = client
            .get(&url(srv.local_addr(), "/"))
            .unwrap()
            .body_mut()
            .read_to_string();
        assert_eq!(body.unwrap(), "hello");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 1, "keep-alive");
    srv.stop(Duration::from_secs(1));
}

#[test]
fn post_sends_the_body_and_works_from_a_plain_thread() {
    let (srv, _) = server();
    let mut r = http::post(&url(srv.local_addr(), "/echo"), b"payload").unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.body_mut().read_to_string().unwrap(), "payload");
    srv.stop(Duration::from_secs(1));
}

#[test]
fn error_statuses_are_errors() {
    let (srv, _) = server();
    let e = http::get(&url(srv.local_addr(), "/status/404")).unwrap_err();
    assert!(matches!(e, Error::Status(404)), "{e:?}");
    assert_eq!(e.to_string(), "http status 404");
    srv.stop(Duration::from_secs(1));
}

#[test]
fn a_server_that_never_answers_is_a_read_timeout() {
    let (srv, _) = server();
    let client = Client::builder().read_timeout(ms(150)).build();
    let u = url(srv.local_addr(), "/hang");
    let g = greenlet::spawn(move || {
        let t = Instant::now();
        (client.get(&u).map(drop), t.elapsed())
    });
    let (r, took) = g.get().unwrap();
    let e = r.unwrap_err();
    assert!(matches!(e, Error::Timeout(Deadline::Read)), "{e:?}");
    assert!(took >= ms(150));
    assert_eq!(e.into_io().kind(), ErrorKind::TimedOut);

    let total = Client::builder().timeout(ms(150)).build();
    let e = total.get(&url(srv.local_addr(), "/hang")).unwrap_err();
    assert!(matches!(e, Error::Timeout(Deadline::Total)), "{e:?}");
    srv.stop(ms(10));
}

#[test]
fn refused_unknown_and_malformed() {
    let closed = {
        let l = greenlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let e = http::get(&url(closed, "/")).unwrap_err();
    match e {
        Error::Io(io) => assert_eq!(io.kind(), ErrorKind::ConnectionRefused),
        other => panic!("expected a refused connection, got {other:?}"),
    }
    let e = http::get("http://no-such-host.invalid/").unwrap_err();
    assert!(matches!(e, Error::HostNotFound(_)), "{e:?}");
    assert!(matches!(http::get("not a url"), Err(Error::BadUrl { .. })));
}

#[test]
fn an_unknown_host_is_host_not_found_naming_it() {
    for e in [
        http::get("http://no-such-host.invalid/").unwrap_err(),
        Client::new()
            .post("http://no-such-host.invalid:8080/x", b"body")
            .unwrap_err(),
    ] {
        match &e {
            Error::HostNotFound(host) => assert_eq!(host, "no-such-host.invalid"),
            other => panic!("expected HostNotFound, got {other:?}"),
        }
        assert_eq!(e.to_string(), "host not found: no-such-host.invalid");
        assert_eq!(e.into_io().kind(), ErrorKind::NotFound);
    }
}

#[test]
fn malformed_urls_are_bad_url_naming_the_url_and_the_reason() {
    let mut cases = vec![
        ("http://exa mple.com/", "invalid uri character"),
        ("not a url", "invalid uri character"),
        ("", "empty string"),
        ("/relative", "no scheme (expected http:// or https://)"),
        ("ftp://x/", "unsupported scheme `ftp` (only http and https)"),
        ("socks5://127.0.0.1:1/", "unsupported scheme `socks5`"),
        ("http://", "empty string"),
        ("http://127.0.0.1:99999/", "port 99999 out of range"),
        ("http://user:pw@[::1]:70000/", "port 70000 out of range"),
    ];
    if !cfg!(feature = "tls") {
        cases.push((
            "https://127.0.0.1:1/",
            "https needs greenlet's `tls` feature",
        ));
    }
    for (url, why) in cases {
        for e in [
            http::get(url).unwrap_err(),
            http::post(url, b"x").unwrap_err(),
        ] {
            match &e {
                Error::BadUrl { url: u, reason } => {
                    assert_eq!(u, url);
                    assert!(reason.starts_with(why), "{url:?}: {reason}");
                }
                other => panic!("{url:?}: expected BadUrl, got {other:?}"),
            }
            let shown = match url {
                "" => format!("bad url: {why}"),
                _ => format!("bad url {url:?}: {why}"),
            };
            assert!(e.to_string().starts_with(&shown), "{e}");
            assert_eq!(e.into_io().kind(), ErrorKind::InvalidInput);
        }
    }
}

/// A server whose every answer is a redirect to `location`.
fn redirecting_to(location: String) -> StreamServer {
    let server = StreamServer::bind("127.0.0.1:0", move |mut conn: TcpStream, _| {
        let _ = read_head(&mut conn);
        let head =
            format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n");
        let _ = conn.write_all(head.as_bytes());
    })
    .unwrap();
    server.start().unwrap();
    server
}

#[test]
fn a_redirect_to_an_unusable_url_is_bad_url() {
    let srv = redirecting_to("http://127.0.0.1:99999/".into());
    let e = http::get(&url(srv.local_addr(), "/")).unwrap_err();
    match &e {
        Error::BadUrl { url, reason } => {
            assert_eq!(url, "http://127.0.0.1:99999/");
            assert_eq!(reason, "port 99999 out of range");
        }
        other => panic!("expected BadUrl, got {other:?}"),
    }
    srv.stop(ms(100));
}

#[test]
fn a_refused_destination_is_never_contacted() {
    let (srv, conns) = server();
    let port = srv.local_addr().port();
    let public_only = Client::builder()
        .allow_destination(|a| http::is_public(a.ip()))
        .build();
    // Names and spellings that all reach this machine.
    for host in ["127.0.0.1", "localhost", "2130706433", "[::ffff:127.0.0.1]"] {
        let e = public_only
            .get(&format!("http://{host}:{port}/"))
            .unwrap_err();
        match &e {
            Error::DestinationRefused { host: h, addr } => {
                assert_eq!(h, host);
                assert_eq!(addr.port(), port);
            }
            other => panic!("{host}: expected DestinationRefused, got {other:?}"),
        }
        let shown = format!("not an allowed destination: {host} at ");
        assert!(e.to_string().starts_with(&shown), "{e}");
        assert_eq!(e.into_io().kind(), ErrorKind::PermissionDenied);
    }
    assert_eq!(conns.load(Ordering::SeqCst), 0, "no connection was made");

    // Every check must pass; an allowed destination works as usual.
    let this_port = Client::builder()
        .allow_destination(|a| a.ip().is_loopback())
        .allow_destination(move |a| a.port() == port)
        .build();
    let mut r = this_port.get(&url(srv.local_addr(), "/")).unwrap();
    assert_eq!(r.body_mut().read_to_string().unwrap(), "hello");
    let other_port = Client::builder()
        .allow_destination(|a| a.ip().is_loopback())
        .allow_destination(move |a| a.port() != port)
        .build();
    let e = other_port.get(&url(srv.local_addr(), "/")).unwrap_err();
    assert!(matches!(e, Error::DestinationRefused { .. }), "{e:?}");
    assert_eq!(conns.load(Ordering::SeqCst), 1);
    srv.stop(Duration::from_secs(1));
}

#[test]
fn a_redirect_to_a_refused_destination_is_refused() {
    let (inner, inner_conns) = server();
    let outer = redirecting_to(url(inner.local_addr(), "/"));
    let outer_port = outer.local_addr().port();
    let client = Client::builder()
        .allow_destination(move |a| a.port() == outer_port)
        .build();
    let e = client.get(&url(outer.local_addr(), "/")).unwrap_err();
    match e {
        Error::DestinationRefused { addr, .. } => assert_eq!(addr, inner.local_addr()),
        other => panic!("expected DestinationRefused, got {other:?}"),
    }
    assert_eq!(inner_conns.load(Ordering::SeqCst), 0);
    outer.stop(ms(100));
    inner.stop(ms(100));
}

/// Reads a request head; returns its `Content-Length` (0 if none).
fn read_head(conn: &mut TcpStream) -> std::io::Result<usize> {
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    Ok(length)
}

/// Bodies up to this size are read and answered `200 ok`; larger ones are not read.
const LIMIT: usize = 1024;
/// Well over what the socket buffers of both ends hold, so that writing it fails once the
/// server has closed.
const HUGE: usize = 16 << 20;

/// A keep-alive server that, for a body over [`LIMIT`], writes `early` at once (say, a 413)
/// and closes without reading the body, as `http::Server` does. Counts connections.
fn limited(early: &'static [u8]) -> (StreamServer, Arc<AtomicUsize>) {
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    let server = StreamServer::bind("127.0.0.1:0", move |mut conn: TcpStream, _| {
        counted.fetch_add(1, Ordering::SeqCst);
        while let Ok(length) = read_head(&mut conn) {
            if length > LIMIT {
                let _ = conn.write_all(early);
                return; // dropped with the body unread: the connection is reset
            }
            let mut body = vec![0; length];
            let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if conn.read_exact(&mut body).is_err() || conn.write_all(reply).is_err() {
                return;
            }
        }
    })
    .unwrap();
    server.start().unwrap();
    (server, conns)
}

#[test]
fn an_answer_before_the_body_is_sent_is_the_result() {
    support::watchdog::bounded("early 413", Duration::from_secs(60), || {
        let early: [&'static [u8]; 2] = [
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large",
            // No `Connection: close`, and a body that ends with the connection.
            b"HTTP/1.1 413 Payload Too Large\r\n\r\ntoo large",
        ];
        for reply in early {
            let (srv, conns) = limited(reply);
            let u = url(srv.local_addr(), "/upload");
            let huge = vec![b'x'; HUGE];
            let e = http::post(&u, &huge).unwrap_err();
            assert!(matches!(e, Error::Status(413)), "{e:?}");

            let client = Client::builder().pass_through().build();
            let mut r = client.post(&u, &huge).unwrap();
            assert_eq!(r.status(), 413);
            assert_eq!(r.body_mut().read_to_string().unwrap(), "too large");
            // The cut-off connection is not reused.
            let mut r = client.post(&u, b"small").unwrap();
            assert_eq!(r.body_mut().read_to_string().unwrap(), "ok");
            assert_eq!(conns.load(Ordering::SeqCst), 3);
            srv.stop(ms(100));
        }
    });
}

#[test]
fn a_server_that_closes_without_a_whole_answer_is_an_error() {
    support::watchdog::bounded("no answer", Duration::from_secs(60), || {
        // With nothing received, the failed write is the error; with part of an answer, the
        // answer is read (at once: the connection is gone) and found cut short.
        let partial = b"HTTP/1.1 413 Payload Too Large\r\nContent-Le";
        for (early, answer_read) in [(&b""[..], false), (&partial[..], true)] {
            let (srv, _) = limited(early);
            let e = http::post(&url(srv.local_addr(), "/upload"), vec![b'x'; HUGE]).unwrap_err();
            match &e {
                Error::Io(io) => {
                    let kind = io.kind();
                    assert!(
                        matches!(kind, ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
                        "{io:?}"
                    );
                    let said = io.to_string().contains("while the request was being sent");
                    assert_eq!(said, answer_read, "{io}");
                }
                other => panic!("expected a reset, got {other:?}"),
            }
            srv.stop(ms(100));
        }
    });
}

#[test]
fn environment_proxies_are_not_used() {
    const CASE: &str = "GREENLET_HTTP_CLIENT_PROXY_CASE";
    if std::env::var_os(CASE).is_none() {
        // The proxy variables are read when a client is built: set them in a child process.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "environment_proxies_are_not_used", "--nocapture"])
            .env(CASE, "1")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("ALL_PROXY", "http://127.0.0.1:9")
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed:\n{report}");
        assert!(report.contains("1 passed"), "{report}");
        return;
    }
    let (srv, _) = server();
    let mut r = http::get(&url(srv.local_addr(), "/")).unwrap();
    assert_eq!(r.body_mut().read_to_string().unwrap(), "hello");
    srv.stop(ms(100));
}
