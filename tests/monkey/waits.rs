//! monkey v2 (issue 15): the waiting calls (`poll`, `ppoll`, `select`, `pselect`), pipes,
//! FIFOs and eventfd, child processes and thread joins inside greenlets. Each case runs in
//! greenlets under the watchdog, and its results are compared with the kernel's (the same
//! call on a plain thread, where the hooks pass through). Shared by `monkey_waits.rs` (the
//! default workers) and `monkey_waits_one_worker.rs`.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::support::hostile::{DEADLINES, assert_not_early, name_of};
use crate::support::ms;
use crate::support::watchdog::{bounded, in_greenlet};

const BOUND: Duration = Duration::from_secs(30);

fn patched() {
    crate::configure();
    greenlet::monkey::patch_all();
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both were just returned by pipe2 and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn write_byte(fd: RawFd) {
    // SAFETY: a one-byte buffer.
    assert_eq!(unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) }, 1);
}

fn poll_one(fd: RawFd, events: libc::c_short, timeout_ms: i32) -> (i32, libc::c_short) {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    (r, p.revents)
}

fn flags(fd: RawFd) -> i32 {
    // SAFETY: F_GETFL only reads.
    unsafe { libc::fcntl(fd, libc::F_GETFL) }
}

/// Runs `case` in a greenlet and on a plain thread, under the watchdog.
fn both<R: Send + 'static + std::fmt::Debug + PartialEq>(
    name: &str,
    case: impl Fn() -> R + Send + Sync + Clone + 'static,
) -> (R, R) {
    patched();
    let c = case.clone();
    let in_g = in_greenlet(&format!("{name} (greenlet)"), BOUND, c);
    let on_t = bounded(&format!("{name} (thread)"), BOUND, case);
    (in_g, on_t)
}

#[test]
fn poll_results_are_the_kernels() {
    let (r, w) = pipe();
    let (r, w) = (r.as_raw_fd(), w.as_raw_fd());
    let ((a, b), (c, d)) = both("poll nothing ready", move || {
        let t = Instant::now();
        let got = poll_one(r, libc::POLLIN, 30);
        assert!(t.elapsed() >= ms(30), "early: {:?}", t.elapsed());
        got
    });
    assert_eq!((a, b), (0, 0));
    assert_eq!((a, b), (c, d));
    // A closed descriptor (POLLNVAL), a negative one (ignored), a writable end.
    let (x, y) = both("poll nval", move || {
        let mut ps = [
            libc::pollfd {
                fd: 1_000_000,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: -1,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: w,
                events: libc::POLLOUT,
                revents: 0,
            },
        ];
        // SAFETY: three valid pollfds.
        let n = unsafe { libc::poll(ps.as_mut_ptr(), 3, 1000) };
        (n, ps.map(|p| p.revents))
    });
    assert_eq!(x, (2, [libc::POLLNVAL, 0, libc::POLLOUT]));
    assert_eq!(x, y);
    // EFAULT and EINVAL as the kernel's.
    let (x, y) = both("poll einval", || {
        // SAFETY: the kernel rejects the count before reading the (dangling) array.
        let n = unsafe { libc::poll(std::ptr::NonNull::dangling().as_ptr(), u64::MAX, 10) };
        (n, std::io::Error::last_os_error().raw_os_error())
    });
    assert_eq!(x, (-1, Some(libc::EINVAL)));
    assert_eq!(x, y);
}

#[test]
fn poll_wakes_on_readiness_not_a_timer() {
    patched();
    // 50 greenlets each poll their own pipe with a long time-out; a plain thread writes each
    // pipe 100 ms later. Each wakes within a few ms of its write.
    let lateness = bounded("poll wakes", BOUND, || {
        let pipes: Vec<_> = (0..50).map(|_| pipe()).collect();
        let gs: Vec<_> = pipes
            .iter()
            .map(|(r, _)| {
                let r = r.as_raw_fd();
                greenlet::spawn(move || {
                    let got = poll_one(r, libc::POLLIN, 60_000);
                    (got, Instant::now())
                })
            })
            .collect();
        std::thread::sleep(ms(100));
        let mut late = Vec::new();
        for ((_, w), g) in pipes.iter().zip(gs) {
            let at = Instant::now();
            write_byte(w.as_raw_fd());
            let ((n, rev), woke) = g.get().unwrap();
            assert_eq!((n, rev), (1, libc::POLLIN));
            late.push(woke.saturating_duration_since(at));
        }
        late.sort();
        late
    });
    eprintln!(
        "poll wake-up after the write: median {:?}, max {:?}",
        lateness[25], lateness[49]
    );
    assert!(lateness[25] < ms(5), "median {:?}", lateness[25]);
}

#[test]
fn ppoll_deadlines_from_zero_to_long_never_early_never_hang() {
    let (r, _w) = pipe();
    let r = r.as_raw_fd();
    for d in DEADLINES {
        if d > ms(100) {
            continue;
        }
        let name = format!("ppoll {}", name_of(d));
        let (x, y) = both(&name, move || {
            let ts = libc::timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: i64::from(d.subsec_nanos()),
            };
            let mut p = libc::pollfd {
                fd: r,
                events: libc::POLLIN,
                revents: 0,
            };
            let t = Instant::now();
            // SAFETY: one valid pollfd and timespec.
            let n = unsafe { libc::ppoll(&mut p, 1, &ts, std::ptr::null()) };
            assert_not_early(&format!("ppoll {d:?}"), d, t.elapsed());
            n
        });
        assert_eq!((x, y), (0, 0), "{name}");
    }
    // An invalid time-out is the kernel's EINVAL.
    let (x, y) = both("ppoll einval", move || {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 2_000_000_000,
        };
        let mut p = libc::pollfd {
            fd: r,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd and timespec.
        let n = unsafe { libc::ppoll(&mut p, 1, &ts, std::ptr::null()) };
        (n, std::io::Error::last_os_error().raw_os_error())
    });
    assert_eq!(x, (-1, Some(libc::EINVAL)));
    assert_eq!(x, y);
}

fn fd_set_of(fds: &[RawFd]) -> libc::fd_set {
    // SAFETY: fd_set is plain old data; FD_ZERO/FD_SET write inside it.
    unsafe {
        let mut s: libc::fd_set = std::mem::zeroed();
        libc::FD_ZERO(&mut s);
        for &fd in fds {
            libc::FD_SET(fd, &mut s);
        }
        s
    }
}

#[test]
fn select_and_pselect_results_are_the_kernels() {
    let (r, w) = pipe();
    let (r2, w2) = pipe();
    let (r, w, r2, w2) = (r.as_raw_fd(), w.as_raw_fd(), r2.as_raw_fd(), w2.as_raw_fd());
    write_byte(w2);
    let (x, y) = both("select", move || {
        let mut rs = fd_set_of(&[r, r2]);
        let mut ws = fd_set_of(&[w]);
        let mut tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        let nfds = r.max(r2).max(w) + 1;
        // SAFETY: valid sets and timeval.
        let n = unsafe { libc::select(nfds, &mut rs, &mut ws, std::ptr::null_mut(), &mut tv) };
        // SAFETY: reading bits of valid sets.
        let bits = unsafe {
            (
                libc::FD_ISSET(r, &rs),
                libc::FD_ISSET(r2, &rs),
                libc::FD_ISSET(w, &ws),
            )
        };
        (n, bits)
    });
    assert_eq!(x, (2, (false, true, true)));
    assert_eq!(x, y);
    // Nothing ready: zero, the sets cleared, not early; the timeval holds what is left.
    let (x, y) = both("select times out", move || {
        let mut rs = fd_set_of(&[r]);
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 20_000,
        };
        let t = Instant::now();
        // SAFETY: valid set and timeval.
        let n = unsafe {
            libc::select(
                r + 1,
                &mut rs,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut tv,
            )
        };
        assert_not_early("select 20 ms", ms(20), t.elapsed());
        // SAFETY: reading a bit of a valid set.
        (n, unsafe { libc::FD_ISSET(r, &rs) }, tv.tv_sec, tv.tv_usec)
    });
    assert_eq!(x, (0, false, 0, 0));
    assert_eq!(x, y);
    // A closed descriptor in a set: EBADF; a negative count: EINVAL. (1023, the last that
    // fits a set: the other tests of this binary open a few hundred at most. The kernel only
    // looks as far as the process's descriptor table, so grow the table past it first.)
    // SAFETY: dup2 onto a number nobody uses, closed at once.
    unsafe {
        assert_eq!(libc::dup2(r, 1023), 1023);
        libc::close(1023);
    }
    let (x, y) = both("select ebadf", move || {
        let mut rs = fd_set_of(&[1023]);
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 20_000,
        };
        // SAFETY: valid set and timeval.
        let n = unsafe {
            libc::select(
                1024,
                &mut rs,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut tv,
            )
        };
        let e = std::io::Error::last_os_error().raw_os_error();
        // SAFETY: a negative count is rejected before anything is read.
        let m = unsafe {
            libc::select(
                -1,
                &mut rs,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut tv,
            )
        };
        (n, e, m, std::io::Error::last_os_error().raw_os_error())
    });
    assert_eq!(x, (-1, Some(libc::EBADF), -1, Some(libc::EINVAL)));
    assert_eq!(x, y);
    // pselect: ready after a write from another greenlet or thread, 30 ms in.
    let (x, y) = both("pselect wakes", move || {
        let writer = std::thread::spawn(move || {
            std::thread::sleep(ms(30));
            write_byte(w);
        });
        let mut rs = fd_set_of(&[r]);
        let ts = libc::timespec {
            tv_sec: 5,
            tv_nsec: 0,
        };
        let t = Instant::now();
        // SAFETY: valid set and timespec.
        let n = unsafe {
            libc::pselect(
                r + 1,
                &mut rs,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &ts,
                std::ptr::null(),
            )
        };
        let took = t.elapsed();
        writer.join().unwrap();
        let mut b = [0u8; 1];
        // SAFETY: a one-byte buffer.
        assert_eq!(unsafe { libc::read(r, b.as_mut_ptr().cast(), 1) }, 1);
        assert!(took < Duration::from_secs(4), "{took:?}");
        // SAFETY: reading a bit of a valid set.
        (n, unsafe { libc::FD_ISSET(r, &rs) })
    });
    assert_eq!(x, (1, true));
    assert_eq!(x, y);
}

#[test]
fn pipes_fifos_and_eventfd_are_cooperative_and_keep_their_flags() {
    patched();
    bounded("pipes", BOUND, || {
        // 100 greenlets each read their own pipe; the writes come 100 ms later: together,
        // not one after another (10 s), and the pipes stay blocking throughout.
        let pipes: Vec<_> = (0..100).map(|_| pipe()).collect();
        let t = Instant::now();
        let readers: Vec<_> = pipes
            .iter()
            .map(|(r, _)| {
                let r = r.as_raw_fd();
                greenlet::spawn(move || {
                    // SAFETY: borrowing the pipe's read end (owned by the test) as a File
                    // without taking ownership: ManuallyDrop.
                    let mut f =
                        std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(r) });
                    let mut buf = [0u8; 16];
                    let n = f.read(&mut buf).unwrap();
                    buf[..n].to_vec()
                })
            })
            .collect();
        std::thread::sleep(ms(100));
        for (r, _) in &pipes {
            assert_eq!(flags(r.as_raw_fd()) & libc::O_NONBLOCK, 0, "flags changed");
        }
        let writer = greenlet::spawn(move || {
            for (_, w) in &pipes {
                // A big write to a pipe: written whole, as a blocking write is.
                write_byte(w.as_raw_fd());
            }
            pipes
        });
        for g in readers {
            assert_eq!(g.get().unwrap(), b"x");
        }
        let _pipes = writer.get().unwrap();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    });
    bounded("pipe write bigger than the pipe", BOUND, || {
        let (r, w) = pipe();
        let big = vec![7u8; 1 << 20];
        let writer = greenlet::spawn(move || {
            // SAFETY: as above.
            let mut f =
                std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(w.as_raw_fd()) });
            let n = f.write(&big).unwrap();
            drop(w);
            n
        });
        let reader = greenlet::spawn(move || {
            let mut f = std::fs::File::from(r);
            let mut all = Vec::new();
            f.read_to_end(&mut all).unwrap();
            all.len()
        });
        // A blocking write writes everything before it returns.
        assert_eq!(writer.get().unwrap(), 1 << 20);
        assert_eq!(reader.get().unwrap(), 1 << 20);
    });
    bounded("fifo", BOUND, || {
        let dir = std::env::temp_dir().join(format!("greenlet-fifo-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let path = dir.join("f");
        let _ = std::fs::remove_file(&path);
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Open both ends (a blocking open of one end waits for the other: open the reader
        // non-blocking, then make it blocking, as a program that owns both would).
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        // SAFETY: clearing O_NONBLOCK on our own descriptor.
        unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETFL, 0) };
        let mut writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let rfd = reader.as_raw_fd();
        let readers: Vec<_> = (0..2)
            .map(|_| {
                greenlet::spawn(move || {
                    let mut buf = [0u8; 1];
                    // SAFETY: a one-byte buffer.
                    let n = unsafe { libc::read(rfd, buf.as_mut_ptr().cast(), 1) };
                    (n, buf[0])
                })
            })
            .collect();
        greenlet::spawn(move || {
            greenlet::sleep(ms(50));
            assert_eq!(flags(rfd) & libc::O_NONBLOCK, 0, "flags changed");
            writer.write_all(b"ab").unwrap();
        })
        .get()
        .unwrap();
        let mut got: Vec<_> = readers.into_iter().map(|g| g.get().unwrap()).collect();
        got.sort();
        assert_eq!(got, [(1, b'a'), (1, b'b')]);
        drop(reader);
        let _ = std::fs::remove_dir_all(&dir);
    });
    bounded("eventfd", BOUND, || {
        // SAFETY: eventfd takes no pointers.
        let e = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        assert!(e >= 0);
        // SAFETY: just made, owned here.
        let e = unsafe { OwnedFd::from_raw_fd(e) };
        let fd = e.as_raw_fd();
        let reader = greenlet::spawn(move || {
            let mut v = 0u64;
            // SAFETY: an 8-byte buffer.
            let n = unsafe { libc::read(fd, (&raw mut v).cast(), 8) };
            (n, v)
        });
        greenlet::sleep(ms(30));
        assert!(!reader.ready());
        let v = 5u64;
        // SAFETY: an 8-byte value.
        assert_eq!(unsafe { libc::write(fd, (&raw const v).cast(), 8) }, 8);
        assert_eq!(reader.get().unwrap(), (8, 5));
        drop(e);
    });
}

use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;

#[test]
fn a_cloned_std_stream_reads_and_writes_at_once() {
    patched();
    bounded("full duplex on try_clone", BOUND, || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // Reads everything the greenlet sends, then answers once.
            let mut total = 0;
            let mut buf = vec![0u8; 1 << 16];
            while total < 8 << 20 {
                total += s.read(&mut buf).unwrap();
            }
            s.write_all(b"done").unwrap();
            total
        });
        let s = greenlet::spawn(move || std::net::TcpStream::connect(addr).unwrap())
            .get()
            .unwrap();
        let mut reading = s.try_clone().unwrap();
        let fd = s.as_raw_fd();
        let reader = greenlet::spawn(move || {
            let mut buf = [0u8; 4];
            reading.read_exact(&mut buf).map(|()| buf)
        });
        greenlet::sleep(ms(20));
        // The reader waits: the socket is still blocking.
        assert_eq!(flags(fd) & libc::O_NONBLOCK, 0);
        let mut writing = s;
        let writer = greenlet::spawn(move || {
            let chunk = vec![1u8; 1 << 16];
            for _ in 0..128 {
                writing.write_all(&chunk)?;
            }
            Ok::<_, std::io::Error>(writing)
        });
        let _s = writer
            .get()
            .unwrap()
            .expect("no WouldBlock on a blocking socket");
        assert_eq!(&reader.get().unwrap().unwrap(), b"done");
        assert_eq!(peer.join().unwrap(), 8 << 20);
    });
}

#[test]
fn child_processes_are_waited_for_cooperatively() {
    patched();
    bounded("Command::status x 50", BOUND, || {
        let t = Instant::now();
        let gs: Vec<_> = (0..50)
            .map(|i| {
                greenlet::spawn(move || {
                    std::process::Command::new("sh")
                        .args(["-c", &format!("sleep 0.2; exit {}", i % 4)])
                        .status()
                        .unwrap()
                        .code()
                })
            })
            .collect();
        for (i, g) in gs.into_iter().enumerate() {
            assert_eq!(g.get().unwrap(), Some((i % 4) as i32), "exit status kept");
        }
        // One after another: 10 s.
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    });
    bounded("Command::output", BOUND, || {
        let gs: Vec<_> = (0..20)
            .map(|_| {
                greenlet::spawn(|| {
                    std::process::Command::new("sh")
                        .args(["-c", "sleep 0.1; echo out; echo err >&2"])
                        .output()
                        .unwrap()
                })
            })
            .collect();
        for g in gs {
            let o = g.get().unwrap();
            assert_eq!(
                (&o.stdout[..], &o.stderr[..]),
                (&b"out\n"[..], &b"err\n"[..])
            );
        }
    });
    in_greenlet("waitpid edge cases", BOUND, || {
        let mut child = std::process::Command::new("sleep")
            .arg("0.1")
            .spawn()
            .unwrap();
        let pid = child.id() as libc::pid_t;
        let mut status = 0;
        // SAFETY: `status` is writable.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) }, 0);
        // SAFETY: as above; pid 1 is not our child.
        assert_eq!(unsafe { libc::waitpid(1, &mut status, 0) }, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::ECHILD)
        );
        assert!(child.wait().unwrap().success());
        // A wait for any child of a process group, through the thread pool (its own group:
        // `waitpid(-1)` could take the children of the other tests of this process).
        #[allow(clippy::zombie_processes, reason = "reaped by the waitpid below")]
        let child = std::process::Command::new("sleep")
            .arg("0.05")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as libc::pid_t;
        // SAFETY: as above.
        let got = unsafe { libc::waitpid(-pid, &mut status, 0) };
        assert_eq!(got, pid);
        // waitid on the pid.
        #[allow(clippy::zombie_processes, reason = "reaped by the waitid below")]
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        // SAFETY: siginfo_t is plain old data.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is writable.
        let r = unsafe { libc::waitid(libc::P_PID, child.id(), &mut info, libc::WEXITED) };
        assert_eq!(r, 0);
        // SAFETY: filled in by waitid.
        assert_eq!(
            unsafe { (info.si_pid(), info.si_status()) },
            (child.id() as i32, 7)
        );
    });
}

#[test]
fn a_killed_wait_for_a_child_still_reaps_it() {
    patched();
    bounded("kill during Child::wait", BOUND, || {
        let child = std::process::Command::new("sleep")
            .arg("0.3")
            .spawn()
            .unwrap();
        let pid = child.id() as libc::pid_t;
        let g = greenlet::spawn(move || {
            let mut child = child;
            let r = child.wait();
            greenlet::sleep(Duration::from_secs(60)); // the kill lands here
            r.is_ok()
        });
        greenlet::sleep(ms(50));
        assert!(g.kill_timeout(Duration::from_secs(5)));
        assert_eq!(g.get(), Err(greenlet::JoinError::Killed));
        // The child exits 250 ms later and is reaped by the crate: no zombie is left. (Looked
        // at with WNOWAIT, which reaps nothing: the test must not take it from the reaper.)
        let t = Instant::now();
        loop {
            // SAFETY: siginfo_t is plain old data; `info` is writable; WNOHANG never blocks.
            let r = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
                libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags)
            };
            if r == -1 {
                assert_eq!(
                    std::io::Error::last_os_error().raw_os_error(),
                    Some(libc::ECHILD)
                );
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(5), "never reaped");
            greenlet::sleep(ms(20));
        }
    });
}

#[test]
fn kills_end_each_new_wait_and_the_greenlet_unwinds() {
    patched();
    let (r, _w) = pipe();
    let r = r.as_raw_fd();
    type Wait = fn(RawFd);
    let waits: [(&str, Wait); 4] = [
        ("poll", |r| {
            poll_one(r, libc::POLLIN, -1);
        }),
        ("select", |r| {
            let mut rs = fd_set_of(&[r]);
            // SAFETY: a valid set, no time-out.
            unsafe {
                libc::select(
                    r + 1,
                    &mut rs,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }),
        ("pipe read", |r| {
            let mut b = [0u8; 1];
            // SAFETY: a one-byte buffer.
            unsafe { libc::read(r, b.as_mut_ptr().cast(), 1) };
        }),
        ("thread join", |_| {
            let t = std::thread::spawn(|| std::thread::sleep(ms(300)));
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.join()));
        }),
    ];
    for (name, wait) in waits {
        bounded(&format!("kill during {name}"), BOUND, move || {
            for _ in 0..20 {
                let g = greenlet::spawn(move || {
                    wait(r);
                    // Loops that retry on EINTR end: every later call fails at once.
                    poll_one(r, libc::POLLIN, -1);
                    greenlet::sleep(Duration::from_secs(60)); // the kill is delivered here
                });
                greenlet::sleep(ms(5));
                assert!(g.kill_timeout(Duration::from_secs(5)), "{name}");
                assert_eq!(g.get(), Err(greenlet::JoinError::Killed), "{name}");
            }
        });
    }
}

#[test]
fn thread_joins_in_greenlets_run_on_the_pool() {
    patched();
    bounded("JoinHandle::join x 30", BOUND, || {
        let t = Instant::now();
        let gs: Vec<_> = (0..30)
            .map(|i| {
                greenlet::spawn(move || {
                    std::thread::spawn(move || {
                        std::thread::sleep(ms(200));
                        i * 2
                    })
                    .join()
                    .unwrap()
                })
            })
            .collect();
        for (i, g) in gs.into_iter().enumerate() {
            assert_eq!(g.get().unwrap(), i * 2);
        }
        // Blocking the workers: 30 × 200 ms / 2 workers = 3 s.
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t.elapsed()
        );
    });
}

#[test]
fn many_loopback_connects_wake_on_readiness() {
    patched();
    bounded("4000 connects", Duration::from_secs(60), || {
        // A backlog for all 4,000: with std's 128, a moment without CPU for the acceptor
        // thread overflows it, and the dropped SYN costs its connect a 1 s retransmission.
        let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        l.bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
        l.listen(4096).unwrap();
        let l = std::net::TcpListener::from(l);
        let addr = l.local_addr().unwrap();
        let acceptor = std::thread::spawn(move || {
            for _ in 0..4000 {
                drop(l.accept().unwrap());
            }
        });
        let t = Instant::now();
        let gs: Vec<_> = (0..40)
            .map(|_| {
                greenlet::spawn(move || {
                    for _ in 0..100 {
                        drop(std::net::TcpStream::connect(addr).unwrap());
                    }
                })
            })
            .collect();
        for g in gs {
            g.get().unwrap();
        }
        acceptor.join().unwrap();
        eprintln!("4000 loopback connects: {:?}", t.elapsed());
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    });
}

/// Readiness vs time-out vs kill at the same instant, 2,000 rounds: a greenlet polls a pipe
/// with a 1 ms time-out while another writes the pipe and a third may kill the poller, all
/// around the deadline. The poll returns the kernel's answer or is killed; it never hangs,
/// never returns early, and never reports a byte that was not written.
#[test]
fn poll_readiness_vs_timeout_vs_kill() {
    use crate::support::hostile::{Rng, sleep_until, us};
    patched();
    let rounds = crate::support::hostile::scaled(2000, 1000);
    let (mut ready, mut timed_out, mut killed) = (0, 0, 0);
    // On one worker shared with the other tests of the binary, fewer rounds at once and a
    // longer lead, so that each round's greenlets are in place before its deadline.
    let (parallel, lead) = if greenlet::settings().workers == 1 {
        (10, us(1500))
    } else {
        (25, us(300))
    };
    for batch in 0..rounds / parallel {
        let outcomes = bounded(&format!("poll race, batch {batch}"), BOUND, move || {
            let gs: Vec<_> = (0..parallel)
                .map(|i| {
                    greenlet::spawn(move || {
                        let mut rng = Rng::new((batch * parallel + i) as u64);
                        let (r, w) = pipe();
                        let rfd = r.as_raw_fd();
                        let base = Instant::now() + lead;
                        let poller = greenlet::spawn(move || {
                            sleep_until(base);
                            let t = Instant::now();
                            let got = poll_one(rfd, libc::POLLIN, 1);
                            let e = std::io::Error::last_os_error();
                            let took = t.elapsed();
                            // A kill that ended the poll (EINTR) is delivered here.
                            greenlet::yield_now();
                            (got, took, (got.0 < 0).then_some(e))
                        });
                        let when = base + rng.between(us(800), us(1200));
                        let writer = greenlet::spawn(move || {
                            sleep_until(when);
                            write_byte(w.as_raw_fd());
                            w
                        });
                        let kill = rng.one_in(3).then(|| {
                            let at = base + rng.between(us(800), us(1200));
                            let p = poller.handle();
                            greenlet::spawn(move || {
                                sleep_until(at);
                                p.kill()
                            })
                        });
                        let _w = writer.get().unwrap();
                        let kill = kill.map(|k| k.get().unwrap());
                        let polled = poller.get();
                        drop(r);
                        match (polled, kill) {
                            (Err(greenlet::JoinError::Killed), Some(true)) => 2,
                            (Ok(((1, libc::POLLIN), _, _)), None | Some(false)) => 1,
                            (Ok(((0, 0), took, _)), None | Some(false)) => {
                                assert_not_early("poll 1 ms", ms(1), took);
                                0
                            }
                            (other, kill) => panic!("round {i}: {other:?} with kill {kill:?}"),
                        }
                    })
                })
                .collect();
            gs.into_iter()
                .map(|g| g.get().unwrap())
                .collect::<Vec<u8>>()
        });
        for o in outcomes {
            match o {
                0 => timed_out += 1,
                1 => ready += 1,
                _ => killed += 1,
            }
        }
    }
    eprintln!("poll race: {ready} ready, {timed_out} timed out, {killed} killed");
    assert!(
        ready > 0 && timed_out > 0 && killed > 0,
        "the rounds did not race"
    );
}

/// A descriptor number waited on, closed (or replaced with `dup2` while its old file stays
/// open elsewhere) and reused for another pipe: the next wait on that number waits for the
/// new file, never the old one.
#[test]
fn a_reused_descriptor_number_is_waited_on_afresh() {
    patched();
    in_greenlet("reused descriptor numbers", BOUND, || {
        let read_after = |r: RawFd, w: RawFd| {
            let writer = greenlet::spawn(move || {
                greenlet::sleep(ms(20));
                write_byte(w);
            });
            let mut b = [0u8; 1];
            // SAFETY: a one-byte buffer.
            let n = unsafe { libc::read(r, b.as_mut_ptr().cast(), 1) };
            writer.get().unwrap();
            n
        };
        for round in 0..50 {
            let (r, w) = pipe();
            let number = r.as_raw_fd();
            assert_eq!(read_after(number, w.as_raw_fd()), 1);
            // The old file stays open under another number in half the rounds.
            let keep_old = (round % 2 == 0).then(|| r.try_clone().unwrap());
            let (r2, w2) = pipe();
            // SAFETY: replaces `number` (our own pipe end) with the new pipe's read end.
            assert_eq!(unsafe { libc::dup2(r2.as_raw_fd(), number) }, number);
            // The old file, if still open, is readable: a wait on it would not block.
            if keep_old.is_some() {
                write_byte(w.as_raw_fd());
            }
            assert_eq!(read_after(number, w2.as_raw_fd()), 1, "round {round}");
            drop((r, keep_old, r2, w, w2));
        }
    });
}
