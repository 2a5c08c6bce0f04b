//! Stack overflows: the overflowing greenlet is stopped where it is, and its stack is kept.
//!
//! A greenlet that runs off the bottom of its stack hits the guard page below it. generator's
//! SIGSEGV handler would switch out of the coroutine, and may would then pool or unmap its
//! stack while values on it may still be referenced: a scoped thread's borrow of a local, a
//! lock guard (`docs/upstream.md` item 14). That is undefined behaviour reachable from safe
//! code, so the crate handles the fault first:
//!
//! 1. **The handler** (installed over generator's once the runtime starts) claims a fault
//!    only when the kernel raised it (not a `kill`), the coroutine running on the faulting
//!    thread is a greenlet that recorded its stack there (each worker keeps a record per
//!    greenlet it runs: the coroutine's identity, generator's local-data pointer, and its
//!    stack's range), the address lies in that greenlet's own stack range, down to below its
//!    guard page, and so does the stack pointer. Anything else goes on to the handler it
//!    replaced, as before.
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
//! When no landing stack can be had (the spares are used and `mmap` fails: out of memory
//! mappings after many overflows), the process aborts with a message rather than let the
//! stack be reused.
//!
//! Limits (`docs/soundness.md`): x86-64 Linux only (elsewhere generator's handler runs as
//! before); a coroutine not started by the crate (may used directly) goes to generator's
//! handler. Stopping code where it is can leave shared state half-changed: an overflow inside
//! the C allocator leaves its lock held (the worker's next allocation waits for good), one
//! inside may's run queue leaves spawns onto that worker spinning, one during an unwind
//! leaves the worker's std panic count raised. Memory safety holds; that worker may not.

use std::cell::Cell;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, compiler_fence};

use super::Erased;

/// One live greenlet's stack on this thread: faults in `lo..hi`, while its coroutine runs,
/// are its overflow.
struct Entry {
    /// Below the guard page's lowest possible address.
    lo: usize,
    /// The first frame's anchor (`Meta::stack_top`); 0 for a free slot.
    hi: usize,
    /// generator's local-data pointer of the greenlet's coroutine: which coroutine runs.
    coroutine: usize,
    /// Order of the records on this thread: a newer one wins over an older one with the same
    /// coroutine pointer (a record left behind by a greenlet that ended elsewhere).
    seq: u64,
    id: u64,
    greenlet: Weak<dyn Erased>,
}

/// The stacks of the greenlets running on one thread (pinned: a greenlet starts and ends on
/// the same worker). Slots are reused through `free`.
#[derive(Default)]
struct Stacks {
    entries: Vec<Entry>,
    free: Vec<usize>,
    seq: u64,
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

/// Records the stack of the greenlet starting on this thread, as its coroutine: `anchor` is a
/// local of its first frame, `bytes` its stack size. Returns the slot for [`leave`].
pub(super) fn enter(anchor: usize, bytes: usize, id: u64, greenlet: Weak<dyn Erased>) -> usize {
    record(
        anchor,
        bytes,
        generator::get_local_data() as usize,
        id,
        greenlet,
    )
}

fn record(
    anchor: usize,
    bytes: usize,
    coroutine: usize,
    id: u64,
    greenlet: Weak<dyn Erased>,
) -> usize {
    let page = page_size();
    // generator maps `bytes` rounded up to a page above one guard page, and the anchor lies
    // within the top of that: the guard page is inside `lo..anchor`. (Below the guard page,
    // the range reaches into the mapping underneath by as much as the anchor lies below the
    // top; only a fault of this coroutine is claimed, so that is still its overflow.)
    let usable = bytes.div_ceil(page) * page;
    with_stacks(|s| {
        s.seq += 1;
        let entry = Entry {
            lo: anchor.saturating_sub(usable + 2 * page),
            hi: anchor,
            coroutine,
            seq: s.seq,
            id,
            greenlet,
        };
        match s.free.pop() {
            Some(slot) => {
                s.entries[slot] = entry;
                slot
            }
            None => {
                s.entries.push(entry);
                s.entries.len() - 1
            }
        }
    })
}

/// Forgets the stack recorded by [`enter`] when its greenlet ends. A greenlet that ends on
/// another thread than its worker `home` (moved there by may's own waits, used directly) has
/// its record forgotten on `home`, through the worker's mailbox.
pub(super) fn leave(slot: usize, id: u64, home: usize) {
    if forget(slot, id) {
        return;
    }
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        log::warn!(
            "greenlet {id} ended on another thread than its worker (may's own blocking \
             primitives used inside a greenlet?)"
        );
    }
    if crate::deadline::home::worker() != Some(home) {
        crate::deadline::home::wake_on(
            home,
            crate::deadline::home::Wake::Call(Box::new(move || {
                forget(slot, id);
            })),
        );
    }
}

/// Frees record `slot` of this thread if it is greenlet `id`'s.
fn forget(slot: usize, id: u64) -> bool {
    with_stacks(|s| match s.entries.get_mut(slot) {
        Some(e) if e.id == id && e.hi != 0 => {
            e.hi = 0;
            e.greenlet = Weak::<super::Inner<()>>::new();
            s.free.push(slot);
            true
        }
        _ => false,
    })
}

/// `si_code`s of a SIGSEGV raised by the kernel for a bad access (`<asm-generic/siginfo.h>`;
/// not in the libc crate): no mapping there, and a mapping without the access (a guard page).
const SEGV_MAPERR: libc::c_int = 1;
const SEGV_ACCERR: libc::c_int = 2;

/// The size of the landing stacks, above their guard page: room for the user's logger and
/// the greenlet's completion (only the pages used cost memory).
const LANDING_BYTES: usize = 256 * 1024;

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
        let (code, fault, sp) = unsafe {
            let uc = &*(ctx as *const libc::ucontext_t);
            (
                (*info).si_code,
                (*info).si_addr() as usize,
                uc.uc_mcontext.gregs[libc::REG_RSP as usize] as usize,
            )
        };
        // Only a fault the kernel raised: a SIGSEGV sent with kill(2) or sigqueue(3) has no
        // faulting address (that field is then the sender's).
        let by_kernel = code == SEGV_MAPERR || code == SEGV_ACCERR;
        if by_kernel && let Some(slot) = claimed(fault, sp, running_coroutine()) {
            // A spare, or a new mapping (mmap is async-signal-safe) when both are in use.
            match take_spare().or_else(map_landing) {
                Some(base) => {
                    // SAFETY: `ctx` is the interrupted context, which `sigreturn` resumes;
                    // `base` is a landing stack no one else uses.
                    unsafe { land(ctx, slot, base) };
                    return;
                }
                // Never the handler below: it would let the stack be reused.
                None => abort_without_landing(),
            }
        }
    }
    pass_on(sig, info, ctx);
}

/// generator's local-data pointer of the coroutine running on this thread (0 for none), on
/// a thread that has run greenlets (elsewhere 0, without touching generator's thread-local:
/// its first use would allocate).
fn running_coroutine() -> usize {
    if STACKS.get().is_null() {
        return 0;
    }
    generator::get_local_data() as usize
}

/// The slot of this thread's record of `coroutine` (running now) whose stack the fault at
/// `fault` (with the stack pointer at `sp`) ran off, if any: the newest such record.
fn claimed(fault: usize, sp: usize, coroutine: usize) -> Option<usize> {
    let ptr = STACKS.get();
    if ptr.is_null() || BUSY.get() || coroutine == 0 {
        return None;
    }
    // SAFETY: this thread's records, not being changed (`BUSY` is clear); read only.
    let stacks = unsafe { &*ptr };
    stacks
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.hi != 0
                && e.coroutine == coroutine
                && (e.lo..e.hi).contains(&fault)
                && (e.lo.saturating_sub(LANDING_BYTES)..e.hi).contains(&sp)
        })
        .max_by_key(|(_, e)| e.seq)
        .map(|(slot, _)| slot)
}

/// Ends the process when an overflow cannot be given a landing stack. Async-signal-safe.
fn abort_without_landing() -> ! {
    let msg = b"greenlet: a greenlet overflowed its stack and no stack is left to stop it on \
(out of memory mappings: see vm.max_map_count); aborting rather than reuse its stack\n";
    // SAFETY: writes a static buffer to stderr, then aborts; both async-signal-safe.
    unsafe {
        libc::write(libc::STDERR_FILENO, msg.as_ptr().cast(), msg.len());
        libc::abort()
    }
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
            (e.id, greenlet)
        })
    });
    if let Some((id, greenlet)) = record {
        match greenlet.upgrade() {
            Some(g) => g.overflowed(),
            // Its last handle was being dropped: the overflow is in its result's destructor.
            None => log_overflow_after_end(id),
        }
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

/// Logs an overflow of greenlet `who` (its id, or its name and id) after its body returned:
/// in a destructor run as it ends (`Inner::run`).
pub(super) fn log_overflow_after_end(who: impl std::fmt::Display) {
    log::error!(
        "greenlet {who} overflowed its stack after it ended, in the destructor of its result \
         (detached) or of its greenlet-locals; that destructor was stopped"
    );
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
            const CO: usize = 0xc0;
            let a = record(1 << 20, 64 * 1024, CO, 1, none());
            let b = record(2 << 20, 64 * 1024, CO + 1, 2, none());
            assert_ne!(a, b);
            let bottom = (1 << 20) - 64 * 1024;
            assert_eq!(claimed(bottom - 100, bottom, CO), Some(a));
            assert_eq!(
                claimed(bottom - 100, bottom, CO + 1),
                None,
                "not the running one"
            );
            assert_eq!(claimed(bottom - 100, bottom, 0), None, "no coroutine runs");
            assert_eq!(
                claimed((1 << 20) + 10, 1 << 20, CO),
                None,
                "above the first frame"
            );
            assert_eq!(claimed(100, 200, CO), None);
            assert!(!forget(a, 2), "not a's greenlet: kept");
            assert!(claimed((1 << 20) - 10, (1 << 20) - 10, CO).is_some());
            assert!(forget(a, 1));
            assert_eq!(claimed((1 << 20) - 10, (1 << 20) - 10, CO), None);
            assert_eq!(
                record(3 << 20, 64 * 1024, CO + 2, 3, none()),
                a,
                "the free slot is reused"
            );
        })
        .join()
        .unwrap();
    }

    /// A record left behind (its greenlet ended elsewhere) and a new one for the same
    /// coroutine pointer and stack: the new one is claimed.
    #[test]
    fn the_newest_record_of_a_coroutine_wins() {
        std::thread::spawn(|| {
            let none = || Weak::<crate::greenlet::Inner<()>>::new() as Weak<dyn Erased>;
            const CO: usize = 0xd0;
            let stale = record(4 << 20, 64 * 1024, CO, 10, none());
            let new = record(4 << 20, 64 * 1024, CO, 11, none());
            let bottom = (4 << 20) - 64 * 1024;
            assert_eq!(claimed(bottom - 8, bottom, CO), Some(new));
            assert!(forget(new, 11));
            assert_eq!(claimed(bottom - 8, bottom, CO), Some(stale));
        })
        .join()
        .unwrap();
    }

    /// Two greenlets' ranges overlap (a big first frame puts one's anchor far below its top,
    /// so its range reaches into the stack mapped underneath): only the running one's fault
    /// is claimed, for it.
    #[test]
    fn overlapping_ranges_go_to_the_running_coroutine() {
        std::thread::spawn(|| {
            let none = || Weak::<crate::greenlet::Inner<()>>::new() as Weak<dyn Erased>;
            let (a_co, b_co) = (0xe0, 0xe1);
            // A: 8 MiB stack, anchor 3 MiB below its top; B: 16 KiB, right under A's guard.
            let a_anchor = 64 << 20;
            let a = record(a_anchor, 8 << 20, a_co, 20, none());
            let b_guard = a_anchor - (5 << 20) - 16 * 1024 - 8192;
            let b = record(
                b_guard + 4096 + 16 * 1024 - 200,
                16 * 1024,
                b_co,
                21,
                none(),
            );
            assert_eq!(claimed(b_guard + 8, b_guard + 16, b_co), Some(b));
            assert_eq!(claimed(b_guard + 8, b_guard + 16, a_co), Some(a));
        })
        .join()
        .unwrap();
    }
}
