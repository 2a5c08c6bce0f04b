//! What stream and datagram servers share: the serving loop's greenlet, the tracking of
//! handler greenlets, the concurrency limit and graceful `stop`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sync::Semaphore;
use crate::sync::waiters::Flag;

use crate::greenlet::{Builder, Greenlet, GreenletRef, current};
use crate::sync::lock;

/// Back-off after a failing `accept`/`recv` (e.g. out of file descriptors), doubling from
/// the first to the last (gevent's `min_delay`/`max_delay`).
pub(crate) const MIN_DELAY: Duration = Duration::from_millis(10);
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Track {
    /// Handlers that have started, by greenlet id.
    live: HashMap<u64, GreenletRef>,
    /// Handlers spawned and not yet ended (started or not).
    inflight: usize,
    /// After the grace period of `stop`: handlers are killed, also those starting late.
    killing: bool,
    /// Fired when `inflight` reaches zero during `stop`.
    drained: Option<Arc<Flag>>,
}

/// The state a server shares with its loop and handler greenlets.
pub(crate) struct Core {
    what: &'static str,
    track: Mutex<Track>,
    limit: AtomicUsize,
    permits: Mutex<Option<Arc<Semaphore>>>,
    serving: Mutex<Option<Greenlet<()>>>,
    stopped: Flag,
    /// Called while an accepted connection waits for a free slot (an HTTP server closes an
    /// idle connection to make room).
    on_full: Mutex<Option<OnFull>>,
}

/// See `Core::on_full`.
pub(crate) type OnFull = Arc<dyn Fn() + Send + Sync>;

/// How often `on_full` is called again while the loop still waits for a slot.
const FULL_POLL: Duration = Duration::from_millis(100);

impl Core {
    pub(crate) fn new(what: &'static str) -> Core {
        Core {
            what,
            track: Mutex::new(Track::default()),
            limit: AtomicUsize::new(0),
            permits: Mutex::new(None),
            serving: Mutex::new(None),
            stopped: Flag::new(),
            on_full: Mutex::new(None),
        }
    }

    /// Sets the most handlers that may run at once (0 = no limit); read by `start`.
    pub(crate) fn set_limit(&self, n: usize) {
        self.limit.store(n, Ordering::Relaxed);
    }

    /// Sets what to call while an accepted connection waits for a free slot.
    pub(crate) fn set_on_full(&self, f: OnFull) {
        *lock(&self.on_full) = Some(f);
    }

    /// Spawns the serving loop. `serve` gets a function that waits for a free handler slot.
    pub(crate) fn start<F>(self: &Arc<Self>, name: String, serve: F) -> std::io::Result<()>
    where
        F: FnOnce(Slots) + Send + 'static,
    {
        let mut serving = lock(&self.serving);
        if serving.is_some() || self.stopped.is_fired() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("this {} was already started", self.what),
            ));
        }
        let permits = match self.limit.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Arc::new(Semaphore::new(n))),
        };
        lock(&self.permits).clone_from(&permits);
        let slots = Slots {
            core: self.clone(),
            permits,
        };
        *serving = Some(Builder::new().name(name).spawn(move || serve(slots))?);
        Ok(())
    }

    /// Starts with `start` unless already started, then waits until the server is stopped.
    pub(crate) fn serve_forever(
        &self,
        start: impl FnOnce() -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        match start() {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            other => other?,
        }
        self.wait();
        Ok(())
    }

    /// Waits until the server has been stopped (or its loop has ended).
    fn wait(&self) {
        let serving = lock(&self.serving).as_ref().map(Greenlet::handle);
        if let Some(g) = serving {
            g.join();
        }
    }

    /// Stops the loop, lets handlers finish for `grace`, then kills the rest and waits for
    /// them. Returns how many handlers were still in flight after `grace` (and so killed).
    pub(crate) fn stop(&self, grace: Duration) -> usize {
        self.stopped.fire();
        // Never hold a std lock across a blocking call: clone the handle first.
        let serving = lock(&self.serving).as_ref().map(Greenlet::handle);
        if let Some(g) = serving {
            g.kill();
        }
        let drained = {
            let mut track = lock(&self.track);
            if track.inflight == 0 {
                return 0;
            }
            track.drained.get_or_insert_with(Default::default).clone()
        };
        if drained.wait_until("Server::stop", crate::deadline::deadline(grace)) {
            return 0;
        }
        // Every handler still in flight now is killed: those running at once, those not yet
        // started at their first blocking point (see `Ticket::started`).
        let (doomed, in_flight): (Vec<GreenletRef>, usize) = {
            let mut track = lock(&self.track);
            track.killing = true;
            (track.live.values().cloned().collect(), track.inflight)
        };
        log::debug!(
            "{}: killing {in_flight} handlers still running after {grace:?}",
            self.what
        );
        for g in &doomed {
            g.kill_nowait();
        }
        drained.wait("Server::stop");
        in_flight
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.is_fired()
    }

    pub(crate) fn handlers(&self) -> usize {
        lock(&self.track).inflight
    }
}

/// Handed to the serving loop: reserves a handler slot (waiting while the limit is reached).
pub(crate) struct Slots {
    core: Arc<Core>,
    permits: Option<Arc<Semaphore>>,
}

impl Slots {
    /// Waits for a free slot and returns a ticket for one handler; it counts as in flight
    /// once [`Ticket::admit`] is called (after the connection or datagram arrived).
    pub(crate) fn reserve(&self) -> Ticket {
        if let Some(p) = &self.permits {
            p.acquire_raw();
        }
        self.ticket()
    }

    /// A ticket if a slot is free now.
    pub(crate) fn try_reserve(&self) -> Option<Ticket> {
        match &self.permits {
            Some(p) => p.try_acquire().map(|g| {
                g.forget();
                self.ticket()
            }),
            None => Some(self.ticket()),
        }
    }

    /// The hook to call at the limit, if any: then a connection is accepted before its slot is
    /// free, and [`reserve_making_room`](Self::reserve_making_room) waits for the slot.
    pub(crate) fn on_full(&self) -> Option<OnFull> {
        lock(&self.core.on_full).clone()
    }

    /// Waits for a slot for a connection already accepted, calling `on_full` at once and then
    /// every 100 ms while the limit is reached (it closes an idle connection to make room).
    pub(crate) fn reserve_making_room(&self, on_full: &OnFull) -> Ticket {
        if let Some(p) = &self.permits {
            loop {
                on_full();
                if let Some(g) = p.acquire_timeout(FULL_POLL) {
                    g.forget();
                    break;
                }
            }
        }
        self.ticket()
    }

    fn ticket(&self) -> Ticket {
        Ticket {
            core: self.core.clone(),
            permits: self.permits.clone(),
            admitted: false,
            id: None,
        }
    }

    pub(crate) fn what(&self) -> &'static str {
        self.core.what
    }
}

/// One handler's place in the server; moved into the handler greenlet, released on drop
/// (when the handler returns, panics or is killed, or if it never ran).
pub(crate) struct Ticket {
    core: Arc<Core>,
    permits: Option<Arc<Semaphore>>,
    admitted: bool,
    id: Option<u64>,
}

impl Ticket {
    /// Counts the handler as in flight: `stop` now waits for it.
    pub(crate) fn admit(&mut self) {
        lock(&self.core.track).inflight += 1;
        self.admitted = true;
    }

    /// Called first thing in the handler greenlet: from now on `stop` may kill it.
    pub(crate) fn started(&mut self) {
        let Some(me) = current() else { return };
        let mut track = lock(&self.core.track);
        if track.killing {
            // Accepted before the stop but started after its grace period: it runs, and
            // ends at its first blocking point like the others.
            me.kill_nowait();
        }
        self.id = Some(me.id());
        track.live.insert(me.id(), me);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let drained = {
            let mut track = lock(&self.core.track);
            if let Some(id) = self.id {
                track.live.remove(&id);
            }
            if self.admitted {
                track.inflight -= 1;
            }
            if self.admitted && track.inflight == 0 {
                track.drained.clone()
            } else {
                None
            }
        };
        if let Some(flag) = drained {
            flag.fire();
        }
        if let Some(p) = &self.permits {
            p.release();
        }
    }
}

/// Exponential back-off for a serving loop whose accept/receive keeps failing.
pub(crate) struct Backoff {
    delay: Duration,
    since: Option<Instant>,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff {
            delay: MIN_DELAY,
            since: None,
        }
    }

    pub(crate) fn failed(&mut self, what: &str, e: &std::io::Error) {
        log::warn!("{what}: {e}; retrying in {:?}", self.delay);
        self.since.get_or_insert_with(Instant::now);
        crate::sleep(self.delay);
        self.delay = (self.delay * 2).min(MAX_DELAY);
    }

    pub(crate) fn succeeded(&mut self) {
        if let Some(since) = self.since.take() {
            log::debug!("recovered after {:?} of failures", since.elapsed());
        }
        self.delay = MIN_DELAY;
    }
}
