//! `http::Server` against the clients people use: the `curl` command (chunked upload with
//! `-T -`, `Expect: 100-continue`, `HEAD`, HTTP/1.0, a chunked download) and Python's
//! `http.client` (chunked upload, `HEAD` then `GET` on one keep-alive connection, a chunked
//! response). Each peer runs as a child process with a time limit.

mod support;

use std::io::{self, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use greenlet::http::{Body, Request, Response, Server};
use support::watchdog::bounded;

fn server() -> Server {
    let server = Server::bind("127.0.0.1:0", |mut req: Request<Body>| {
        match req.uri().path() {
            "/count" => match io::copy(req.body_mut(), &mut io::sink()) {
                Ok(n) => Response::new(Body::from(format!("{n} bytes"))),
                Err(e) => Response::new(Body::from(e.to_string())),
            },
            "/stream" => Response::new(Body::from_reader(io::Cursor::new(b"abcdef".to_vec()))),
            _ => Response::new(Body::from("hello")),
        }
    })
    .unwrap()
    .max_body_bytes(64 << 20);
    server.start().unwrap();
    server
}

/// Runs `cmd` with `stdin` fed to it; killed (and the test failed) after 30 s.
fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (is it installed? .ci/run installs it)"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let pipe = |r: Option<Box<dyn io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = r.unwrap().read_to_end(&mut out);
            out
        })
    };
    let stdout = pipe(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = pipe(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    feeder.join().unwrap();
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn curl_uploads_chunked_waits_for_100_continue_and_reads_every_framing() {
    bounded("curl", Duration::from_secs(120), || {
        let srv = server();
        let base = format!("http://{}", srv.local_addr());
        let curl = |args: &[&str], stdin: &[u8]| {
            run(
                Command::new("curl")
                    .args(["-sS", "--max-time", "20"])
                    .args(args),
                stdin,
            )
        };
        // `-T -`: a chunked upload of stdin.
        let data = vec![b'u'; 3 << 20];
        let out = curl(&["-T", "-", &format!("{base}/count")], &data);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "3145728 bytes",
            "{}",
            text(&out)
        );
        // With `Expect: 100-continue`, curl waits up to 10 s for the 100 before it sends.
        let t = Instant::now();
        let out = curl(
            &[
                "--expect100-timeout",
                "10",
                "-H",
                "Expect: 100-continue",
                "--data-binary",
                "@-",
                &format!("{base}/count"),
            ],
            &data,
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "3145728 bytes",
            "{}",
            text(&out)
        );
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no 100 Continue: {:?}",
            t.elapsed()
        );
        // HEAD: the headers, no body.
        let out = curl(&["-I", &format!("{base}/")], b"");
        let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        assert!(
            head.starts_with("http/1.1 200 ok") && head.contains("content-length: 5"),
            "{}",
            text(&out)
        );
        // HTTP/1.0, and a chunked download shown raw.
        let out = curl(&["--http1.0", &format!("{base}/stream")], b"");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "abcdef",
            "{}",
            text(&out)
        );
        let out = curl(&["--raw", &format!("{base}/stream")], b"");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "6\r\nabcdef\r\n0\r\n\r\n",
            "{}",
            text(&out)
        );
        srv.stop(Duration::from_secs(1));
    });
}

const PYTHON: &str = r#"
import http.client, sys
host, port = sys.argv[1], int(sys.argv[2])
c = http.client.HTTPConnection(host, port, timeout=20)
c.request("POST", "/count", body=iter([b"hello", b" ", b"world"]), encode_chunked=True)
r = c.getresponse(); assert r.read() == b"11 bytes", r.status
c.request("HEAD", "/")
r = c.getresponse(); assert r.read() == b"" and r.getheader("content-length") == "5", r.headers
assert r.getheader("date", "").endswith(" GMT"), r.headers
c.request("GET", "/")
r = c.getresponse(); assert r.read() == b"hello"
c.request("GET", "/stream")
r = c.getresponse(); assert r.chunked and r.read() == b"abcdef"
c.request("POST", "/count", body=b"x" * 100000)
r = c.getresponse(); assert r.read() == b"100000 bytes"
print("ok")
"#;

#[test]
fn python_http_client_keeps_one_connection_through_chunked_head_and_get() {
    bounded("python http.client", Duration::from_secs(60), || {
        let srv = server();
        let a = srv.local_addr();
        let out = run(
            Command::new("python3").args([
                "-c",
                PYTHON,
                &a.ip().to_string(),
                &a.port().to_string(),
            ]),
            b"",
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "ok",
            "{}",
            text(&out)
        );
        srv.stop(Duration::from_secs(1));
    });
}
