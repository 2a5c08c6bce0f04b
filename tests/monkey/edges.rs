//! Edges of monkey v2 found in review (issue 15): each case failed (a crash, a hang, a wrong
//! result) before its fix. Results are compared with the kernel's, on a plain thread.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::support::ms;
use crate::support::watchdog::{bounded, in_greenlet};

const BOUND: Duration = Duration::from_secs(30);

fn patched() {
    crate::configure();
    greenlet::monkey::patch_all();
}

fn errno() -> Option<i32> {
    std::io::Error::last_os_error().raw_os_error()
}

/// A child forked from a greenlet runs its `pre_exec` hook, whose read would park: in the
/// child the hooks are the C library's own (before, the child ran the parent's event loop,
/// the parent's `status()` never returned, and the child died of SIGSEGV).
#[test]
fn hooks_in_a_forked_child_are_the_c_librarys() {
    use std::os::unix::process::CommandExt;
    patched();
    in_greenlet("pre_exec read in a forked child", BOUND, || {
        let (mut r, mut w) = std::io::pipe().unwrap();
        w.write_all(b"").unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(ms(100));
            w.write_all(b"go").unwrap();
        });
        let mut cmd = std::process::Command::new("true");
        let rfd = r.as_raw_fd();
        // SAFETY: the closure only reads a pipe (async-signal-safe).
        unsafe {
            cmd.pre_exec(move || {
                let mut b = [0u8; 2];
                libc::read(rfd, b.as_mut_ptr().cast(), 2);
                Ok(())
            })
        };
        let status = cmd.status().unwrap();
        writer.join().unwrap();
        assert!(status.success(), "{status:?}");
        // The parent's end still holds what the child did not read (both ran on one pipe).
        drop(r.read(&mut [0u8; 2]));
    });
}

/// `readv` with more iovecs than the kernel takes: the kernel's `EINVAL`, never a read of the
/// caller's array past its end (a SIGSEGV before).
#[test]
fn readv_with_too_many_iovecs_is_the_kernels_einval() {
    patched();
    let run = || {
        let (r, _w) = std::io::pipe().unwrap();
        let mut b = [0u8; 1];
        let iov = libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: 1,
        };
        // SAFETY: the kernel rejects the count before reading past the one iovec.
        let n = unsafe { libc::readv(r.as_raw_fd(), &iov, 1 << 24) };
        (n, errno())
    };
    let in_g = in_greenlet("readv count", BOUND, run);
    assert_eq!(in_g, (-1, Some(libc::EINVAL)));
    assert_eq!(in_g, bounded("readv count (thread)", BOUND, run));
}

/// A receive of the error queue never waits (the kernel's EAGAIN at once; before, the
/// greenlet waited for readability for ever). Nor does a `select` over more than
/// `FD_SETSIZE` descriptors read or write past an `fd_set`.
#[test]
fn calls_that_never_block_do_not_wait() {
    patched();
    let run = || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut b = [0u8; 16];
        let t = Instant::now();
        // SAFETY: a valid buffer.
        let n = unsafe { libc::recv(s.as_raw_fd(), b.as_mut_ptr().cast(), 16, libc::MSG_ERRQUEUE) };
        let e = errno();
        assert!(t.elapsed() < Duration::from_secs(1));
        (n, e)
    };
    let in_g = in_greenlet("MSG_ERRQUEUE", BOUND, run);
    assert_eq!(in_g, (-1, Some(libc::EAGAIN)));
    assert_eq!(in_g, bounded("MSG_ERRQUEUE (thread)", BOUND, run));
}

/// `MSG_WAITALL` as the kernel's: a datagram is one datagram (never two joined); on a stream
/// the whole buffer, with `MSG_PEEK` what has come.
#[test]
fn msg_waitall_is_the_kernels() {
    patched();
    in_greenlet("MSG_WAITALL", BOUND, || {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        b.send_to(b"ab", a.local_addr().unwrap()).unwrap();
        b.send_to(b"cdefgh", a.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 8];
        // SAFETY: a valid buffer of 8 bytes.
        let n = unsafe { libc::recv(a.as_raw_fd(), buf.as_mut_ptr().cast(), 8, libc::MSG_WAITALL) };
        assert_eq!(&buf[..n as usize], b"ab", "one datagram");

        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let writer = greenlet::spawn(move || {
            for chunk in [&b"ab"[..], b"cd"] {
                c.write_all(chunk).unwrap();
                greenlet::sleep(ms(30));
            }
            c
        });
        let mut buf = [0u8; 4];
        // SAFETY: a valid buffer of 4 bytes.
        let n = unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr().cast(), 4, libc::MSG_WAITALL) };
        assert_eq!((n, &buf), (4, b"abcd"), "the whole buffer");
        let _c = writer.get().unwrap();
    });
}

/// Two greenlets accept on one listener while connections arrive back to back: each
/// connection is accepted (before, a waiter that found the other holding its turn waited for
/// a readiness edge that never came: 2-3 hangs in 400 rounds).
#[test]
fn accepts_sharing_a_listener_take_every_connection() {
    patched();
    bounded("accept bursts", BOUND, || {
        for round in 0..200 {
            let l = std::sync::Arc::new(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
            let addr = l.local_addr().unwrap();
            let acceptors: Vec<_> = (0..2)
                .map(|_| {
                    let l = l.clone();
                    greenlet::spawn(move || l.accept().map(|(s, _)| s))
                })
                .collect();
            let c1 = std::net::TcpStream::connect(addr).unwrap();
            let c2 = std::net::TcpStream::connect(addr).unwrap();
            for (i, a) in acceptors.into_iter().enumerate() {
                assert!(
                    a.join_timeout(Duration::from_secs(5)),
                    "round {round}: acceptor {i} still waits with a connection queued"
                );
            }
            drop((c1, c2));
        }
    });
}

/// A terminal in non-canonical mode with VMIN 0 returns at once, with no input: so does the
/// read in a greenlet (before, it waited for input for ever).
#[test]
fn a_terminal_read_with_vmin_zero_returns_at_once() {
    patched();
    in_greenlet("VMIN 0", BOUND, || {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors; the other pointers may be null.
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0);
        // SAFETY: both were just opened and are owned here.
        let (_m, s) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        // SAFETY: termios is plain old data, filled in by tcgetattr.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `t` is writable; cfmakeraw and tcsetattr read and write it.
        unsafe {
            assert_eq!(libc::tcgetattr(s.as_raw_fd(), &mut t), 0);
            libc::cfmakeraw(&mut t);
            t.c_cc[libc::VMIN] = 0;
            t.c_cc[libc::VTIME] = 0;
            assert_eq!(libc::tcsetattr(s.as_raw_fd(), libc::TCSANOW, &t), 0);
        }
        let mut f = std::fs::File::from(s);
        let t = Instant::now();
        assert_eq!(f.read(&mut [0u8; 8]).unwrap(), 0);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    });
}

/// A descriptor number closed with `close_range` and reused for a regular file: read as a
/// file (before, the stale "socket" kind made it fail with ENOTSOCK).
#[test]
fn a_number_closed_by_close_range_is_seen_afresh() {
    patched();
    in_greenlet("close_range", BOUND, || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // A high number, which the other tests (lowest free numbers first) do not take.
        // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor of ours, or -1.
        let number = unsafe { libc::fcntl(s.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 900) };
        assert!(number >= 900);
        let mut b = [0u8; 1];
        // SAFETY: a valid buffer; a non-blocking probe that caches the kind.
        unsafe { libc::recv(number, b.as_mut_ptr().cast(), 1, libc::MSG_DONTWAIT) };
        // SAFETY: closes our own duplicate, by number.
        assert_eq!(
            unsafe { libc::close_range(number as u32, number as u32, 0) },
            0
        );
        let f = std::fs::File::open("Cargo.toml").unwrap();
        // The file onto that number by a raw system call, which no hook of the crate sees.
        // SAFETY: dup3 onto the number we just closed.
        let r = unsafe { libc::syscall(libc::SYS_dup3, f.as_raw_fd(), number, libc::O_CLOEXEC) };
        assert_eq!(r, i64::from(number));
        // SAFETY: `number` is now our own duplicate of the file.
        let mut f = unsafe { std::fs::File::from_raw_fd(number) };
        let mut head = [0u8; 9];
        f.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"[package]");
    });
}
