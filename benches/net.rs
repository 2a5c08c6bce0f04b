//! Loopback networking, greenlet beside tokio (multi-thread) and thread-per-request.
//!
//! Run with: `cargo bench --bench net` (`GREENLET_BENCH_QUICK=1` for a short run).
//!
//! - `echo/100x500`: 100 connections, each doing 500 round trips of 64 bytes, against an
//!   echo server of the same runtime (greenlet `StreamServer`, tokio accept loop).
//!   Throughput is in round trips.
//! - `echo/std_monkey/100x500` (with `--features monkey`): the same over plain `std::net`
//!   (a std accept loop and std clients, unmodified) under `monkey::patch_all`, measured after
//!   the other two (patching is for the whole process).
//! - `fetch/N`: N concurrent HTTP/1.1 GETs (`Connection: close`) of a loopback endpoint that
//!   answers after 20 ms, all joined; the same tokio server, in a child process (so that each
//!   process holds one end of each connection), answers every client.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{quick, tokio_rt};

const ECHO_CONNS: usize = 100;
const ECHO_TRIPS: usize = 500;
const MSG: usize = 64;
const DELAY: Duration = Duration::from_millis(20);
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";

/// A std listener with a deep backlog, so 10,000 simultaneous connects are not dropped.
fn deep_listener() -> std::net::TcpListener {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_reuse_address(true).unwrap();
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.listen(8192).unwrap();
    s.set_nonblocking(true).unwrap();
    s.into()
}

// ---- echo ----

fn greenlet_echo_server() -> greenlet::server::StreamServer {
    let server = greenlet::server::StreamServer::bind(
        "127.0.0.1:0",
        |mut c: greenlet::net::TcpStream, _| {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = c.read(&mut buf) {
                if c.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        },
    )
    .unwrap();
    server.start().unwrap();
    server
}

fn greenlet_echo_clients(addr: SocketAddr) -> Duration {
    echo_clients(addr, |addr| {
        let s = greenlet::net::TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s
    })
}

/// `ECHO_CONNS` greenlets, each making `ECHO_TRIPS` round trips on a stream from `connect`.
fn echo_clients<S: Read + Write + 'static>(
    addr: SocketAddr,
    connect: fn(SocketAddr) -> S,
) -> Duration {
    let start = Instant::now();
    let gs: Vec<_> = (0..ECHO_CONNS)
        .map(|_| {
            greenlet::spawn(move || {
                let mut s = connect(addr);
                let (msg, mut back) = ([7u8; MSG], [0u8; MSG]);
                for _ in 0..ECHO_TRIPS {
                    s.write_all(&msg).unwrap();
                    s.read_exact(&mut back).unwrap();
                }
            })
        })
        .collect();
    for r in greenlet::joinall(gs) {
        r.unwrap();
    }
    start.elapsed()
}

async fn tokio_echo_server(listener: tokio::net::TcpListener) {
    loop {
        let (mut c, _) = listener.accept().await.unwrap();
        c.set_nodelay(true).unwrap();
        tokio::spawn(async move {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = c.read(&mut buf).await {
                if c.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
    }
}

async fn tokio_echo_clients(addr: SocketAddr) -> Duration {
    let start = Instant::now();
    let hs: Vec<_> = (0..ECHO_CONNS)
        .map(|_| {
            tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                let (msg, mut back) = ([7u8; MSG], [0u8; MSG]);
                for _ in 0..ECHO_TRIPS {
                    s.write_all(&msg).await.unwrap();
                    s.read_exact(&mut back).await.unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.await.unwrap();
    }
    start.elapsed()
}

/// Round trips of small messages over 100 connections.
fn echo(c: &mut Criterion) {
    common::pool_from_env();
    let rt = tokio_rt();
    let mut group = c.benchmark_group("echo");
    group.throughput(Throughput::Elements((ECHO_CONNS * ECHO_TRIPS) as u64));
    let id = format!("{ECHO_CONNS}x{ECHO_TRIPS}");

    let server = greenlet_echo_server();
    let addr = server.local_addr();
    group.bench_function(BenchmarkId::new("greenlet", &id), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| greenlet_echo_clients(addr)).sum())
    });
    server.stop(Duration::from_secs(1));

    let listener =
        rt.block_on(async { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap() });
    let addr = listener.local_addr().unwrap();
    let server = rt.spawn(tokio_echo_server(listener));
    group.bench_function(BenchmarkId::new("tokio", &id), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += tokio_echo_clients(addr).await;
                }
                total
            })
        })
    });
    server.abort();

    #[cfg(all(feature = "monkey", target_os = "linux"))]
    {
        greenlet::monkey::patch_all();
        let (addr, stop) = std_echo_server();
        group.bench_function(BenchmarkId::new("std_monkey", &id), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| std_echo_clients(addr)).sum())
        });
        stop.kill();
    }
    group.finish();
}

/// A std echo server in greenlets (an accept loop, a greenlet per connection), cooperative
/// only through `monkey`.
#[cfg(all(feature = "monkey", target_os = "linux"))]
fn std_echo_server() -> (SocketAddr, greenlet::Greenlet<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = greenlet::spawn(move || {
        while let Ok((mut c, _)) = listener.accept() {
            c.set_nodelay(true).unwrap();
            // Detached: it ends when its client closes.
            drop(greenlet::spawn(move || {
                let mut buf = [0; 4096];
                while let Ok(n @ 1..) = c.read(&mut buf) {
                    if c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }));
        }
    });
    (addr, acceptor)
}

#[cfg(all(feature = "monkey", target_os = "linux"))]
fn std_echo_clients(addr: SocketAddr) -> Duration {
    echo_clients(addr, |addr| {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s
    })
}

// ---- fetch ----

/// The endpoint every fetch client hits: answers after `DELAY`, on its own tokio runtime.
fn slow_server(rt: &tokio::runtime::Runtime) -> SocketAddr {
    let std_listener = deep_listener();
    let addr = std_listener.local_addr().unwrap();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        loop {
            let Ok((mut c, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                tokio::time::sleep(DELAY).await;
                let _ = c.write_all(RESPONSE).await;
            });
        }
    });
    addr
}

/// Raises the descriptor limit for 10,000 connections (each process holds one end of each).
fn raise_fd_limit() {
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::NOFILE, 65_536, 65_536) {
        let got = rlimit::increase_nofile_limit(65_536).unwrap_or(0);
        if got < 11_000 {
            eprintln!("cannot raise the fd limit to 65,536 ({e}); have {got}");
        }
    }
}

fn greenlet_fetch(addr: SocketAddr) -> usize {
    let mut s = greenlet::net::TcpStream::connect(addr).unwrap();
    s.write_all(REQUEST).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    resp.len()
}

async fn tokio_fetch(addr: SocketAddr) -> usize {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(REQUEST).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    resp.len()
}

fn std_fetch(addr: SocketAddr) -> usize {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(REQUEST).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    resp.len()
}

/// N concurrent fetches of a 20 ms endpoint, joined.
fn fetch(c: &mut Criterion) {
    common::pool_from_env();
    // The clients' ends of 10,000 connections live in this process, the server's in a child.
    raise_fd_limit();
    let server = ServerProcess::start();
    let addr = server.addr;
    let rt = tokio_rt();
    let mut group = c.benchmark_group("fetch");
    group.sample_size(10);
    let sizes: &[usize] = if quick() { &[1_000] } else { &[1_000, 10_000] };
    for &n in sizes {
        group.bench_with_input(BenchmarkId::new("greenlet", n), &n, |b, &n| {
            b.iter(|| {
                let gs: Vec<_> = (0..n)
                    .map(|_| greenlet::spawn(move || greenlet_fetch(addr)))
                    .collect();
                greenlet::joinall(gs)
                    .into_iter()
                    .map(Result::unwrap)
                    .sum::<usize>()
            })
        });
        group.bench_with_input(BenchmarkId::new("tokio", n), &n, |b, &n| {
            b.iter(|| {
                rt.block_on(async {
                    let hs: Vec<_> = (0..n).map(|_| tokio::spawn(tokio_fetch(addr))).collect();
                    let mut total = 0;
                    for h in hs {
                        total += h.await.unwrap();
                    }
                    total
                })
            })
        });
        group.bench_with_input(BenchmarkId::new("std_thread", n), &n, |b, &n| {
            b.iter(|| {
                let hs: Vec<_> = (0..n)
                    .map(|_| {
                        std::thread::Builder::new()
                            .stack_size(64 * 1024)
                            .spawn(move || std_fetch(addr))
                            .unwrap()
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum::<usize>()
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    let c = Criterion::default().sample_size(10);
    if quick() {
        c.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
    } else {
        c.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5))
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = echo, fetch
}
/// `criterion_main!`, except that the process serves the fetch endpoint instead when the
/// parent bench asks for it (see [`ServerProcess`]).
fn main() {
    if std::env::var_os(SERVER_CHILD).is_some() {
        return serve_fetch_endpoint();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

const SERVER_CHILD: &str = "GREENLET_BENCH_FETCH_SERVER";

/// The child's side: serve the 20 ms endpoint, print its address, and exit when the parent
/// closes our standard input (also if the parent dies).
fn serve_fetch_endpoint() {
    raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = slow_server(&rt);
    println!("{addr}");
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// The fetch endpoint in a child process: the server's end of 10,000 connections then does not
/// count against this process's descriptor limit (20,000 in some sandboxes, which both ends
/// in one process would exhaust).
struct ServerProcess {
    child: std::process::Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start() -> ServerProcess {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .env(SERVER_CHILD, "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the fetch server process");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        let addr = line.trim().parse().expect("the server prints its address");
        ServerProcess { child, addr }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}
