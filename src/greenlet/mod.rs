//! `Greenlet<T>`, its `Builder`, `spawn`, `spawn_later` and `current` (gevent.greenlet).
//!
//! This module holds the crate's `unsafe` calls into may: spawn here, cancel in [`kill`].

mod dump;
mod future;
mod handle;
pub(crate) mod kill;
pub(crate) mod overflow;
mod spawn;
mod warm;

pub(crate) use handle::WeakGreenlet;
pub use handle::{GreenletRef, current};
pub use kill::is_kill;
pub use spawn::{Builder, spawn, spawn_later};
pub(crate) use spawn::{run_first_coroutine, spawn_on_worker};
pub(crate) use warm::idle_count as warm_idle;

pub(crate) use dump::waiting;
pub use dump::{Dump, GreenletInfo, GreenletState, WaitInfo, dump, track_waits};
pub use future::GreenletFuture;

use std::cell::RefCell;
use std::fmt;
use std::panic::Location;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::error::JoinError;
use crate::panic;
use crate::sync::lock;
use crate::sync::waiters::Flag;
use kill::{KILLED, KillState};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

// How a greenlet ended (`Meta::outcome`).
const RUNNING: u8 = 0;
const OK: u8 = 1;
const FAILED: u8 = 2;
/// Ended by a kill or its `Timeout` (`JoinError::Killed`/`TimedOut`).
const ENDED_BY_KILL: u8 = 3;

may::coroutine_local!(static CURRENT: RefCell<Option<Current>> = RefCell::new(None));

/// The running greenlet, kept in may's coroutine-local storage. may drops that storage when it
/// disposes of the coroutine. After a stack overflow that the crate's handler did not take
/// (see [`overflow`]: generator's handler abandoned the coroutine's frames without unwinding
/// them), our wrapper never finishes, and this guard's `Drop` completes the greenlet instead,
/// so nothing waits for it forever.
struct Current(GreenletRef);

impl Drop for Current {
    fn drop(&mut self) {
        self.0.0.clone().abandoned();
    }
}

type Callback = Box<dyn FnOnce() + Send>;
type Link<T> = Box<dyn FnOnce(&Result<T, JoinError>) + Send>;

/// What every greenlet has, whatever its result type.
struct Meta {
    id: u64,
    /// Its entry in [`dump`]'s table of live greenlets.
    dump_slot: usize,
    name: OnceLock<String>,
    co: OnceLock<may::coroutine::Coroutine>,
    /// Kill requests and their delivery (see [`kill`]).
    kill: KillState,
    /// True until the body has returned or unwound; a kill after that is a no-op.
    running: AtomicBool,
    outcome: AtomicU8,
    report_panics: bool,
    /// The address of a local in the greenlet's first frame: its stack lies just below.
    stack_top: AtomicUsize,
    done: Flag,
    /// Run once `done` has fired; `None` afterwards (then callbacks run at once).
    on_done: Mutex<Option<Vec<Callback>>>,
    /// Where `spawn` was called, for [`dump`].
    spawned_at: &'static Location<'static>,
    /// What the greenlet waits on now, when wait tracking is on ([`track_waits`]).
    wait: dump::WaitSlot,
    /// The may worker it runs on, from start to end (`deadline::home`).
    home: usize,
    /// Itself, for work posted to its worker (a kill's cancel).
    me: std::sync::Weak<dyn Erased>,
}

struct Slot<T> {
    result: Option<Result<T, JoinError>>,
    /// A copy of the error the greenlet ended with, for `error()` while a link holds `result`.
    error: Option<JoinError>,
    links: Vec<Link<T>>,
    finished: bool,
    /// Set while a link callback borrows `result` (taken out of the slot).
    lent: bool,
    /// Callers of `link` and `get` waiting for `result` to be put back.
    borrowers: crate::sync::waiters::Waiters,
}

struct Inner<T> {
    meta: Meta,
    slot: Mutex<Slot<T>>,
}

/// Type-erased access to a greenlet, for [`GreenletRef`].
trait Erased: Send + Sync {
    fn meta(&self) -> &Meta;
    /// Completes the greenlet as failed if its body never returned (see [`Current`]).
    fn abandoned(self: Arc<Self>);
    /// Completes the greenlet as failed, called as the greenlet itself after its stack
    /// overflowed ([`overflow`]); its coroutine is then parked for good.
    fn overflowed(self: Arc<Self>);
}

impl<T: Send + 'static> Erased for Inner<T> {
    fn meta(&self) -> &Meta {
        &self.meta
    }

    fn abandoned(self: Arc<Self>) {
        if self.meta.running.swap(false, Ordering::AcqRel) {
            self.report_overflow();
        }
    }

    fn overflowed(self: Arc<Self>) {
        if !self.meta.running.swap(false, Ordering::AcqRel) {
            // Its body had returned: the overflow is in a destructor run after it ended.
            overflow::log_overflow_after_end(format_args!(
                "{} (id {})",
                self.meta.name(),
                self.meta.id
            ));
            return;
        }
        // No cancel is sent to it from now on (`send_cancel` checks `running`, on this
        // worker); one already sent is cleared, or its parking would end at once.
        self.meta.absorb_cancel();
        self.meta.forget_panic();
        self.meta.mark_delivered();
        self.report_overflow();
    }
}

impl<T: Send + 'static> Inner<T> {
    /// Logs a stack overflow and completes the greenlet with its error.
    fn report_overflow(self: Arc<Self>) {
        crate::monitor::ended();
        let bytes = self
            .meta
            .co
            .get()
            .map_or(0, |co| co.stack_size() * size_of::<usize>());
        let msg = format!(
            "greenlet overflowed its stack of {bytes} bytes (raise it with \
             `Builder::stack_size` or `config().stack_size`)"
        );
        log::error!("greenlet {} (id {}): {msg}", self.meta.name(), self.meta.id);
        self.finish(Err(JoinError::Panicked(msg)));
    }
}

impl Meta {
    fn new(
        name: Option<String>,
        report_panics: bool,
        spawned_at: &'static Location<'static>,
        home: usize,
        me: std::sync::Weak<dyn Erased>,
    ) -> Meta {
        let name_cell = OnceLock::new();
        if let Some(name) = name {
            let _ = name_cell.set(name);
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Meta {
            id,
            dump_slot: dump::register(id, me.clone()),
            name: name_cell,
            co: OnceLock::new(),
            kill: KillState::new(),
            running: AtomicBool::new(true),
            outcome: AtomicU8::new(RUNNING),
            report_panics,
            stack_top: AtomicUsize::new(0),
            done: Flag::new(),
            on_done: Mutex::new(Some(Vec::new())),
            spawned_at,
            wait: dump::WaitSlot::default(),
            home,
            me,
        }
    }

    fn name(&self) -> &str {
        self.name.get_or_init(|| format!("Greenlet-{}", self.id))
    }

    fn is_current(&self) -> bool {
        current_id() == Some(self.id)
    }

    fn kill_error(&self) -> JoinError {
        if kill::timed_out(self.kill.reason.load(Ordering::Acquire)) {
            JoinError::TimedOut
        } else {
            JoinError::Killed
        }
    }

    /// Blocks (parks, inside a greenlet) until the greenlet has finished.
    #[track_caller]
    fn join(&self) {
        assert!(!self.is_current(), "a greenlet cannot join itself");
        self.done.wait("Greenlet::join");
    }

    fn join_timeout(&self, d: Duration) -> bool {
        if self.done.is_fired() {
            return true;
        }
        if self.is_current() {
            crate::sleep(d);
            return false;
        }
        self.done
            .wait_until("Greenlet::join", crate::deadline::deadline(d))
    }

    fn kill(&self) -> bool {
        self.request_kill(KILLED);
        if self.is_current() {
            return true;
        }
        self.join();
        self.outcome.load(Ordering::Acquire) == ENDED_BY_KILL
    }

    fn kill_timeout(&self, d: Duration) -> bool {
        self.request_kill(KILLED);
        self.join_timeout(d)
    }

    /// Registers `cb` to run once the greenlet is done (at once if it already is). `cb` runs on
    /// the finishing greenlet and must not block.
    fn on_done(&self, cb: Callback) {
        let mut list = lock(&self.on_done);
        match list.as_mut() {
            Some(list) => list.push(cb),
            None => {
                drop(list);
                cb();
            }
        }
    }

    /// Marks the greenlet done: wakes joiners, then runs the `on_done` callbacks.
    fn complete(&self) {
        dump::unregister(self.id, self.dump_slot);
        self.done.fire();
        let callbacks = lock(&self.on_done).take().unwrap_or_default();
        for cb in callbacks {
            cb();
        }
    }
}

impl<T: Send + 'static> Inner<T> {
    /// The body of every greenlet, run by its coroutine. Returns whether that coroutine may
    /// run another greenlet (`warm`): not after a kill or a time-out was sent to this one.
    fn run<F: FnOnce() -> T>(self: Arc<Self>, f: F) -> bool {
        let meta = &self.meta;
        if let Some(co) = may_current() {
            let _ = meta.co.set(co);
        }
        // Pairs with the fence in `request_kill`: either it sees `co` and cancels us, or we
        // see its kill below.
        fence(Ordering::SeqCst);
        let anchor = 0u8;
        let anchor = std::ptr::addr_of!(anchor) as usize;
        meta.stack_top.store(anchor, Ordering::Relaxed);
        // Where an overflow of this stack would fault: the crate's handler takes it.
        let stack_record = meta.co.get().map(|co| {
            overflow::enter(
                anchor,
                co.stack_size() * size_of::<usize>(),
                meta.id,
                meta.me.clone(),
            )
        });
        let me = GreenletRef(self.clone());
        crate::monitor::started(&me);
        CURRENT.with(|c| *c.borrow_mut() = Some(Current(me)));
        let result = if meta.kill.requested() {
            // Killed before its first switch: the body never runs (gevent #330). Its captures
            // are released now, before joiners wake, as they would be had it run; a wait in
            // their destructors parks normally (the kill counts as delivered).
            meta.delivered_by_unwind();
            drop(f);
            Err(meta.kill_error())
        } else {
            // The guard's drop runs last in an unwind, just before the catch below.
            let body = || {
                let _home = UnwindHome(meta);
                f()
            };
            catch_unwind(AssertUnwindSafe(body)).map_err(|payload| self.failure(&*payload))
        };
        meta.forget_panic();
        meta.mark_delivered();
        let (id, home) = (meta.id, meta.home);
        // A kill requested from now on sends no cancel: that is decided on this worker,
        // after `running` is cleared below (`send_cancel`).
        let reusable = !meta.kill.requested();
        if meta.running.swap(false, Ordering::AcqRel) {
            self.finish(result);
        } else {
            drop(self);
        }
        // Still on the greenlet's stack record: an overflow in a destructor run here is the
        // crate's to catch, as one in the body would be (`overflow`).
        let clean = reset_coroutine_state(id);
        crate::monitor::ended();
        if let Some(slot) = stack_record {
            overflow::leave(slot, id, home);
        }
        reusable && clean
    }

    fn failure(&self, payload: &(dyn std::any::Any + Send)) -> JoinError {
        if panic::is_cancel(payload) {
            return self.meta.kill_error();
        }
        let msg = panic::message(payload);
        if self.meta.report_panics {
            let at = panic::take_location(&msg).unwrap_or_else(|| "<unknown>".into());
            log::error!(
                "greenlet {} (id {}) panicked at {at}: {msg}",
                self.meta.name(),
                self.meta.id
            );
        }
        JoinError::Panicked(msg)
    }

    /// Stores the result, runs the links (in a new greenlet, as gevent does), then completes.
    fn finish(self: Arc<Self>, result: Result<T, JoinError>) {
        let outcome = match &result {
            Ok(_) => OK,
            Err(JoinError::Killed | JoinError::TimedOut) => ENDED_BY_KILL,
            Err(_) => FAILED,
        };
        self.meta.outcome.store(outcome, Ordering::Release);
        let has_links = {
            let mut slot = lock(&self.slot);
            slot.error = result.as_ref().err().cloned();
            slot.result = Some(result);
            slot.finished = true;
            !slot.links.is_empty()
        };
        if !has_links {
            return self.meta.complete();
        }
        // The finishing greenlet may be unwinding from a kill and cannot block any more, so
        // the links, which may block, run in a greenlet of their own.
        let this = self.clone();
        let runner = Builder::new()
            .name(format!("{}-links", self.meta.name()))
            .spawn(move || this.run_links());
        if let Err(e) = runner {
            log::warn!("cannot spawn the link runner ({e}); running links inline");
            self.run_links();
        }
    }

    fn run_links(&self) {
        let links = std::mem::take(&mut lock(&self.slot).links);
        let guard = borrow_result(&self.slot);
        if let Some(result) = &guard.1 {
            for link in links {
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| link(result))) {
                    log::error!(
                        "link callback of greenlet {} panicked: {}",
                        self.meta.name(),
                        panic::message(&*p)
                    );
                }
            }
        }
        drop(guard);
        self.meta.complete();
    }
}

/// Clears what greenlet `id`, which has just ended, left in its coroutine: its `CURRENT` entry
/// (the last handle of a detached greenlet: its result is dropped here) and its
/// greenlet-locals, so that the coroutine can run another greenlet (`warm`). Returns `false`
/// when that is not certain: a destructor panicked (the panic is logged), or destructors kept
/// making greenlet-locals.
fn reset_coroutine_state(id: u64) -> bool {
    let cleared = catch_unwind(AssertUnwindSafe(|| {
        let current = CURRENT.with(|c| c.borrow_mut().take());
        // Its `abandoned` is a no-op now: the body has returned.
        drop(current);
        crate::local::clear()
    }));
    match cleared {
        Ok(clean) => clean,
        Err(payload) => {
            log::error!(
                "a destructor run after greenlet {id} ended (its greenlet-locals or its \
                 detached result) panicked: {}",
                panic::message(&*payload)
            );
            false
        }
    }
}

fn may_current() -> Option<may::coroutine::Coroutine> {
    may::coroutine::is_coroutine().then(may::coroutine::current)
}

/// Moves an unwinding greenlet back to the thread its unwind started on, before the catch.
struct UnwindHome<'a>(&'a Meta);

impl Drop for UnwindHome<'_> {
    fn drop(&mut self) {
        self.0.unwind_home();
    }
}

/// Runs `f` with the calling greenlet's [`Meta`]; `None` on a plain thread or a raw may
/// coroutine.
fn with_current_meta<R>(f: impl FnOnce(&Meta) -> R) -> Option<R> {
    if !may::coroutine::is_coroutine() {
        return None;
    }
    CURRENT.with(|c| c.borrow().as_ref().map(|g| f(g.0.0.meta())))
}

/// Drops a greenlet handle on a plain thread when it may be the last one: the result's own
/// destructor may block, which must not happen inside a worker's mailbox (`deadline::home`).
fn drop_elsewhere(g: Arc<dyn Erased>) {
    if Arc::strong_count(&g) > 1 {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("greenlet-drop".into())
        .spawn(move || drop(g));
    if let Err(e) = spawned {
        log::warn!("cannot start a thread to drop a finished greenlet ({e}); dropped here");
    }
}

pub(crate) fn current_id() -> Option<u64> {
    if !may::coroutine::is_coroutine() {
        return None;
    }
    CURRENT.with(|c| c.borrow().as_ref().map(|g| g.0.0.meta().id))
}

/// A handle to a spawned greenlet: wait for it, read its result, kill it.
///
/// Dropping a `Greenlet` detaches it: it runs on, and its result is discarded.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let g = greenlet::spawn(|| {
///     greenlet::sleep(Duration::from_millis(10));
///     "done"
/// });
/// assert!(!g.ready());
/// g.join();
/// assert!(g.successful());
/// assert_eq!(g.get(), Ok("done"));
/// ```
#[must_use = "dropping a Greenlet detaches it; call `join`, `get` or `kill`, or drop it on purpose"]
pub struct Greenlet<T> {
    inner: Arc<Inner<T>>,
}

impl<T: Send + 'static> Greenlet<T> {
    /// Waits until the greenlet has finished (and its [`link`](Self::link) callbacks have run).
    /// Never fails: read the outcome with [`get`](Self::get) or [`error`](Self::error).
    ///
    /// # Panics
    ///
    /// If called by the greenlet itself (it would wait forever).
    ///
    /// # Kill safety
    ///
    /// A kill while waiting ends the waiting greenlet; the joined one is unaffected.
    #[track_caller]
    pub fn join(&self) {
        self.inner.meta.join();
    }

    /// Waits at most `d` for the greenlet to finish. Returns `true` if it has finished.
    ///
    /// Never returns early with `false`: it waits the whole `d` unless the greenlet finishes.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    pub fn join_timeout(&self, d: Duration) -> bool {
        self.inner.meta.join_timeout(d)
    }

    /// Waits for the greenlet and returns its value.
    ///
    /// # Errors
    ///
    /// [`JoinError::Panicked`] with the panic message if it panicked, [`JoinError::Killed`] if
    /// it was killed, [`JoinError::TimedOut`] if its own [`Timeout`](crate::Timeout) fired.
    ///
    /// # Panics
    ///
    /// If called by the greenlet itself.
    #[track_caller]
    pub fn get(self) -> Result<T, JoinError> {
        self.join();
        // A link callback may still hold the result (links on a finished greenlet run on
        // their caller): wait for it to be put back.
        let result = crate::sync::waiters::wait_until(
            "Greenlet::get",
            &self.inner.slot,
            borrowers,
            None,
            |s| (!s.lent).then(|| s.result.take()),
        );
        result
            .flatten()
            .expect("a joined greenlet holds its result")
    }

    /// Returns `true` once the greenlet has finished (and its links have run).
    pub fn ready(&self) -> bool {
        self.inner.meta.done.is_fired()
    }

    /// Returns `true` if the greenlet has finished and returned a value.
    ///
    /// Unlike gevent, a killed greenlet is not successful: its result is
    /// `Err(JoinError::Killed)`, so `successful()` always agrees with `get().is_ok()`.
    pub fn successful(&self) -> bool {
        self.ready() && self.inner.meta.outcome.load(Ordering::Acquire) == OK
    }

    /// The error the greenlet ended with, once it has finished; `None` while it runs or if it
    /// returned a value (gevent's `exception`).
    pub fn error(&self) -> Option<JoinError> {
        if !self.ready() {
            return None;
        }
        lock(&self.inner.slot).error.clone()
    }

    /// Kills the greenlet and waits until it is gone.
    ///
    /// The greenlet unwinds at its next blocking point (sleep, socket wait, join, lock,
    /// `yield_now`), running its destructors, and its result becomes [`JoinError::Killed`]. A
    /// greenlet killed before it first ran never runs its body. A greenlet that computes
    /// without ever blocking cannot be interrupted, so `kill` waits for it: use
    /// [`kill_timeout`](Self::kill_timeout) to bound the wait.
    ///
    /// Returns `true` if this kill ended the greenlet, `false` if it had already finished by
    /// itself (the kill was too late, so nothing was lost to it). A greenlet that kills itself
    /// gets `true` at once and unwinds at its next blocking point.
    pub fn kill(&self) -> bool {
        self.inner.meta.kill()
    }

    /// Kills the greenlet and waits at most `d` for it to finish. Returns `true` if it has
    /// finished.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    pub fn kill_timeout(&self, d: Duration) -> bool {
        self.inner.meta.kill_timeout(d)
    }

    /// Asks the greenlet to unwind at its next blocking point and returns at once (gevent's
    /// `kill(block=False)`). Returns `false` if it had already finished.
    pub fn kill_nowait(&self) -> bool {
        self.inner.meta.request_kill(KILLED)
    }

    /// Runs `f` with the greenlet's result once it finishes (gevent's `link`).
    ///
    /// Links run in order, in a greenlet of their own, before [`join`](Self::join) returns, so
    /// they may block. A link that panics is logged and the others still run. If the greenlet
    /// has already finished, `f` runs at once on the caller.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    ///
    /// let seen = Arc::new(AtomicBool::new(false));
    /// let seen2 = seen.clone();
    /// let g = greenlet::spawn(|| 7);
    /// g.link(move |r| seen2.store(*r == Ok(7), Ordering::SeqCst));
    /// g.join();
    /// assert!(seen.load(Ordering::SeqCst));
    /// ```
    pub fn link<F>(&self, f: F)
    where
        F: FnOnce(&Result<T, JoinError>) + Send + 'static,
    {
        {
            let mut slot = lock(&self.inner.slot);
            if !slot.finished {
                slot.links.push(Box::new(f));
                return;
            }
        }
        self.join();
        let guard = borrow_result(&self.inner.slot);
        if let Some(result) = &guard.1 {
            f(result);
        }
    }

    /// The greenlet's name: the one given to [`Builder::name`], or `Greenlet-<id>`.
    pub fn name(&self) -> &str {
        self.inner.meta.name()
    }

    /// A process-unique number for this greenlet (gevent's `minimal_ident`, never reused).
    pub fn id(&self) -> u64 {
        self.inner.meta.id
    }

    /// A cloneable, type-erased handle to this greenlet.
    pub fn handle(&self) -> GreenletRef {
        GreenletRef(self.inner.clone())
    }

    /// Registers a non-blocking callback for when the greenlet is done (crate-internal
    /// `rawlink`, used by `iwait`).
    pub(crate) fn on_done(&self, cb: Callback) {
        self.inner.meta.on_done(cb);
    }

    /// Whether this is the greenlet that is running the caller.
    pub(crate) fn is_current(&self) -> bool {
        self.inner.meta.is_current()
    }
}

fn borrowers<T>(s: &mut Slot<T>) -> &mut crate::sync::waiters::Waiters {
    &mut s.borrowers
}

/// Lends the result to a link callback, waiting while another callback holds it (links from
/// several threads on a finished greenlet run one at a time, each with the result).
fn borrow_result<T>(slot: &Mutex<Slot<T>>) -> PutBack<'_, T> {
    let result = crate::sync::waiters::wait_until("Greenlet::get", slot, borrowers, None, |s| {
        (!s.lent).then(|| {
            s.lent = true;
            s.result.take()
        })
    });
    PutBack(slot, result.flatten())
}

/// Puts a link's borrowed result back into its slot, also if the link panics or is killed.
struct PutBack<'a, T>(&'a Mutex<Slot<T>>, Option<Result<T, JoinError>>);

impl<T> Drop for PutBack<'_, T> {
    fn drop(&mut self) {
        let mut slot = lock(self.0);
        slot.result = self.1.take();
        slot.lent = false;
        slot.borrowers.notify_one();
    }
}

impl<T> fmt::Debug for Greenlet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_meta(&self.inner.meta, "Greenlet", f)
    }
}

fn debug_meta(m: &Meta, ty: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.debug_struct(ty)
        .field("id", &m.id)
        .field("name", &m.name())
        .field("ready", &m.done.is_fired())
        .finish()
}
