//! `Channel`: a rendezvous hand-off with no storage (gevent.queue.Channel).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::error::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError,
};
use crate::sync::waiters::{Waiters, deadline, lock, wait_until};

struct State<T> {
    /// Items offered by waiting putters, by ticket.
    offered: VecDeque<(u64, T)>,
    next_ticket: u64,
    /// Every ticket up to this one has been taken (tickets are taken in order).
    taken_upto: u64,
    closed: bool,
    getters: Waiters,
    putters: Waiters,
    /// Getters parked right now (a `try_put` succeeds only if one waits).
    waiting_getters: usize,
}

fn getters<T>(s: &mut State<T>) -> &mut Waiters {
    &mut s.getters
}

fn putters<T>(s: &mut State<T>) -> &mut Waiters {
    &mut s.putters
}

impl<T> State<T> {
    fn withdraw(&mut self, ticket: u64) -> Option<T> {
        let pos = self.offered.iter().position(|(t, _)| *t == ticket)?;
        self.offered.remove(pos).map(|(_, item)| item)
    }

    fn take(&mut self) -> Option<Result<T, GetError>> {
        match self.offered.pop_front() {
            Some((ticket, item)) => {
                self.taken_upto = ticket;
                self.putters.notify_all();
                Some(Ok(item))
            }
            None if self.closed => Some(Err(GetError)),
            None => None,
        }
    }
}

/// A hand-off between greenlets with no buffer (gevent's `Channel`): [`put`](Self::put)
/// returns only once a getter has taken the item.
///
/// Handles are cheap clones. Errors and closing work as for [`Queue`](super::Queue).
///
/// # Kill safety
///
/// A putter killed while waiting withdraws its item (no getter will receive it); a getter
/// killed while waiting takes nothing.
///
/// # Examples
///
/// ```
/// use greenlet::queue::Channel;
///
/// let ch = Channel::new();
/// let taker = {
///     let ch = ch.clone();
///     greenlet::spawn(move || ch.get().unwrap())
/// };
/// ch.put("handed over").unwrap(); // returns once `taker` has it
/// assert_eq!(taker.get(), Ok("handed over"));
/// assert!(ch.try_put("nobody waits").is_err());
/// ```
pub struct Channel<T> {
    shared: Arc<Mutex<State<T>>>,
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Channel {
            shared: self.shared.clone(),
        }
    }
}

/// Withdraws an offered item if its putter unwinds (is killed) before a getter took it.
struct Offer<'a, T> {
    state: &'a Mutex<State<T>>,
    ticket: u64,
    armed: bool,
}

impl<T> Drop for Offer<'_, T> {
    fn drop(&mut self) {
        if self.armed {
            drop(lock(self.state).withdraw(self.ticket));
        }
    }
}

/// Counts a getter as waiting for as long as it lives (also through a kill's unwind).
struct Waiting<'a, T>(&'a Mutex<State<T>>);

impl<T> Drop for Waiting<'_, T> {
    fn drop(&mut self) {
        lock(self.0).waiting_getters -= 1;
    }
}

impl<T> Channel<T> {
    /// A new, open channel.
    pub fn new() -> Channel<T> {
        Channel {
            shared: Arc::new(Mutex::new(State {
                offered: VecDeque::new(),
                next_ticket: 0,
                taken_upto: 0,
                closed: false,
                getters: Waiters::default(),
                putters: Waiters::default(),
                waiting_getters: 0,
            })),
        }
    }

    fn put_until(&self, item: T, deadline: Option<Instant>) -> Result<(), PutTimeoutError<T>> {
        let ticket = {
            let mut s = lock(&self.shared);
            if s.closed {
                return Err(PutTimeoutError::Closed(item));
            }
            s.next_ticket += 1;
            let ticket = s.next_ticket;
            s.offered.push_back((ticket, item));
            s.getters.notify_one();
            ticket
        };
        let mut offer = Offer {
            state: &self.shared,
            ticket,
            armed: true,
        };
        let decided = |s: &mut State<T>| {
            if s.taken_upto >= ticket {
                Some(Ok(()))
            } else if s.closed {
                s.withdraw(ticket).map(Err)
            } else {
                None
            }
        };
        let r = wait_until("Channel::put", &self.shared, putters, deadline, decided);
        offer.armed = false;
        match r {
            Some(Ok(())) => Ok(()),
            Some(Err(item)) => Err(PutTimeoutError::Closed(item)),
            // Timed out: take the item back, unless a getter took it meanwhile.
            None => match lock(&self.shared).withdraw(ticket) {
                Some(item) => Err(PutTimeoutError::Timeout(item)),
                None => Ok(()),
            },
        }
    }

    /// Hands `item` to a getter, waiting until one takes it.
    ///
    /// # Errors
    ///
    /// [`PutError`] with the item if the channel is (or gets) closed first.
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        match self.put_until(item, None) {
            Ok(()) => Ok(()),
            Err(e) => Err(PutError(e.into_inner())),
        }
    }

    /// Hands `item` over only if a getter is waiting now.
    ///
    /// # Errors
    ///
    /// [`TryPutError::Full`] (no getter waits) or [`TryPutError::Closed`], with the item.
    pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
        let mut s = lock(&self.shared);
        if s.closed {
            return Err(TryPutError::Closed(item));
        }
        if s.waiting_getters <= s.offered.len() {
            return Err(TryPutError::Full(item));
        }
        s.next_ticket += 1;
        let ticket = s.next_ticket;
        s.offered.push_back((ticket, item));
        s.getters.notify_one();
        Ok(())
    }

    /// Hands `item` to a getter, waiting at most `d` for one to take it.
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

    fn get_until(&self, deadline: Option<Instant>) -> Option<Result<T, GetError>> {
        lock(&self.shared).waiting_getters += 1;
        let _waiting = Waiting(&self.shared);
        wait_until("Channel::get", &self.shared, getters, deadline, State::take)
    }

    /// Takes an item from a putter, waiting for one.
    ///
    /// # Errors
    ///
    /// [`GetError`] once the channel is closed and no putter is waiting.
    pub fn get(&self) -> Result<T, GetError> {
        loop {
            if let Some(r) = self.get_until(None) {
                return r;
            }
        }
    }

    /// Takes an item if a putter is waiting now.
    ///
    /// # Errors
    ///
    /// [`TryGetError::Empty`] or [`TryGetError::Closed`].
    pub fn try_get(&self) -> Result<T, TryGetError> {
        match lock(&self.shared).take() {
            Some(r) => r.map_err(TryGetError::from),
            None => Err(TryGetError::Empty),
        }
    }

    /// Takes an item, waiting at most `d` for a putter.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    ///
    /// # Errors
    ///
    /// [`GetTimeoutError::Timeout`] or [`GetTimeoutError::Closed`].
    pub fn get_timeout(&self, d: Duration) -> Result<T, GetTimeoutError> {
        match self.get_until(deadline(d)) {
            Some(r) => r.map_err(GetTimeoutError::from),
            None => Err(GetTimeoutError::Timeout),
        }
    }

    /// Closes the channel: waiting putters get their items back; getters fail once no offer
    /// is left.
    pub fn close(&self) {
        let mut s = lock(&self.shared);
        s.closed = true;
        s.getters.notify_all();
        s.putters.notify_all();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared).closed
    }
}

impl<T> Default for Channel<T> {
    fn default() -> Self {
        Channel::new()
    }
}

impl<T> fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.shared);
        f.debug_struct("Channel")
            .field("offered", &s.offered.len())
            .field("waiting_getters", &s.waiting_getters)
            .field("closed", &s.closed)
            .finish()
    }
}
