//! `Queue<T, O>`: FIFO, LIFO and priority queues on one implementation.

use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::error::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TaskDoneError, TryGetError, TryPutError,
};
use crate::sync::waiters::{Waiters, deadline, lock, wait_until};

/// The order in which a [`Queue`] hands out its items: [`Fifo`], [`Lifo`] or [`Priority`].
/// Sealed.
pub trait Order<T>: sealed::Sealed {
    /// Where the items are kept.
    #[doc(hidden)]
    type Store: Default;
    #[doc(hidden)]
    fn push(store: &mut Self::Store, item: T);
    #[doc(hidden)]
    fn pop(store: &mut Self::Store) -> Option<T>;
    #[doc(hidden)]
    fn len(store: &Self::Store) -> usize;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Fifo {}
    impl Sealed for super::Lifo {}
    impl Sealed for super::Priority {}
}

/// First in, first out ([`Queue`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Fifo;

/// Last in, first out ([`LifoQueue`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Lifo;

/// Greatest first, by `Ord` ([`PriorityQueue`]; wrap items in `std::cmp::Reverse` for
/// smallest first).
#[derive(Debug, Clone, Copy, Default)]
pub struct Priority;

impl<T> Order<T> for Fifo {
    type Store = VecDeque<T>;
    fn push(s: &mut VecDeque<T>, item: T) {
        s.push_back(item);
    }
    fn pop(s: &mut VecDeque<T>) -> Option<T> {
        s.pop_front()
    }
    fn len(s: &VecDeque<T>) -> usize {
        s.len()
    }
}

impl<T> Order<T> for Lifo {
    type Store = Vec<T>;
    fn push(s: &mut Vec<T>, item: T) {
        s.push(item);
    }
    fn pop(s: &mut Vec<T>) -> Option<T> {
        s.pop()
    }
    fn len(s: &Vec<T>) -> usize {
        s.len()
    }
}

impl<T: Ord> Order<T> for Priority {
    type Store = BinaryHeap<T>;
    fn push(s: &mut BinaryHeap<T>, item: T) {
        s.push(item);
    }
    fn pop(s: &mut BinaryHeap<T>) -> Option<T> {
        s.pop()
    }
    fn len(s: &BinaryHeap<T>) -> usize {
        s.len()
    }
}

/// Every [`Queue`] counts unfinished items for [`task_done`](Queue::task_done) and
/// [`join`](Queue::join), as gevent's `Queue` has since 25.4; this alias keeps the older name.
pub type JoinableQueue<T> = Queue<T>;

struct State<S> {
    items: S,
    closed: bool,
    /// Items put and not yet marked done with `task_done`.
    unfinished: usize,
    getters: Waiters,
    putters: Waiters,
    joiners: Waiters,
}

struct Shared<S> {
    state: Mutex<State<S>>,
    capacity: Option<usize>,
}

fn getters<S>(s: &mut State<S>) -> &mut Waiters {
    &mut s.getters
}

fn putters<S>(s: &mut State<S>) -> &mut Waiters {
    &mut s.putters
}

fn joiners<S>(s: &mut State<S>) -> &mut Waiters {
    &mut s.joiners
}

/// A queue between greenlets (gevent's `Queue`): bounded or not, closable, joinable.
///
/// Handles are cheap clones of one queue. Every wait comes in three forms: `try_*` (never
/// waits), plain (waits as long as needed), `*_timeout` (waits at most a duration).
///
/// - [`close`](Self::close) ends the queue: puts fail and give the item back; gets drain what
///   is left, then fail with a "closed" error; iteration stops.
/// - [`task_done`](Self::task_done) and [`join`](Self::join) let a producer wait until every
///   item put has been processed.
///
/// # Kill safety
///
/// A greenlet killed while waiting in `get` takes no item; killed while waiting in `put`, its
/// item is dropped with it and was never in the queue. No wake-up is lost either way.
///
/// # Examples
///
/// ```
/// use greenlet::queue::Queue;
///
/// let q = Queue::bounded(2);
/// let producer = {
///     let q = q.clone();
///     greenlet::spawn(move || {
///         for i in 0..5 {
///             q.put(i).unwrap(); // waits while the queue is full
///         }
///         q.close();
///     })
/// };
/// let got: Vec<i32> = q.iter().collect(); // until closed and drained
/// assert_eq!(got, vec![0, 1, 2, 3, 4]);
/// producer.join();
/// ```
pub struct Queue<T, O: Order<T> = Fifo> {
    shared: Arc<Shared<O::Store>>,
    _order: PhantomData<fn(T) -> T>,
}

impl<T, O: Order<T>> Clone for Queue<T, O> {
    fn clone(&self) -> Self {
        Queue {
            shared: self.shared.clone(),
            _order: PhantomData,
        }
    }
}

/// Takes the item out of its `Option` for delivery; the option is always full when called.
fn deliver<T>(item: &mut Option<T>) -> Option<T> {
    item.take()
}

impl<T> Queue<T> {
    /// A queue that holds at most `capacity` items: `put` waits while it is full.
    ///
    /// # Panics
    ///
    /// If `capacity` is 0: use [`Channel`](super::Channel) for a hand-off without storage.
    #[track_caller]
    pub fn bounded(capacity: usize) -> Self {
        assert!(
            capacity > 0,
            "a bounded queue needs room for an item; use Channel"
        );
        Self::with_capacity(Some(capacity))
    }

    /// A queue without a limit: `put` never waits.
    pub fn unbounded() -> Self {
        Self::with_capacity(None)
    }
}

impl<T, O: Order<T>> Queue<T, O> {
    fn with_capacity(capacity: Option<usize>) -> Self {
        Queue {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    items: O::Store::default(),
                    closed: false,
                    unfinished: 0,
                    getters: Waiters::default(),
                    putters: Waiters::default(),
                    joiners: Waiters::default(),
                }),
                capacity,
            }),
            _order: PhantomData,
        }
    }

    /// Stores `item` if there is room; `Some(result)` when decided.
    fn offer(&self, s: &mut State<O::Store>, item: &mut Option<T>) -> Option<Result<(), T>> {
        if s.closed {
            return deliver(item).map(Err);
        }
        if self
            .shared
            .capacity
            .is_some_and(|cap| O::len(&s.items) >= cap)
        {
            return None;
        }
        O::push(&mut s.items, deliver(item)?);
        s.unfinished += 1;
        s.getters.notify_one();
        Some(Ok(()))
    }

    /// Takes an item if there is one; `Some(Err)` when closed and empty.
    fn take(s: &mut State<O::Store>) -> Option<Result<T, GetError>> {
        match O::pop(&mut s.items) {
            Some(item) => {
                s.putters.notify_one();
                Some(Ok(item))
            }
            None if s.closed => Some(Err(GetError)),
            None => None,
        }
    }

    fn put_until(&self, item: T, deadline: Option<Instant>) -> Result<(), PutTimeoutError<T>> {
        let mut item = Some(item);
        let r = wait_until("Queue::put", &self.shared.state, putters, deadline, |s| {
            self.offer(s, &mut item)
        });
        match (r, item) {
            (Some(Ok(())), _) => Ok(()),
            (Some(Err(item)), _) => Err(PutTimeoutError::Closed(item)),
            (None, Some(item)) => Err(PutTimeoutError::Timeout(item)),
            (None, None) => Ok(()),
        }
    }

    /// Puts `item`, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`PutError`] with the item if the queue is closed.
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        let mut item = Some(item);
        loop {
            // Without a deadline `wait_until` only returns once the put is decided.
            let offer = |s: &mut State<O::Store>| self.offer(s, &mut item);
            if let Some(r) = wait_until("Queue::put", &self.shared.state, putters, None, offer) {
                return r.map_err(PutError);
            }
        }
    }

    /// Puts `item` if there is room now.
    ///
    /// # Errors
    ///
    /// [`TryPutError::Full`] or [`TryPutError::Closed`], with the item.
    pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
        let mut item = Some(item);
        let r = self.offer(&mut lock(&self.shared.state), &mut item);
        match (r, item) {
            (Some(Err(item)), _) => Err(TryPutError::Closed(item)),
            (None, Some(item)) => Err(TryPutError::Full(item)),
            _ => Ok(()),
        }
    }

    /// Puts `item`, waiting at most `d` for room.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    ///
    /// # Errors
    ///
    /// [`PutTimeoutError::Timeout`] or [`PutTimeoutError::Closed`], with the item.
    pub fn put_timeout(&self, item: T, d: Duration) -> Result<(), PutTimeoutError<T>> {
        self.put_until(item, deadline(d))
    }

    /// Takes the next item, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`GetError`] once the queue is closed and empty.
    pub fn get(&self) -> Result<T, GetError> {
        loop {
            if let Some(r) = wait_until("Queue::get", &self.shared.state, getters, None, Self::take)
            {
                return r;
            }
        }
    }

    /// Takes the next item if there is one now.
    ///
    /// # Errors
    ///
    /// [`TryGetError::Empty`], or [`TryGetError::Closed`] once closed and empty.
    pub fn try_get(&self) -> Result<T, TryGetError> {
        match Self::take(&mut lock(&self.shared.state)) {
            Some(r) => r.map_err(TryGetError::from),
            None => Err(TryGetError::Empty),
        }
    }

    /// Takes the next item, waiting at most `d`. Never gives up before `d` has passed.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    ///
    /// # Errors
    ///
    /// [`GetTimeoutError::Timeout`], or [`GetTimeoutError::Closed`] once closed and empty.
    pub fn get_timeout(&self, d: Duration) -> Result<T, GetTimeoutError> {
        match wait_until(
            "Queue::get",
            &self.shared.state,
            getters,
            deadline(d),
            Self::take,
        ) {
            Some(r) => r.map_err(GetTimeoutError::from),
            None => Err(GetTimeoutError::Timeout),
        }
    }

    /// Closes the queue: waiting and later puts fail with their item; gets drain what is left
    /// and then fail. Idempotent.
    pub fn close(&self) {
        let mut s = lock(&self.shared.state);
        s.closed = true;
        s.getters.notify_all();
        s.putters.notify_all();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.state).closed
    }

    /// Items waiting in the queue.
    pub fn len(&self) -> usize {
        O::len(&lock(&self.shared.state).items)
    }

    /// Whether no item is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a bounded queue is at capacity.
    pub fn is_full(&self) -> bool {
        self.shared.capacity.is_some_and(|cap| self.len() >= cap)
    }

    /// The capacity of a bounded queue.
    pub fn capacity(&self) -> Option<usize> {
        self.shared.capacity
    }

    /// Marks one item taken from the queue as processed (gevent's `task_done`).
    ///
    /// # Errors
    ///
    /// [`TaskDoneError`] if every item put is already marked done.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let mut s = lock(&self.shared.state);
        if s.unfinished == 0 {
            return Err(TaskDoneError);
        }
        s.unfinished -= 1;
        if s.unfinished == 0 {
            s.joiners.notify_all();
        }
        Ok(())
    }

    /// Waits until every item put has been marked done with [`task_done`](Self::task_done).
    pub fn join(&self) {
        let done = |s: &mut State<O::Store>| (s.unfinished == 0).then_some(());
        while wait_until("Queue::join", &self.shared.state, joiners, None, done).is_none() {}
    }

    /// Waits at most `d` for every item to be marked done; returns whether they are.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    pub fn join_timeout(&self, d: Duration) -> bool {
        let done = |s: &mut State<O::Store>| (s.unfinished == 0).then_some(());
        wait_until(
            "Queue::join",
            &self.shared.state,
            joiners,
            deadline(d),
            done,
        )
        .is_some()
    }

    /// A blocking iterator: yields items as they come, ends when the queue is closed and
    /// drained.
    pub fn iter(&self) -> Iter<'_, T, O> {
        Iter { queue: self }
    }
}

/// Constructors and `Deref` for the newtypes of the non-FIFO orders.
macro_rules! constructors {
    ($name:ident, $order:ident $(, $bound:path)?) => {
        impl<T $(: $bound)?> $name<T> {
            /// A queue that holds at most `capacity` items: `put` waits while it is full.
            ///
            /// # Panics
            ///
            /// If `capacity` is 0: use [`Channel`](super::Channel) for a hand-off without
            /// storage.
            #[track_caller]
            pub fn bounded(capacity: usize) -> Self {
                assert!(capacity > 0, "a bounded queue needs room for an item; use Channel");
                $name(Queue::with_capacity(Some(capacity)))
            }

            /// A queue without a limit: `put` never waits.
            pub fn unbounded() -> Self {
                $name(Queue::with_capacity(None))
            }
        }

        impl<T $(: $bound)?> std::ops::Deref for $name<T> {
            type Target = Queue<T, $order>;

            fn deref(&self) -> &Queue<T, $order> {
                &self.0
            }
        }

        impl<T $(: $bound)?> Clone for $name<T> {
            fn clone(&self) -> Self {
                $name(self.0.clone())
            }
        }

        impl<T $(: $bound)?> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

/// A last-in, first-out queue (gevent's `LifoQueue`). It dereferences to [`Queue`] for
/// `put`, `get` and the rest.
///
/// # Examples
///
/// ```
/// use greenlet::queue::LifoQueue;
///
/// let stack = LifoQueue::unbounded();
/// for i in 1..=3 {
///     stack.put(i).unwrap();
/// }
/// assert_eq!(stack.get(), Ok(3));
/// ```
pub struct LifoQueue<T>(Queue<T, Lifo>);

/// A queue that hands out its greatest item first (gevent's `PriorityQueue`). It dereferences
/// to [`Queue`].
///
/// # Examples
///
/// ```
/// use std::cmp::Reverse;
/// use greenlet::queue::PriorityQueue;
///
/// let q = PriorityQueue::unbounded();
/// for job in [Reverse(5), Reverse(1), Reverse(3)] {
///     q.put(job).unwrap();
/// }
/// assert_eq!(q.get(), Ok(Reverse(1))); // smallest first, through Reverse
/// ```
pub struct PriorityQueue<T: Ord>(Queue<T, Priority>);

constructors!(LifoQueue, Lifo);
constructors!(PriorityQueue, Priority, Ord);

impl<T, O: Order<T>> fmt::Debug for Queue<T, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.shared.state);
        f.debug_struct("Queue")
            .field("len", &O::len(&s.items))
            .field("capacity", &self.shared.capacity)
            .field("closed", &s.closed)
            .finish()
    }
}

/// The iterator of [`Queue::iter`].
pub struct Iter<'a, T, O: Order<T> = Fifo> {
    queue: &'a Queue<T, O>,
}

impl<T, O: Order<T>> Iterator for Iter<'_, T, O> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.queue.get().ok()
    }
}

impl<'a, T, O: Order<T>> IntoIterator for &'a Queue<T, O> {
    type Item = T;
    type IntoIter = Iter<'a, T, O>;

    fn into_iter(self) -> Iter<'a, T, O> {
        self.iter()
    }
}

impl<T, O: Order<T>> fmt::Debug for Iter<'_, T, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}
