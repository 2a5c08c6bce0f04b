//! Waiting for readiness of the user's descriptors without touching them.
//!
//! may can only wait on a descriptor it registered itself, which sets `O_NONBLOCK` on it (shared
//! by every `dup` and clone) and allows one registration per descriptor. So a wait adds the
//! user's descriptors, level-triggered and unchanged, to a private epoll set ([`Watch`]), and
//! the greenlet waits on that set's own descriptor through may (`net::wait`, with the crate's
//! timer for the deadline): the set becomes readable when any of them is ready. The answer is
//! then always taken from the real call, made again without blocking: the set is only a
//! wake-up, so a spurious one costs a retry, never a wrong result.
//!
//! A greenlet never changes worker (issue 14), so each worker keeps spare sets, registered with
//! its own selector, and a wait costs two `epoll_ctl` calls beside the retried call.
//!
//! # Kill safety
//!
//! A kill unwinds out of the wait into the hook's `catch_kill`; the set is emptied and given
//! back (or closed) by [`Watch`]'s destructor on the way.

use std::cell::RefCell;
use std::ffi::c_int;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use may::io::CoIo;

use crate::net::registered::{Again, Registered};
use crate::net::wait::{Interest, io_until};

/// A private epoll set's descriptor.
pub(super) struct Epoll(OwnedFd);

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// A set is made for the calling greenlet's worker (its descriptor placed there), so `here`
/// never needs another registration.
impl Again for CoIo<Epoll> {
    fn again(&self) -> io::Result<Self> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// Spare sets kept per worker thread beyond which a finished wait closes its set.
const SPARES: usize = 16;

/// Sets kept per worker thread still holding the one descriptor they were made for.
const KEPT: usize = 64;

type Set = Registered<CoIo<Epoll>>;

thread_local! {
    /// This worker's spare sets, empty and registered with its selector.
    static SPARE: RefCell<Vec<Set>> = const { RefCell::new(Vec::new()) };
    /// This worker's sets that still hold one descriptor (by number) from its last wait, with
    /// the number's generation then (`fd::generation`): the next wait on it costs one
    /// `EPOLL_CTL_MOD` instead of an add and a remove. A set whose number was closed since
    /// (through the C library's `close`, `dup2`, `dup3`, `close_range`) is closed when next
    /// seen or when the table is full; one closed behind the crate's back is caught by the
    /// modification, which fails once the number names another file. At most `KEPT` per
    /// worker.
    static KEPT_SETS: RefCell<std::collections::HashMap<c_int, (Set, u32)>> =
        RefCell::new(std::collections::HashMap::new());
}

/// A new private epoll set, registered with the calling greenlet's worker.
fn new_set() -> io::Result<Set> {
    // SAFETY: epoll_create1 takes no pointers; it returns a new descriptor or -1.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by epoll_create1 and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let fd = crate::deadline::home::place_fd(fd);
    Ok(Registered::new(CoIo::new(Epoll(fd))?))
}

/// What [`Watch::wait`] reports when the deadline passed: not an errno (they are positive),
/// so that a call's own `ETIMEDOUT` is not mistaken for it.
pub(super) const DEADLINE: c_int = -1;

/// A private epoll set holding the descriptors of one wait, given back empty when dropped.
pub(super) struct Watch {
    set: Option<Set>,
    /// The descriptors added, with their events (merged when one is given twice).
    added: Vec<(c_int, u32)>,
    /// A descriptor could not be added (not pollable by epoll): wake up now and then instead.
    blind: bool,
    /// Kept holding its one descriptor when dropped (`KEPT_SETS`), rather than emptied.
    keep: bool,
}

impl Watch {
    /// A spare set of this worker, or a new one.
    pub(super) fn new() -> Watch {
        let set = SPARE
            .with(|s| s.borrow_mut().pop())
            .or_else(|| match new_set() {
                Ok(set) => Some(set),
                Err(e) => {
                    // Out of descriptors (EMFILE) or memory: the wait still works, without them.
                    log::debug!("monkey: no epoll set for a wait ({e}): trying every 1-10 ms");
                    None
                }
            });
        Watch {
            blind: set.is_none(),
            set,
            added: Vec::new(),
            keep: false,
        }
    }

    /// This worker's kept set for `fd`, now waiting for `events`, if it still holds `fd`'s
    /// file; it is kept again when dropped.
    fn kept(fd: c_int, events: u32) -> Option<Watch> {
        let (set, generation) = KEPT_SETS.with(|k| k.borrow_mut().remove(&fd))?;
        if generation != super::fd::generation(fd) {
            return None; // closed since: the set is closed here
        }
        let mut ev = libc::epoll_event {
            events,
            u64: fd as u64,
        };
        // SAFETY: `ev` is a valid event; epoll_ctl does not keep the pointer.
        let r = unsafe { libc::epoll_ctl(set.as_raw_fd(), libc::EPOLL_CTL_MOD, fd, &mut ev) };
        // On failure the set may still hold an old file under this number: closed here.
        (r == 0).then(|| Watch {
            set: Some(set),
            added: vec![(fd, events)],
            blind: false,
            keep: true,
        })
    }

    fn epoll_fd(&self) -> RawFd {
        self.set.as_ref().map_or(-1, |s| s.as_raw_fd())
    }

    /// Adds `fd`, to wake the wait when it reports any of `events` (`EPOLL*` bits, which on
    /// Linux equal the `POLL*` ones), an error or a hang-up.
    pub(super) fn add(&mut self, fd: c_int, events: u32) {
        if self.set.is_none() {
            return;
        }
        let (op, events) = match self.added.iter_mut().find(|(f, _)| *f == fd) {
            Some((_, had)) => {
                *had |= events;
                (libc::EPOLL_CTL_MOD, *had)
            }
            None => (libc::EPOLL_CTL_ADD, events),
        };
        let mut ev = libc::epoll_event {
            events,
            u64: fd as u64,
        };
        // SAFETY: `ev` is a valid event; epoll_ctl does not keep the pointer.
        let r = unsafe { libc::epoll_ctl(self.epoll_fd(), op, fd, &mut ev) };
        if r == 0 {
            if op == libc::EPOLL_CTL_ADD {
                self.added.push((fd, events));
            }
        } else {
            // Regular files (`EPERM`: always ready, the retried call says so), a closed
            // descriptor (the retried call reports it), or a set that would nest too deep.
            self.blind = true;
        }
    }

    /// Runs `attempt` until it does anything but fail with `EAGAIN`, waiting for the added
    /// descriptors between attempts, until `deadline`. `Err(ETIMEDOUT)` once `deadline`
    /// passed (after one last attempt), `Err(EINTR)` when the greenlet is killed; any other
    /// error is `attempt`'s.
    pub(super) fn wait<R>(
        &self,
        what: &'static str,
        deadline: Option<Instant>,
        mut attempt: impl FnMut() -> Result<R, c_int>,
    ) -> Result<R, c_int> {
        let mut op = would_block(&mut attempt);
        finish(super::catch_kill(|| match &self.set {
            Some(set) if !self.blind && !self.added.is_empty() => {
                io_until(what, set, None, Interest::Read, deadline, &mut op)
            }
            // Nothing to wait for but the deadline (`poll(NULL, 0, t)`): sleep until it.
            _ if !self.blind => blind(deadline, Duration::MAX, &mut op),
            _ => blind(deadline, Duration::from_millis(10), &mut op),
        }))
    }
}

/// An attempt whose `EAGAIN` is `WouldBlock`, the others its result, for `net::wait`.
fn would_block<R>(
    attempt: &mut impl FnMut() -> Result<R, c_int>,
) -> impl FnMut() -> io::Result<Result<R, c_int>> + '_ {
    move || match attempt() {
        Err(libc::EAGAIN) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
        other => Ok(other),
    }
}

/// A wait's outcome as errno: `ETIMEDOUT` at the deadline, `EINTR` when killed.
fn finish<R>(waited: Result<io::Result<Result<R, c_int>>, ()>) -> Result<R, c_int> {
    match waited {
        Ok(Ok(r)) => r,
        Ok(Err(e)) if e.kind() == io::ErrorKind::TimedOut => Err(DEADLINE),
        Ok(Err(e)) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
        Err(()) => Err(libc::EINTR),
    }
}

/// For a call whose readiness no descriptor reports: runs `attempt` until it does anything
/// but fail with `EAGAIN`, every 1 to 10 ms, until `deadline`. Errors as [`wait_fd`].
pub(super) fn retry<R>(
    deadline: Option<Instant>,
    mut attempt: impl FnMut() -> Result<R, c_int>,
) -> Result<R, c_int> {
    if crate::greenlet::kill::pending() {
        return Err(libc::ECANCELED);
    }
    let mut op = would_block(&mut attempt);
    finish(super::catch_kill(|| {
        blind(deadline, Duration::from_millis(10), &mut op)
    }))
}

/// A wait that cannot rely on the set: tries every 1 ms, then less often up to `longest`
/// apart (the crate's exact sleep), until `deadline`.
fn blind<R>(
    deadline: Option<Instant>,
    longest: Duration,
    op: &mut impl FnMut() -> io::Result<R>,
) -> io::Result<R> {
    let mut pause = Duration::from_millis(1).min(longest);
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => return other,
        }
        let left = match crate::deadline::left(deadline) {
            Err(()) => return Err(io::Error::from(io::ErrorKind::TimedOut)),
            Ok(left) => left,
        };
        crate::sleep(left.map_or(pause, |l| l.min(pause)));
        pause = pause.saturating_mul(2).min(longest);
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let Some(set) = self.set.take() else { return };
        let set = match (self.keep, self.added.as_slice()) {
            (true, &[(fd, _)]) => match KEPT_SETS.with(|k| {
                let mut kept = k.borrow_mut();
                if kept.len() >= KEPT {
                    // Close the sets of numbers closed since they were kept.
                    kept.retain(|fd, (_, generation)| *generation == super::fd::generation(*fd));
                }
                if kept.len() < KEPT && !kept.contains_key(&fd) {
                    kept.insert(fd, (set, super::fd::generation(fd)));
                    None
                } else {
                    Some(set)
                }
            }) {
                None => return,
                Some(set) => set,
            },
            _ => set,
        };
        let mut clean = true;
        for &(fd, _) in &self.added {
            let mut ev = libc::epoll_event { events: 0, u64: 0 };
            // SAFETY: removes `fd` from our own set; `ev` is ignored but must be valid.
            let r = unsafe { libc::epoll_ctl(set.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
            // A descriptor closed or replaced during the wait may leave its old file in the
            // set (while another descriptor keeps that file open): do not reuse the set.
            clean &= r == 0;
        }
        if clean {
            SPARE.with(|s| {
                let mut spare = s.borrow_mut();
                if spare.len() < SPARES {
                    spare.push(set);
                }
            });
        }
    }
}

/// The wait of the hooks for one descriptor: runs `attempt` until it does anything but fail
/// with `EAGAIN`, waiting for `events` on `fd` in between, until `deadline`. Errors as
/// [`Watch::wait`]; `Err(ECANCELED)` at once when a kill is already pending, and the error of
/// a set that cannot be made (`EMFILE`).
pub(super) fn wait_fd<R>(
    what: &'static str,
    fd: c_int,
    events: u32,
    deadline: Option<Instant>,
    attempt: impl FnMut() -> Result<R, c_int>,
) -> Result<R, c_int> {
    if crate::greenlet::kill::pending() {
        return Err(libc::ECANCELED);
    }
    let watch = match Watch::kept(fd, events) {
        Some(watch) => watch,
        None => {
            let mut watch = Watch::new();
            watch.add(fd, events);
            watch.keep = !watch.blind;
            watch
        }
    };
    watch.wait(what, deadline, attempt)
}

/// A time-out as a deadline (`None`: none, or too far to represent).
pub(super) fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(crate::deadline::deadline)
}
