//! The Rust frame that made a futex wait: the blocked thread takes a backtrace of itself in a
//! signal handler, which the monitor thread then symbolises.
//!
//! A thread's stack can only be unwound by that thread, so the monitor sends the blocked
//! worker a real-time signal (`tgkill`) and its handler captures a
//! [`Backtrace`](std::backtrace::Backtrace) (unresolved: raw addresses) and hands it over. A
//! backtrace allocates and takes std's backtrace lock, which is not async-signal-safe in
//! general, so the handler captures only when the thread was interrupted at a known safe
//! place:
//!
//! - in the C library's `syscall()` wrapper, the way Rust's `std` (and `parking_lot`) call
//!   `futex` on Linux: the thread is then in Rust code, not inside `malloc`, the dynamic linker
//!   or a lock of the C library, whose own futex waits are inlined system calls elsewhere (a C
//!   library's `pthread_mutex_lock` is reported without a frame). The monitor checks the
//!   program counter it read from `/proc` (with `dladdr`), the handler checks the interrupted
//!   one against it, so a thread that has moved on meanwhile is left alone;
//! - on the same stack pointer, below which the monitor has checked that [`ROOM`] bytes are
//!   mapped (the handler runs on the greenlet's own stack, and must not reach its guard page).
//!
//! What remains is a thread that waits in `futex` while it holds std's backtrace lock or a
//! lock of a Rust global allocator it would need again (an allocator that waits on one lock
//! while holding another): the handler would then wait for itself. Neither happens with the
//! system allocator. The signal is installed with `SA_RESTART`, so the interrupted futex
//! wait resumes where it was and the program sees no spurious wake-up.
//!
//! Only Linux with glibc on x86_64 and aarch64; elsewhere (and when no real-time signal is
//! free) reports name the call without a frame.

use std::backtrace::Backtrace;
use std::ffi::{CStr, c_int, c_void};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Stack the handler may use below the interrupted stack pointer: the signal frame (its size
/// is the kernel's `AT_MINSIGSTKSZ`, added at run time), the unwinder, and a margin.
const ROOM: usize = 32 * 1024;
/// The kernel's minimal signal frame size for this CPU, from the auxiliary vector.
const AT_MINSIGSTKSZ: libc::c_ulong = 51;
/// How long the monitor waits for the handler's backtrace.
const PATIENCE: Duration = Duration::from_millis(100);
/// The handler accepts a program counter this many bytes before the one the monitor read:
/// with `SA_RESTART` the kernel rewinds it onto the system call instruction (2 bytes on
/// x86_64, 4 on aarch64), still inside `syscall()`.
const REWIND: usize = 4;

/// The signal the handler is installed on; 0 until then (or when none was free).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The request being served: its number, and the thread state the handler must find.
static GEN: AtomicU64 = AtomicU64::new(0);
static WANT_PC: AtomicUsize = AtomicUsize::new(0);
/// 0 while no request is open.
static WANT_SP: AtomicUsize = AtomicUsize::new(0);
/// The handler's answer, a `Box<Captured>`.
static RESULT: AtomicPtr<Captured> = AtomicPtr::new(std::ptr::null_mut());

struct Captured {
    generation: u64,
    backtrace: Backtrace,
}

/// Installs the handler on a free real-time signal (once, from the monitor thread), and
/// captures one backtrace here so the unwinder is loaded before a handler needs it.
pub(super) fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(install_once);
}

fn install_once() {
    let _ = Backtrace::force_capture();
    // The highest real-time signals are the least used; glibc keeps the lowest for itself.
    let candidates = (libc::SIGRTMIN() + 4..=libc::SIGRTMAX() - 1).rev();
    for sig in candidates {
        // SAFETY: a zeroed `sigaction` is a valid out-parameter; a null new action only reads.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `sig` is a valid signal number.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0
            || old.sa_sigaction != libc::SIG_DFL
        {
            continue;
        }
        // SAFETY: zeroed is a valid empty action, filled in below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: `sa_mask` is ours to initialise.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: a valid action whose handler is async-signal-safe on every path that runs
        // outside the conditions the module docs state.
        if unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) } == 0 {
            SIGNAL.store(sig, Ordering::Release);
            log::debug!("greenlet monitor: futex frames through signal {sig}");
            return;
        }
    }
    log::debug!("greenlet monitor: no free real-time signal; futex waits without a frame");
}

/// Asks thread `tid`, in a futex wait at program counter `pc` with stack pointer `sp`, for
/// its backtrace; `None` when it cannot be had safely or in time.
pub(super) fn capture(tid: u32, pc: usize, sp: usize) -> Option<Backtrace> {
    let sig = SIGNAL.load(Ordering::Acquire);
    if sig == 0 || !in_syscall_wrapper(pc) || !room_below(sp) || !still_installed(sig) {
        return None;
    }
    let tid = libc::pid_t::try_from(tid).ok()?;
    drop(take());
    WANT_SP.store(0, Ordering::SeqCst);
    let generation = GEN.fetch_add(1, Ordering::SeqCst) + 1;
    WANT_PC.store(pc, Ordering::SeqCst);
    WANT_SP.store(sp, Ordering::SeqCst);
    // SAFETY: sends a signal whose handler is installed (checked above) to one of our threads.
    let sent = unsafe { libc::tgkill(libc::getpid(), tid, sig) } == 0;
    let deadline = Instant::now() + PATIENCE;
    let mut answer = None;
    while sent && Instant::now() < deadline {
        if let Some(c) = take()
            && c.generation == generation
        {
            answer = Some(c.backtrace);
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    WANT_SP.store(0, Ordering::SeqCst);
    answer
}

/// Takes the handler's answer, if any.
fn take() -> Option<Box<Captured>> {
    let p = RESULT.swap(std::ptr::null_mut(), Ordering::AcqRel);
    // SAFETY: a non-null `RESULT` came from `Box::into_raw` in the handler, and the swap
    // made it ours alone.
    (!p.is_null()).then(|| unsafe { Box::from_raw(p) })
}

/// Whether `pc` lies in the C library's `syscall()` function.
fn in_syscall_wrapper(pc: usize) -> bool {
    // SAFETY: a zeroed `Dl_info` is a valid out-parameter; `dladdr` only reads `pc`'s value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: as above; called on the monitor thread, never in a handler.
    if unsafe { libc::dladdr(pc as *const c_void, &mut info) } == 0 || info.dli_sname.is_null() {
        return false;
    }
    // SAFETY: `dladdr` sets `dli_sname` to a NUL-terminated symbol name that lives as long
    // as the object, which is the C library (never unloaded).
    let name = unsafe { CStr::from_ptr(info.dli_sname) };
    name.to_bytes() == b"syscall"
}

/// Whether every page of the `ROOM` (plus the signal frame) bytes below `sp` is mapped and
/// readable: read one byte of each through `process_vm_readv` on ourselves, which reports a
/// guard page as a short read instead of faulting.
fn room_below(sp: usize) -> bool {
    const PAGE: usize = 4096;
    // SAFETY: `getauxval` only reads the auxiliary vector.
    let frame = usize::try_from(unsafe { libc::getauxval(AT_MINSIGSTKSZ) }).unwrap_or(0);
    let need = ROOM + frame.max(PAGE);
    let Some(low) = sp.checked_sub(need) else {
        return false;
    };
    let mut bytes = vec![0u8; need.div_ceil(PAGE)];
    let local: Vec<libc::iovec> = bytes
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: (b as *mut u8).cast(),
            iov_len: 1,
        })
        .collect();
    let remote: Vec<libc::iovec> = (0..local.len())
        .map(|i| libc::iovec {
            iov_base: (low + i * PAGE) as *mut c_void,
            iov_len: 1,
        })
        .collect();
    // SAFETY: the local iovecs point into `bytes`, alive and writable for the call; the
    // remote ones are only read by the kernel, which fails the read of an unmapped page.
    let read = unsafe {
        libc::process_vm_readv(
            libc::getpid(),
            local.as_ptr(),
            local.len() as libc::c_ulong,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    usize::try_from(read) == Ok(local.len())
}

/// Whether our handler is still the one installed on `sig` (a library could have taken it).
fn still_installed(sig: c_int) -> bool {
    // SAFETY: a zeroed `sigaction` is a valid out-parameter; a null new action only reads.
    let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let ok = unsafe { libc::sigaction(sig, std::ptr::null(), &mut now) } == 0;
    ok && now.sa_sigaction == on_signal as *const () as libc::sighandler_t
}

/// The interrupted program counter and stack pointer.
///
/// # Safety
///
/// `ctx` is the `ucontext_t` the kernel passed to an `SA_SIGINFO` handler.
#[cfg(target_arch = "x86_64")]
unsafe fn interrupted_at(ctx: *const c_void) -> (usize, usize) {
    // SAFETY: the caller passes the kernel's ucontext.
    let gregs = unsafe { &(*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    (
        gregs[libc::REG_RIP as usize] as usize,
        gregs[libc::REG_RSP as usize] as usize,
    )
}

/// The interrupted program counter and stack pointer.
///
/// # Safety
///
/// `ctx` is the `ucontext_t` the kernel passed to an `SA_SIGINFO` handler.
#[cfg(target_arch = "aarch64")]
unsafe fn interrupted_at(ctx: *const c_void) -> (usize, usize) {
    // SAFETY: the caller passes the kernel's ucontext.
    let mc = unsafe { &(*ctx.cast::<libc::ucontext_t>()).uc_mcontext };
    (mc.pc as usize, mc.sp as usize)
}

/// The signal handler: captures a backtrace only when the thread was interrupted where the
/// monitor found it (see the module docs); otherwise touches nothing but atomics.
extern "C" fn on_signal(_sig: c_int, _info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let generation = GEN.load(Ordering::SeqCst);
    let want_sp = WANT_SP.load(Ordering::SeqCst);
    let want_pc = WANT_PC.load(Ordering::SeqCst);
    // SAFETY: installed with `SA_SIGINFO`, so `ctx` is the kernel's ucontext.
    let (pc, sp) = unsafe { interrupted_at(ctx) };
    if want_sp == 0 || sp != want_sp || pc > want_pc || pc.saturating_add(REWIND) < want_pc {
        return;
    }
    // SAFETY: reading and restoring this thread's errno, which the capture may change.
    let errno = unsafe { *libc::__errno_location() };
    let captured = Box::new(Captured {
        generation,
        backtrace: Backtrace::force_capture(),
    });
    let p = Box::into_raw(captured);
    if RESULT
        .compare_exchange(std::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // SAFETY: `p` came from `Box::into_raw` just above and was not published.
        drop(unsafe { Box::from_raw(p) });
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// The frame of a backtrace's text ([`Backtrace`]'s `Display`) that made the wait: the first
/// one, under the wait's machinery (std, core, alloc, crossbeam, parking_lot, the C library,
/// this handler), that belongs to other code, with its location when known, and the last
/// machinery frame above it (the call it made).
pub(super) fn blamed_frame(text: &str) -> Option<Frame> {
    let mut call: Option<String> = None;
    let mut lines = text.lines().map(str::trim).peekable();
    let mut seen_wait = false;
    while let Some(line) = lines.next() {
        let Some(symbol) = symbol_of(line) else {
            continue;
        };
        let at = match lines.peek() {
            Some(next) if next.starts_with("at ") => Some(next[3..].to_owned()),
            _ => None,
        };
        if is_machinery(symbol) {
            seen_wait |= symbol == "syscall" || symbol.contains("futex");
            if seen_wait && !symbol.starts_with("core::") && !symbol.starts_with('<') {
                call = Some(symbol.to_owned());
            }
            continue;
        }
        if !seen_wait {
            continue;
        }
        return Some(Frame {
            function: symbol.to_owned(),
            at,
            call,
        });
    }
    None
}

/// The function that made a futex wait, from [`blamed_frame`].
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Frame {
    /// Its symbol, such as `app::worker::{{closure}}`.
    pub(super) function: String,
    /// `file:line:column`, when debug information has it.
    pub(super) at: Option<String>,
    /// The library call it made, such as `std::sync::mpmc::Receiver<T>::recv`.
    pub(super) call: Option<String>,
}

/// The symbol of a `   12: name` line (or of an inlined frame's unnumbered line).
fn symbol_of(line: &str) -> Option<&str> {
    if line.starts_with("at ") {
        return None;
    }
    let (index, rest) = line.split_once(": ")?;
    index.chars().all(|c| c.is_ascii_digit()).then_some(rest)
}

/// Whether `symbol` belongs to the waiting machinery rather than the code that waited.
fn is_machinery(symbol: &str) -> bool {
    const MACHINERY: [&str; 17] = [
        "std::",
        "core::",
        "alloc::",
        "crossbeam",
        "parking_lot",
        "lock_api::",
        "greenlet::monitor::frame::",
        "syscall",
        "__restore_rt",
        "__rust_try",
        "__GI_",
        "__futex",
        "__lll",
        // A thread's first frames: the caller was inlined away (a release build).
        "start_thread",
        "clone3",
        "__clone",
        "__libc_start",
    ];
    let bare = symbol.trim_start_matches('<');
    symbol == "<unknown>" || MACHINERY.iter().any(|m| bare.starts_with(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "   0: std::backtrace::Backtrace::force_capture
             at /rustc/x/library/std/src/backtrace.rs:312:9
   1: greenlet::monitor::frame::on_signal
             at ./src/monitor/frame.rs:230:20
   2: <unknown>
   3: syscall
   4: std::sys::pal::unix::futex::futex_wait
             at /rustc/x/library/std/src/sys/pal/unix/futex.rs:72:21
   5: std::sync::mpmc::list::Channel<T>::recv::{{closure}}
             at /rustc/x/library/std/src/sync/mpmc/list.rs:444:21
   6: std::sync::mpmc::Receiver<T>::recv
             at /rustc/x/library/std/src/sync/mpmc/mod.rs:1000:43
   7: <core::cell::Cell<T> as core::fmt::Debug>::fmt
   8: app::worker::{{closure}}
             at ./src/main.rs:40:20
   9: greenlet::greenlet::Inner<T>::run
";

    #[test]
    fn blames_the_first_frame_below_the_wait() {
        let frame = blamed_frame(TEXT).expect("a frame");
        assert_eq!(frame.function, "app::worker::{{closure}}");
        assert_eq!(frame.at.as_deref(), Some("./src/main.rs:40:20"));
        assert_eq!(
            frame.call.as_deref(),
            Some("std::sync::mpmc::Receiver<T>::recv")
        );
    }

    #[test]
    fn no_frame_without_a_wait_or_outside_code() {
        assert_eq!(blamed_frame(""), None);
        assert_eq!(blamed_frame("   0: app::main\n   1: syscall\n"), None);
        let only_std = "   0: syscall\n   1: std::thread::park\n   2: <unknown>\n";
        assert_eq!(blamed_frame(only_std), None);
    }

    #[test]
    fn reads_symbol_lines() {
        assert_eq!(symbol_of("12: app::f"), Some("app::f"));
        assert_eq!(symbol_of("at ./src/main.rs:1:2"), None);
        assert_eq!(symbol_of("note: run with RUST_BACKTRACE"), None);
        assert!(is_machinery("<std::sync::mpmc::Receiver<T>>::recv"));
        assert!(!is_machinery("greenlet::sync::Mutex<T>::lock"));
    }

    #[test]
    fn room_is_checked_against_the_guard() {
        let here = 0u8;
        // The test thread's stack has far more than ROOM below this frame.
        assert!(room_below(std::ptr::addr_of!(here) as usize));
        assert!(!room_below(4096));
    }
}
