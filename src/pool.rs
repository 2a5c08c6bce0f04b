//! Groups of greenlets, bounded or not (gevent.pool).
//!
//! A [`Pool`] runs at most `n` greenlets at once: [`Pool::spawn`] waits for a free slot, so a
//! fan-out over thousands of items stays within `n` concurrent fetches, connections or
//! queries. A [`Group`] tracks its greenlets the same way without a limit. Both can
//! [`join`](Pool::join) or [`kill`](Pool::kill) everything they run, and map a function over
//! items: [`map`](Pool::map) (all results, in input order), [`imap`](Pool::imap) (an iterator
//! in input order) and [`imap_unordered`](Pool::imap_unordered) (as they finish).
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use greenlet::pool::Pool;
//!
//! let pool = Pool::new(10); // at most 10 at a time
//! let lengths = pool.map(0..100, |i| {
//!     greenlet::sleep(Duration::from_millis(1)); // stands in for a fetch
//!     i * 2
//! });
//! assert_eq!(lengths.len(), 100);
//! assert_eq!(lengths[99], Ok(198));
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::JoinError;
use crate::greenlet::{Greenlet, GreenletRef};
use crate::queue::Queue;
use crate::sync::waiters::{Waiters, deadline, lock, wait_until};
use crate::sync::{OwnedSemaphoreGuard, Semaphore};

struct State {
    live: HashMap<u64, GreenletRef>,
    /// Members that ended before their spawner registered them.
    ended_early: HashSet<u64>,
    running: usize,
    joiners: Waiters,
}

fn joiners(s: &mut State) -> &mut Waiters {
    &mut s.joiners
}

struct Shared {
    state: Mutex<State>,
    slots: Option<Arc<Semaphore>>,
    size: Option<usize>,
}

/// A bounded set of greenlets (gevent's `Pool`): at no moment do more than `size` of its
/// greenlets run.
///
/// Handles are cheap clones of one pool.
///
/// # Kill safety
///
/// A greenlet killed while waiting in [`spawn`](Self::spawn) spawns nothing and takes no
/// slot. A member that is killed, panics or never starts (killed first) frees its slot.
pub struct Pool {
    shared: Arc<Shared>,
}

impl Clone for Pool {
    fn clone(&self) -> Self {
        Pool {
            shared: self.shared.clone(),
        }
    }
}

/// A member's place in its pool, moved into its greenlet: frees the slot and leaves the pool
/// when the greenlet ends, however it ends.
struct Member {
    shared: Arc<Shared>,
    _slot: Option<OwnedSemaphoreGuard>,
    id: Option<u64>,
}

impl Member {
    fn started(&mut self) {
        self.id = crate::current().map(|g| g.id());
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut s = lock(&self.shared.state);
        if let Some(id) = self.id
            && s.live.remove(&id).is_none()
        {
            s.ended_early.insert(id);
        }
        s.running -= 1;
        if s.running == 0 {
            s.joiners.notify_all();
        }
    }
}

impl Pool {
    /// A pool that runs at most `size` greenlets at once.
    ///
    /// # Panics
    ///
    /// If `size` is 0.
    #[track_caller]
    pub fn new(size: usize) -> Pool {
        assert!(size > 0, "a Pool needs room for at least one greenlet");
        Pool::with_limit(Some(size))
    }

    fn with_limit(size: Option<usize>) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    live: HashMap::new(),
                    ended_early: HashSet::new(),
                    running: 0,
                    joiners: Waiters::default(),
                }),
                slots: size.map(|n| Arc::new(Semaphore::new(n))),
                size,
            }),
        }
    }

    /// Spawns `f` as a member, first waiting for a free slot.
    ///
    /// # Panics
    ///
    /// As [`crate::spawn`], if the greenlet's stack cannot be allocated.
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> Greenlet<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let slot = self.shared.slots.as_ref().map(Semaphore::acquire_owned);
        lock(&self.shared.state).running += 1;
        let mut member = Member {
            shared: self.shared.clone(),
            _slot: slot,
            id: None,
        };
        let g = crate::spawn(move || {
            member.started();
            let out = f();
            drop(member);
            out
        });
        let mut s = lock(&self.shared.state);
        if !s.ended_early.remove(&g.id()) {
            s.live.insert(g.id(), g.handle());
        }
        g
    }

    /// Runs `f` in the pool and waits for its result (gevent's `apply`).
    ///
    /// # Errors
    ///
    /// The member's [`JoinError`] if it panicked or was killed.
    pub fn apply<F, T>(&self, f: F) -> Result<T, JoinError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn(f).get()
    }

    /// Runs `f` on every item (at most `size` at once) and returns the results in input order.
    pub fn map<I, F, T>(&self, items: I, f: F) -> Vec<Result<T, JoinError>>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        let f = Arc::new(f);
        let gs: Vec<_> = items
            .into_iter()
            .map(|item| {
                let f = f.clone();
                self.spawn(move || f(item))
            })
            .collect();
        crate::joinall(gs)
    }

    /// Like [`map`](Self::map), but returns an iterator that yields each result, in input
    /// order, as soon as it and the ones before it are ready. Items are fed to the pool by a
    /// greenlet of its own; dropping the iterator stops the feeding.
    ///
    /// # Panics
    ///
    /// As [`crate::spawn`], if the feeding greenlet cannot be spawned.
    pub fn imap<I, F, T>(&self, items: I, f: F) -> Imap<T>
    where
        I: IntoIterator + Send + 'static,
        I::IntoIter: Send,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        let started = Queue::unbounded();
        let (pool, queue, f) = (self.clone(), started.clone(), Arc::new(f));
        let feeder = crate::spawn(move || {
            for item in items {
                let f = f.clone();
                if queue.put(pool.spawn(move || f(item))).is_err() {
                    break;
                }
            }
            queue.close();
        });
        Imap { started, feeder }
    }

    /// Like [`imap`](Self::imap), but yields `(index, result)` in finishing order.
    ///
    /// # Panics
    ///
    /// As [`crate::spawn`], if the feeding greenlet cannot be spawned.
    pub fn imap_unordered<I, F, T>(&self, items: I, f: F) -> ImapUnordered<T>
    where
        I: IntoIterator + Send + 'static,
        I::IntoIter: Send,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        let events = Queue::unbounded();
        let running = Arc::new(Mutex::new(HashMap::new()));
        let (pool, queue, map, f) = (self.clone(), events.clone(), running.clone(), Arc::new(f));
        let feeder = crate::spawn(move || {
            let mut total = 0;
            for (i, item) in items.into_iter().enumerate() {
                let f = f.clone();
                let g = pool.spawn(move || f(item));
                let mut map = lock(&map);
                let done = queue.clone();
                g.on_done(Box::new(move || drop(done.put(Event::Finished(i)))));
                map.insert(i, g);
                total = i + 1;
            }
            let _ = queue.put(Event::Fed(total));
        });
        ImapUnordered {
            events,
            running,
            total: None,
            yielded: 0,
            feeder,
        }
    }

    /// Waits until every member has finished.
    pub fn join(&self) {
        let idle = |s: &mut State| (s.running == 0).then_some(());
        while wait_until("Pool::join", &self.shared.state, joiners, None, idle).is_none() {}
    }

    /// Waits at most `d` for every member to finish; returns whether they have.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    pub fn join_timeout(&self, d: Duration) -> bool {
        let idle = |s: &mut State| (s.running == 0).then_some(());
        wait_until("Pool::join", &self.shared.state, joiners, deadline(d), idle).is_some()
    }

    /// Kills every running member and waits until they are gone.
    pub fn kill(&self) {
        let members: Vec<GreenletRef> = lock(&self.shared.state).live.values().cloned().collect();
        for g in &members {
            g.kill_nowait();
        }
        for g in &members {
            g.join();
        }
    }

    /// Members running (or about to start).
    pub fn len(&self) -> usize {
        lock(&self.shared.state).running
    }

    /// Whether no member is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The limit, or `None` for a [`Group`].
    pub fn size(&self) -> Option<usize> {
        self.shared.size
    }

    /// Free slots now (`usize::MAX` for a [`Group`]).
    pub fn free_count(&self) -> usize {
        self.shared
            .slots
            .as_ref()
            .map_or(usize::MAX, |s| s.available_permits())
    }

    /// Whether every slot is taken (never for a [`Group`]).
    pub fn full(&self) -> bool {
        self.free_count() == 0
    }

    /// Waits until a slot is free (at once for a [`Group`]).
    pub fn wait_available(&self) {
        if let Some(slots) = &self.shared.slots {
            drop(slots.acquire());
        }
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.shared.size)
            .field("running", &self.len())
            .finish()
    }
}

/// A set of greenlets without a limit (gevent's `Group`): a [`Pool`] whose
/// [`spawn`](Pool::spawn) never waits. It dereferences to [`Pool`] for everything else.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use greenlet::pool::Group;
///
/// let group = Group::new();
/// for _ in 0..3 {
///     drop(group.spawn(|| greenlet::sleep(Duration::from_secs(60))));
/// }
/// assert_eq!(group.len(), 3);
/// group.kill();
/// assert!(group.is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct Group(Pool);

impl Group {
    /// An empty group.
    pub fn new() -> Group {
        Group(Pool::with_limit(None))
    }
}

impl Default for Group {
    fn default() -> Self {
        Group::new()
    }
}

impl Deref for Group {
    type Target = Pool;

    fn deref(&self) -> &Pool {
        &self.0
    }
}

/// The iterator of [`Pool::imap`]: results in input order.
pub struct Imap<T> {
    started: Queue<Greenlet<T>>,
    feeder: Greenlet<()>,
}

impl<T: Send + 'static> Iterator for Imap<T> {
    type Item = Result<T, JoinError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.started.get().ok().map(Greenlet::get)
    }
}

impl<T> Drop for Imap<T> {
    fn drop(&mut self) {
        self.started.close();
        self.feeder.kill_nowait();
    }
}

impl<T> fmt::Debug for Imap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap").finish_non_exhaustive()
    }
}

enum Event {
    Finished(usize),
    Fed(usize),
}

/// The iterator of [`Pool::imap_unordered`]: `(index, result)` in finishing order.
pub struct ImapUnordered<T> {
    events: Queue<Event>,
    running: Arc<Mutex<HashMap<usize, Greenlet<T>>>>,
    total: Option<usize>,
    yielded: usize,
    feeder: Greenlet<()>,
}

impl<T: Send + 'static> Iterator for ImapUnordered<T> {
    type Item = (usize, Result<T, JoinError>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.total == Some(self.yielded) {
                return None;
            }
            match self.events.get().ok()? {
                Event::Fed(total) => self.total = Some(total),
                Event::Finished(i) => {
                    let g = lock(&self.running).remove(&i)?;
                    self.yielded += 1;
                    return Some((i, g.get()));
                }
            }
        }
    }
}

impl<T> Drop for ImapUnordered<T> {
    fn drop(&mut self) {
        self.events.close();
        self.feeder.kill_nowait();
    }
}

impl<T> fmt::Debug for ImapUnordered<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapUnordered")
            .field("yielded", &self.yielded)
            .finish_non_exhaustive()
    }
}
