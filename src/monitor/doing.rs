//! What a blocked worker thread is doing, in words, and what its report recommends: a futex
//! wait (a std lock or channel, with the Rust frame that made it where [`super::frame`] can
//! find it), an epoll wait (an event loop of the thread's own), or another system call.

use std::time::Instant;

use super::Call;
#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
use super::frame;

/// What a futex wait's report recommends.
pub(super) const FUTEX_ADVICE: &str = "a std::sync Mutex/Condvar/RwLock/mpsc, thread::park or crossbeam \
    wait cannot be made cooperative: use greenlet::sync (Mutex, Condvar, RwLock, Event) or \
    greenlet::queue (Queue, Channel) between greenlets, threadpool::spawn_blocking for a call \
    that must block, or a tokio bridge for a tokio-based client";

/// What an epoll wait's report recommends.
const EPOLL_ADVICE: &str = "a thread's own event loop (a tokio runtime inside a sync client such \
    as postgres or reqwest::blocking) keeps per-thread state that greenlets sharing a worker \
    would share, so monkey leaves it blocking: call such a client through \
    threadpool::spawn_blocking, or use its async API through a tokio bridge";

/// What any other blocking report recommends.
const OTHER_ADVICE: &str = "use greenlet's cooperative API, `monkey::patch_all`, or \
    `threadpool::spawn_blocking` for blocking calls";

/// What a blocked thread is doing, for its report.
pub(super) struct Doing {
    pub(super) text: String,
    pub(super) advice: &'static str,
}

/// Describes the thread's current call; for a futex wait, names the Rust frame that made it
/// where [`frame`] can find it.
pub(super) fn describe(call: Option<Call>, tid: Option<u32>) -> Doing {
    let text = match call {
        Some(Call::Waiting { nr, sp, pc }) if is_futex(nr) => {
            let frame = futex_frame(tid, pc, sp);
            return Doing {
                text: format!("it is blocked in a futex wait (system call {nr}){frame}"),
                advice: FUTEX_ADVICE,
            };
        }
        Some(Call::Waiting { nr, .. }) if is_epoll_wait(nr) => {
            return Doing {
                text: format!("it is blocked in an epoll wait (system call {nr})"),
                advice: EPOLL_ADVICE,
            };
        }
        Some(Call::Waiting { nr, .. }) => format!("it is blocked in system call {nr}"),
        Some(Call::Running) => "it is computing".to_owned(),
        None => "it has not reached a blocking point".to_owned(),
    };
    Doing {
        text,
        advice: OTHER_ADVICE,
    }
}

/// `epoll_pwait2` (Linux 5.11), the same number on every architecture.
const SYS_EPOLL_PWAIT2: i64 = 441;

/// `epoll_wait`, `epoll_pwait` or `epoll_pwait2`: a thread driving an event loop of its own.
#[allow(
    clippy::useless_conversion,
    reason = "`c_long` is `i32` on 32-bit targets"
)]
pub(super) fn is_epoll_wait(nr: i64) -> bool {
    #[cfg(target_arch = "x86_64")]
    let plain = nr == i64::from(libc::SYS_epoll_wait);
    #[cfg(not(target_arch = "x86_64"))]
    let plain = false;
    plain || nr == i64::from(libc::SYS_epoll_pwait) || nr == SYS_EPOLL_PWAIT2
}

/// `futex_waitv` (Linux 5.16), the same number on every architecture.
const SYS_FUTEX_WAITV: i64 = 449;

#[allow(
    clippy::useless_conversion,
    reason = "`c_long` is `i32` on 32-bit targets"
)]
pub(super) fn is_futex(nr: i64) -> bool {
    nr == i64::from(libc::SYS_futex) || nr == SYS_FUTEX_WAITV
}

/// `" in `f` at file:line, through `call`"` for the frame that made the futex wait, or
/// nothing when it cannot be captured (see [`frame`]).
#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn futex_frame(tid: Option<u32>, pc: usize, sp: usize) -> String {
    let start = Instant::now();
    let Some(backtrace) = tid.and_then(|tid| frame::capture(tid, pc, sp)) else {
        log::debug!("greenlet monitor: no backtrace of the futex wait (see monitor::frame)");
        return String::new();
    };
    let text = backtrace.to_string();
    log::debug!(
        "greenlet monitor: backtrace of a futex wait taken and symbolised in {:?}",
        start.elapsed()
    );
    let Some(f) = frame::blamed_frame(&text) else {
        return String::new();
    };
    let at = f.at.map(|at| format!(" at {at}")).unwrap_or_default();
    let call = f
        .call
        .map(|c| format!(", through `{c}`"))
        .unwrap_or_default();
    format!(" in `{}`{at}{call}", f.function)
}

#[cfg(not(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn futex_frame(_tid: Option<u32>, _pc: usize, _sp: usize) -> String {
    String::new()
}
