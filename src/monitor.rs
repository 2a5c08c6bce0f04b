//! The blocked-worker monitor (gevent's monitor thread and `max_blocking_time`), switched on
//! by [`Config::monitor`](crate::Config::monitor).
//!
//! A greenlet that calls a real blocking function (`std::net`, `std::thread::sleep`, a
//! `std::sync::Mutex` held elsewhere) or computes for a long time without a blocking point
//! holds its worker thread, and every greenlet queued on that thread waits. The monitor
//! notices that and logs at `warn`, once per incident, which greenlet holds which thread and
//! for how long.
//!
//! # How it knows
//!
//! may offers no hook on its coroutine switches, so greenlet marks the switches that pass
//! through its own API: a greenlet starting or ending, and every blocking point of the crate
//! (`sleep`, `yield_now`, joins, `sync` and `queue` waits, `net` sockets, the thread pool,
//! `monkey`'s hooks). Each OS thread that runs greenlets has a slot holding the greenlet it
//! runs now and a counter of those marks. A `greenlet-monitor` thread looks at the slots every
//! quarter of `max_blocking`; a slot whose counter has not moved for `max_blocking` while a
//! greenlet is marked as running is a blocked thread, unless (on Linux) the thread turns out
//! to be waiting in a system call on a stack that is not that greenlet's (then the worker is
//! idle and the greenlet left through a may primitive used directly). On Linux the thread's
//! current system call is read from `/proc/self/task/<tid>/syscall` and named in the report.
//!
//! Cost when on: a thread-local lookup and three relaxed atomic operations around each
//! blocking point (measured by `cargo bench --bench monitor`). When off (the default): one
//! relaxed load.
//!
//! Limits: a greenlet blocked on may's own primitives used directly (`may::sync`) is not seen
//! to switch; if the thread then
//! computes for another such coroutine, the report names the last greenlet the monitor saw.
//!
//! # Futex waits
//!
//! A greenlet waiting in `futex` (a `std::sync` `Mutex`, `Condvar`, `RwLock`, `mpsc`,
//! `thread::park`, crossbeam-channel, `parking_lot`) cannot be made cooperative: those wait on
//! the OS thread's own park token, which every greenlet on the worker shares. The report says
//! "futex wait", what to use instead, and, on Linux with glibc (x86_64, aarch64), the Rust
//! function that waited: [`frame`] has the thread take a backtrace of itself, which this
//! thread symbolises. When the reports cover every worker at once, nothing can run until one
//! returns (often a hang: the greenlet that would wake them is queued behind them), and an
//! error is logged with [`crate::dump`]. The frame costs nothing on the greenlets' path: per
//! futex incident, one signal and a backtrace on the blocked thread, and its symbolisation on
//! this one (measured in a debug test binary: 90–170 ms the first time, which loads the debug
//! information, then about 3 ms).
//!
//! A greenlet waiting in `epoll_wait` drives an event loop of its thread's own (the sync
//! `postgres` client and `reqwest::blocking` run a tokio runtime on the caller's thread), which
//! `monkey` leaves blocking (see its docs): the report says "epoll wait" and recommends the
//! thread pool ([`doing`]).
//!
//! The user-facing description and an example are on [`Config::monitor`](crate::Config::monitor).

#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod doing;
mod frame;

use doing::describe;

use std::cell::OnceCell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::greenlet::{GreenletRef, WeakGreenlet, current, current_id};
use crate::sync::lock;

/// The threshold [`on_by_default_for_monkey`] uses: gevent's `max_blocking_time` default.
pub(crate) const DEFAULT_MAX_BLOCKING: Duration = Duration::from_millis(100);

static ENABLED: AtomicBool = AtomicBool::new(false);
static SLOTS: Mutex<Vec<Arc<Slot>>> = Mutex::new(Vec::new());

thread_local! {
    static SLOT: OnceCell<Arc<Slot>> = const { OnceCell::new() };
}

/// What one OS thread that runs greenlets is doing, as far as greenlet's marks tell.
struct Slot {
    /// The kernel's id of the thread, for `/proc/self/task/<tid>/syscall` (Linux).
    tid: Option<u32>,
    /// Bumped by every mark: unchanged means the thread has not switched greenlets.
    marks: AtomicU64,
    /// The id of the greenlet running on the thread now; 0 while none is.
    running: AtomicU64,
    /// The id of the greenlet in `holder` (which can be stale when `running` is 0).
    held: AtomicU64,
    /// A weak handle on the greenlet last marked running, for its name and stack.
    holder: Mutex<Option<WeakGreenlet>>,
}

/// Whether the monitor is on (cheap: one relaxed load).
#[inline]
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Marks the greenlet `g` as running on this thread (it has just started).
pub(crate) fn started(g: &GreenletRef) {
    if enabled() {
        with_slot(|slot| slot.mark_running(g.id(), || Some(g.downgrade())));
    }
}

/// Marks this thread as running no greenlet (the running one has ended).
pub(crate) fn ended() {
    if enabled() {
        with_slot(Slot::mark_idle);
    }
}

/// Runs `f`, a blocking point of the crate called `what` (for [`crate::dump`]): the thread is
/// marked free while `f` may park, and the calling greenlet marked running again when it is
/// back (also when `f` unwinds).
#[inline]
pub(crate) fn blocking<R>(what: &'static str, f: impl FnOnce() -> R) -> R {
    blocking_until(what, None, f)
}

/// [`blocking`] for a wait that times out at `deadline`.
#[inline]
pub(crate) fn blocking_until<R>(
    what: &'static str,
    deadline: Option<Instant>,
    f: impl FnOnce() -> R,
) -> R {
    crate::deadline::drain();
    crate::greenlet::kill::blocking_point();
    let _waiting = crate::greenlet::waiting(what, deadline);
    let _back = enabled().then(Parked::enter);
    // may raises a kill from inside its own waits: mark it delivered here, below every frame
    // of the user's, whatever panic hook is installed (see `greenlet::kill`).
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            if crate::panic::is_cancel(&*payload) && may::coroutine::is_coroutine() {
                crate::greenlet::kill::unwind_started();
            }
            std::panic::resume_unwind(payload)
        }
    }
}

/// Marks the thread free on creation, and the current greenlet running on drop.
struct Parked {
    in_greenlet: bool,
}

impl Parked {
    fn enter() -> Parked {
        let in_greenlet = current_id().is_some();
        if in_greenlet {
            with_slot(Slot::mark_idle);
        }
        Parked { in_greenlet }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        if !self.in_greenlet {
            return;
        }
        // The greenlet may have moved to another thread while parked: look it up again.
        if let Some(id) = current_id() {
            with_slot(|slot| slot.mark_running(id, || current().map(|g| g.downgrade())));
        }
    }
}

/// Runs `f` with this thread's slot, registering the thread on first use. Not inlined, so the
/// thread-local's address is computed afresh on every call: a greenlet can resume on another
/// thread after a blocking point.
#[inline(never)]
fn with_slot(f: impl FnOnce(&Slot)) {
    SLOT.with(|cell| f(cell.get_or_init(register)));
}

fn register() -> Arc<Slot> {
    let slot = Arc::new(Slot {
        tid: thread_id(),
        marks: AtomicU64::new(0),
        running: AtomicU64::new(0),
        held: AtomicU64::new(0),
        holder: Mutex::new(None),
    });
    lock(&SLOTS).push(slot.clone());
    slot
}

impl Slot {
    /// Marks greenlet `id` as running; `weak` gives its handle when the slot holds another.
    fn mark_running(&self, id: u64, weak: impl FnOnce() -> Option<WeakGreenlet>) {
        if self.held.load(Ordering::Relaxed) != id {
            *lock(&self.holder) = weak();
            self.held.store(id, Ordering::Release);
        }
        self.running.store(id, Ordering::Release);
        self.marks.fetch_add(1, Ordering::Release);
    }

    fn mark_idle(&self) {
        self.running.store(0, Ordering::Release);
        self.marks.fetch_add(1, Ordering::Release);
    }
}

/// The calling thread's kernel id, read from `/proc/thread-self` (`<pid>/task/<tid>`).
fn thread_id() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Switches the monitor on with gevent's threshold ([`DEFAULT_MAX_BLOCKING`], 100 ms) unless
/// the program chose a setting: [`Config::monitor`](crate::Config::monitor) (a zero duration,
/// off, included) or `GREENLET_MAX_BLOCKING_MS` (`0`, off, included). Starts the runtime
/// first if needed; idempotent. `monkey::patch_all` calls it (issue 15: futex waits that
/// monkey cannot make cooperative are diagnosed, never left as a silent hang). Returns whether
/// it started the monitor.
#[cfg_attr(
    not(all(feature = "monkey", target_os = "linux")),
    allow(dead_code, reason = "called by monkey::patch_all")
)]
pub(crate) fn on_by_default_for_monkey() -> bool {
    crate::config::monitor_unless_chosen(DEFAULT_MAX_BLOCKING)
}

/// Starts the monitor thread, once (a second call does nothing).
pub(crate) fn start(max_blocking: Duration) {
    if ENABLED.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("greenlet-monitor".into())
        .spawn(move || watch(max_blocking));
    if let Err(e) = spawned {
        ENABLED.store(false, Ordering::Release);
        log::warn!("cannot start the greenlet monitor thread: {e}");
    } else {
        log::debug!("greenlet monitor started: max_blocking {max_blocking:?}");
    }
}

/// The monitor's view of one slot.
struct Watch {
    slot: Arc<Slot>,
    marks: u64,
    since: Instant,
    /// Set once the current incident has been reported (so it is reported once).
    reported: Option<Incident>,
    /// The marked greenlet is known not to be running (see `check`).
    stale: bool,
}

/// A reported incident, for the all-workers-blocked error.
struct Incident {
    id: u64,
    /// `greenlet <name> (id <id>): it is ...`.
    who: String,
}

fn watch(max_blocking: Duration) {
    #[cfg(all(
        target_os = "linux",
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    frame::install();
    let workers = crate::config::settings().workers;
    let tick = (max_blocking / 4).clamp(Duration::from_millis(1), Duration::from_secs(1));
    let mut watches: Vec<Watch> = Vec::new();
    let mut all_blocked = false;
    loop {
        std::thread::sleep(tick);
        let now = Instant::now();
        let slots = lock(&SLOTS).clone();
        for slot in slots.into_iter().skip(watches.len()) {
            let marks = slot.marks.load(Ordering::Acquire);
            watches.push(Watch {
                slot,
                marks,
                since: now,
                reported: None,
                stale: false,
            });
        }
        for w in &mut watches {
            check(w, now, max_blocking);
        }
        let blocked = watches.iter().filter(|w| w.reported.is_some()).count();
        if blocked >= workers && !all_blocked {
            report_all_blocked(&watches, workers);
        }
        all_blocked = blocked >= workers;
    }
}

fn check(w: &mut Watch, now: Instant, max_blocking: Duration) {
    let marks = w.slot.marks.load(Ordering::Acquire);
    if marks != w.marks {
        if let Some(incident) = w.reported.take() {
            log::debug!(
                "greenlet id {} released its thread after {} ms",
                incident.id,
                now.duration_since(w.since).as_millis()
            );
        }
        w.marks = marks;
        w.since = now;
        w.stale = false;
        return;
    }
    let id = w.slot.running.load(Ordering::Acquire);
    if id == 0 || w.stale || w.reported.is_some() {
        return;
    }
    let Some(g) = holder(&w.slot, id) else { return };
    let call = w.slot.tid.and_then(system_call);
    // The thread waits on a stack that is not the marked greenlet's: the greenlet parked
    // through may directly and the thread went idle. Whatever it runs until the next mark is
    // not that greenlet, so this stretch is never reported under its name.
    if matches!(call, Some(Call::Waiting { sp, .. }) if !g.stack_contains(sp)) {
        w.stale = true;
        return;
    }
    let held_for = now.duration_since(w.since);
    if held_for < max_blocking {
        return;
    }
    let doing = describe(call, w.slot.tid);
    let thread = w.slot.tid.map_or_else(|| "?".to_owned(), |t| t.to_string());
    let advice = doing.advice;
    log::warn!(
        "greenlet {} (id {id}) has held its worker thread (tid {thread}) for {} ms without \
         switching, longer than the monitor's {} ms: {}. Every greenlet queued on that \
         thread waits meanwhile; {advice}",
        g.name(),
        held_for.as_millis(),
        max_blocking.as_millis(),
        doing.text,
    );
    w.reported = Some(Incident {
        id,
        who: format!("greenlet {} (id {id}): {}", g.name(), doing.text),
    });
}

/// Logs, at `error`, that every worker is blocked: which greenlets hold them, and the dump.
#[cold]
fn report_all_blocked(watches: &[Watch], workers: usize) {
    let now = Instant::now();
    let mut who = String::new();
    for w in watches {
        if let Some(incident) = &w.reported {
            let ms = now.duration_since(w.since).as_millis();
            let _ = write!(who, "\n  {} (for {ms} ms)", incident.who);
        }
    }
    log::error!(
        "every worker thread ({workers}) is blocked: no greenlet can run until one of these \
         returns, and if the greenlet that would wake them is queued behind them, never:{who}\n\
         {}",
        crate::greenlet::dump()
    );
}

/// The greenlet marked running in `slot`, if it is `id` and still alive.
fn holder(slot: &Slot, id: u64) -> Option<GreenletRef> {
    let holder = lock(&slot.holder);
    if slot.held.load(Ordering::Acquire) != id {
        return None;
    }
    holder.as_ref()?.upgrade()
}

/// What a thread is doing, from `/proc/self/task/<tid>/syscall`.
#[derive(Debug, PartialEq, Eq)]
enum Call {
    /// In system call `nr`, with stack pointer `sp` and program counter `pc`.
    Waiting { nr: i64, sp: usize, pc: usize },
    /// Running user code.
    Running,
}

fn system_call(tid: u32) -> Option<Call> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    parse_syscall(&text)
}

/// Parses `/proc/<pid>/task/<tid>/syscall`: `running`, or the call number, six arguments, the
/// stack pointer and the program counter (`-1 sp pc` when blocked outside a system call).
fn parse_syscall(text: &str) -> Option<Call> {
    let text = text.trim();
    if text == "running" {
        return Some(Call::Running);
    }
    let fields: Vec<&str> = text.split_whitespace().collect();
    let nr: i64 = fields.first()?.parse().ok()?;
    if nr < 0 || fields.len() < 3 {
        return None;
    }
    let hex = |s: &str| usize::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    let sp = hex(fields[fields.len() - 2])?;
    let pc = hex(fields[fields.len() - 1])?;
    Some(Call::Waiting { nr, sp, pc })
}

#[cfg(test)]
mod tests {
    use super::doing::{FUTEX_ADVICE, is_epoll_wait, is_futex};
    use super::*;

    #[test]
    fn parses_proc_syscall() {
        assert_eq!(parse_syscall("running\n"), Some(Call::Running));
        assert_eq!(
            parse_syscall(
                "230 0x1 0x1 0x7fe2f3998ab0 0x0 0x0 0x7fe2 0x7fe2f3998a70 0x7fe2f40ed545\n"
            ),
            Some(Call::Waiting {
                nr: 230,
                sp: 0x7fe2f3998a70,
                pc: 0x7fe2f40ed545
            })
        );
        assert_eq!(parse_syscall("-1 0x7ffc0baef9c0 0x7fe2f41162ec"), None);
        assert_eq!(parse_syscall("202 0x1"), None);
        assert_eq!(parse_syscall("202 0x1 0x2 sp pc"), None);
        assert_eq!(parse_syscall(""), None);
        assert_eq!(parse_syscall("garbage"), None);
    }

    /// A plain thread blocked in `mpsc::Receiver::recv`, with its kernel id.
    fn thread_in_recv() -> (
        u32,
        std::sync::mpsc::Sender<()>,
        std::thread::JoinHandle<()>,
    ) {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tid_tx.send(thread_id().unwrap()).unwrap();
            let _ = rx.recv();
        });
        let tid = tid_rx.recv().unwrap();
        (tid, tx, t)
    }

    /// The thread's current system call, once it is in one (bounded).
    fn waiting(tid: u32) -> Call {
        let start = Instant::now();
        loop {
            if let Some(call @ Call::Waiting { .. }) = system_call(tid) {
                return call;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "never waited");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_std_channel_wait_is_a_futex_wait() {
        let (tid, tx, t) = thread_in_recv();
        let call = waiting(tid);
        let Call::Waiting { nr, .. } = call else {
            unreachable!()
        };
        assert!(is_futex(nr), "{call:?}");
        let doing = describe(Some(call), Some(tid));
        assert_eq!(doing.advice, FUTEX_ADVICE);
        assert!(doing.text.contains("futex wait"), "{}", doing.text);
        tx.send(()).unwrap();
        t.join().unwrap();
        assert!(!is_futex(230));
        assert!(!is_epoll_wait(nr));
    }

    #[cfg(all(
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn the_frame_of_a_futex_wait_is_found() {
        frame::install();
        let (tid, tx, t) = thread_in_recv();
        let Call::Waiting { sp, pc, .. } = waiting(tid) else {
            unreachable!()
        };
        let start = Instant::now();
        let text = frame::capture(tid, pc, sp)
            .expect("a backtrace")
            .to_string();
        let took = start.elapsed();
        tx.send(()).unwrap();
        t.join().unwrap();
        match frame::blamed_frame(&text) {
            Some(f) => assert!(
                f.function.contains("thread_in_recv"),
                "{f:?} ({took:?})\n{text}"
            ),
            // Optimised, the closure is inlined into std's thread start: no frame of ours.
            None if cfg!(debug_assertions) => panic!("no frame ({took:?})\n{text}"),
            None => {}
        }
    }

    #[test]
    fn monkey_turns_the_monitor_on_unless_chosen() {
        if std::env::var_os("GREENLET_MAX_BLOCKING_MS").is_some() {
            return; // the variable is a choice: covered by tests/monitor_env.rs
        }
        // Nothing else in this test binary configures the monitor.
        assert!(on_by_default_for_monkey());
        assert!(enabled());
        assert_eq!(crate::settings().monitor, Some(DEFAULT_MAX_BLOCKING));
        assert!(!on_by_default_for_monkey(), "idempotent");
    }

    #[test]
    fn reads_its_own_thread_id() {
        let tid = thread_id().expect("Linux has /proc/thread-self");
        assert!(std::fs::metadata(format!("/proc/self/task/{tid}")).is_ok());
    }

    #[test]
    fn an_epoll_wait_is_named_with_its_advice() {
        #[allow(
            clippy::useless_conversion,
            reason = "`c_long` is `i32` on 32-bit targets"
        )]
        let nr = i64::from(libc::SYS_epoll_pwait);
        assert!(is_epoll_wait(nr) && !is_futex(nr));
        let doing = describe(Some(Call::Waiting { nr, sp: 0, pc: 0 }), None);
        assert!(doing.text.contains("epoll wait"), "{}", doing.text);
        assert!(doing.advice.contains("spawn_blocking"), "{}", doing.advice);
    }
}
