//! The per-descriptor state, and the calls on any descriptor: `read`, `write`, `readv`,
//! `writev`, `close`, `dup2`, `dup3`.
//!
//! What a descriptor number is (a socket, a stream such as a pipe, or a file) is cached per
//! number and forgotten by `close`, `dup2` and `dup3`. Sockets go to [`super::socket`]. Streams
//! (pipes, FIFOs, character devices, eventfd, timerfd, ...) are read and written without
//! blocking in one of three ways, never by changing the owner's `O_NONBLOCK`:
//!
//! 1. `preadv2`/`pwritev2` with `RWF_NOWAIT` (pipes, eventfd reads, `/dev/zero`...);
//! 2. where the kernel refuses that for a FIFO, a private non-blocking open of the same FIFO
//!    (`/proc/self/fd/N`), used for the call and closed;
//! 3. otherwise (terminals, eventfd writes): a wait for readiness, then the call itself, one
//!    greenlet of the process at a time per descriptor ([`Turn`]), so two greenlets never both
//!    see one byte ready and the second block its worker. A plain thread or another process
//!    reading the same terminal can still take the input between the two.
//!
//! Regular files, directories and block devices stay on the C library (as in gevent).
//!
//! # Kill safety
//!
//! A killed read or write fails with `EINTR` (`ECANCELED` for later calls until the kill is
//! delivered); a write that had already written part of its buffer returns that count, as the
//! kernel does when a signal interrupts it. The private FIFO descriptor is closed.

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use super::ready::wait_fd;
use super::{check, cooperative, fail, real_fn};

const KINDS: usize = 1 << 16;
/// What each descriptor number is, while it stays open: 0 unknown, else a [`Kind`].
static KIND: [AtomicU8; KINDS] = [const { AtomicU8::new(0) }; KINDS];

/// What a descriptor is, for the hooks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    /// Regular files, directories, block devices: the C library's own calls.
    File = 1,
    Socket = 2,
    /// Pipes, FIFOs, character devices, anonymous inodes (eventfd, timerfd, signalfd...).
    Stream = 3,
    /// A stream whose `RWF_NOWAIT` reads and writes the kernel refuses: a FIFO (opened again
    /// without blocking) or a device (readiness, then the call, in turn).
    Refuses = 4,
    /// As `Refuses`, seen non-blocking by its owner (eventfds of may and of the crate, written
    /// at every cross-worker wake-up): passed through without reading its flags each time.
    RefusesNonblocking = 5,
}

/// Bumped by every `close`, `dup2`, `dup3` and `close_range` of a descriptor number: what the
/// crate kept about a number (`ready`'s kept sets) is stale once it changed.
static GEN: [std::sync::atomic::AtomicU32; KINDS] =
    [const { std::sync::atomic::AtomicU32::new(0) }; KINDS];

/// The generation of descriptor number `fd` (0 past the table).
pub(super) fn generation(fd: c_int) -> u32 {
    usize::try_from(fd)
        .ok()
        .and_then(|i| GEN.get(i))
        .map_or(0, |g| g.load(Ordering::Acquire))
}

/// What `fd` is (cached). Standard input, output and error are always `File` (the C
/// library's own calls): std's `Stdout` and `Stderr` hold a lock that is re-entrant per OS
/// thread across the write, so a second greenlet of the worker printing while the first waits
/// on a full pipe would find it borrowed (a panic), and `Stdin`'s lock would be a futex wait.
pub(super) fn kind(fd: c_int) -> Kind {
    if (0..=2).contains(&fd) {
        return Kind::File;
    }
    let slot = usize::try_from(fd).ok().and_then(|i| KIND.get(i));
    match slot.map_or(0, |k| k.load(Ordering::Relaxed)) {
        1 => return Kind::File,
        2 => return Kind::Socket,
        3 => return Kind::Stream,
        4 => return Kind::Refuses,
        5 => return Kind::RefusesNonblocking,
        _ => {}
    }
    let kind = match file_type(fd) {
        Some(libc::S_IFSOCK) => Kind::Socket,
        // Anonymous inodes (eventfd, timerfd, epoll, pidfd...) have no type bits.
        Some(libc::S_IFIFO | libc::S_IFCHR | 0) => Kind::Stream,
        _ => Kind::File,
    };
    remember(fd, kind);
    kind
}

fn remember(fd: c_int, kind: Kind) {
    if let Some(k) = usize::try_from(fd).ok().and_then(|i| KIND.get(i)) {
        k.store(kind as u8, Ordering::Relaxed);
    }
}

/// Forgets what `fd` was (its number may be reused).
pub(super) fn forget(fd: c_int) {
    if let Some(k) = usize::try_from(fd).ok().and_then(|i| KIND.get(i)) {
        k.store(0, Ordering::Relaxed);
    }
    if let Some(g) = usize::try_from(fd).ok().and_then(|i| GEN.get(i)) {
        g.fetch_add(1, Ordering::Release);
    }
}

/// Whether `fd` is (now) a regular file, directory or block device: a cached kind that says
/// otherwise is stale (a number closed behind the crate's back: `fclose`, a raw system call).
fn now_a_file(fd: c_int) -> bool {
    let file = matches!(
        file_type(fd),
        Some(libc::S_IFREG | libc::S_IFDIR | libc::S_IFBLK | libc::S_IFLNK)
    );
    if file {
        remember(fd, Kind::File);
    }
    file
}

/// The `S_IFMT` bits of `fd`'s file, `None` if it is not open.
fn file_type(fd: c_int) -> Option<libc::mode_t> {
    // SAFETY: `stat` is plain old data; all-zero is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable `stat` buffer.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st.st_mode & libc::S_IFMT)
}

/// The descriptor's file status flags, if it is open.
pub(super) fn status_flags(fd: c_int) -> Option<c_int> {
    // SAFETY: F_GETFL only reads the descriptor's flags.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    (fl >= 0).then_some(fl)
}

/// Whether the owner made `fd` non-blocking (or it is closed): such a descriptor is never
/// waited on, the call reports `EAGAIN` (or `EBADF`) as it would anyway.
pub(super) fn owner_nonblocking(fd: c_int) -> bool {
    status_flags(fd).is_none_or(|fl| fl & libc::O_NONBLOCK != 0)
}

/// The right, for one greenlet of the process at a time, to check a descriptor's readiness
/// and then make a call that blocks unless it is still ready (`accept`, a terminal read).
pub(super) struct Turn(Option<&'static AtomicBool>);

static TURNS: [AtomicBool; KINDS] = [const { AtomicBool::new(false) }; KINDS];

impl Turn {
    /// The turn on `fd`, if no other greenlet has it. Descriptors past the table always get
    /// one (unserialised).
    pub(super) fn try_take(fd: c_int) -> Option<Turn> {
        match usize::try_from(fd).ok().and_then(|i| TURNS.get(i)) {
            None => Some(Turn(None)),
            Some(t) => (!t.swap(true, Ordering::Acquire)).then_some(Turn(Some(t))),
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            t.store(false, Ordering::Release);
        }
    }
}

/// Whether `fd` reports any of `events` now (a zero-time `poll`).
pub(super) fn ready_now(fd: c_int, events: libc::c_short) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid `pollfd`, zero time-out: never blocks. The C library's own `poll`
    // (the `libc` crate binds the symbol, which is ours: ours passes a zero time-out through).
    unsafe { libc::poll(&mut pfd, 1, 0) > 0 }
}

/// The call for a descriptor that refuses per-call non-blocking forms: waits for `events`,
/// then makes `call` while holding `fd`'s [`Turn`], and only if `fd` is still ready.
pub(super) fn in_turn<R>(
    what: &'static str,
    fd: c_int,
    events: libc::c_short,
    deadline: Option<std::time::Instant>,
    mut call: impl FnMut() -> Result<R, c_int>,
) -> Result<R, c_int> {
    wait_fd(what, fd, events as u32, deadline, || {
        // A greenlet of another worker checks and calls now (it never parks holding the
        // turn): let it finish rather than wait for a readiness that it may leave unchanged
        // (a listener with another connection queued gives no new edge).
        let _turn = loop {
            match Turn::try_take(fd) {
                Some(turn) => break turn,
                None => crate::yield_now(),
            }
        };
        if ready_now(fd, events) {
            call()
        } else {
            Err(libc::EAGAIN)
        }
    })
}

type IovFn = unsafe extern "C" fn(c_int, *const libc::iovec, c_int) -> isize;
type ReadFn = unsafe extern "C" fn(c_int, *mut libc::c_void, usize) -> isize;
type WriteFn = unsafe extern "C" fn(c_int, *const libc::c_void, usize) -> isize;
type CloseFn = unsafe extern "C" fn(c_int) -> c_int;
type Dup2Fn = unsafe extern "C" fn(c_int, c_int) -> c_int;
type Dup3Fn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;

/// `preadv2`/`pwritev2` at the current position (`-1`) with `RWF_NOWAIT`.
fn nowait(fd: c_int, iov: *const libc::iovec, n: c_int, write: bool) -> Result<usize, c_int> {
    // SAFETY: the caller's iovec array, valid for `n` entries (the C contract we implement);
    // offset -1 is the current position, as read/write.
    let r = unsafe {
        if write {
            libc::pwritev2(fd, iov, n, -1, libc::RWF_NOWAIT)
        } else {
            libc::preadv2(fd, iov, n, -1, libc::RWF_NOWAIT)
        }
    };
    check(r).map(|n| n as usize)
}

/// A read or write of a stream inside a greenlet, on the caller's `iov` (`n` entries; `empty`
/// when it asks for no bytes). `plain` is the C library's own call, made where no non-blocking
/// form exists.
fn stream_io(
    fd: c_int,
    iov: *const libc::iovec,
    n: c_int,
    empty: bool,
    write: bool,
    plain: impl Fn() -> isize,
) -> isize {
    let (what, events) = if write {
        ("monkey write", libc::POLLOUT)
    } else {
        ("monkey read", libc::POLLIN)
    };
    if empty {
        return plain();
    }
    let first = match kind(fd) {
        Kind::RefusesNonblocking => return plain(),
        Kind::Refuses => Err(libc::EOPNOTSUPP),
        _ => nowait(fd, iov, n, write),
    };
    let result = match first {
        Ok(done) => return done as isize,
        Err(libc::EOPNOTSUPP) => {
            remember(fd, Kind::Refuses);
            refused(fd, write, iov, n, || {
                in_turn(what, fd, events, None, || check(plain()))
            })
        }
        Err(libc::EAGAIN) if owner_nonblocking(fd) => Err(libc::EAGAIN),
        // A regular file (reused number) reports EAGAIN for data not in the page cache, which
        // no readiness announces: the C library's own call.
        Err(libc::EAGAIN) if now_a_file(fd) => return plain(),
        Err(libc::EAGAIN) => {
            wait_fd(what, fd, events as u32, None, || nowait(fd, iov, n, write)).map(|n| n as isize)
        }
        Err(e) => Err(e),
    };
    result.unwrap_or_else(fail)
}

/// A stream that refuses `RWF_NOWAIT`: a FIFO is opened again, privately non-blocking, for
/// the call; anything else (a terminal) takes turns (`in_turn`).
fn refused(
    fd: c_int,
    write: bool,
    iov: *const libc::iovec,
    n: c_int,
    in_turn: impl FnOnce() -> Result<isize, c_int>,
) -> Result<isize, c_int> {
    if owner_nonblocking(fd) {
        remember(fd, Kind::RefusesNonblocking);
        return check(plain_iov(fd, iov, n, write));
    }
    if !write && terminal_returns_at_once(fd) {
        return check(plain_iov(fd, iov, n, write));
    }
    let Some(private) = (file_type(fd) == Some(libc::S_IFIFO))
        .then(|| reopen(fd, write))
        .flatten()
    else {
        return in_turn();
    };
    let p = std::os::fd::AsRawFd::as_raw_fd(&private);
    let events = if write { libc::POLLOUT } else { libc::POLLIN };
    wait_fd("monkey fifo", fd, events as u32, None, || {
        check(plain_iov(p, iov, n, write))
    })
}

/// The C library's own `readv`/`writev` (not our hooks), on the caller's iovec array.
fn plain_iov(fd: c_int, iov: *const libc::iovec, n: c_int, write: bool) -> isize {
    let real = if write {
        real_fn!(c"writev", IovFn)
    } else {
        real_fn!(c"readv", IovFn)
    };
    match real {
        // SAFETY: the caller's iovec array, valid for `n` entries (the C contract we
        // implement).
        Some(real) => unsafe { real(fd, iov, n) },
        None => fail(libc::ENOSYS),
    }
}

/// Whether `fd` is a terminal in non-canonical mode with `VMIN` 0: a read returns at once
/// (or after `VTIME`) with or without input, which no readiness announces.
fn terminal_returns_at_once(fd: c_int) -> bool {
    // SAFETY: termios is plain old data; tcgetattr writes it or fails.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is writable.
    let ok = unsafe { libc::tcgetattr(fd, &mut t) } == 0;
    ok && t.c_lflag & libc::ICANON == 0 && t.c_cc[libc::VMIN] == 0
}

/// A second, non-blocking open of the FIFO behind `fd` (a new open file description, whose
/// flags are ours), for reading or for writing.
fn reopen(fd: c_int, write: bool) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let path = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).ok()?;
    let mode = if write {
        libc::O_WRONLY
    } else {
        libc::O_RDONLY
    };
    let flags = mode | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    // SAFETY: a NUL-terminated path; open returns a new descriptor or -1.
    let p = unsafe { libc::open(path.as_ptr(), flags) };
    // SAFETY: `p` was just returned by open and is owned by nobody else.
    (p >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(p) })
}

/// `read(2)`: cooperative on sockets and streams inside greenlets after `patch_all`.
///
/// # Safety
///
/// As the C function: `buf` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn read(fd: c_int, buf: *mut libc::c_void, len: usize) -> isize {
    let Some(real) = real_fn!(c"read", ReadFn) else {
        return fail(libc::ENOSYS);
    };
    if cooperative() {
        match kind(fd) {
            // SAFETY: forwarded with the caller's valid buffer; `recv` with flags 0 is `read`
            // on a socket.
            Kind::Socket => return unsafe { super::socket::recv(fd, buf, len, 0) },
            Kind::Stream | Kind::Refuses | Kind::RefusesNonblocking => {
                let iov = libc::iovec {
                    iov_base: buf,
                    iov_len: len,
                };
                // SAFETY: passed through unchanged.
                return stream_io(fd, &iov, 1, len == 0, false, || unsafe {
                    real(fd, buf, len)
                });
            }
            Kind::File => {}
        }
    }
    // SAFETY: passed through unchanged.
    unsafe { real(fd, buf, len) }
}

/// `write(2)`: cooperative on sockets and streams inside greenlets after `patch_all`.
///
/// # Safety
///
/// As the C function: `buf` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn write(fd: c_int, buf: *const libc::c_void, len: usize) -> isize {
    let Some(real) = real_fn!(c"write", WriteFn) else {
        return fail(libc::ENOSYS);
    };
    if cooperative() {
        match kind(fd) {
            // SAFETY: forwarded with the caller's valid buffer; `send` with flags 0 is `write`
            // on a socket (SIGPIPE included).
            Kind::Socket => return unsafe { super::socket::send(fd, buf, len, 0) },
            Kind::Stream | Kind::Refuses | Kind::RefusesNonblocking => {
                return write_all(fd, buf, len);
            }
            Kind::File => {}
        }
    }
    // SAFETY: passed through unchanged.
    unsafe { real(fd, buf, len) }
}

/// A blocking write of a stream writes all of its buffer (POSIX), where a non-blocking one
/// may write part: goes on with the rest until done, an error, or a kill (then the count
/// written so far, as the kernel's on a signal).
fn write_all(fd: c_int, buf: *const libc::c_void, len: usize) -> isize {
    super::whole(len, |done| {
        let rest = libc::iovec {
            // SAFETY: `done < len`: still inside the caller's buffer.
            iov_base: unsafe { buf.cast::<u8>().add(done).cast_mut().cast() },
            iov_len: len - done,
        };
        stream_io(fd, &rest, 1, rest.iov_len == 0, true, || {
            plain_iov(fd, &rest, 1, true)
        })
    })
}

/// `readv(2)`: cooperative on sockets and streams inside greenlets after `patch_all`.
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn readv(fd: c_int, iov: *const libc::iovec, n: c_int) -> isize {
    // SAFETY: the caller's contract, passed on.
    unsafe { vectored(fd, iov, n, false) }
}

/// `writev(2)` (`std`'s vectored writes): cooperative on sockets and streams inside greenlets
/// after `patch_all`. A stream's vectored write may end after part of the buffers.
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn writev(fd: c_int, iov: *const libc::iovec, n: c_int) -> isize {
    // SAFETY: the caller's contract, passed on.
    unsafe { vectored(fd, iov, n, true) }
}

unsafe fn vectored(fd: c_int, iov: *const libc::iovec, n: c_int, write: bool) -> isize {
    let real = if write {
        real_fn!(c"writev", IovFn)
    } else {
        real_fn!(c"readv", IovFn)
    };
    let Some(real) = real else {
        return fail(libc::ENOSYS);
    };
    // SAFETY: passed through unchanged (the caller's contract).
    let plain = || unsafe { real(fd, iov, n) };
    // The array is never read here: the kernel checks it (`EINVAL`, `EFAULT`) in the calls
    // made with it; a count it refuses goes to the C library's own call.
    if !cooperative() || !(0..=libc::UIO_MAXIOV).contains(&n) {
        return plain();
    }
    match kind(fd) {
        Kind::Socket => super::socket::vectored(fd, iov, n, write),
        Kind::Stream | Kind::Refuses | Kind::RefusesNonblocking => {
            stream_io(fd, iov, n, false, write, plain)
        }
        Kind::File => plain(),
    }
}

/// `close(2)`: forgets what the descriptor was (its number may be reused), then closes it.
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn close(fd: c_int) -> c_int {
    // Before and after: a kind cached in between (another thread) would outlive the file.
    forget(fd);
    let r = match real_fn!(c"close", CloseFn) {
        // SAFETY: passed through unchanged.
        Some(real) => unsafe { real(fd) },
        None => fail(libc::ENOSYS),
    };
    let e = super::errno();
    forget(fd);
    super::set_errno(e);
    r
}

type CloseRangeFn = unsafe extern "C" fn(libc::c_uint, libc::c_uint, c_int) -> c_int;

/// `close_range(2)`: forgets what the descriptors of the range were, then the C library's own.
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn close_range(
    first: libc::c_uint,
    last: libc::c_uint,
    flags: c_int,
) -> c_int {
    let forget_range = || {
        for fd in first..=last.min(KINDS as libc::c_uint - 1) {
            forget(fd as c_int);
        }
    };
    forget_range();
    let r = match real_fn!(c"close_range", CloseRangeFn) {
        // SAFETY: passed through unchanged.
        Some(real) => unsafe { real(first, last, flags) },
        None => fail(libc::ENOSYS),
    };
    let e = super::errno();
    forget_range();
    super::set_errno(e);
    r
}

/// `dup2(2)`: forgets what `new` was, then the C library's own.
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    forget(new);
    match real_fn!(c"dup2", Dup2Fn) {
        // SAFETY: passed through unchanged.
        Some(real) => unsafe { real(old, new) },
        None => fail(libc::ENOSYS),
    }
}

/// `dup3(2)`: forgets what `new` was, then the C library's own.
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    forget(new);
    match real_fn!(c"dup3", Dup3Fn) {
        // SAFETY: passed through unchanged.
        Some(real) => unsafe { real(old, new, flags) },
        None => fail(libc::ENOSYS),
    }
}
