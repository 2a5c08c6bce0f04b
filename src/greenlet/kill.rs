//! Kills that never abort: how a kill is delivered to a greenlet, once.
//!
//! A kill is a request ([`Meta::request_kill`]) and a delivery. The request records the
//! reason and, for a greenlet that has started, calls may's `Coroutine::cancel`, which sets
//! may's cancel flag and wakes the greenlet if it is parked. The first blocking point that
//! sees the flag delivers the kill: the greenlet unwinds, and its destructors run.
//!
//! may leaves its flag set while the greenlet unwinds (`docs/upstream.md`, item 4): every wait
//! in a destructor would then end at once, and may's own `SyncFlag`, `Mutex`, `Condvar` and
//! `Semphore` would panic a second time, which aborts the process. So here a kill is delivered
//! **once**: when its unwind starts (seen by the crate's park, or by the panic hook when may
//! raised it), the flag is cleared, and nothing re-sends it. Waits made by destructors then
//! park normally, whatever primitive they use.
//!
//! The only public way to clear may's flag is the end of a `WaitIo::wait_io`: with the flag
//! set, `wait_io` returns at once and clears it; with a cancel on its way, it parks until the
//! cancel wakes it, and clears it then. [`clear_cancel_flag`] uses a private, never-ready
//! descriptor for that, and is only called when a cancel has been sent and not yet cleared.
//!
//! Three more rules keep a second unwind from starting inside a destructor, which would abort:
//! - A kill that arrives while the greenlet unwinds from a panic of its own sends no cancel:
//!   that unwind ends the greenlet. If the panic is caught, the greenlet's first blocking point
//!   afterwards (on the thread the panic started on, which is then not panicking) delivers it.
//! - may raises its own kill unwinds (at `yield_now`, in its sockets and locks); the crate
//!   sees them start in its panic hook, and again below the user's frames at each blocking
//!   point (`monitor::blocking_until`), whatever hook is installed.
//! - Before the greenlet's own catch, an unwinding greenlet that moved to another thread while
//!   parked in a destructor moves back (`deadline::hop::to_thread`): std counts panics per OS
//!   thread, and a catch on the wrong thread would leave both threads' counts wrong for good.
//!
//! A kill caught by user code (`catch_unwind`) must be re-raised ([`is_kill`]).

use std::panic::resume_unwind;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence};

use super::Meta;
use crate::deadline::hop::thread_number;

/// How many greenlets have `panicked` set: while 0, blocking points check nothing.
static PANICKED: AtomicUsize = AtomicUsize::new(0);

/// How many greenlets were sent a cancel whose kill is not delivered yet: while 0,
/// [`check`] costs one relaxed load.
static UNDELIVERED: AtomicUsize = AtomicUsize::new(0);

// Why a greenlet is asked to stop (`KillState::reason`): the first request's reason, plus
// bits for the requests that came while a `Timeout`'s could still be withdrawn.
pub(super) const NOT_KILLED: u8 = 0;
pub(super) const KILLED: u8 = 1;
pub(super) const TIMED_OUT: u8 = 2;
/// A `Timeout` guard dropped after its interrupt was requested is taking the request back.
const WITHDRAWING: u8 = 3;
/// The first request's reason, without the bits below.
const BASE: u8 = 3;
/// A kill came while a `Timeout`'s request stood: that request can no longer be withdrawn
/// (if it is, the kill is sent in its place).
const ALSO_KILLED: u8 = 4;
/// A second `Timeout` fired while the first one's request stood: it cannot be withdrawn.
const ALSO_TIMED_OUT: u8 = 8;

/// Whether a greenlet ended with `reason` reports `TimedOut` (rather than `Killed`): the first
/// request that stood decides.
pub(super) fn timed_out(reason: u8) -> bool {
    reason & BASE == TIMED_OUT
}

// Whether the winning kill request sent may's cancel (`KillState::cancel`).
const UNDECIDED: u8 = 0;
const NO_CANCEL: u8 = 1;
const SENT: u8 = 2;

/// A greenlet's kill bookkeeping.
pub(super) struct KillState {
    /// `NOT_KILLED`, or the reason of the first kill request.
    pub(super) reason: AtomicU8,
    /// Set by the first kill request once it knows whether it sends may's cancel.
    cancel: AtomicU8,
    /// Set once a sent cancel's `Coroutine::cancel` call has returned: may's flag was set by
    /// then, and nothing sets it again (see [`after_wait_io`]).
    sent: AtomicBool,
    /// Set by the greenlet when its kill's unwind has started.
    delivered: AtomicBool,
    /// Set by the greenlet once it has cleared may's flag after a sent cancel.
    cleared: AtomicBool,
    /// Set by the panic hook when a panic that is not a kill starts in the greenlet; cleared
    /// once the greenlet is known to have caught it (see [`blocking_point`]).
    panicked: AtomicBool,
    /// The thread the panic started on (a [`thread_number`]).
    panic_thread: AtomicU64,
}

impl KillState {
    pub(super) fn new() -> KillState {
        KillState {
            reason: AtomicU8::new(NOT_KILLED),
            cancel: AtomicU8::new(UNDECIDED),
            sent: AtomicBool::new(false),
            delivered: AtomicBool::new(false),
            cleared: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            panic_thread: AtomicU64::new(0),
        }
    }

    pub(super) fn requested(&self) -> bool {
        self.reason.load(Ordering::SeqCst) != NOT_KILLED
    }
}

impl Meta {
    /// Asks the greenlet to unwind at its next blocking point. Returns `false` when it had
    /// already finished. Only the first request acts; later ones find it already asked.
    pub(super) fn request_kill(&self, reason: u8) -> bool {
        if !self.running.load(Ordering::Acquire) {
            return false;
        }
        let also = if reason == KILLED {
            ALSO_KILLED
        } else {
            ALSO_TIMED_OUT
        };
        let mut seen = NOT_KILLED;
        loop {
            let next = if seen == NOT_KILLED {
                reason
            } else {
                seen | also
            };
            match self
                .kill
                .reason
                .compare_exchange(seen, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) if seen == NOT_KILLED => break,
                // Marked on a `Timeout`'s request, which now stands.
                Ok(_) => return true,
                Err(actual)
                    if actual == NOT_KILLED
                        || (matches!(actual & BASE, TIMED_OUT | WITHDRAWING)
                            && actual & also == 0) =>
                {
                    seen = actual;
                }
                // Already asked, and the request stands.
                Err(_) => return true,
            }
        }
        // Pairs with the fence in `Inner::run`: either the greenlet sees the kill before its
        // body starts, or the cancel below sees its coroutine and cancels it.
        fence(Ordering::SeqCst);
        // may's cancel wakes a parked coroutine on the caller's worker: it is sent from the
        // greenlet's own (issue 14), where it also runs between the greenlet's switches.
        let here = crate::deadline::home::worker() == Some(self.home);
        if here {
            self.send_cancel();
        } else {
            let me = self.me.clone();
            let send = move || {
                if let Some(g) = me.upgrade() {
                    g.meta().send_cancel();
                    super::drop_elsewhere(g);
                }
            };
            crate::deadline::home::wake_on(
                self.home,
                crate::deadline::home::Wake::Call(Box::new(send)),
            );
        }
        true
    }

    /// Sends may's cancel for the kill request that won, on the greenlet's worker (or from a
    /// thread that is not a worker when the greenlet has none).
    fn send_cancel(&self) {
        if !self.running.load(Ordering::Acquire) || self.kill.delivered.load(Ordering::SeqCst) {
            // Finished meanwhile, or its unwind already started on the reason alone (killed
            // before its body ran): nothing to wake, and nothing to count as undelivered.
            // (This runs on the greenlet's worker, between its switches.)
            self.kill.cancel.store(NO_CANCEL, Ordering::SeqCst);
            return;
        }
        if self.kill.panicked.load(Ordering::SeqCst) {
            // Unwinding from a panic of its own: that unwind ends it, and a cancel now would
            // make may raise a second unwind inside a destructor. If the panic turns out to be
            // caught, its next blocking point delivers the kill (`caught_panic`).
            self.kill.cancel.store(NO_CANCEL, Ordering::SeqCst);
            return;
        }
        match self.co.get() {
            Some(co) => {
                UNDELIVERED.fetch_add(1, Ordering::Relaxed);
                self.kill.cancel.store(SENT, Ordering::SeqCst);
                // SAFETY: may marks `cancel` unsafe because it unwinds the target at its next
                // blocking point and so "drops all the resources the coroutine holds". That is
                // the unwinding of an ordinary panic, which safe Rust code must already
                // tolerate, and it is the documented meaning of `kill`. The real hazard is
                // cancelling a coroutine that has finished: its stale wait registration could
                // then wake an unrelated coroutine. We only get here while `running` is set,
                // i.e. before our wrapper's body has returned; the remaining window (the body
                // returning between the check and this call) leaves registrations that belong
                // to this coroutine alone (its own park and per-wait blockers), which nothing
                // else waits on.
                unsafe { co.cancel() };
                self.kill.sent.store(true, Ordering::SeqCst);
            }
            None => self.kill.cancel.store(NO_CANCEL, Ordering::SeqCst),
        }
    }

    /// Waits until the winning kill request has decided whether to send may's cancel and, if
    /// it sends one, until its `Coroutine::cancel` call has returned (the requester is a few
    /// instructions away, and never parks in between). Returns `NO_CANCEL` or `SENT`.
    fn cancel_call_done(&self) -> u8 {
        let mut state = self.kill.cancel.load(Ordering::SeqCst);
        while state == UNDECIDED || (state == SENT && !self.kill.sent.load(Ordering::SeqCst)) {
            // The cancel may wait in this worker's mailbox (`request_kill`).
            crate::deadline::drain();
            std::thread::yield_now();
            state = self.kill.cancel.load(Ordering::SeqCst);
        }
        state
    }

    /// Clears may's cancel flag if a cancel was sent to this greenlet and not yet cleared.
    /// Called by the greenlet itself.
    pub(super) fn absorb_cancel(&self) {
        let mut state = self.kill.cancel.load(Ordering::SeqCst);
        while state == UNDECIDED && self.kill.requested() {
            // The killer is between its two stores, a few instructions away, or its cancel
            // waits in this worker's mailbox (`request_kill`).
            crate::deadline::drain();
            std::thread::yield_now();
            state = self.kill.cancel.load(Ordering::SeqCst);
        }
        if state == SENT && !self.kill.cleared.swap(true, Ordering::SeqCst) && !clear_cancel_flag()
        {
            // Nothing can park while the flag is set; the caller's wait loop polls instead
            // (rather than spin), and the next park tries the clear again.
            self.kill.cleared.store(false, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Marks the kill delivered by an unwind that has started (may raised it, or the greenlet
    /// was killed before its body ran), and clears may's flag.
    pub(super) fn delivered_by_unwind(&self) {
        self.kill
            .panic_thread
            .store(thread_number(), Ordering::SeqCst);
        self.mark_delivered();
        self.absorb_cancel();
    }

    /// Starts the unwind of the kill. Never returns.
    fn deliver(&self) -> ! {
        self.delivered_by_unwind();
        resume_unwind(Box::new(generator::Error::Cancel))
    }
}

/// Called by the crate's park when may reports a cancel: delivers the kill, or, when it is
/// already being delivered (a destructor waits during the unwind), clears may's flag so that
/// the wait can park.
pub(crate) fn cancelled() {
    let found = super::with_current_meta(|m| {
        if m.kill.delivered.load(Ordering::SeqCst) {
            m.absorb_cancel();
        } else if m.kill.panicked.load(Ordering::SeqCst) {
            // The greenlet is unwinding from a panic of its own (a destructor waits): a second
            // unwind would abort the process. may's flag is cleared so that the wait can park,
            // and the kill is kept: if the panic is caught, the greenlet's next blocking point
            // delivers it (`caught_panic`); if not, the greenlet ends with its panic. (Not
            // `thread::panicking()`: it is per OS thread, so it is false once the unwinding
            // greenlet has moved to another worker, and true for any greenlet on a worker
            // where another one is parked mid-unwind.)
            m.absorb_cancel();
        } else {
            m.deliver();
        }
    });
    if found.is_none() {
        // A coroutine that is not a greenlet (may used directly): unwind as may would.
        resume_unwind(Box::new(generator::Error::Cancel));
    }
}

/// After may's own waits, which decide with `thread::panicking()` whether to raise a kill (and
/// so miss it on a worker where another greenlet is parked mid-unwind): delivers a kill that
/// was sent but not raised. One relaxed load while no kill is pending anywhere.
#[inline]
pub(crate) fn check() {
    if UNDELIVERED.load(Ordering::Relaxed) != 0 {
        check_slow();
    }
}

#[cold]
fn check_slow() {
    super::with_current_meta(|m| {
        if m.kill.requested()
            && !m.kill.delivered.load(Ordering::SeqCst)
            && !m.kill.panicked.load(Ordering::SeqCst)
        {
            m.deliver();
        }
    });
}

/// After a `WaitIo::wait_io` of the crate's (`net::wait`): may's `wait_io` clears its cancel
/// flag as it returns, so a kill that woke it (or came just before it) would be lost, and a
/// later clear of the flag would park for good. Delivers such a kill. One fence and one
/// relaxed load while no kill is pending anywhere.
#[inline]
pub(crate) fn after_wait_io() {
    // If `wait_io` cleared a flag set by a kill (a read-modify-write that read the killer's
    // release store), this fence makes the killer's earlier stores (`UNDELIVERED`, the
    // reason) visible below.
    fence(Ordering::Acquire);
    if UNDELIVERED.load(Ordering::Relaxed) != 0 {
        after_wait_io_slow();
    }
}

#[cold]
fn after_wait_io_slow() {
    super::with_current_meta(|m| {
        if !m.kill.requested() || m.kill.delivered.load(Ordering::SeqCst) {
            return;
        }
        // Then may's flag is set, or was set and cleared by the `wait_io`, and never set again.
        let state = m.cancel_call_done();
        if state == SENT
            && let Some(co) = m.co.get()
        {
            // Set the flag again, so that handling the kill below finds it set and clears it
            // (a `wait_io` that ended at once also left may's "Canceled" in the parameter
            // slot: clearing the flag takes it). It is not cleared yet, whatever an earlier
            // clear recorded.
            m.kill.cleared.store(false, Ordering::SeqCst);
            // SAFETY: as in `request_kill`; the coroutine is the running one.
            unsafe { co.cancel() };
        }
        if m.kill.panicked.load(Ordering::SeqCst) {
            // Unwinding from a panic of its own (a destructor waits on a socket): as in
            // `cancelled`, the flag is cleared and the kill kept for when the panic is caught.
            m.absorb_cancel();
        } else {
            m.deliver();
        }
    });
}

/// Whether the caller is unwinding, for lock poisoning: in a greenlet, whether its own kill or
/// panic is unwinding it (`thread::panicking` is per OS thread: true for every greenlet on a
/// worker where another one is parked mid-unwind, false for an unwinding greenlet that moved
/// to another worker); on a plain thread, `thread::panicking()`.
pub(crate) fn unwinding() -> bool {
    super::with_current_meta(|m| {
        m.kill.delivered.load(Ordering::SeqCst) || m.kill.panicked.load(Ordering::SeqCst)
    })
    .unwrap_or_else(std::thread::panicking)
}

/// Called by the panic hook when may raised its cancel unwind in a greenlet: the kill is
/// delivered, and may's flag (set, or the cancel would not have been raised) is cleared.
pub(crate) fn unwind_started() {
    super::with_current_meta(Meta::delivered_by_unwind);
}

/// Called by the panic hook when a panic that is not a kill starts in a greenlet.
pub(crate) fn panic_started() {
    super::with_current_meta(|m| {
        m.kill.panic_thread.store(thread_number(), Ordering::SeqCst);
        if !m.kill.panicked.swap(true, Ordering::SeqCst) {
            PANICKED.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// At every blocking point: forgets a greenlet's panic once it is known to be caught, so
/// that kills unwind it again. Known when the greenlet blocks on the thread its panic started
/// on and that thread is not panicking: it cannot have moved since (only a park moves it), so
/// the unwind has ended. One relaxed load while no greenlet has panicked.
#[inline]
pub(crate) fn blocking_point() {
    if PANICKED.load(Ordering::Relaxed) != 0 {
        caught_panic();
    }
}

#[cold]
fn caught_panic() {
    super::with_current_meta(|m| {
        if m.kill.panicked.load(Ordering::SeqCst)
            && m.kill.panic_thread.load(Ordering::SeqCst) == thread_number()
            && !std::thread::panicking()
        {
            m.forget_panic();
            // A kill that came during the panic was kept for now.
            if m.kill.requested() && !m.kill.delivered.load(Ordering::SeqCst) {
                m.deliver();
            }
        }
    });
}

impl Meta {
    /// Marks the kill delivered, so that a sent cancel no longer counts as pending (also at
    /// the greenlet's end, for a kill it finished before receiving).
    pub(super) fn mark_delivered(&self) {
        let was = self.kill.delivered.swap(true, Ordering::SeqCst);
        if !was && self.kill.cancel.load(Ordering::SeqCst) == SENT {
            UNDELIVERED.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Before the greenlet's own catch: if it is unwinding (a kill or a panic) and has moved
    /// to another thread since the unwind started, moves it back (see `deadline::hop`).
    pub(super) fn unwind_home(&self) {
        let unwinding =
            self.kill.delivered.load(Ordering::SeqCst) || self.kill.panicked.load(Ordering::SeqCst);
        let home = self.kill.panic_thread.load(Ordering::SeqCst);
        if unwinding && home != 0 && home != thread_number() {
            crate::deadline::hop::to_thread(home);
        }
    }

    /// Clears the panic mark (caught, or the greenlet has ended).
    pub(super) fn forget_panic(&self) {
        if self.kill.panicked.swap(false, Ordering::SeqCst) {
            PANICKED.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Whether the calling greenlet has a kill (or a [`Timeout`](crate::Timeout)'s interrupt)
/// sent but not yet delivered: `monkey`'s C hooks then fail at once instead of waiting, so
/// that C and std loops that retry a call on `EINTR` end and reach a Rust blocking point.
/// One relaxed load while no kill is pending anywhere.
#[cfg_attr(not(all(feature = "monkey", target_os = "linux")), allow(dead_code))]
pub(crate) fn pending() -> bool {
    UNDELIVERED.load(Ordering::Relaxed) != 0
        && super::with_current_meta(|m| {
            m.kill.requested()
                && !m.kill.delivered.load(Ordering::SeqCst)
                && !m.kill.panicked.load(Ordering::SeqCst)
        })
        .unwrap_or(false)
}

/// For a blocking point that caught a kill's unwind to report it as an error (`monkey`'s C
/// hooks, which cannot unwind into C): the kill is sent again, so the greenlet's next
/// blocking point delivers it.
#[cfg_attr(not(all(feature = "monkey", target_os = "linux")), allow(dead_code))]
pub(crate) fn redeliver() {
    super::with_current_meta(|m| {
        m.kill.delivered.store(false, Ordering::SeqCst);
        m.send_cancel_to_self();
    });
}

impl Meta {
    /// Sends may's cancel to the running greenlet, as `request_kill` does for a request it
    /// won, so that its next blocking point delivers the kill.
    fn send_cancel_to_self(&self) {
        self.kill.cleared.store(false, Ordering::SeqCst);
        self.kill.sent.store(false, Ordering::SeqCst);
        if let Some(co) = self.co.get() {
            // Pending again, as when `request_kill` sent it (`mark_delivered` counts it off).
            UNDELIVERED.fetch_add(1, Ordering::Relaxed);
            self.kill.cancel.store(SENT, Ordering::SeqCst);
            // SAFETY: as in `request_kill`; the coroutine is the running one.
            unsafe { co.cancel() };
            self.kill.sent.store(true, Ordering::SeqCst);
        }
    }
}

/// Takes back the interrupt of the calling greenlet's [`Timeout`](crate::Timeout) whose guard
/// is dropped after the interrupt was requested but before it was delivered (the greenlet
/// computed through the deadline): as in gevent, where a timer cancelled before its callback
/// ran never fires. Only when that interrupt is the only request: a kill, or another
/// `Timeout` that fired, stands. `greenlet` is the id of the greenlet that started the guard.
pub(crate) fn withdraw_timeout(greenlet: u64) {
    super::with_current_meta(|m| {
        if m.id != greenlet
            || m.kill.delivered.load(Ordering::SeqCst)
            || m.kill.panicked.load(Ordering::SeqCst)
        {
            return;
        }
        loop {
            let (from, to) = match m.kill.reason.load(Ordering::SeqCst) {
                TIMED_OUT => (TIMED_OUT, WITHDRAWING),
                // A kill came after the interrupt: it stands, in the interrupt's place (the
                // cancel already sent serves it).
                r if r == TIMED_OUT | ALSO_KILLED => (r, KILLED),
                // Not a `Timeout`'s request, or another one fired too: it stands.
                _ => return,
            };
            if m.kill
                .reason
                .compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                if to == KILLED {
                    return;
                }
                break;
            }
        }
        let state = m.cancel_call_done();
        if state == SENT {
            if !clear_cancel_flag() {
                // may's flag stays set: the interrupt stands after all.
                let _ = m
                    .kill
                    .reason
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| {
                        Some(r & !BASE | TIMED_OUT)
                    });
                return;
            }
            UNDELIVERED.fetch_sub(1, Ordering::Relaxed);
        }
        m.kill.sent.store(false, Ordering::SeqCst);
        m.kill.cleared.store(false, Ordering::SeqCst);
        m.kill.cancel.store(UNDECIDED, Ordering::SeqCst);
        // Release the reason. A request that came meanwhile (it found `WITHDRAWING` and left
        // its bit) stands: send it again.
        if let Err(actual) = m.kill.reason.compare_exchange(
            WITHDRAWING,
            NOT_KILLED,
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
            let reason = if actual & ALSO_KILLED != 0 {
                KILLED
            } else {
                TIMED_OUT
            };
            m.kill.reason.store(reason, Ordering::SeqCst);
            m.send_cancel_to_self();
        }
    });
}

/// A pipe that never becomes ready, registered with may: a `wait_io` on it only ends through
/// a cancel. Kept for reuse (registering one costs several system calls).
struct NeverReady {
    /// Boxed and released where may cannot still read it (`net::registered`).
    io: crate::net::registered::Registered<may::io::CoIo<std::io::PipeReader>>,
    _writer: std::io::PipeWriter,
}

static SPARE: std::sync::Mutex<Vec<NeverReady>> = std::sync::Mutex::new(Vec::new());

/// Made when the runtime starts, so that a kill can be delivered even when the process is out
/// of descriptors later (without a pipe, a wait in a destructor could only poll).
pub(crate) fn reserve_spare_pipes() {
    let mut spare = crate::sync::lock(&SPARE);
    while spare.len() < 2 {
        match never_ready() {
            Ok(pipe) => spare.push(pipe),
            Err(e) => {
                log::warn!("cannot reserve a pipe for kill delivery ({e})");
                break;
            }
        }
    }
}

fn never_ready() -> std::io::Result<NeverReady> {
    let (reader, writer) = std::io::pipe()?;
    let io = may::io::CoIo::new(reader).map_err(std::io::Error::from)?;
    Ok(NeverReady {
        io: crate::net::registered::Registered::new(io),
        _writer: writer,
    })
}

/// Clears may's cancel flag of the running coroutine: a `wait_io` on a never-ready pipe returns
/// at once when the flag is set (or parks until the cancel being sent wakes it) and clears the
/// flag as it returns. Returns `false` if no such pipe could be had (out of descriptors).
fn clear_cancel_flag() -> bool {
    let spare = crate::sync::lock(&SPARE).pop();
    let pipe = match spare.map_or_else(never_ready, Ok) {
        Ok(pipe) => pipe,
        Err(e) => {
            log::error!("cannot clear a kill's cancel flag ({e}); waits in destructors poll");
            return false;
        }
    };
    let home = crate::deadline::hop::thread_number();
    pipe.io.wait_io_anywhere();
    // When `wait_io` returned without parking, may left its "Canceled" result in the
    // coroutine's parameter slot: take it, or the next park would read it as a kill.
    let _ = generator::co_get_yield::<std::io::Error>();
    crate::deadline::hop::stay_home(home);
    let mut spare = crate::sync::lock(&SPARE);
    if spare.len() < MAX_SPARE {
        spare.push(pipe);
    }
    true
}

/// Clears may's cancel flag of the running coroutine, for an overflowed greenlet that was
/// resumed (see `overflow`): with no cancel set, it parks until one comes, which is what that
/// greenlet should do anyway.
pub(super) fn clear_cancel_flag_now() {
    if !clear_cancel_flag() {
        // Out of descriptors: try again later rather than spin.
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Runs `f` with a never-ready pipe (from the spare ones, or a new one); `None` if none could
/// be had (out of descriptors). The pipe goes back to the spare ones only if `f` returns
/// `true`: a pipe whose waker may still be called later (a hop's waker that did not end its
/// wait) must not be reused, or that late wake-up would end an unrelated wait on it at once.
pub(crate) fn with_spare_pipe(
    f: impl FnOnce(&crate::net::registered::Registered<may::io::CoIo<std::io::PipeReader>>) -> bool,
) -> Option<()> {
    let spare = crate::sync::lock(&SPARE).pop();
    let pipe = spare.map_or_else(never_ready, Ok).ok()?;
    if f(&pipe.io) {
        let mut spare = crate::sync::lock(&SPARE);
        if spare.len() < MAX_SPARE {
            spare.push(pipe);
        }
    }
    Some(())
}

/// Whether may's cancel flag may be set for the calling greenlet: a kill's cancel was sent (or
/// is being sent) and the kill machinery has not cleared it. Conservative: `true` when unsure.
pub(crate) fn cancel_may_be_set() -> bool {
    super::with_current_meta(|m| {
        let state = m.kill.cancel.load(Ordering::SeqCst);
        (state == SENT || (state == UNDECIDED && m.kill.requested()))
            && !m.kill.cleared.load(Ordering::SeqCst)
    })
    .unwrap_or(true)
}

/// After the greenlet moved back to its home thread (`hop::return_home`), whose waits may have
/// cleared may's cancel flag: sets it again if a kill's cancel was sent and not yet cleared by
/// the kill machinery, so that the blocking point delivers the kill as it would have.
pub(crate) fn restore_cancel_after_hop() {
    super::with_current_meta(|m| {
        let mut state = m.kill.cancel.load(Ordering::SeqCst);
        while state == UNDECIDED && m.kill.requested() {
            crate::deadline::drain();
            std::thread::yield_now();
            state = m.kill.cancel.load(Ordering::SeqCst);
        }
        if state == SENT
            && !m.kill.cleared.load(Ordering::SeqCst)
            && let Some(co) = m.co.get()
        {
            // SAFETY: as in `request_kill`; the coroutine is the running one.
            unsafe { co.cancel() };
        }
    });
}

/// How many never-ready pipes are kept for reuse (two descriptors each). One is in use only
/// while a greenlet clears its flag, so a few are enough; more are closed.
const MAX_SPARE: usize = 16;

/// Whether a caught unwind is a kill (or a [`Timeout`](crate::Timeout) firing) rather than a
/// panic.
///
/// A kill unwinds the greenlet like a panic and is delivered **once**: code that catches
/// unwinds with [`std::panic::catch_unwind`] around blocking calls must re-raise a kill with
/// [`std::panic::resume_unwind`], or the greenlet survives it and later kills wait for it in
/// vain (gevent's `GreenletExit`, caught and not re-raised, does the same).
///
/// # Examples
///
/// ```
/// use std::panic::{catch_unwind, resume_unwind};
/// use std::time::Duration;
///
/// let g = greenlet::spawn(|| loop {
///     if let Err(unwind) = catch_unwind(|| greenlet::sleep(Duration::from_millis(5))) {
///         if greenlet::is_kill(&*unwind) {
///             resume_unwind(unwind); // let the kill end the greenlet
///         }
///     }
/// });
/// greenlet::sleep(Duration::from_millis(20));
/// assert!(g.kill());
/// ```
pub fn is_kill(unwind: &(dyn std::any::Any + Send)) -> bool {
    crate::panic::is_cancel(unwind)
}
