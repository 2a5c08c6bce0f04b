//! `AsyncResult` (gevent.event.AsyncResult): a value or an error, delivered once, awaited by many.

use std::error::Error;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::waiters::{Waiters, deadline, lock, wait_until};

/// The error stored by [`AsyncResult::set_error`]: shared, so every waiter gets it.
pub type Failure = Arc<dyn Error + Send + Sync>;

struct State<T> {
    result: Option<Result<T, Failure>>,
    waiters: Waiters,
}

/// A one-shot result that greenlets wait for (gevent's `AsyncResult`, a future without async).
///
/// A producer calls [`set`](Self::set) or [`set_error`](Self::set_error); every waiter gets a
/// clone of the outcome. Setting again replaces the outcome (as in gevent).
///
/// # Kill safety
///
/// A greenlet killed while waiting leaves the result unchanged.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use greenlet::sync::AsyncResult;
///
/// let answer = Arc::new(AsyncResult::new());
/// let producer = answer.clone();
/// greenlet::spawn_later(Duration::from_millis(5), move || producer.set(42)).join();
/// assert_eq!(answer.get().unwrap(), 42);
///
/// let failed: AsyncResult<u8> = AsyncResult::new();
/// failed.set_error("backend unavailable");
/// assert_eq!(failed.get().unwrap_err().to_string(), "backend unavailable");
/// ```
pub struct AsyncResult<T> {
    state: Mutex<State<T>>,
}

fn waiters<T>(s: &mut State<T>) -> &mut Waiters {
    &mut s.waiters
}

impl<T: Clone> AsyncResult<T> {
    /// A result not yet set.
    pub fn new() -> AsyncResult<T> {
        AsyncResult {
            state: Mutex::new(State {
                result: None,
                waiters: Waiters::default(),
            }),
        }
    }

    fn store(&self, r: Result<T, Failure>) {
        let mut s = lock(&self.state);
        s.result = Some(r);
        s.waiters.notify_all();
    }

    /// Delivers a value and wakes every waiter.
    pub fn set(&self, value: T) {
        self.store(Ok(value));
    }

    /// Delivers an error and wakes every waiter.
    pub fn set_error(&self, error: impl Into<Box<dyn Error + Send + Sync>>) {
        self.store(Err(Arc::from(error.into())));
    }

    /// Waits for the outcome.
    ///
    /// # Errors
    ///
    /// The [`Failure`] given to [`set_error`](Self::set_error).
    pub fn get(&self) -> Result<T, Failure> {
        loop {
            // Without a deadline `wait_until` only returns with a value.
            if let Some(r) = wait_until("AsyncResult::get", &self.state, waiters, None, |s| {
                s.result.clone()
            }) {
                return r;
            }
        }
    }

    /// Waits at most `d` for the outcome; `None` if it is still unset.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    pub fn get_timeout(&self, d: Duration) -> Option<Result<T, Failure>> {
        wait_until("AsyncResult::get", &self.state, waiters, deadline(d), |s| {
            s.result.clone()
        })
    }

    /// The outcome if it is set, without waiting.
    pub fn try_get(&self) -> Option<Result<T, Failure>> {
        lock(&self.state).result.clone()
    }

    /// Whether an outcome is set.
    pub fn ready(&self) -> bool {
        lock(&self.state).result.is_some()
    }

    /// Whether a value (not an error) is set.
    pub fn successful(&self) -> bool {
        matches!(lock(&self.state).result, Some(Ok(_)))
    }
}

impl<T: Clone> Default for AsyncResult<T> {
    fn default() -> Self {
        AsyncResult::new()
    }
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.state);
        let state = match &s.result {
            None => "unset",
            Some(Ok(_)) => "value",
            Some(Err(_)) => "error",
        };
        f.debug_struct("AsyncResult")
            .field("state", &state)
            .finish()
    }
}
