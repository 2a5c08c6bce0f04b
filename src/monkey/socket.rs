//! Sockets: `recv`, `recvfrom`, `recvmsg`, `send`, `sendto`, `sendmsg` (and `read`, `write`,
//! `readv`, `writev` on a socket), `connect`, `accept`, `accept4`.
//!
//! Inside a greenlet, on a socket its owner left blocking, each data call is made with
//! `MSG_DONTWAIT` added, and while it would block the greenlet waits for readiness (a private
//! epoll set, `ready`): the socket's flags are never changed, so a `try_clone`d stream can be
//! read by one greenlet and written by another at once. The owner's `SO_RCVTIMEO` and
//! `SO_SNDTIMEO` bound the wait, which then fails with `EAGAIN` as the kernel's would. A call
//! that already has `MSG_DONTWAIT`, or a socket its owner made non-blocking, is passed through.
//! A blocking `send` on a stream socket sends its whole buffer before it returns (as the
//! kernel's), unless its time-out passes or it is killed (then the count sent so far);
//! `recv` with `MSG_WAITALL` on a stream waits for the whole buffer, under one time-out
//! (with `MSG_PEEK` it returns what has come). Receives of the error queue (`MSG_ERRQUEUE`)
//! and of out-of-band data never wait, as the kernel's.
//!
//! `connect` and `accept` have no per-call non-blocking form:
//!
//! - `connect` sets `O_NONBLOCK` for the `connect(2)` call itself and restores the owner's
//!   flags as soon as it returns `EINPROGRESS`, then waits for the socket to become writable
//!   and reads `SO_ERROR`. A socket being connected carries no data yet, so nothing else sees
//!   the change. `SO_SNDTIMEO` bounds the wait (then `EINPROGRESS`, as the kernel's).
//! - `accept` waits until the listener is readable, then calls `accept(2)` while it still is,
//!   one greenlet of the process at a time per listener. A plain thread or another process
//!   accepting on the same listener can still take the connection in between, and the call
//!   then blocks the worker until the next one: make a listener shared with other processes
//!   non-blocking (`set_nonblocking(true)`) and loop on `WouldBlock`.
//!
//! # Kill safety
//!
//! A killed call fails with `EINTR` (then `ECANCELED` until the kill is delivered); a send
//! that had sent part of its buffer returns that count. A killed `connect` leaves the
//! connection to complete in the background, as a signal does.

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::fd::{owner_nonblocking, ready_now, status_flags};
use super::ready::{DEADLINE, deadline_after, wait_fd};
use super::{check, cooperative, errno, fail, real_fn, set_errno, whole};

type RecvFn = unsafe extern "C" fn(c_int, *mut libc::c_void, usize, c_int) -> isize;
type SendFn = unsafe extern "C" fn(c_int, *const libc::c_void, usize, c_int) -> isize;
type RecvfromFn = unsafe extern "C" fn(
    c_int,
    *mut libc::c_void,
    usize,
    c_int,
    *mut libc::sockaddr,
    *mut libc::socklen_t,
) -> isize;
type SendtoFn = unsafe extern "C" fn(
    c_int,
    *const libc::c_void,
    usize,
    c_int,
    *const libc::sockaddr,
    libc::socklen_t,
) -> isize;
type MsgFn = unsafe extern "C" fn(c_int, *const libc::msghdr, c_int) -> isize;
type MsgMutFn = unsafe extern "C" fn(c_int, *mut libc::msghdr, c_int) -> isize;
type ConnectFn = unsafe extern "C" fn(c_int, *const libc::sockaddr, libc::socklen_t) -> c_int;
type AcceptFn = unsafe extern "C" fn(c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> c_int;
type Accept4Fn =
    unsafe extern "C" fn(c_int, *mut libc::sockaddr, *mut libc::socklen_t, c_int) -> c_int;

/// Whether any socket of the process may have a time-out: set by our `setsockopt` the first
/// time one is set, so that programs that never set one do not pay a `getsockopt` per wait.
static TIMEOUTS_SET: AtomicBool = AtomicBool::new(false);

/// `SO_RCVTIMEO_NEW`/`SO_SNDTIMEO_NEW` (Linux 5.1, 64-bit `time_t` on 32-bit targets).
const TIMEO_NEW: [c_int; 2] = [66, 67];

type SetsockoptFn =
    unsafe extern "C" fn(c_int, c_int, c_int, *const libc::c_void, libc::socklen_t) -> c_int;

/// `setsockopt(2)`: the C library's own, noting that a socket time-out was set (the waits of
/// this module read them only from then on; a socket inherited with one already set, or set
/// by a raw system call, is not seen).
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const libc::c_void,
    len: libc::socklen_t,
) -> c_int {
    if level == libc::SOL_SOCKET
        && (name == libc::SO_RCVTIMEO || name == libc::SO_SNDTIMEO || TIMEO_NEW.contains(&name))
    {
        TIMEOUTS_SET.store(true, Ordering::Relaxed);
    }
    match real_fn!(c"setsockopt", SetsockoptFn) {
        // SAFETY: passed through unchanged.
        Some(real) => unsafe { real(fd, level, name, value, len) },
        None => fail(libc::ENOSYS),
    }
}

/// A socket time-out option (`SO_RCVTIMEO`/`SO_SNDTIMEO`); `None` when unset.
fn socket_timeout(fd: c_int, option: c_int) -> Option<Duration> {
    if !TIMEOUTS_SET.load(Ordering::Relaxed) {
        return None;
    }
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: `tv` and `len` are valid and describe each other.
    let r =
        unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, option, (&raw mut tv).cast(), &mut len) };
    let d = Duration::new(tv.tv_sec.max(0) as u64, (tv.tv_usec.max(0) as u32) * 1000);
    (r == 0 && !d.is_zero()).then_some(d)
}

/// An integer socket option, `None` on failure.
fn int_option(fd: c_int, level: c_int, option: c_int) -> Option<c_int> {
    let mut v: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid and describe each other.
    let r = unsafe { libc::getsockopt(fd, level, option, (&raw mut v).cast(), &mut len) };
    (r == 0).then_some(v)
}

/// Whether `fd` is a stream socket (where a blocking send sends everything).
fn is_stream(fd: c_int) -> bool {
    int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE) == Some(libc::SOCK_STREAM)
}

/// The shared algorithm of the data calls. `call(flags)` is the C library's call (with
/// `flags` added to the caller's); it is made with `MSG_DONTWAIT`, and waited for while it
/// would block.
///
/// `deadline`: `None` for the socket's own time-out option; `Some` for one set by the caller
/// (a `MSG_WAITALL` receive made of several calls). The deadline's passing is `EAGAIN`, as
/// the kernel reports a socket time-out.
fn socket_io(
    fd: c_int,
    flags: c_int,
    write: bool,
    deadline: Option<Option<std::time::Instant>>,
    call: impl Fn(c_int) -> isize,
) -> isize {
    // Receives of the error queue and of out-of-band data never block: the kernel's EAGAIN.
    let never_blocks = if write {
        libc::MSG_DONTWAIT
    } else {
        libc::MSG_DONTWAIT | libc::MSG_ERRQUEUE | libc::MSG_OOB
    };
    if !cooperative() || flags & never_blocks != 0 {
        return call(flags);
    }
    // The same single call as before for a ready socket.
    let r = call(flags | libc::MSG_DONTWAIT);
    if r >= 0 || errno() != libc::EAGAIN || owner_nonblocking(fd) {
        return r;
    }
    let (what, events, option) = if write {
        ("monkey send", libc::POLLOUT, libc::SO_SNDTIMEO)
    } else {
        ("monkey recv", libc::POLLIN, libc::SO_RCVTIMEO)
    };
    let deadline = deadline.unwrap_or_else(|| deadline_after(socket_timeout(fd, option)));
    let waited = wait_fd(what, fd, events as u32, deadline, || {
        check(call(flags | libc::MSG_DONTWAIT))
    });
    waited.unwrap_or_else(|e| fail(if e == DEADLINE { libc::EAGAIN } else { e }))
}

/// A receive with `MSG_WAITALL` on a blocking stream socket: the kernel's waits until the
/// whole buffer has come (or the peer closes, an error, the socket's time-out, which bounds
/// the whole call). `at(done, flags)` receives into the buffer past `done` bytes. Elsewhere
/// (datagrams, where it means nothing; `MSG_PEEK`, which returns what has come so far here)
/// one receive.
fn receive_all(fd: c_int, flags: c_int, len: usize, at: impl Fn(usize, c_int) -> isize) -> isize {
    if !cooperative()
        || flags & (libc::MSG_DONTWAIT | libc::MSG_PEEK) != 0
        || owner_nonblocking(fd)
        || !is_stream(fd)
    {
        return socket_io(fd, flags, false, None, |f| at(0, f));
    }
    let flags = flags & !libc::MSG_WAITALL;
    let deadline = deadline_after(socket_timeout(fd, libc::SO_RCVTIMEO));
    whole(len, |done| {
        socket_io(fd, flags, false, Some(deadline), |f| at(done, f))
    })
}

/// `recv(2)`: cooperative on blocking sockets inside greenlets after `patch_all`.
///
/// # Safety
///
/// As the C function: `buf` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn recv(
    fd: c_int,
    buf: *mut libc::c_void,
    len: usize,
    flags: c_int,
) -> isize {
    let Some(real) = real_fn!(c"recv", RecvFn) else {
        return fail(libc::ENOSYS);
    };
    // SAFETY: the caller's buffer, valid for `len` bytes; `at <= len`.
    let at = |at: usize, f| unsafe { real(fd, buf.cast::<u8>().add(at).cast(), len - at, f) };
    if flags & libc::MSG_WAITALL != 0 {
        return receive_all(fd, flags, len, at);
    }
    socket_io(fd, flags, false, None, |f| at(0, f))
}

/// `send(2)`: cooperative on blocking sockets inside greenlets after `patch_all`.
///
/// # Safety
///
/// As the C function: `buf` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn send(
    fd: c_int,
    buf: *const libc::c_void,
    len: usize,
    flags: c_int,
) -> isize {
    let Some(real) = real_fn!(c"send", SendFn) else {
        return fail(libc::ENOSYS);
    };
    // SAFETY: the caller's buffer, valid for `len` bytes; `at <= len`.
    let at = |at: usize, f| unsafe { real(fd, buf.cast::<u8>().add(at).cast(), len - at, f) };
    send_whole(fd, flags, len, at)
}

/// A send on a stream socket that would block sends the rest of the buffer too (a blocking
/// `send`'s contract); a datagram goes whole or not at all anyway.
fn send_whole(fd: c_int, flags: c_int, len: usize, at: impl Fn(usize, c_int) -> isize) -> isize {
    let first = socket_io(fd, flags, true, None, |f| at(0, f));
    if first < 0
        || first as usize >= len
        || first == 0
        || !cooperative()
        || flags & libc::MSG_DONTWAIT != 0
        || owner_nonblocking(fd)
        || !is_stream(fd)
    {
        return first;
    }
    let rest = whole(len - first as usize, |done| {
        socket_io(fd, flags, true, None, |f| at(first as usize + done, f))
    });
    if rest < 0 { first } else { first + rest }
}

/// `recvfrom(2)` (`std::net::UdpSocket::recv_from`): cooperative on blocking sockets inside
/// greenlets after `patch_all`.
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut libc::c_void,
    len: usize,
    flags: c_int,
    addr: *mut libc::sockaddr,
    addrlen: *mut libc::socklen_t,
) -> isize {
    let Some(real) = real_fn!(c"recvfrom", RecvfromFn) else {
        return fail(libc::ENOSYS);
    };
    // SAFETY: passed through with the caller's pointers; `at <= len`.
    let at = |at: usize, f| unsafe {
        real(
            fd,
            buf.cast::<u8>().add(at).cast(),
            len - at,
            f,
            addr,
            addrlen,
        )
    };
    if flags & libc::MSG_WAITALL != 0 {
        return receive_all(fd, flags, len, at);
    }
    socket_io(fd, flags, false, None, |f| at(0, f))
}

/// `sendto(2)` (`std::net::UdpSocket::send_to`): cooperative on blocking sockets inside
/// greenlets after `patch_all`.
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const libc::c_void,
    len: usize,
    flags: c_int,
    addr: *const libc::sockaddr,
    addrlen: libc::socklen_t,
) -> isize {
    let Some(real) = real_fn!(c"sendto", SendtoFn) else {
        return fail(libc::ENOSYS);
    };
    // SAFETY: passed through with the caller's pointers; `at <= len`.
    let at = |at: usize, f| unsafe {
        real(
            fd,
            buf.cast::<u8>().add(at).cast(),
            len - at,
            f,
            addr,
            addrlen,
        )
    };
    send_whole(fd, flags, len, at)
}

/// `recvmsg(2)`: cooperative on blocking sockets inside greenlets after `patch_all`
/// (`MSG_WAITALL` returns once some data has come, as a signal would make it).
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> isize {
    let Some(real) = real_fn!(c"recvmsg", MsgMutFn) else {
        return fail(libc::ENOSYS);
    };
    // SAFETY: passed through unchanged but for the flags.
    socket_io(fd, flags, false, None, |f| unsafe { real(fd, msg, f) })
}

/// `sendmsg(2)`: cooperative on blocking sockets inside greenlets after `patch_all` (a
/// stream's may end after part of its buffers).
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn sendmsg(
    fd: c_int,
    msg: *const libc::msghdr,
    flags: c_int,
) -> isize {
    let Some(real) = real_fn!(c"sendmsg", MsgFn) else {
        return fail(libc::ENOSYS);
    };
    // SAFETY: passed through unchanged but for the flags.
    socket_io(fd, flags, true, None, |f| unsafe { real(fd, msg, f) })
}

/// `readv`/`writev` on a socket, inside a greenlet: `recvmsg`/`sendmsg` with the caller's
/// buffers and `MSG_DONTWAIT` (`MSG_NOSIGNAL` is not added: `writev` raises `SIGPIPE` too).
pub(super) fn vectored(fd: c_int, iov: *const libc::iovec, n: c_int, write: bool) -> isize {
    // SAFETY: msghdr is plain old data; all-zero is a valid value (no name, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.cast_mut();
    msg.msg_iovlen = n.max(0) as usize;
    if write {
        // SAFETY: the caller's iovec array, valid for `n` entries; `msg` lives across it.
        unsafe { sendmsg(fd, &msg, 0) }
    } else {
        // SAFETY: as above.
        unsafe { recvmsg(fd, &mut msg, 0) }
    }
}

/// `connect(2)`: cooperative on blocking sockets inside greenlets after `patch_all`.
///
/// # Safety
///
/// As the C function: `addr` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn connect(
    fd: c_int,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> c_int {
    let Some(real) = real_fn!(c"connect", ConnectFn) else {
        return fail(libc::ENOSYS);
    };
    // SAFETY: passed through unchanged to the C library's `connect`.
    let plain = || unsafe { real(fd, addr, len) };
    if !cooperative() {
        return plain();
    }
    let Some(owner) = status_flags(fd).filter(|fl| fl & libc::O_NONBLOCK == 0) else {
        return plain();
    };
    if crate::greenlet::kill::pending() {
        return fail(libc::ECANCELED);
    }
    // Non-blocking for the call itself only (see the module docs).
    // SAFETY: F_SETFL with the owner's flags plus O_NONBLOCK; restored right after.
    unsafe { libc::fcntl(fd, libc::F_SETFL, owner | libc::O_NONBLOCK) };
    let r = plain();
    let e = errno();
    // SAFETY: restores the owner's flags.
    unsafe { libc::fcntl(fd, libc::F_SETFL, owner) };
    if r == 0 {
        return 0;
    }
    let deadline = deadline_after(socket_timeout(fd, libc::SO_SNDTIMEO));
    let result = match e {
        libc::EINPROGRESS => wait_fd("monkey connect", fd, libc::POLLOUT as u32, deadline, || {
            if !ready_now(fd, libc::POLLOUT) {
                return Err(libc::EAGAIN);
            }
            match int_option(fd, libc::SOL_SOCKET, libc::SO_ERROR) {
                Some(0) => Ok(0),
                Some(err) => Err(err),
                None => Err(errno()),
            }
        }),
        // A Unix socket whose listener's backlog is full: the blocking call would wait for
        // room, which no readiness reports: try again now and then.
        libc::EAGAIN => super::ready::retry(deadline, || {
            // SAFETY: as above, for the call itself.
            unsafe { libc::fcntl(fd, libc::F_SETFL, owner | libc::O_NONBLOCK) };
            let r = check(plain());
            // SAFETY: restores the owner's flags.
            unsafe { libc::fcntl(fd, libc::F_SETFL, owner) };
            r
        }),
        e => Err(e),
    };
    match result {
        Ok(_) => 0,
        Err(DEADLINE) => fail(libc::EINPROGRESS),
        Err(e) => fail(e),
    }
}

/// `accept`/`accept4` inside a greenlet: see the module docs.
fn accept_in_turn(fd: c_int, call: impl Fn() -> c_int) -> c_int {
    if !cooperative() || owner_nonblocking(fd) {
        return call();
    }
    let deadline = deadline_after(socket_timeout(fd, libc::SO_RCVTIMEO));
    let accepted = super::fd::in_turn(
        "monkey accept",
        fd,
        libc::POLLIN,
        deadline,
        || check(call()),
    );
    match accepted {
        Ok(s) => s,
        Err(DEADLINE) => fail(libc::EAGAIN),
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// `accept(2)`: cooperative on blocking listeners inside greenlets after `patch_all`.
///
/// # Safety
///
/// As the C function: `addr`/`len` are null or valid.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn accept(
    fd: c_int,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) -> c_int {
    let Some(real) = real_fn!(c"accept", AcceptFn) else {
        return fail(libc::ENOSYS);
    };
    // SAFETY: passed through unchanged.
    accept_in_turn(fd, || unsafe { real(fd, addr, len) })
}

/// `accept4(2)` (what `std::net::TcpListener::accept` calls): cooperative on blocking
/// listeners inside greenlets after `patch_all`.
///
/// # Safety
///
/// As the C function: `addr`/`len` are null or valid.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
    flags: c_int,
) -> c_int {
    let Some(real) = real_fn!(c"accept4", Accept4Fn) else {
        return fail(libc::ENOSYS);
    };
    // SAFETY: passed through unchanged.
    accept_in_turn(fd, || unsafe { real(fd, addr, len, flags) })
}
