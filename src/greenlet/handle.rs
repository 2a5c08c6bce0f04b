//! `GreenletRef`, the type-erased handle to any greenlet, and `current`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::kill::{KILLED, TIMED_OUT};
use super::{CURRENT, Erased, debug_meta};

/// A cloneable handle to any greenlet, whatever its result type: what [`current`] returns.
///
/// # Examples
///
/// ```
/// let g = greenlet::Builder::new()
///     .name("worker")
///     .spawn(|| greenlet::current().map(|me| me.name().to_owned()))?;
/// assert_eq!(g.get().unwrap().as_deref(), Some("worker"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct GreenletRef(pub(super) Arc<dyn Erased>);

impl GreenletRef {
    /// The greenlet's name.
    pub fn name(&self) -> &str {
        self.0.meta().name()
    }

    /// The greenlet's process-unique id.
    pub fn id(&self) -> u64 {
        self.0.meta().id
    }

    /// Returns `true` once the greenlet has finished.
    pub fn ready(&self) -> bool {
        self.0.meta().done.is_fired()
    }

    /// Waits for the greenlet to finish. See [`Greenlet::join`](crate::Greenlet::join).
    ///
    /// # Panics
    ///
    /// If called by the greenlet itself.
    #[track_caller]
    pub fn join(&self) {
        self.0.meta().join();
    }

    /// Waits at most `d`; `true` if the greenlet has finished. See [`Greenlet::join_timeout`](crate::Greenlet::join_timeout).
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    pub fn join_timeout(&self, d: Duration) -> bool {
        self.0.meta().join_timeout(d)
    }

    /// Kills the greenlet and waits for it. See [`Greenlet::kill`](crate::Greenlet::kill).
    pub fn kill(&self) -> bool {
        self.0.meta().kill()
    }

    /// Kills the greenlet and waits at most `d`. See [`Greenlet::kill_timeout`](crate::Greenlet::kill_timeout).
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    pub fn kill_timeout(&self, d: Duration) -> bool {
        self.0.meta().kill_timeout(d)
    }

    /// Asks the greenlet to unwind at its next blocking point. See [`Greenlet::kill_nowait`](crate::Greenlet::kill_nowait).
    pub fn kill_nowait(&self) -> bool {
        self.0.meta().request_kill(KILLED)
    }

    /// A handle that does not keep the greenlet (and its result) alive.
    pub(crate) fn downgrade(&self) -> WeakGreenlet {
        WeakGreenlet(Arc::downgrade(&self.0))
    }

    /// Whether `sp` lies in the greenlet's stack (known once it has started).
    pub(crate) fn stack_contains(&self, sp: usize) -> bool {
        let meta = self.0.meta();
        let top = meta.stack_top.load(Ordering::Relaxed);
        let Some(co) = meta.co.get() else {
            return false;
        };
        let size = co.stack_size() * size_of::<usize>();
        // The first frame sits below the closure's captures, which generator places at the
        // top of the stack: allow some room above it.
        top != 0 && sp <= top.saturating_add(64 * 1024) && sp >= top.saturating_sub(size)
    }

    /// The worker the greenlet lives on.
    pub(crate) fn home(&self) -> usize {
        self.0.meta().home
    }

    /// Interrupts the greenlet because its [`Timeout`](crate::Timeout) expired.
    pub(crate) fn interrupt_timeout(&self) {
        self.0.meta().request_kill(TIMED_OUT);
    }
}

impl fmt::Debug for GreenletRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_meta(self.0.meta(), "GreenletRef", f)
    }
}

/// A weak [`GreenletRef`].
pub(crate) struct WeakGreenlet(pub(super) std::sync::Weak<dyn Erased>);

impl WeakGreenlet {
    pub(crate) fn upgrade(&self) -> Option<GreenletRef> {
        self.0.upgrade().map(GreenletRef)
    }
}

/// The greenlet that calls it, or `None` on a plain thread (or a raw may coroutine).
///
/// # Examples
///
/// ```
/// assert!(greenlet::current().is_none()); // main is a plain thread
/// let g = greenlet::spawn(|| greenlet::current().unwrap().id());
/// let id = g.id();
/// assert_eq!(g.get(), Ok(id));
/// ```
#[doc(alias = "getcurrent")]
pub fn current() -> Option<GreenletRef> {
    if !may::coroutine::is_coroutine() {
        return None;
    }
    CURRENT.with(|c| c.borrow().as_ref().map(|g| g.0.clone()))
}
