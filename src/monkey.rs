//! Make unmodified blocking code cooperative (gevent.monkey), Linux only, feature `monkey`.
//!
//! With the feature on, this crate defines C functions with the names of the C library's
//! blocking calls. A Rust program is linked against them before the C library, so `std` (and
//! any crate that calls those functions) reaches them first. After
//! [`patch_all`] each one checks where it runs:
//!
//! - **inside a greenlet**, it waits cooperatively: only the greenlet parks, and its worker
//!   thread runs others;
//! - **anywhere else** (plain threads, may's own workers and event loop, the thread pool), and
//!   before `patch_all`, it calls the C library's own function (found with
//!   `dlsym(RTLD_NEXT, …)`), so nothing outside greenlets changes.
//!
//! # What is patched
//!
//! | call | used by | inside a greenlet |
//! |---|---|---|
//! | `clock_nanosleep`, `nanosleep` | `std::thread::sleep`, C `sleep`/`usleep` | parks the greenlet for the duration ([`crate::sleep`]); never returns early unless the greenlet is killed |
//! | `recv`, `send` | `std::net::TcpStream`/`UdpSocket` reads and writes | on a socket its owner left blocking: tries without blocking, then parks the greenlet until the socket is ready or its `SO_RCVTIMEO`/`SO_SNDTIMEO` passes (then `EAGAIN`, as the kernel) |
//! | `connect` | `std::net::TcpStream::connect` | on a blocking socket: connects without blocking and parks the greenlet until done (`SO_SNDTIMEO` bounds it, then `ETIMEDOUT`) |
//! | `accept4`, `accept` | `std::net::TcpListener::accept`, C code | on a blocking listener: parks the greenlet until a connection waits (`SO_RCVTIMEO` bounds it, then `EAGAIN`) |
//! | `getaddrinfo` | `std::net::ToSocketAddrs` for host names | runs the lookup on the blocking [thread pool](crate::threadpool); only the greenlet waits |
//! | `recvfrom`, `sendto`, `recvmsg`, `sendmsg` | `std::net::UdpSocket`, C code | as `recv`/`send` |
//! | `poll` | `std::net::TcpStream::connect_timeout`, C code | with a time-out: checks without blocking and parks the greenlet between checks (1 to 10 ms apart) |
//! | `read`, `write`, `readv`, `writev` | C-style socket code | on sockets, as `recv`/`send`; on files, pipes and terminals, the C library's own |
//! | `close` | everything | forgets the cached kind of the descriptor, then closes it |
//!
//! # Kill safety
//!
//! A kill cannot unwind through a C function (Rust would abort the process). A greenlet killed
//! inside a patched call has that call end early (`EINTR`, nothing left to sleep), and unwinds
//! at its next blocking point in Rust code; if it returns without reaching one, it ends with
//! its value rather than [`JoinError::Killed`](crate::JoinError::Killed).
//!
//! # What is not patched
//!
//! `select`, `epoll_wait` and the older resolver calls (`gethostbyname`) are not interposed: those calls inside a greenlet still
//! block its worker; use [`crate::net`] there. Regular files are never made cooperative (as
//! in gevent): read big files with [`crate::threadpool::spawn_blocking`]. Interposition cannot
//! reach static binaries (musl), code that makes the system call itself (`syscall(2)`, inline
//! assembly) or calls made inside the C library itself.
//!
//! `fcntl` and `ioctl` are not interposed (stable Rust cannot define variadic C functions).
//! The patched calls do not need them: they read the owner's `O_NONBLOCK` when they are about
//! to wait, and a socket left non-blocking by its owner, or a call with `MSG_DONTWAIT`, is
//! never made to wait. While one greenlet waits on a socket, the descriptor is non-blocking
//! underneath and its flags are restored afterwards; a plain thread using the same socket at
//! that moment could see `EAGAIN` or read `O_NONBLOCK`. Socket time-outs are read from the
//! kernel (`SO_RCVTIMEO`/`SO_SNDTIMEO` as set with `setsockopt`), so they keep working.
//!
//! # Cost
//!
//! Without the feature: none, nothing is compiled. With it, before `patch_all`: one atomic
//! load per call (and a function pointer call). After: outside greenlets, one atomic load and
//! a coroutine check per call; inside, a ready or non-blocking socket still costs the single
//! system call it did (with `MSG_DONTWAIT`), and a call that has to wait adds a few (flags,
//! time-out, registration).
//!
//! # Examples
//!
//! ```
//! use std::time::{Duration, Instant};
//!
//! greenlet::monkey::patch_all();
//! let start = Instant::now();
//! let sleepers: Vec<_> = (0..100)
//!     .map(|_| greenlet::spawn(|| std::thread::sleep(Duration::from_millis(100))))
//!     .collect();
//! greenlet::joinall(sleepers);
//! // Without patching, 100 sleeps on 2 workers would take about 5 s.
//! assert!(start.elapsed() < Duration::from_secs(3));
//! ```

use std::ffi::{CStr, c_int};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static PATCHED: AtomicBool = AtomicBool::new(false);

/// Turns on the cooperative versions of the patched calls (idempotent). Call it early, e.g.
/// as the first line of `main`; calls made before it behave as usual.
pub fn patch_all() {
    crate::config::ensure_started();
    if !PATCHED.swap(true, Ordering::SeqCst) {
        log::debug!(
            "monkey: patched clock_nanosleep, nanosleep, recv, send, recvfrom, sendto, read, \
             write, readv, writev, recvmsg, sendmsg, connect, accept, accept4, poll, getaddrinfo, \
             close"
        );
    }
}

/// Whether [`patch_all`] has been called.
pub fn is_patched() -> bool {
    PATCHED.load(Ordering::Relaxed)
}

/// Whether a patched call should cooperate: patched, and running in a greenlet.
fn cooperative() -> bool {
    PATCHED.load(Ordering::Relaxed) && may::coroutine::is_coroutine()
}

/// Looks up the C library's own `name` (the next definition after ours).
fn real(name: &CStr, slot: &OnceLock<usize>) -> usize {
    *slot.get_or_init(|| {
        // SAFETY: `dlsym` only reads its arguments; `name` is a NUL-terminated string and
        // RTLD_NEXT is a valid pseudo-handle. A null result is handled by the caller.
        unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) as usize }
    })
}

/// Resolves the C library's `name` as a function of type `F` (all our `*Fn` aliases).
macro_rules! real_fn {
    ($name:literal, $ty:ty) => {{
        static REAL: OnceLock<usize> = OnceLock::new();
        match real($name, &REAL) {
            0 => None,
            // SAFETY: the C library's function of this name has this signature.
            f => Some(unsafe { std::mem::transmute::<usize, $ty>(f) }),
        }
    }};
}

/// Sets errno and returns the C failure value `-1`.
fn fail<T: From<i8>>(errno: c_int) -> T {
    set_errno(errno);
    T::from(-1)
}

fn duration(ts: &libc::timespec) -> Option<Duration> {
    let nanos = u32::try_from(ts.tv_nsec)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    let secs = u64::try_from(ts.tv_sec).ok()?;
    Some(Duration::new(secs, nanos))
}

type ClockNanosleep = unsafe extern "C" fn(
    libc::clockid_t,
    c_int,
    *const libc::timespec,
    *mut libc::timespec,
) -> c_int;
type Nanosleep = unsafe extern "C" fn(*const libc::timespec, *mut libc::timespec) -> c_int;

/// `clock_nanosleep(3)`: cooperative inside greenlets after [`patch_all`].
///
/// # Safety
///
/// As the C function: `req` must point to a valid `timespec`; `rem` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clock_nanosleep(
    clock: libc::clockid_t,
    flags: c_int,
    req: *const libc::timespec,
    rem: *mut libc::timespec,
) -> c_int {
    if cooperative() && !req.is_null() {
        // SAFETY: the caller passes a valid `timespec` (the C contract we implement).
        let ts = unsafe { &*req };
        let Some(d) = duration(ts) else {
            return libc::EINVAL;
        };
        let d = if flags & libc::TIMER_ABSTIME != 0 {
            let mut now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `now` is a valid, writable `timespec`.
            if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
                return libc::EINVAL;
            }
            d.saturating_sub(duration(&now).unwrap_or_default())
        } else {
            d
        };
        // A kill unwinds with a panic, which must not cross this C boundary (Rust would abort
        // the process). Catch it and end the call early; the kill is sent again, so the
        // greenlet unwinds at its next blocking point in Rust code.
        let slept = catch_kill(|| crate::sleep(d));
        if !rem.is_null() && flags & libc::TIMER_ABSTIME == 0 {
            // SAFETY: the caller passes null or a writable `timespec` for `rem`. Nothing is
            // left to sleep either way, so std's retry loop on EINTR stops.
            unsafe {
                *rem = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                }
            };
        }
        return if slept.is_ok() { 0 } else { libc::EINTR };
    }
    let Some(real) = real_fn!(c"clock_nanosleep", ClockNanosleep) else {
        return libc::ENOSYS; // this call reports errors as its return value, not in errno
    };
    // SAFETY: passed through unchanged from our caller.
    unsafe { real(clock, flags, req, rem) }
}

/// `nanosleep(2)`: cooperative inside greenlets after [`patch_all`].
///
/// # Safety
///
/// As the C function: `req` must point to a valid `timespec`; `rem` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nanosleep(req: *const libc::timespec, rem: *mut libc::timespec) -> c_int {
    if cooperative() && !req.is_null() {
        // SAFETY: as in `clock_nanosleep`.
        let result = unsafe { clock_nanosleep(libc::CLOCK_MONOTONIC, 0, req, rem) };
        return if result == 0 { 0 } else { fail(result) };
    }
    let Some(real) = real_fn!(c"nanosleep", Nanosleep) else {
        return fail(libc::ENOSYS);
    };
    // SAFETY: passed through unchanged.
    unsafe { real(req, rem) }
}

// ---- sockets ----

type RecvFn = unsafe extern "C" fn(c_int, *mut libc::c_void, usize, c_int) -> isize;
type SendFn = unsafe extern "C" fn(c_int, *const libc::c_void, usize, c_int) -> isize;
type ConnectFn = unsafe extern "C" fn(c_int, *const libc::sockaddr, libc::socklen_t) -> c_int;

fn real_recv() -> Option<RecvFn> {
    real_fn!(c"recv", RecvFn)
}

fn real_send() -> Option<SendFn> {
    real_fn!(c"send", SendFn)
}

fn real_connect() -> Option<ConnectFn> {
    real_fn!(c"connect", ConnectFn)
}

fn set_errno(e: c_int) {
    // SAFETY: `__errno_location` returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

fn errno() -> c_int {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() }
}

/// The descriptor's file status flags, if it has any.
fn status_flags(fd: c_int) -> Option<c_int> {
    // SAFETY: F_GETFL only reads the descriptor's flags.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    (fl >= 0).then_some(fl)
}

/// A socket time-out option (`SO_RCVTIMEO`/`SO_SNDTIMEO`); `None` when unset.
fn socket_timeout(fd: c_int, option: c_int) -> Option<Duration> {
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

/// Whether this call should wait cooperatively: patched, in a greenlet, on a descriptor its
/// owner left blocking, without a non-blocking flag. Returns the status flags to restore.
fn cooperative_fd(fd: c_int, flags: c_int) -> Option<c_int> {
    if !cooperative() || flags & libc::MSG_DONTWAIT != 0 {
        return None;
    }
    status_flags(fd).filter(|fl| fl & libc::O_NONBLOCK == 0)
}

/// A socket seen through may's `CoIo` for one wait: reads and writes are the C library's own,
/// non-blocking.
struct Op(c_int);

impl std::os::fd::AsRawFd for Op {
    fn as_raw_fd(&self) -> c_int {
        self.0
    }
}

fn io_result(r: isize) -> std::io::Result<usize> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

impl std::io::Read for Op {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let recv = real_recv().ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOSYS))?;
        // SAFETY: `buf` is valid for `buf.len()` bytes; `recv` is the C library's.
        io_result(unsafe {
            recv(
                self.0,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        })
    }
}

/// A wait's registration is made on the greenlet's own worker (`park_on`), so `here` never
/// needs another one.
impl crate::net::registered::Again for may::io::CoIo<Op> {
    fn again(&self) -> std::io::Result<Self> {
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

impl std::io::Write for Op {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let send = real_send().ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOSYS))?;
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        // SAFETY: `buf` is valid for `buf.len()` bytes; `send` is the C library's.
        io_result(unsafe { send(self.0, buf.as_ptr().cast(), buf.len(), flags) })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `op`, a non-blocking call on `fd`, until the socket is ready, parking the greenlet
/// in between through a temporary may registration (`net::wait`: the crate's timer keeps the
/// time-out), then restores the descriptor's flags. Returns the C-style result and sets errno
/// on failure: `EAGAIN` when `timeout` passed (as the kernel does for socket time-outs),
/// `ECANCELED` when the greenlet is being killed.
fn park_on<F>(fd: c_int, restore: c_int, timeout: Option<Duration>, write: bool, op: F) -> isize
where
    F: FnMut() -> std::io::Result<usize>,
{
    // Registered on the greenlet's own worker (a duplicate when `fd` maps to another one), so
    // that readiness resumes it there; the duplicate is closed after the registration.
    let placed = crate::deadline::home::place_dup(fd);
    let coio = match &placed {
        Ok(dup) => {
            let on = dup.as_ref().map_or(fd, std::os::fd::AsRawFd::as_raw_fd);
            may::io::CoIo::new(Op(on)).map_err(std::io::Error::from)
        }
        Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
    };
    let outcome = match coio {
        Ok(coio) => {
            let coio = crate::net::registered::Registered::new(coio);
            let interest = if write {
                crate::net::wait::Interest::Write
            } else {
                crate::net::wait::Interest::Read
            };
            let r = catch_kill(std::panic::AssertUnwindSafe(|| {
                crate::net::wait::io("monkey socket wait", &coio, None, interest, timeout, op)
            }));
            drop(coio);
            drop(placed);
            r
        }
        // Already registered elsewhere (e.g. another greenlet waits on it): report it.
        Err(e) => Ok(Err(e)),
    };
    // SAFETY: F_SETFL with the flags read before the call restores the owner's choice.
    unsafe { libc::fcntl(fd, libc::F_SETFL, restore) };
    match outcome {
        Ok(Ok(n)) => n as isize,
        Ok(Err(e)) => {
            let code = match e.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => libc::EAGAIN,
                _ => e.raw_os_error().unwrap_or(libc::EIO),
            };
            fail(code)
        }
        Err(()) => fail(libc::ECANCELED),
    }
}

/// Runs `f`, a wait inside a C hook. A kill's unwind cannot cross into C: it is caught here
/// (`Err`, and the hook fails with `ECANCELED` or `EINTR`), and the kill is sent again so that
/// the greenlet's next blocking point, back in Rust, delivers it.
fn catch_kill<R>(f: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, ()> {
    std::panic::catch_unwind(f).map_err(|_| crate::greenlet::kill::redeliver())
}

/// `recv(2)`: cooperative on blocking sockets inside greenlets after [`patch_all`].
///
/// # Safety
///
/// As the C function: `buf` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recv(
    fd: c_int,
    buf: *mut libc::c_void,
    len: usize,
    flags: c_int,
) -> isize {
    let Some(real) = real_recv() else {
        return fail(libc::ENOSYS);
    };
    let call = |flags| {
        // SAFETY: the caller's buffer, valid for `len` bytes during this call.
        unsafe { real(fd, buf, len, flags) }
    };
    let park = |restore, timeout| {
        // SAFETY: the caller's buffer, valid for `len` bytes during this call.
        let slice = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
        park_on(fd, restore, timeout, false, || {
            std::io::Read::read(&mut Op(fd), slice)
        })
    };
    socket_call(fd, flags, len, Direction::Read, call, park)
}

/// `send(2)`: cooperative on blocking sockets inside greenlets after [`patch_all`].
///
/// # Safety
///
/// As the C function: `buf` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn send(
    fd: c_int,
    buf: *const libc::c_void,
    len: usize,
    flags: c_int,
) -> isize {
    let Some(real) = real_send() else {
        return fail(libc::ENOSYS);
    };
    let call = |flags| {
        // SAFETY: the caller's buffer, valid for `len` bytes during this call.
        unsafe { real(fd, buf, len, flags) }
    };
    let park = |restore, timeout| {
        // SAFETY: the caller's buffer, valid for `len` bytes during this call.
        let slice = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) };
        park_on(fd, restore, timeout, true, || {
            std::io::Write::write(&mut Op(fd), slice)
        })
    };
    socket_call(fd, flags, len, Direction::Write, call, park)
}

#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

impl Direction {
    fn events(self) -> libc::c_short {
        match self {
            Direction::Read => libc::POLLIN,
            Direction::Write => libc::POLLOUT,
        }
    }

    fn timeout_option(self) -> c_int {
        match self {
            Direction::Read => libc::SO_RCVTIMEO,
            Direction::Write => libc::SO_SNDTIMEO,
        }
    }

    /// Flags our `park_on` path reproduces; others make us poll and call the C library again.
    fn plain(self, flags: c_int) -> bool {
        match self {
            Direction::Read => flags == 0,
            Direction::Write => flags & !libc::MSG_NOSIGNAL == 0,
        }
    }
}

/// The shared algorithm of `recv` and `send`. `call(flags)` is the C library's call; `park`
/// waits through may and performs the I/O.
fn socket_call(
    fd: c_int,
    flags: c_int,
    len: usize,
    dir: Direction,
    call: impl Fn(c_int) -> isize,
    park: impl FnOnce(c_int, Option<Duration>) -> isize,
) -> isize {
    if !cooperative() || flags & libc::MSG_DONTWAIT != 0 {
        return call(flags);
    }
    // Try without blocking first: the same single call as before for ready and for
    // non-blocking sockets (may's own I/O).
    let r = call(flags | libc::MSG_DONTWAIT);
    if r >= 0 || errno() != libc::EAGAIN || len == 0 {
        return r;
    }
    // Would block: only a socket its owner left blocking waits.
    let Some(restore) = status_flags(fd).filter(|fl| fl & libc::O_NONBLOCK == 0) else {
        return fail(libc::EAGAIN);
    };
    let timeout = socket_timeout(fd, dir.timeout_option());
    if dir.plain(flags) {
        return park(restore, timeout);
    }
    // may's wait re-reads with plain read(2)/write(2), which would drop these flags: poll.
    if let Err(e) = wait_ready(fd, dir.events(), timeout) {
        return fail(timeout_errno(e));
    }
    call(flags)
}

/// A socket whose time-out passed reports `EAGAIN`, as the kernel does for `SO_RCVTIMEO`.
fn timeout_errno(e: c_int) -> c_int {
    if e == libc::ETIMEDOUT {
        libc::EAGAIN
    } else {
        e
    }
}

/// `connect(2)`: cooperative on blocking sockets inside greenlets after [`patch_all`].
///
/// # Safety
///
/// As the C function: `addr` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(
    fd: c_int,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> c_int {
    let Some(real) = real_connect() else {
        return fail(libc::ENOSYS);
    };
    let Some(restore) = cooperative_fd(fd, 0) else {
        // SAFETY: passed through unchanged to the C library's `connect`.
        return unsafe { real(fd, addr, len) };
    };
    // SAFETY: making the socket non-blocking for the attempt; restored below.
    unsafe { libc::fcntl(fd, libc::F_SETFL, restore | libc::O_NONBLOCK) };
    // SAFETY: as above.
    let r = unsafe { real(fd, addr, len) };
    let result = if r == 0 || errno() != libc::EINPROGRESS {
        (r, errno())
    } else {
        wait_connected(fd, socket_timeout(fd, libc::SO_SNDTIMEO))
    };
    // SAFETY: restores the owner's flags.
    unsafe { libc::fcntl(fd, libc::F_SETFL, restore) };
    if result.0 != 0 {
        set_errno(result.1);
    }
    result.0
}

/// Parks (polling with a growing pause of 1 to 10 ms) until `fd` reports `events`, or until
/// `timeout`. `Err(errno)`: `ETIMEDOUT`, or `ECANCELED` when the greenlet is being killed.
fn wait_ready(fd: c_int, events: libc::c_short, timeout: Option<Duration>) -> Result<(), c_int> {
    let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
    let mut pause = Duration::from_millis(1);
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid `pollfd`, zero time-out: never blocks.
        if unsafe { libc::poll(&mut pfd, 1, 0) } > 0 {
            return Ok(());
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return Err(libc::ETIMEDOUT);
        }
        let nap = deadline.map_or(pause, |d| {
            pause.min(d.saturating_duration_since(std::time::Instant::now()))
        });
        if catch_kill(|| crate::sleep(nap)).is_err() {
            return Err(libc::ECANCELED);
        }
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Parks until a non-blocking connect finishes; `(result, errno)`.
fn wait_connected(fd: c_int, timeout: Option<Duration>) -> (c_int, c_int) {
    if let Err(e) = wait_ready(fd, libc::POLLOUT, timeout) {
        return (-1, e);
    }
    let mut err: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are valid and describe each other.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut err).cast(),
            &mut len,
        )
    };
    if err == 0 { (0, 0) } else { (-1, err) }
}

type Accept4Fn =
    unsafe extern "C" fn(c_int, *mut libc::sockaddr, *mut libc::socklen_t, c_int) -> c_int;

/// `accept4(2)` (what `std::net::TcpListener::accept` calls): cooperative on blocking
/// listeners inside greenlets after [`patch_all`].
///
/// # Safety
///
/// As the C function: `addr`/`len` are null or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
    flags: c_int,
) -> c_int {
    let Some(real) = real_fn!(c"accept4", Accept4Fn) else {
        return fail(libc::ENOSYS);
    };
    if let Err(e) = wait_socket(fd, 0, libc::POLLIN, libc::SO_RCVTIMEO) {
        return fail(e);
    }
    // SAFETY: passed through to the C library's `accept4`; after the wait it does not block
    // unless another thread took the connection first.
    unsafe { real(fd, addr, len, flags) }
}

// ---- name resolution ----

type GetaddrinfoFn = unsafe extern "C" fn(
    *const std::ffi::c_char,
    *const std::ffi::c_char,
    *const libc::addrinfo,
    *mut *mut libc::addrinfo,
) -> c_int;

/// `getaddrinfo(3)` (what `std`'s name lookups call): inside greenlets after [`patch_all`] the
/// lookup runs on the blocking [thread pool](crate::threadpool) and only the greenlet waits,
/// as gevent's default resolver does.
///
/// # Safety
///
/// As the C function: `node` and `service` are null or NUL-terminated, `hints` is null or
/// valid, `res` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getaddrinfo(
    node: *const std::ffi::c_char,
    service: *const std::ffi::c_char,
    hints: *const libc::addrinfo,
    res: *mut *mut libc::addrinfo,
) -> c_int {
    let Some(real) = real_fn!(c"getaddrinfo", GetaddrinfoFn) else {
        return libc::EAI_SYSTEM;
    };
    if !cooperative() {
        // SAFETY: passed through unchanged.
        return unsafe { real(node, service, hints, res) };
    }
    // The pointers cross to a pool thread as integers. They stay valid: this function does
    // not return before the lookup has finished, also when the greenlet is killed meanwhile.
    let args = (
        node as usize,
        service as usize,
        hints as usize,
        res as usize,
    );
    let task = crate::threadpool::spawn_blocking(move || {
        let (node, service, hints, res) = args;
        // SAFETY: the caller's pointers, valid until we return (see above).
        unsafe { real(node as _, service as _, hints as _, res as _) }
    });
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task.join())) {
        Ok(()) => task.get().unwrap_or(libc::EAI_SYSTEM),
        Err(_killed) => {
            // Killed while waiting: the pool thread still writes through `res`, so wait for it
            // without parking (a cancelled greenlet cannot park), then report a failure.
            while !task.ready() {
                std::thread::yield_now();
            }
            if let Ok(0) = task.get() {
                // SAFETY: a successful lookup's list, which the caller will never see.
                unsafe { libc::freeaddrinfo(*res) };
            }
            libc::EAI_AGAIN
        }
    }
}

// ---- datagrams and poll ----

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
type PollFn = unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, c_int) -> c_int;

/// Waits for `events` on a blocking socket inside a greenlet before a call that would block;
/// `Err` carries the errno to fail with (`EAGAIN` after the socket's time-out).
fn wait_socket(fd: c_int, flags: c_int, events: libc::c_short, option: c_int) -> Result<(), c_int> {
    if cooperative_fd(fd, flags).is_none() {
        return Ok(());
    }
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid `pollfd`, zero time-out: never blocks.
    if unsafe { libc::poll(&mut pfd, 1, 0) } > 0 {
        return Ok(());
    }
    wait_ready(fd, events, socket_timeout(fd, option)).map_err(timeout_errno)
}

/// `recvfrom(2)` (`std::net::UdpSocket::recv_from`): cooperative on blocking sockets inside
/// greenlets after [`patch_all`].
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvfrom(
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
    if let Err(e) = wait_socket(fd, flags, libc::POLLIN, libc::SO_RCVTIMEO) {
        return fail(e);
    }
    // SAFETY: passed through; after the wait the datagram is there unless another reader
    // took it first (then the call blocks, as it would have).
    unsafe { real(fd, buf, len, flags, addr, addrlen) }
}

/// `sendto(2)` (`std::net::UdpSocket::send_to`): cooperative on blocking sockets inside
/// greenlets after [`patch_all`].
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
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
    if let Err(e) = wait_socket(fd, flags, libc::POLLOUT, libc::SO_SNDTIMEO) {
        return fail(e);
    }
    // SAFETY: passed through unchanged.
    unsafe { real(fd, buf, len, flags, addr, addrlen) }
}

/// `poll(2)` (what std's `connect_timeout` waits in): inside greenlets after [`patch_all`],
/// a poll with a time-out parks the greenlet between checks instead of blocking the worker.
///
/// # Safety
///
/// As the C function: `fds` is valid for `n` entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout_ms: c_int) -> c_int {
    let Some(real) = real_fn!(c"poll", PollFn) else {
        return fail(libc::ENOSYS);
    };
    if !cooperative() || timeout_ms == 0 {
        // SAFETY: passed through unchanged.
        return unsafe { real(fds, n, timeout_ms) };
    }
    let deadline = u64::try_from(timeout_ms)
        .ok()
        .and_then(|ms| std::time::Instant::now().checked_add(Duration::from_millis(ms)));
    let mut pause = Duration::from_millis(1);
    loop {
        // SAFETY: a zero time-out check of the caller's array: never blocks.
        let r = unsafe { real(fds, n, 0) };
        if r != 0 {
            return r;
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return 0;
        }
        let nap = deadline.map_or(pause, |d| {
            pause.min(d.saturating_duration_since(std::time::Instant::now()))
        });
        if catch_kill(|| crate::sleep(nap)).is_err() {
            return fail(libc::ECANCELED);
        }
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

// ---- read, write, readv, writev, close ----

/// What a descriptor is, cached per fd (cleared by `close`): 0 unknown, 1 not a socket,
/// 2 a socket.
const KINDS: usize = 1 << 16;
static KIND: [std::sync::atomic::AtomicU8; KINDS] =
    [const { std::sync::atomic::AtomicU8::new(0) }; KINDS];
const NOT_SOCKET: u8 = 1;
const SOCKET: u8 = 2;

fn is_socket(fd: c_int) -> bool {
    let slot = usize::try_from(fd).ok().and_then(|i| KIND.get(i));
    if let Some(kind) = slot.map(|k| k.load(Ordering::Relaxed)).filter(|k| *k != 0) {
        return kind == SOCKET;
    }
    // SAFETY: `stat` is plain old data; all-zero is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable `stat` buffer.
    let found = unsafe { libc::fstat(fd, &mut st) } == 0;
    let socket = found && st.st_mode & libc::S_IFMT == libc::S_IFSOCK;
    if let Some(k) = slot {
        k.store(if socket { SOCKET } else { NOT_SOCKET }, Ordering::Relaxed);
    }
    socket
}

fn forget_kind(fd: c_int) {
    if let Some(k) = usize::try_from(fd).ok().and_then(|i| KIND.get(i)) {
        k.store(0, Ordering::Relaxed);
    }
}

type ReadFn = unsafe extern "C" fn(c_int, *mut libc::c_void, usize) -> isize;
type WriteFn = unsafe extern "C" fn(c_int, *const libc::c_void, usize) -> isize;
type IovFn = unsafe extern "C" fn(c_int, *const libc::iovec, c_int) -> isize;
type CloseFn = unsafe extern "C" fn(c_int) -> c_int;

/// `read(2)`: on a blocking socket inside a greenlet after [`patch_all`], as `recv`; on
/// anything else (files, pipes, terminals), the C library's own.
///
/// # Safety
///
/// As the C function: `buf` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut libc::c_void, len: usize) -> isize {
    let Some(real) = real_fn!(c"read", ReadFn) else {
        return fail(libc::ENOSYS);
    };
    if cooperative() && is_socket(fd) {
        // SAFETY: forwarded with the caller's valid buffer; `recv` with flags 0 is `read`
        // on a socket.
        return unsafe { recv(fd, buf, len, 0) };
    }
    // SAFETY: passed through unchanged.
    unsafe { real(fd, buf, len) }
}

/// `write(2)`: on a blocking socket inside a greenlet after [`patch_all`], as `send`; on
/// anything else, the C library's own.
///
/// # Safety
///
/// As the C function: `buf` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const libc::c_void, len: usize) -> isize {
    let Some(real) = real_fn!(c"write", WriteFn) else {
        return fail(libc::ENOSYS);
    };
    if cooperative() && is_socket(fd) {
        // SAFETY: forwarded with the caller's valid buffer; `send` with flags 0 is `write`
        // on a socket (SIGPIPE behaviour included).
        return unsafe { send(fd, buf, len, 0) };
    }
    // SAFETY: passed through unchanged.
    unsafe { real(fd, buf, len) }
}

/// Shared by `readv`/`writev`: on a blocking socket in a greenlet, wait until ready first.
unsafe fn vectored(
    real: IovFn,
    fd: c_int,
    iov: *const libc::iovec,
    n: c_int,
    write: bool,
) -> isize {
    if cooperative() && is_socket(fd) {
        let (events, option) = if write {
            (libc::POLLOUT, libc::SO_SNDTIMEO)
        } else {
            (libc::POLLIN, libc::SO_RCVTIMEO)
        };
        if let Err(e) = wait_socket(fd, 0, events, option) {
            return fail(e);
        }
    }
    // SAFETY: passed through unchanged (the caller's contract).
    unsafe { real(fd, iov, n) }
}

/// `readv(2)`: cooperative on blocking sockets inside greenlets after [`patch_all`].
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const libc::iovec, n: c_int) -> isize {
    match real_fn!(c"readv", IovFn) {
        // SAFETY: the caller's contract, passed on.
        Some(real) => unsafe { vectored(real, fd, iov, n, false) },
        None => fail(libc::ENOSYS),
    }
}

/// `writev(2)` (`std`'s vectored socket writes): cooperative on blocking sockets inside
/// greenlets after [`patch_all`].
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const libc::iovec, n: c_int) -> isize {
    match real_fn!(c"writev", IovFn) {
        // SAFETY: the caller's contract, passed on.
        Some(real) => unsafe { vectored(real, fd, iov, n, true) },
        None => fail(libc::ENOSYS),
    }
}

/// `close(2)`: forgets what the descriptor was (its number may be reused), then closes it.
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    forget_kind(fd);
    match real_fn!(c"close", CloseFn) {
        // SAFETY: passed through unchanged.
        Some(real) => unsafe { real(fd) },
        None => fail(libc::ENOSYS),
    }
}

// ---- accept, recvmsg, sendmsg ----

type AcceptFn = unsafe extern "C" fn(c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> c_int;
type MsgFn = unsafe extern "C" fn(c_int, *const libc::msghdr, c_int) -> isize;
type MsgMutFn = unsafe extern "C" fn(c_int, *mut libc::msghdr, c_int) -> isize;

/// `accept(2)`: cooperative on blocking listeners inside greenlets after [`patch_all`].
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(
    fd: c_int,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) -> c_int {
    let Some(real) = real_fn!(c"accept", AcceptFn) else {
        return fail(libc::ENOSYS);
    };
    if let Err(e) = wait_socket(fd, 0, libc::POLLIN, libc::SO_RCVTIMEO) {
        return fail(e);
    }
    // SAFETY: passed through unchanged.
    unsafe { real(fd, addr, len) }
}

/// `recvmsg(2)`: cooperative on blocking sockets inside greenlets after [`patch_all`].
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> isize {
    let Some(real) = real_fn!(c"recvmsg", MsgMutFn) else {
        return fail(libc::ENOSYS);
    };
    if let Err(e) = wait_socket(fd, flags, libc::POLLIN, libc::SO_RCVTIMEO) {
        return fail(e);
    }
    // SAFETY: passed through unchanged.
    unsafe { real(fd, msg, flags) }
}

/// `sendmsg(2)`: cooperative on blocking sockets inside greenlets after [`patch_all`].
///
/// # Safety
///
/// As the C function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> isize {
    let Some(real) = real_fn!(c"sendmsg", MsgFn) else {
        return fail(libc::ENOSYS);
    };
    if let Err(e) = wait_socket(fd, flags, libc::POLLOUT, libc::SO_SNDTIMEO) {
        return fail(e);
    }
    // SAFETY: passed through unchanged.
    unsafe { real(fd, msg, flags) }
}
