//! `dump()`: every live greenlet, what it waits on and where it was spawned (gevent's
//! `format_run_info`).
//!
//! Every greenlet is registered from its spawn until it is done, in a sharded table of weak
//! handles (one short lock per spawn and per end). What a greenlet waits on is recorded at
//! the crate's blocking points only while wait tracking is on ([`track_waits`]), so it costs
//! one relaxed load per blocking point when off.

use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{Erased, with_current_meta};
use crate::sync::lock;

const SHARDS: usize = 16;

/// One shard of the live greenlets: slots reused through a free list, so registering and
/// unregistering cost no search and, once the table has grown, no allocation.
#[derive(Default)]
struct Table {
    slots: Vec<Option<(u64, Weak<dyn Erased>)>>,
    free: Vec<usize>,
}

static LIVE: [Mutex<Table>; SHARDS] = [const {
    Mutex::new(Table {
        slots: Vec::new(),
        free: Vec::new(),
    })
}; SHARDS];
static TRACK: AtomicBool = AtomicBool::new(false);

fn shard(id: u64) -> &'static Mutex<Table> {
    &LIVE[(id % SHARDS as u64) as usize]
}

/// Registers greenlet `id` (its handle may not be upgradable yet); returns its slot for
/// [`unregister`].
pub(super) fn register(id: u64, g: Weak<dyn Erased>) -> usize {
    let mut t = lock(shard(id));
    match t.free.pop() {
        Some(slot) => {
            t.slots[slot] = Some((id, g));
            slot
        }
        None => {
            t.slots.push(Some((id, g)));
            t.slots.len() - 1
        }
    }
}

/// Unregisters greenlet `id` from `slot` (a no-op if the slot holds another greenlet).
pub(super) fn unregister(id: u64, slot: usize) {
    let old = {
        let mut t = lock(shard(id));
        match t.slots.get_mut(slot) {
            Some(entry) if entry.as_ref().is_some_and(|(i, _)| *i == id) => {
                t.free.push(slot);
                t.slots[slot].take()
            }
            _ => None,
        }
    };
    // The weak handle is released outside the lock.
    drop(old);
}

/// What a greenlet waits on, while wait tracking is on.
#[derive(Default)]
pub(super) struct WaitSlot(Mutex<Option<WaitInfo>>);

/// Switches wait tracking on or off (off by default): while on, every blocking point of the
/// crate records what the greenlet waits on, since when and until when, and [`dump`] shows
/// it. It costs a lookup and a clock read per blocking point; off, one relaxed load.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// greenlet::track_waits(true);
/// let g = greenlet::Builder::new()
///     .name("sleeper")
///     .spawn(|| greenlet::sleep(Duration::from_secs(5)))?;
/// greenlet::sleep(Duration::from_millis(20));
/// let d = greenlet::dump();
/// let me = d.greenlets().iter().find(|i| i.id() == g.id()).unwrap();
/// assert_eq!(me.waiting().map(|w| w.what()), Some("sleep"));
/// g.kill();
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn track_waits(on: bool) {
    TRACK.store(on, Ordering::Relaxed);
}

/// Records, while tracking is on, that the calling greenlet waits on `what` until `deadline`;
/// the record is cleared when the returned guard drops.
#[inline]
pub(crate) fn waiting(what: &'static str, deadline: Option<Instant>) -> Waiting {
    if !TRACK.load(Ordering::Relaxed) {
        return Waiting(false);
    }
    let info = WaitInfo {
        what,
        since: Instant::now(),
        deadline,
    };
    let set = with_current_meta(|m| *lock(&m.wait.0) = Some(info)).is_some();
    Waiting(set)
}

/// Clears a greenlet's wait record (see [`waiting`]).
pub(crate) struct Waiting(bool);

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.0 {
            with_current_meta(|m| *lock(&m.wait.0) = None);
        }
    }
}

/// What a parked greenlet waits on (tracked while [`track_waits`] is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitInfo {
    what: &'static str,
    since: Instant,
    deadline: Option<Instant>,
}

impl WaitInfo {
    /// The blocking call, such as `"sleep"`, `"Queue::get"` or `"TcpStream::read"`.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// When the wait began.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// When the wait times out; `None` for a wait without a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

/// Where a greenlet is, as far as [`dump`] can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GreenletState {
    /// Parked at a blocking point of the crate (known while [`track_waits`] is on).
    Parked,
    /// Running or ready to run: not at a blocking point (known while tracking is on).
    Running,
    /// Not known: wait tracking is off, and the greenlet has not finished.
    Unknown,
    /// Its body has returned; its [`link`](crate::Greenlet::link) callbacks are running.
    Finishing,
}

/// One live greenlet in a [`Dump`].
#[derive(Debug, Clone)]
pub struct GreenletInfo {
    id: u64,
    name: String,
    state: GreenletState,
    waiting: Option<WaitInfo>,
    spawned_at: &'static Location<'static>,
    kill_requested: bool,
}

impl GreenletInfo {
    /// The greenlet's id ([`Greenlet::id`](crate::Greenlet::id)).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The greenlet's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it is.
    pub fn state(&self) -> GreenletState {
        self.state
    }

    /// What it waits on, if parked and tracked.
    pub fn waiting(&self) -> Option<&WaitInfo> {
        self.waiting.as_ref()
    }

    /// Where `spawn` (or `Builder::spawn`, `go!`, `Pool::spawn`) was called.
    pub fn spawned_at(&self) -> &'static Location<'static> {
        self.spawned_at
    }

    /// Whether a kill (or its [`Timeout`](crate::Timeout)) has been requested.
    pub fn kill_requested(&self) -> bool {
        self.kill_requested
    }
}

/// A snapshot of every live greenlet, by id: what [`dump`] returns. Its `Display` is one line
/// per greenlet.
#[derive(Debug, Clone)]
pub struct Dump {
    taken: Instant,
    greenlets: Vec<GreenletInfo>,
}

impl Dump {
    /// The greenlets, in spawn order.
    pub fn greenlets(&self) -> &[GreenletInfo] {
        &self.greenlets
    }

    /// How many greenlets were live.
    pub fn len(&self) -> usize {
        self.greenlets.len()
    }

    /// Whether no greenlet was live.
    pub fn is_empty(&self) -> bool {
        self.greenlets.is_empty()
    }
}

/// Lists every live greenlet: id, name, state, what it waits on (while [`track_waits`] is on)
/// and where it was spawned (gevent's `format_run_info`). When something hangs, print it.
///
/// Cheap when unused: the registry costs one short lock per spawn and per end.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let g = greenlet::Builder::new()
///     .name("napper")
///     .spawn(|| greenlet::sleep(Duration::from_secs(5)))?;
/// let d = greenlet::dump();
/// assert!(d.greenlets().iter().any(|i| i.name() == "napper"));
/// println!("{d}");
/// g.kill();
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn dump() -> Dump {
    let mut greenlets = Vec::new();
    let tracked = TRACK.load(Ordering::Relaxed);
    let mut live: Vec<Arc<dyn Erased>> = Vec::new();
    for table in &LIVE {
        let t = lock(table);
        live.extend(t.slots.iter().flatten().filter_map(|(_, g)| g.upgrade()));
    }
    for g in live {
        let m = g.meta();
        let waiting = *lock(&m.wait.0);
        let state = if !m.running.load(Ordering::Acquire) {
            GreenletState::Finishing
        } else if waiting.is_some() {
            GreenletState::Parked
        } else if tracked {
            GreenletState::Running
        } else {
            GreenletState::Unknown
        };
        greenlets.push(GreenletInfo {
            id: m.id,
            name: m.name().to_owned(),
            state,
            waiting,
            spawned_at: m.spawned_at,
            kill_requested: m.kill.requested(),
        });
    }
    greenlets.sort_by_key(|g| g.id);
    Dump {
        taken: Instant::now(),
        greenlets,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

impl fmt::Display for Dump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} live greenlet(s)", self.greenlets.len())?;
        for g in &self.greenlets {
            write!(f, "  #{} {:?}: ", g.id, g.name)?;
            match (&g.state, &g.waiting) {
                (GreenletState::Parked, Some(w)) => {
                    write!(
                        f,
                        "parked in {} for {}",
                        w.what,
                        ms(self.taken.saturating_duration_since(w.since))
                    )?;
                    match w.deadline {
                        Some(d) if d > self.taken => {
                            write!(f, ", deadline in {}", ms(d - self.taken))?
                        }
                        Some(d) => write!(f, ", deadline passed {} ago", ms(self.taken - d))?,
                        None => write!(f, ", no deadline")?,
                    }
                }
                (GreenletState::Running, _) => write!(f, "running or ready")?,
                (GreenletState::Finishing, _) => write!(f, "finishing (links running)")?,
                _ => write!(f, "state unknown (wait tracking off)")?,
            }
            if g.kill_requested {
                write!(f, ", kill requested")?;
            }
            writeln!(f, "; spawned at {}", g.spawned_at)?;
        }
        Ok(())
    }
}
