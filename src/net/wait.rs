//! Socket time-outs kept by the crate: a timed socket operation is a loop of the non-blocking
//! system call and a wait for readiness that ends at the deadline.
//!
//! may keeps socket time-outs in a timer list per worker, which only that worker runs, between
//! two of its coroutines: while a greenlet computes on it (or a plain call blocks it), every
//! socket time-out of the descriptors assigned to that worker is late, by as long as the
//! computation lasts (a 30 ms read time-out measured at 1.03 s next to a greenlet computing
//! for 1 s). And may arms that timer before it registers the waiting coroutine, so a time-out
//! that fires in between is lost (`docs/upstream.md`). Here may is never given a socket
//! time-out:
//!
//! - in a greenlet, the wait is may's `WaitIo::wait_io` (readiness, or a kill), and the crate's
//!   timer ([`crate::deadline`]) wakes it at the deadline through its `WaitIoWaker`, on the
//!   greenlet's own worker (`deadline::home`);
//! - on a plain thread, the wait is `poll(2)` on the descriptor, with the time left rounded
//!   up to whole milliseconds (never early), so no may machinery is involved at all.
//!
//! Every socket operation of `net` (and `monkey`'s socket hooks) comes here, with or without
//! a time-out: may's own operations decide whether to raise a kill from `thread::panicking()`,
//! per OS thread, which is wrong beside a greenlet parked mid-unwind (`docs/upstream.md`,
//! item 5); here kills are delivered by the crate's own state (`kill::after_wait_io`).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use may::io::AsIoData;

use super::registered::{Again, Registered};

/// Which readiness a wait is for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// A socket time-out, exactly as set (`None` = no time-out).
#[derive(Debug, Default)]
pub(crate) struct IoTimeout(AtomicU64);

impl IoTimeout {
    /// Sets the time-out (a zero one is refused earlier, by `check_timeout`).
    pub(crate) fn set(&self, d: Option<Duration>) {
        // Nanoseconds, 0 = none; a time-out over 584 years is as good as none.
        let nanos = d.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(0));
        self.0.store(nanos, Ordering::Relaxed);
    }

    /// The time-out as set.
    pub(crate) fn get(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// A copy, for a cloned socket.
    pub(crate) fn copy(&self) -> IoTimeout {
        IoTimeout(AtomicU64::new(self.0.load(Ordering::Relaxed)))
    }
}

/// The four time-out methods of a socket type with `read_timeout` and `write_timeout` fields
/// ([`IoTimeout`]): std's API, the time-outs kept by the crate, exactly.
macro_rules! socket_timeouts {
    () => {
        /// Sets the read time-out: a read that waits longer fails with `TimedOut`. `None`
        /// waits forever.
        ///
        /// # Errors
        ///
        /// `InvalidInput` for `Some(Duration::ZERO)`, as std.
        pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
            super::tcp::check_timeout(d)?;
            self.read_timeout.set(d);
            Ok(())
        }

        /// Sets the write time-out: a write that waits longer fails with `TimedOut`. `None`
        /// waits forever.
        ///
        /// # Errors
        ///
        /// `InvalidInput` for `Some(Duration::ZERO)`, as std.
        pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
            super::tcp::check_timeout(d)?;
            self.write_timeout.set(d);
            Ok(())
        }

        /// The read time-out, exactly as set.
        ///
        /// # Errors
        ///
        /// Never; `io::Result` as std.
        pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
            Ok(self.read_timeout.get())
        }

        /// The write time-out, exactly as set.
        ///
        /// # Errors
        ///
        /// Never; `io::Result` as std.
        pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
            Ok(self.write_timeout.get())
        }
    };
}
pub(crate) use socket_timeouts;

/// Lets one greenlet at a time wait on a socket's may registration. may keeps one waiting
/// coroutine per registration: a second waiter would replace the first, which may then drops,
/// ending it as if killed. The others queue here (a deadline still applies while queued).
/// Needed where `&self` methods can wait at once: `UdpSocket`, `TcpListener::accept`,
/// `TcpStream::peek` beside a read through `&TcpStream`.
#[derive(Default)]
pub(crate) struct Gate(std::sync::Mutex<GateState>);

#[derive(Default)]
struct GateState {
    busy: bool,
    waiters: crate::sync::waiters::Waiters,
}

fn gate_waiters(s: &mut GateState) -> &mut crate::sync::waiters::Waiters {
    &mut s.waiters
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gate")
    }
}

/// The right to wait on a registration, given back when dropped (also by an unwind).
struct Pass<'a>(&'a Gate);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let mut state = crate::sync::lock(&(self.0).0);
        state.busy = false;
        state.waiters.notify_one();
    }
}

impl Gate {
    /// The right to wait, if nobody has it.
    fn try_enter(&self) -> Option<Pass<'_>> {
        let mut state = crate::sync::lock(&self.0);
        (!std::mem::replace(&mut state.busy, true)).then(|| Pass(self))
    }

    /// Waits for the right to wait; `None` if `deadline` passed first.
    fn enter(&self, what: &'static str, deadline: Option<Instant>) -> Option<Pass<'_>> {
        crate::sync::waiters::wait_until(what, &self.0, gate_waiters, deadline, |s| {
            (!s.busy).then(|| s.busy = true)
        })
        .map(|()| Pass(self))
    }
}

/// A second registration of a shared socket (on a duplicated descriptor), made on first use,
/// with its own [`Gate`]: sends wait for writability there, so a send that would block never
/// queues behind a receive waiting on the first registration (whose "writable" wake-up would
/// go to the receiver, which then took the gate back, and the sender starved).
pub(crate) struct SendSide<T: AsIoData + AsRawFd + Again + Send + 'static>(
    std::sync::OnceLock<(Registered<T>, Gate)>,
);

impl<T: AsIoData + AsRawFd + Again + Send + 'static> Default for SendSide<T> {
    fn default() -> Self {
        SendSide(std::sync::OnceLock::new())
    }
}

impl<T: AsIoData + AsRawFd + Again + Send + 'static> SendSide<T> {
    /// A send: a first try with `op` on `first` (the socket itself); only a send that would
    /// block makes the send registration (`Again::again` of `first`, on first need) and waits
    /// there, with `timeout`.
    pub(crate) fn send<R>(
        &self,
        what: &'static str,
        first: &T,
        timeout: Option<Duration>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        match op(first) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => return other,
        }
        let (reg, gate) = self.get(|| first.again())?;
        io(what, reg, Some(gate), Interest::Write, timeout, || op(reg))
    }

    /// The send registration, made by `make` (a duplicate of the socket) on first use.
    fn get(&self, make: impl FnOnce() -> io::Result<T>) -> io::Result<(&Registered<T>, &Gate)> {
        if let Some((reg, gate)) = self.0.get() {
            return Ok((reg, gate));
        }
        let made = Registered::new(make()?);
        // If another greenlet raced us here, keep its registration and drop ours.
        let (reg, gate) = self.0.get_or_init(|| (made, Gate::default()));
        Ok((reg, gate))
    }
}

/// The error of a socket operation whose time-out passed (std's kind for it).
pub(crate) fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "socket operation timed out")
}

/// Runs `op`, a non-blocking system call on `socket`'s descriptor, until it does anything but
/// report `WouldBlock`, waiting for `interest` between tries; fails with `TimedOut` once
/// `timeout` has passed. Never returns `TimedOut` before the time-out, never hangs past it.
///
/// The time-out starts when the first try would block: a call that completes at once (most
/// writes, and reads of data already there) reads no clock.
pub(crate) fn io<S, R>(
    what: &'static str,
    socket: &Registered<S>,
    gate: Option<&Gate>,
    interest: Interest,
    timeout: Option<Duration>,
    op: impl FnMut() -> io::Result<R>,
) -> io::Result<R>
where
    S: AsIoData + AsRawFd + Again + Send + 'static,
{
    let ends = timeout.map_or(Ends::Never, Ends::After);
    wait_loop(what, socket, gate, interest, ends, op)
}

/// [`io`] with a deadline instead of a time-out.
pub(crate) fn io_until<S, R>(
    what: &'static str,
    socket: &Registered<S>,
    gate: Option<&Gate>,
    interest: Interest,
    deadline: Option<Instant>,
    op: impl FnMut() -> io::Result<R>,
) -> io::Result<R>
where
    S: AsIoData + AsRawFd + Again + Send + 'static,
{
    let ends = deadline.map_or(Ends::Never, Ends::At);
    wait_loop(what, socket, gate, interest, ends, op)
}

/// When a wait ends.
#[derive(Clone, Copy)]
enum Ends {
    /// A time-out whose deadline is fixed when the first wait starts.
    After(Duration),
    At(Instant),
    Never,
}

impl Ends {
    /// Fixes the deadline (a time-out starts now) and returns it with the time now; `Ok(None)`
    /// for no deadline (no clock is read), `Err(())` once it has passed.
    fn fix(&mut self) -> Result<Option<(Instant, Instant)>, ()> {
        let now = match *self {
            Ends::Never => return Ok(None),
            Ends::After(t) => {
                let now = Instant::now();
                // A time-out too long to represent is no deadline.
                *self = now.checked_add(t).map_or(Ends::Never, Ends::At);
                now
            }
            Ends::At(_) => Instant::now(),
        };
        match *self {
            Ends::At(d) if d > now => Ok(Some((d, now))),
            Ends::At(_) => Err(()),
            _ => Ok(None),
        }
    }

    fn deadline(self) -> Option<Instant> {
        match self {
            Ends::At(d) => Some(d),
            _ => None,
        }
    }
}

/// The loop of [`io`] and [`io_until`].
fn wait_loop<S, R>(
    what: &'static str,
    socket: &Registered<S>,
    gate: Option<&Gate>,
    interest: Interest,
    mut ends: Ends,
    mut op: impl FnMut() -> io::Result<R>,
) -> io::Result<R>
where
    S: AsIoData + AsRawFd + Again + Send + 'static,
{
    // The registration with the selector of the calling greenlet's worker (issue 14).
    let fd = socket.as_raw_fd();
    let socket = socket.here();
    let mut past_deadline = false;
    loop {
        // Forget the readiness seen so far (may's registration is edge-triggered and keeps a
        // flag of the edges since): an edge that comes after this is seen by the wait below,
        // and a stale one does not cost an extra try. Not on a socket that several greenlets
        // can wait on: it could clear an edge meant for the one waiting (which then re-tries
        // the call after a stale edge instead).
        if gate.is_none() {
            socket.as_io_data().reset();
        }
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
        if past_deadline {
            return Err(timed_out());
        }
        let Ok(deadline) = ends.fix() else {
            // One more try, made after the deadline: data queued before it is returned.
            past_deadline = true;
            continue;
        };
        if may::coroutine::is_coroutine() {
            in_greenlet(what, socket, gate, deadline);
        } else {
            on_thread(fd, interest, ends.deadline())?;
        }
    }
}

/// Parks the greenlet until the socket reports readiness (possibly spuriously: the caller
/// tries again), the deadline passes (`deadline` is the deadline and the time now), or a kill
/// arrives (it unwinds).
fn in_greenlet<S: AsIoData + Send + 'static>(
    what: &'static str,
    socket: &Registered<S>,
    gate: Option<&Gate>,
    deadline: Option<(Instant, Instant)>,
) {
    let at = deadline.map(|(at, _)| at);
    let _pass = match gate {
        None => None,
        Some(g) => match g.try_enter() {
            Some(pass) => Some(pass),
            None => {
                // Another greenlet waits on the socket: queue behind it, then let the caller
                // try the call again (what woke that one may be there for this one too).
                drop(g.enter(what, at));
                return;
            }
        },
    };
    if let Some((at, now)) = deadline
        && !socket.wake_by(at, now)
    {
        // The timer thread could not be started: poll the socket every millisecond (the
        // crate's sleep, whose may time-out is safe; may's own `sleep` is not:
        // `docs/upstream.md`, item 13).
        crate::sleep(Duration::from_millis(1));
        return;
    }
    crate::monitor::blocking_until(what, at, || {
        socket.wait_io();
        crate::greenlet::kill::after_wait_io();
    });
}

/// Blocks the thread in `poll(2)` until `fd` is ready for `interest`, an error or hang-up is
/// pending on it, or `deadline` passes (rounded up to whole milliseconds: never early).
fn on_thread(fd: RawFd, interest: Interest, deadline: Option<Instant>) -> io::Result<()> {
    let timeout_ms = match crate::deadline::left(deadline) {
        Ok(None) => -1,
        Ok(Some(left)) => i32::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
        Err(()) => return Ok(()),
    };
    let events = match interest {
        Interest::Read => libc::POLLIN,
        Interest::Write => libc::POLLOUT,
    };
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid `pollfd` that lives across the call, and the count says one.
    let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}
