//! Stack overflows: the overflowing greenlet is stopped where it is, and its stack is kept.
//!
//! A greenlet that runs off the bottom of its stack hits the guard page below it. generator's
//! SIGSEGV handler would switch out of the coroutine, and may would then pool or unmap its
//! stack while values on it may still be referenced: a scoped thread's borrow of a local, a
//! lock guard (`docs/upstream.md` item 14). That is undefined behaviour reachable from safe
//! code, so the crate handles the fault first:
//!
//! 1. **The handler** (installed over generator's once the runtime starts) claims a fault
//!    only when its address lies at the bottom of a stack of a greenlet started on this
//!    thread (each worker keeps the stack ranges of the greenlets it runs) and the stack
//!    pointer is in that stack. Anything else goes on to the handler it replaced, as before.
//! 2. It does no work on the signal stack. It points the interrupted context at
//!    [`landing`], on a spare stack of its own (pre-mapped: the handler makes no allocation),
//!    and returns; the kernel's `sigreturn` restores the signal mask.
//! 3. **`landing`** runs as the overflowed greenlet, on that spare stack. It marks the
//!    greenlet finished (so no kill's cancel is sent to it any more), clears may's cancel
//!    flag if a kill had set it, completes the greenlet with an error for its joiners and
//!    links, and parks it for good on a `Blocker` that nothing ever unparks.
//!
//! may then keeps the coroutine in that parked `Blocker`: its stack is never unmapped,
//! never pooled, never resumed. What the greenlet held stays held (a lock stays locked: a
//! deadlock, not a use-after-free), and its stack and the spare are leaked (one log line
//! says so, once).
//!
//! Limits: x86-64 Linux only (elsewhere generator's handler runs as before, see
//! `docs/soundness.md`); a coroutine not started by the crate (may used directly), or a
//! fault before a greenlet's first frame recorded its stack, goes to generator's handler; an
//! overflow inside the C allocator leaves its lock held, and the worker's next allocation
//! then waits for good (the monitor reports such a worker).

use std::cell::Cell;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, compiler_fence};

use super::Erased;

/// One live greenlet's stack on this thread: faults in `lo..hi` are its overflow.
struct Entry {
    /// Below the guard page's lowest possible address.
    lo: usize,
    /// The first frame's anchor (`Meta::stack_top`); 0 for a free slot.
    hi: usize,
    id: u64,
    greenlet: Weak<dyn Erased>,
}

/// The stacks of the greenlets running on one thread (pinned: a greenlet starts and ends on
/// the same worker). Slots are reused through `free`.
#[derive(Default)]
struct Stacks {
    entries: Vec<Entry>,
    free: Vec<usize>,
}

thread_local! {
    /// This thread's [`Stacks`], made on its first greenlet and kept for the thread's life.
    /// A plain pointer (no destructor), so the signal handler can read it.
    static STACKS: Cell<*mut Stacks> = const { Cell::new(std::ptr::null_mut()) };
    /// Set while `STACKS` is being changed: the handler then claims nothing.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` on this thread's stacks, with `BUSY` set.
fn with_stacks<R>(f: impl FnOnce(&mut Stacks) -> R) -> R {
    let mut ptr = STACKS.get();
    if ptr.is_null() {
        ptr = Box::into_raw(Box::default());
        STACKS.set(ptr);
    }
    BUSY.set(true);
    compiler_fence(Ordering::SeqCst);
    // SAFETY: `ptr` came from `Box::into_raw` on this thread and is never freed; only this
    // thread uses it, and not re-entrantly: `f` is the crate's own and does not call back
    // here, and the signal handler only reads while `BUSY` is clear.
    let r = f(unsafe { &mut *ptr });
    compiler_fence(Ordering::SeqCst);
    BUSY.set(false);
    r
}

/// Records the stack of the greenlet starting on this thread: `anchor` is a local of its
/// first frame, `bytes` its stack size. Returns the slot for [`leave`].
pub(super) fn enter(anchor: usize, bytes: usize, id: u64, greenlet: Weak<dyn Erased>) -> usize {
    let page = page_size();
    // generator maps `bytes` rounded up to a page above one guard page, and the anchor lies
    // within the top of that: the guard page is inside `lo..anchor`.
    let usable = bytes.div_ceil(page) * page;
    let entry = Entry {
        lo: anchor.saturating_sub(usable + 2 * page),
        hi: anchor,
        id,
        greenlet,
    };
    with_stacks(|s| match s.free.pop() {
        Some(slot) => {
            s.entries[slot] = entry;
            slot
        }
        None => {
            s.entries.push(entry);
            s.entries.len() - 1
        }
    })
}

/// Forgets the stack recorded by [`enter`] when its greenlet ends.
pub(super) fn leave(slot: usize, id: u64) {
    let left = with_stacks(|s| match s.entries.get_mut(slot) {
        Some(e) if e.id == id && e.hi != 0 => {
            e.hi = 0;
            e.greenlet = Weak::<super::Inner<()>>::new();
            s.free.push(slot);
            true
        }
        _ => false,
    });
    if !left {
        // Only possible when something moved the greenlet off its worker (may's own waits,
        // used directly): its entry stays on the thread it started on.
        static SAID: AtomicBool = AtomicBool::new(false);
        if !SAID.swap(true, Ordering::Relaxed) {
            log::warn!(
                "greenlet {id} ended on another thread than it started on (may's own blocking \
                 primitives used inside a greenlet?); its stack record stays behind"
            );
        }
    }
}

/// The size of the landing stacks, above their guard page.
const LANDING_BYTES: usize = 64 * 1024;

/// Pre-mapped landing stacks (their mapping's base; 0 = empty), taken by the handler.
static SPARES: [AtomicUsize; 2] = [const { AtomicUsize::new(0) }; 2];

fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let mut page = PAGE.load(Ordering::Relaxed);
    if page == 0 {
        // SAFETY: `sysconf` only reads a configuration value.
        page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        PAGE.store(page, Ordering::Relaxed);
    }
    page
}

/// Maps a landing stack with a guard page below it; returns the mapping's base.
fn map_landing() -> Option<usize> {
    let page = page_size();
    // SAFETY: a fresh anonymous private mapping; nothing else refers to it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            LANDING_BYTES + page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: the first page of the mapping just made.
    if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
        // SAFETY: the whole mapping just made, unused.
        unsafe { libc::munmap(base, LANDING_BYTES + page) };
        return None;
    }
    Some(base as usize)
}

/// Fills the empty spare slots.
fn refill_spares() {
    for slot in &SPARES {
        if slot.load(Ordering::Acquire) == 0 {
            let Some(base) = map_landing() else {
                log::warn!("cannot map a spare stack for stack-overflow handling");
                return;
            };
            if slot
                .compare_exchange(0, base, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // SAFETY: our own mapping, never handed out.
                unsafe { libc::munmap(base as *mut libc::c_void, LANDING_BYTES + page_size()) };
            }
        }
    }
}

/// Gives the calling thread (a worker) a signal stack if it has none, so that the overflow
/// handler can run at all: the faulting stack has no room left. std gives its threads one
/// when its own handler is installed at start (a Rust `main`), not in every program.
pub(crate) fn ensure_signal_stack() {
    // SAFETY: reads the thread's signal stack into a zeroed structure.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: a null new stack only queries.
    if unsafe { libc::sigaltstack(std::ptr::null(), &mut current) } != 0
        || current.ss_flags & libc::SS_DISABLE == 0
    {
        return;
    }
    let Some(base) = map_landing() else {
        log::warn!(
            "cannot map a signal stack for a worker; a stack overflow there ends the process"
        );
        return;
    };
    let stack = libc::stack_t {
        ss_sp: (base + page_size()) as *mut libc::c_void,
        ss_flags: 0,
        ss_size: LANDING_BYTES,
    };
    // SAFETY: the mapping above its guard page, ours for the thread's (and process's) life.
    if unsafe { libc::sigaltstack(&stack, std::ptr::null_mut()) } != 0 {
        log::warn!(
            "cannot install a signal stack for a worker ({})",
            std::io::Error::last_os_error()
        );
    }
}

/// The handler that was installed before ours (generator's), to pass other faults on to.
static PREVIOUS: AtomicUsize = AtomicUsize::new(0);

/// Installs the handler over generator's (which must be installed already: the runtime has
/// run its first coroutine). Called once, while the runtime starts.
pub(crate) fn install() {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return;
    }
    refill_spares();
    // SAFETY: plain C structures, zeroed as sigaction(2) expects before filling them.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_segv as *const () as libc::sighandler_t;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: as above.
    let previous: &'static mut libc::sigaction = Box::leak(Box::new(unsafe { std::mem::zeroed() }));
    // SAFETY: `action` is a valid handler description; `previous` receives the old one.
    if unsafe { libc::sigaction(libc::SIGSEGV, &action, &mut *previous) } != 0 {
        log::warn!(
            "cannot install the stack-overflow handler ({}); an overflowed greenlet's stack \
             may be reused",
            std::io::Error::last_os_error()
        );
        return;
    }
    PREVIOUS.store(previous as *mut libc::sigaction as usize, Ordering::Release);
}

/// The SIGSEGV handler. Async-signal-safe: it reads this thread's stack records (a plain
/// thread-local pointer), swaps a spare out of [`SPARES`] and edits the saved context.
extern "C" fn on_segv(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        // SAFETY: the kernel passes a valid siginfo and ucontext to an SA_SIGINFO handler.
        let (fault, sp) = unsafe {
            let uc = &*(ctx as *const libc::ucontext_t);
            (
                (*info).si_addr() as usize,
                uc.uc_mcontext.gregs[libc::REG_RSP as usize] as usize,
            )
        };
        // A spare, or a new mapping (mmap is async-signal-safe) when both are in use.
        if let Some(slot) = claimed(fault, sp)
            && let Some(base) = take_spare().or_else(map_landing)
        {
            // SAFETY: `ctx` is the interrupted context, which `sigreturn` resumes; `base` is
            // a landing stack no one else uses.
            unsafe { land(ctx, slot, base) };
            return;
        }
    }
    pass_on(sig, info, ctx);
}

/// The slot of this thread's greenlet whose stack the fault at `fault` (with the stack
/// pointer at `sp`) ran off, if any.
fn claimed(fault: usize, sp: usize) -> Option<usize> {
    let ptr = STACKS.get();
    if ptr.is_null() || BUSY.get() {
        return None;
    }
    // SAFETY: this thread's records, not being changed (`BUSY` is clear); read only.
    let stacks = unsafe { &*ptr };
    stacks.entries.iter().position(|e| {
        e.hi != 0
            && (e.lo..e.hi).contains(&fault)
            && (e.lo.saturating_sub(LANDING_BYTES)..e.hi).contains(&sp)
    })
}

fn take_spare() -> Option<usize> {
    SPARES
        .iter()
        .map(|s| s.swap(0, Ordering::AcqRel))
        .find(|&base| base != 0)
}

/// Resumes the interrupted context in [`landing`] on the landing stack at `base`, with the
/// slot and the stack as its arguments.
///
/// # Safety
///
/// `ctx` must be the `ucontext_t` of a signal being handled on this thread, and `base` a
/// landing mapping from [`map_landing`] that nothing else uses.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
unsafe fn land(ctx: *mut libc::c_void, slot: usize, base: usize) {
    let top = (base + page_size() + LANDING_BYTES) & !15;
    // As after a `call`: the stack pointer is 8 below a 16-byte boundary, and the "return
    // address" there is 0, which ends any backtrace.
    let sp = top - 8;
    // SAFETY: `sp` is inside the landing stack (the caller's promise); `ctx` is valid.
    unsafe {
        (sp as *mut usize).write(0);
        let gregs = &mut (*(ctx as *mut libc::ucontext_t)).uc_mcontext.gregs;
        gregs[libc::REG_RSP as usize] = sp as i64;
        gregs[libc::REG_RIP as usize] = landing as *const () as usize as i64;
        gregs[libc::REG_RDI as usize] = slot as i64;
        gregs[libc::REG_RSI as usize] = base as i64;
        // The direction flag must be clear at a function's entry (System V ABI).
        gregs[libc::REG_EFL as usize] &= !0x400;
    }
}

/// Hands a fault the crate does not claim to the handler installed before ours.
fn pass_on(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let previous = PREVIOUS.load(Ordering::Acquire) as *const libc::sigaction;
    if previous.is_null() {
        return;
    }
    // SAFETY: `previous` is the leaked, never changed copy written by `install`.
    let previous = unsafe { &*previous };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Put it back and return: the fault happens again and takes its default course.
        // SAFETY: restoring a disposition that the kernel gave us.
        unsafe { libc::sigaction(sig, previous, std::ptr::null_mut()) };
    } else if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: an SA_SIGINFO handler's signature, called as the kernel would.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: a plain handler's signature, called as the kernel would.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}

/// Where an overflowed greenlet resumes, on a landing stack, as itself: it finishes the
/// greenlet and parks its coroutine for good. Never returns.
extern "C" fn landing(slot: usize, _landing_base: usize) -> ! {
    let settled = std::panic::catch_unwind(|| settle(slot));
    if settled.is_err() {
        log::error!("handling a greenlet's stack overflow panicked; the greenlet is parked");
    }
    park_for_good()
}

/// Finishes the greenlet whose stack record is `slot`, as its own coroutine.
fn settle(slot: usize) {
    let record = with_stacks(|s| {
        s.entries.get_mut(slot).map(|e| {
            let greenlet = std::mem::replace(&mut e.greenlet, Weak::<super::Inner<()>>::new());
            e.hi = 0;
            s.free.push(slot);
            greenlet
        })
    });
    if let Some(g) = record.and_then(|w| w.upgrade()) {
        g.overflowed();
    }
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        log::error!(
            "a greenlet overflowed its stack: it was stopped without unwinding, and its stack is \
             kept mapped for the life of the process so that nothing it lent out (a borrow, a \
             lock guard) is freed; locks it held stay locked. Give deep recursion a bigger stack \
             (`Builder::stack_size`). Logged once."
        );
    }
    refill_spares();
}

/// Parks the running coroutine for good: nothing holds what would unpark it, and the crate
/// sends no kill to a greenlet that has finished. Should it ever resume (may's cancel, sent
/// directly), its flag is cleared and it parks again.
fn park_for_good() -> ! {
    loop {
        let blocker: &'static may::sync::Blocker =
            Box::leak(Box::new(may::sync::Blocker::new(true)));
        let _ = blocker.park(None);
        log::error!("an overflowed greenlet was resumed; it is parked again");
        super::kill::clear_cancel_flag_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_without_a_signal_stack_gets_one() {
        std::thread::spawn(|| {
            let off = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            // SAFETY: disables this test thread's signal stack (std's stays mapped).
            assert_eq!(unsafe { libc::sigaltstack(&off, std::ptr::null_mut()) }, 0);
            ensure_signal_stack();
            // SAFETY: as in `ensure_signal_stack`.
            let mut now: libc::stack_t = unsafe { std::mem::zeroed() };
            // SAFETY: a null new stack only queries.
            assert_eq!(unsafe { libc::sigaltstack(std::ptr::null(), &mut now) }, 0);
            assert_eq!(now.ss_flags & libc::SS_DISABLE, 0);
            assert_eq!(now.ss_size, LANDING_BYTES);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn records_are_reused_and_only_their_own_greenlet_leaves() {
        std::thread::spawn(|| {
            let none = || Weak::<crate::greenlet::Inner<()>>::new() as Weak<dyn Erased>;
            let a = enter(1 << 20, 64 * 1024, 1, none());
            let b = enter(2 << 20, 64 * 1024, 2, none());
            assert_ne!(a, b);
            assert_eq!(
                claimed((1 << 20) - 64 * 1024 - 100, (1 << 20) - 64 * 1024),
                Some(a)
            );
            assert_eq!(
                claimed((1 << 20) + 10, 1 << 20),
                None,
                "above the first frame"
            );
            assert_eq!(claimed(100, 200), None);
            leave(a, 2); // not a's greenlet: kept
            assert!(claimed((1 << 20) - 10, (1 << 20) - 10).is_some());
            leave(a, 1);
            assert_eq!(claimed((1 << 20) - 10, (1 << 20) - 10), None);
            assert_eq!(
                enter(3 << 20, 64 * 1024, 3, none()),
                a,
                "the free slot is reused"
            );
        })
        .join()
        .unwrap();
    }
}
