//! A bounded pool of OS threads for work that would stall a worker (gevent.threadpool).
//!
//! CPU-heavy computations and foreign blocking calls (a C library, `std::fs`, a blocking
//! driver) stop every greenlet on their worker thread. [`spawn_blocking`] runs them on a pool
//! thread instead, and the greenlet that waits for the result parks cooperatively.
//!
//! Threads start on demand, up to [`Config::threadpool_size`](crate::Config::threadpool_size)
//! (default 64), and exit after 10 s without work. Jobs beyond the limit queue up in order.
//! Name resolution ([`net::resolve`](crate::net::resolve)) uses the same pool.
//!
//! # Examples
//!
//! ```
//! let g = greenlet::spawn(|| {
//!     // Runs on a pool thread; this greenlet parks until it is done.
//!     let task = greenlet::threadpool::spawn_blocking(|| (1..=20u64).product::<u64>());
//!     task.get().unwrap()
//! });
//! assert_eq!(g.get(), Ok(2_432_902_008_176_640_000));
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::sync::waiters::{Flag, FlagFuture};

use crate::error::JoinError;
use crate::panic;
use crate::sync::lock;

/// How long an idle pool thread waits for work before it exits.
const IDLE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    state: Mutex<State>,
    work: Condvar,
    max: usize,
}

struct State {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        crate::config::ensure_started();
        Pool {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                threads: 0,
                idle: 0,
            }),
            work: Condvar::new(),
            max: crate::settings().threadpool_size,
        }
    })
}

impl Pool {
    fn submit(&'static self, job: Job) {
        let mut state = lock(&self.state);
        state.jobs.push_back(job);
        if state.idle > 0 {
            self.work.notify_one();
        }
        // Each idle thread takes one queued job. (Counting only `idle > 0` left a burst of
        // jobs to the one idle thread, one after another: a notified thread stays counted as
        // idle until it runs.)
        if state.jobs.len() <= state.idle || state.threads >= self.max {
            return; // an idle thread takes it, or a busy one when free
        }
        state.threads += 1;
        drop(state);
        let spawned = std::thread::Builder::new()
            .name("greenlet-blocking".into())
            .spawn(move || self.run());
        if let Err(e) = spawned {
            let mut state = lock(&self.state);
            state.threads -= 1;
            if state.threads == 0 {
                // No thread will ever take the queue: run it here rather than never.
                let jobs: Vec<Job> = state.jobs.drain(..).collect();
                drop(state);
                log::warn!("cannot start a thread-pool thread ({e}); running the job inline");
                jobs.into_iter().for_each(|job| job());
            } else {
                log::warn!("cannot start another thread-pool thread ({e}); the job waits");
            }
        }
    }

    fn run(&self) {
        panic::mark_managed_thread();
        let mut state = lock(&self.state);
        loop {
            if let Some(job) = state.jobs.pop_front() {
                drop(state);
                job();
                state = lock(&self.state);
                continue;
            }
            state.idle += 1;
            let (next, timeout) = self
                .work
                .wait_timeout(state, IDLE)
                .unwrap_or_else(|e| e.into_inner());
            state = next;
            state.idle -= 1;
            if timeout.timed_out() && state.jobs.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }
}

struct Shared<T> {
    result: Mutex<Option<Result<T, JoinError>>>,
    done: Flag,
}

/// Runs `f` on a thread of the blocking pool and returns a handle to its result.
///
/// A panic in `f` is caught, logged through `log` and returned by [`Task::get`] as
/// [`JoinError::Panicked`]; the pool thread survives.
///
/// # Kill safety
///
/// An OS thread cannot be interrupted: killing the greenlet that waits on the [`Task`] ends
/// the wait, while `f` runs to completion and its result is dropped.
///
/// # Examples
///
/// ```
/// use greenlet::threadpool::spawn_blocking;
///
/// let task = spawn_blocking(|| std::fs::metadata("Cargo.toml").map(|m| m.len()));
/// assert!(task.get().unwrap().unwrap() > 0);
/// ```
pub fn spawn_blocking<F, T>(f: F) -> Task<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let shared = Arc::new(Shared {
        result: Mutex::new(None),
        done: Flag::new(),
    });
    let theirs = shared.clone();
    pool().submit(Box::new(move || {
        let result = catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
            let msg = panic::message(&*payload);
            let at = panic::take_location(&msg).unwrap_or_else(|| "<unknown>".into());
            log::error!("blocking task panicked at {at}: {msg}");
            JoinError::Panicked(msg)
        });
        *lock(&theirs.result) = Some(result);
        theirs.done.fire();
    }));
    Task { shared }
}

/// The result of [`spawn_blocking`], to wait for from a greenlet (parks it) or a thread.
///
/// Dropping it detaches the job: it still runs, and its result is discarded.
#[must_use = "dropping a Task discards its result; call `get`"]
pub struct Task<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Task<T> {
    /// Waits for the job and returns its value.
    ///
    /// # Errors
    ///
    /// [`JoinError::Panicked`] if the job panicked.
    ///
    /// # Panics
    ///
    /// Never in practice: the job stores its result before it signals completion.
    pub fn get(self) -> Result<T, JoinError> {
        self.join();
        lock(&self.shared.result)
            .take()
            .expect("a finished task holds its result")
    }

    /// Waits until the job has finished.
    pub fn join(&self) {
        self.shared.done.wait("Task::join");
    }

    /// Waits at most `d`; returns `true` if the job has finished.
    ///
    /// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
    /// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
    pub fn join_timeout(&self, d: Duration) -> bool {
        self.shared
            .done
            .wait_until("Task::join", crate::deadline::deadline(d))
    }

    /// Returns `true` once the job has finished.
    pub fn ready(&self) -> bool {
        self.shared.done.is_fired()
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("ready", &self.ready())
            .finish()
    }
}

/// The future of a [`Task`] (its [`IntoFuture`]): resolves to the job's result, as
/// [`Task::get`] returns it. Awaiting never blocks the executor's thread; dropping the future
/// detaches the job, as dropping the `Task` does.
///
/// # Examples
///
/// With tokio (any executor works; this example runs with the `tokio` feature):
///
/// ```
/// # #[cfg(feature = "tokio")] {
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let n = rt.block_on(async { greenlet::threadpool::spawn_blocking(|| 2 + 2).await });
/// assert_eq!(n, Ok(4));
/// # }
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct TaskFuture<T>(FlagFuture<Task<T>>);

impl<T> IntoFuture for Task<T> {
    type Output = Result<T, JoinError>;
    type IntoFuture = TaskFuture<T>;

    fn into_future(self) -> TaskFuture<T> {
        TaskFuture(FlagFuture::new(self, |t| &t.shared.done))
    }
}

impl<T> Future for TaskFuture<T> {
    type Output = Result<T, JoinError>;

    /// # Panics
    ///
    /// When polled again after it returned `Ready`.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().0.poll(cx, Task::get)
    }
}

impl<T> fmt::Debug for TaskFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskFuture")
            .field("ready", &self.0.held().map(Task::ready))
            .finish()
    }
}
