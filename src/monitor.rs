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
//! The user-facing description and an example are on [`Config::monitor`](crate::Config::monitor).

use std::cell::OnceCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::greenlet::{GreenletRef, WeakGreenlet, current, current_id};
use crate::sync::lock;

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

/// Starts the monitor thread; called once, when the runtime starts.
pub(crate) fn start(max_blocking: Duration) {
    ENABLED.store(true, Ordering::Release);
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
    reported: Option<u64>,
    /// The marked greenlet is known not to be running (see `check`).
    stale: bool,
}

fn watch(max_blocking: Duration) {
    let tick = (max_blocking / 4).clamp(Duration::from_millis(1), Duration::from_secs(1));
    let mut watches: Vec<Watch> = Vec::new();
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
    }
}

fn check(w: &mut Watch, now: Instant, max_blocking: Duration) {
    let marks = w.slot.marks.load(Ordering::Acquire);
    if marks != w.marks {
        if let Some(id) = w.reported.take() {
            log::debug!(
                "greenlet id {id} released its thread after {} ms",
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
    let doing = match w.slot.tid.and_then(system_call) {
        Some(Call::Waiting { nr, sp }) if g.stack_contains(sp) => {
            format!("it is blocked in system call {nr}")
        }
        // The thread waits on a stack that is not the marked greenlet's: the greenlet parked
        // through may directly and the thread went idle. Whatever it runs until the next mark
        // is not that greenlet, so this stretch is never reported under its name.
        Some(Call::Waiting { .. }) => {
            w.stale = true;
            return;
        }
        Some(Call::Running) => "it is computing".to_owned(),
        None => "it has not reached a blocking point".to_owned(),
    };
    let held_for = now.duration_since(w.since);
    if held_for < max_blocking {
        return;
    }
    let thread = w.slot.tid.map_or_else(|| "?".to_owned(), |t| t.to_string());
    log::warn!(
        "greenlet {} (id {id}) has held its worker thread (tid {thread}) for {} ms without \
         switching, longer than the monitor's {} ms: {doing}. Every greenlet queued on that \
         thread waits meanwhile; use greenlet's cooperative API, `monkey::patch_all`, or \
         `threadpool::spawn_blocking` for blocking calls",
        g.name(),
        held_for.as_millis(),
        max_blocking.as_millis(),
    );
    w.reported = Some(id);
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
    /// In system call `nr`, with stack pointer `sp`.
    Waiting { nr: i64, sp: usize },
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
    if nr < 0 {
        return None;
    }
    let sp = fields.get(fields.len().checked_sub(2)?)?;
    let sp = usize::from_str_radix(sp.strip_prefix("0x")?, 16).ok()?;
    Some(Call::Waiting { nr, sp })
}

#[cfg(test)]
mod tests {
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
                sp: 0x7fe2f3998a70
            })
        );
        assert_eq!(parse_syscall("-1 0x7ffc0baef9c0 0x7fe2f41162ec"), None);
        assert_eq!(parse_syscall(""), None);
        assert_eq!(parse_syscall("garbage"), None);
    }

    #[test]
    fn reads_its_own_thread_id() {
        let tid = thread_id().expect("Linux has /proc/thread-self");
        assert!(std::fs::metadata(format!("/proc/self/task/{tid}")).is_ok());
    }
}
