//! `monkey::patch_all`: `std::thread::sleep` inside greenlets parks only the greenlet, and
//! plain threads are unaffected.
#![cfg(all(feature = "monkey", target_os = "linux"))]

use std::time::{Duration, Instant};

const SLEEPERS: usize = 200;
const NAP: Duration = Duration::from_millis(200);

#[test]
fn std_sleep_in_greenlets_is_cooperative_and_threads_are_unchanged() {
    greenlet::monkey::patch_all();
    greenlet::monkey::patch_all(); // idempotent
    assert!(greenlet::monkey::is_patched());

    let t = Instant::now();
    let gs: Vec<_> = (0..SLEEPERS)
        .map(|_| {
            greenlet::spawn(|| {
                let t = Instant::now();
                std::thread::sleep(NAP);
                t.elapsed()
            })
        })
        .collect();
    for slept in greenlet::joinall(gs) {
        assert!(slept.unwrap() >= NAP, "never early");
    }
    // Unpatched, 200 × 200 ms on the worker threads would take 20 s (10 s on 2 workers).
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // A plain thread still really sleeps.
    let t = Instant::now();
    std::thread::spawn(|| std::thread::sleep(Duration::from_millis(50)))
        .join()
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(50));

    // Invalid input is rejected as by the C library.
    let g = greenlet::spawn(|| {
        let bad = libc::timespec {
            tv_sec: 0,
            tv_nsec: 2_000_000_000,
        };
        // SAFETY: a valid pointer to a (deliberately out-of-range) timespec.
        unsafe { libc::nanosleep(&bad, std::ptr::null_mut()) }
    });
    assert_eq!(g.get(), Ok(-1));
}

#[test]
fn killing_a_greenlet_in_a_patched_sleep_does_not_abort() {
    greenlet::monkey::patch_all();
    let g = greenlet::spawn(|| {
        std::thread::sleep(Duration::from_secs(3600)); // ends early when killed
        greenlet::sleep(Duration::from_secs(3600)); // the kill lands here
    });
    greenlet::sleep(Duration::from_millis(50));
    let t = Instant::now();
    assert!(g.kill_timeout(Duration::from_secs(5)));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(g.get(), Err(greenlet::JoinError::Killed));
}

mod sockets {
    use std::io::{ErrorKind, Read, Write};
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use greenlet::net::TcpStream as GreenTcp;
    use greenlet::server::StreamServer;

    const FETCHES: usize = 200;
    const DELAY: Duration = Duration::from_millis(200);

    /// A greenlet server that answers each request after `DELAY`.
    fn slow_server() -> StreamServer {
        let server = StreamServer::bind("127.0.0.1:0", |mut c: GreenTcp, _| {
            let mut buf = [0; 1024];
            let _ = c.read(&mut buf);
            greenlet::sleep(DELAY);
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        })
        .unwrap();
        server.start().unwrap();
        server
    }

    /// Plain std code, as a third-party library would write it.
    fn std_fetch(addr: SocketAddr) -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    #[test]
    fn std_sockets_in_greenlets_run_concurrently() {
        greenlet::monkey::patch_all();
        let server = slow_server();
        let addr = server.local_addr();
        let t = Instant::now();
        let gs: Vec<_> = (0..FETCHES)
            .map(|_| greenlet::spawn(move || std_fetch(addr)))
            .collect();
        for r in greenlet::joinall(gs) {
            assert!(r.unwrap().unwrap().ends_with("ok"));
        }
        // One after another: 40 s; blocking the 2 workers: about 20 s.
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        server.stop(Duration::from_secs(1));
    }

    #[test]
    fn unmodified_ureq_runs_concurrently_in_greenlets() {
        greenlet::monkey::patch_all();
        let server = slow_server();
        let url = format!("http://{}/", server.local_addr());
        let t = Instant::now();
        let gs: Vec<_> = (0..FETCHES)
            .map(|_| {
                let url = url.clone();
                // ureq's default agent: std's TcpStream, nothing greenlet-aware.
                greenlet::spawn(move || {
                    ureq::get(&url)
                        .call()
                        .map(|mut r| r.body_mut().read_to_string())
                })
            })
            .collect();
        for r in greenlet::joinall(gs) {
            assert_eq!(r.unwrap().unwrap().unwrap(), "ok");
        }
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        server.stop(Duration::from_secs(1));
    }

    #[test]
    fn read_timeouts_still_fire_and_threads_are_unchanged() {
        greenlet::monkey::patch_all();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let g = greenlet::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let t = Instant::now();
            let e = s.read(&mut [0; 8]).unwrap_err();
            (e.kind(), t.elapsed())
        });
        let (_conn, _) = listener.accept().unwrap(); // a plain thread: blocks as usual
        let (kind, took) = g.get().unwrap();
        assert!(
            matches!(kind, ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{kind:?}"
        );
        assert!(took >= Duration::from_millis(50));

        // A refused connection keeps its error.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let g = greenlet::spawn(move || {
            std::net::TcpStream::connect(closed)
                .map(drop)
                .map_err(|e| e.kind())
        });
        assert_eq!(g.get(), Ok(Err(ErrorKind::ConnectionRefused)));
    }

    #[test]
    fn killing_a_greenlet_in_a_std_read_does_not_abort() {
        greenlet::monkey::patch_all();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let g = greenlet::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            let _ = s.read(&mut [0; 8]); // parked here; ends with ECANCELED when killed
            greenlet::sleep(Duration::from_secs(3600)); // the kill lands here
        });
        let (_conn, _) = listener.accept().unwrap();
        greenlet::sleep(Duration::from_millis(50));
        assert!(g.kill_timeout(Duration::from_secs(5)));
        assert_eq!(g.get(), Err(greenlet::JoinError::Killed));
    }

    #[test]
    fn a_std_accept_loop_in_a_greenlet_leaves_the_worker_free() {
        greenlet::monkey::patch_all();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // A std accept loop serving each connection from a greenlet, all plain std code.
        let acceptor = greenlet::spawn(move || {
            for _ in 0..FETCHES {
                let (mut c, _) = listener.accept().unwrap();
                drop(greenlet::spawn(move || {
                    let mut buf = [0; 256];
                    let _ = c.read(&mut buf);
                    std::thread::sleep(DELAY);
                    let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }));
            }
        });
        let t = Instant::now();
        let gs: Vec<_> = (0..FETCHES)
            .map(|_| greenlet::spawn(move || std_fetch(addr)))
            .collect();
        for r in greenlet::joinall(gs) {
            assert!(r.unwrap().unwrap().ends_with("ok"));
        }
        acceptor.join();
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }

    #[test]
    fn std_name_lookups_in_greenlets_use_the_thread_pool() {
        use std::net::ToSocketAddrs;
        greenlet::monkey::patch_all();
        let gs: Vec<_> = (0..50)
            .map(|_| greenlet::spawn(|| ("localhost", 80).to_socket_addrs().map(|a| a.count())))
            .collect();
        for r in greenlet::joinall(gs) {
            assert!(r.unwrap().unwrap() > 0);
        }
        let g = greenlet::spawn(|| {
            "no-such-host.invalid:80"
                .to_socket_addrs()
                .map(drop)
                .is_err()
        });
        assert_eq!(g.get(), Ok(true));
        // Plain threads resolve as before.
        assert!(("localhost", 80).to_socket_addrs().unwrap().count() > 0);
    }

    #[test]
    fn std_udp_and_connect_timeout_cooperate() {
        greenlet::monkey::patch_all();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b_addr = b.local_addr().unwrap();
        // Many greenlets parked in std's recv_from while one sends: none blocks a worker.
        let receiver = greenlet::spawn(move || {
            let mut buf = [0; 16];
            b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            b.recv_from(&mut buf).map(|(n, _)| buf[..n].to_vec())
        });
        let sleepers: Vec<_> = (0..50)
            .map(|_| greenlet::spawn(|| std::thread::sleep(DELAY)))
            .collect();
        greenlet::sleep(Duration::from_millis(20));
        let t = Instant::now();
        greenlet::spawn(move || a.send_to(b"dgram", b_addr).unwrap()).join();
        assert_eq!(receiver.get().unwrap().unwrap(), b"dgram");
        greenlet::joinall(sleepers);
        assert!(t.elapsed() < Duration::from_secs(2));

        // connect_timeout waits in poll: it connects, and it still refuses.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let g = greenlet::spawn(move || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .map(drop)
                .map_err(|e| e.kind())
        });
        assert_eq!(g.get(), Ok(Ok(())));
    }

    #[test]
    fn raw_read_and_write_on_sockets_cooperate_and_files_are_untouched() {
        use std::os::fd::AsRawFd;
        greenlet::monkey::patch_all();
        let server = slow_server();
        let addr = server.local_addr();
        let t = Instant::now();
        let gs: Vec<_> = (0..FETCHES)
            .map(|_| {
                greenlet::spawn(move || {
                    // C-style code: write(2) and read(2) on the descriptor.
                    let s = std::net::TcpStream::connect(addr).unwrap();
                    let req = b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
                    // SAFETY: a valid buffer and an open socket.
                    let sent =
                        unsafe { libc::write(s.as_raw_fd(), req.as_ptr().cast(), req.len()) };
                    assert_eq!(sent, req.len() as isize);
                    let mut out = Vec::new();
                    let mut buf = [0u8; 256];
                    loop {
                        // SAFETY: as above.
                        let n = unsafe {
                            libc::read(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                        };
                        if n <= 0 {
                            break;
                        }
                        out.extend_from_slice(&buf[..n as usize]);
                    }
                    String::from_utf8(out).unwrap()
                })
            })
            .collect();
        for r in greenlet::joinall(gs) {
            assert!(r.unwrap().ends_with("ok"));
        }
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        server.stop(Duration::from_secs(1));

        // Files and pipes inside greenlets behave as always.
        let g = greenlet::spawn(|| {
            let text = std::fs::read_to_string("Cargo.toml").unwrap();
            let mut child = std::process::Command::new("echo")
                .arg("piped")
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child.wait().unwrap();
            (text.contains("[package]"), out)
        });
        assert_eq!(g.get().unwrap(), (true, "piped\n".to_owned()));
    }

    #[test]
    fn c_style_accept_and_recvmsg_leave_the_workers_free() {
        use std::os::fd::AsRawFd;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        const PARKED: usize = 4; // more than the workers
        greenlet::monkey::patch_all();
        let listeners: Vec<_> = (0..PARKED)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let acceptors: Vec<_> = listeners
            .into_iter()
            .map(|l| {
                greenlet::spawn(move || {
                    // SAFETY: an open listener; null address arguments are allowed.
                    let fd = unsafe {
                        libc::accept(l.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut())
                    };
                    // SAFETY: `fd` is ours to close.
                    (fd >= 0).then(|| unsafe { libc::close(fd) })
                })
            })
            .collect();
        let udp: Vec<_> = (0..PARKED)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let udp_addrs: Vec<_> = udp.iter().map(|u| u.local_addr().unwrap()).collect();
        let receivers: Vec<_> = udp
            .into_iter()
            .map(|u| {
                greenlet::spawn(move || {
                    let mut buf = [0u8; 16];
                    let mut iov = libc::iovec {
                        iov_base: buf.as_mut_ptr().cast(),
                        iov_len: buf.len(),
                    };
                    // SAFETY: all-zero is a valid empty `msghdr`.
                    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
                    msg.msg_iov = &mut iov;
                    msg.msg_iovlen = 1;
                    // SAFETY: `msg` describes the valid buffer above.
                    unsafe { libc::recvmsg(u.as_raw_fd(), &mut msg, 0) }
                })
            })
            .collect();
        // Runs only if the parked greenlets left a worker free.
        let ran = Arc::new(AtomicBool::new(false));
        let r2 = ran.clone();
        drop(greenlet::spawn(move || {
            greenlet::sleep(Duration::from_millis(20));
            r2.store(true, Ordering::SeqCst);
        }));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ran.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the workers were blocked");
            std::thread::sleep(Duration::from_millis(5));
        }
        for a in &addrs {
            drop(std::net::TcpStream::connect(a).unwrap());
        }
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for a in &udp_addrs {
            sender.send_to(b"hi", a).unwrap();
        }
        assert!(
            greenlet::joinall(acceptors)
                .into_iter()
                .all(|r| r == Ok(Some(0)))
        );
        assert!(greenlet::joinall(receivers).into_iter().all(|r| r == Ok(2)));
    }
}

/// Several parked reads, one after another, on one std socket in a greenlet: each wait
/// registers the descriptor with may and deregisters it before the hook returns, so the next
/// wait can register it again. (A review found that waiting on a duplicate that was closed
/// before its deregistration left epoll watching the socket under the closed number, and the
/// next waits failed with "File exists".)
#[test]
fn several_parked_reads_on_one_patched_socket() {
    use std::io::{Read, Write};
    greenlet::monkey::patch_all();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let g = greenlet::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        (0..5)
            .map(|_| {
                let mut b = [0u8; 1];
                s.read(&mut b)
                    .map(|n| b[..n].to_vec())
                    .map_err(|e| e.to_string())
            })
            .collect::<Vec<_>>()
    });
    let (mut peer, _) = listener.accept().unwrap();
    for i in 0..5u8 {
        std::thread::sleep(Duration::from_millis(20));
        peer.write_all(&[b'a' + i]).unwrap();
    }
    let got = g.get().unwrap();
    let want: Vec<Result<Vec<u8>, String>> = (0..5u8).map(|i| Ok(vec![b'a' + i])).collect();
    assert_eq!(got, want);
}

/// After parked reads on a patched socket, may's epoll watches no descriptor that is closed:
/// every registration a hook made was removed while its descriptor was open.
#[test]
fn patched_waits_leave_no_stale_epoll_entries() {
    use std::io::{Read, Write};
    greenlet::monkey::patch_all();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let g = greenlet::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let mut b = [0u8; 1];
        let n = s.read(&mut b).unwrap();
        (n, s)
    });
    let (mut peer, _) = listener.accept().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    peer.write_all(b"x").unwrap();
    let (n, _socket) = g.get().unwrap();
    assert_eq!(n, 1);
    std::thread::sleep(Duration::from_millis(50));
    let mut stale = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        if !target.to_string_lossy().contains("eventpoll") {
            continue;
        }
        let name = entry.file_name();
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", name.to_string_lossy()))
            .unwrap_or_default();
        for line in info.lines().filter(|l| l.starts_with("tfd:")) {
            let tfd: i32 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            if !std::path::Path::new(&format!("/proc/self/fd/{tfd}")).exists() {
                stale.push(tfd);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "epoll watches closed descriptors {stale:?}"
    );
}
