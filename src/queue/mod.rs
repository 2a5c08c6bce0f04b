//! Queues between greenlets (gevent.queue).
//!
//! - [`Queue`]: first in, first out, bounded ([`Queue::bounded`]) or not
//!   ([`Queue::unbounded`]); [`LifoQueue`] and [`PriorityQueue`] are the same type with
//!   another [`Order`]. Every queue is joinable ([`Queue::task_done`], [`Queue::join`]);
//!   [`JoinableQueue`] is an alias.
//! - [`Channel`]: a hand-off without a buffer; `put` returns once a getter has the item.
//!
//! Every wait comes in three forms: `try_*`, plain, `*_timeout`. Errors work like
//! crossbeam-channel's: a put that fails returns the item inside its error
//! ([`PutError::into_inner`]), and [`Queue::close`] ends a queue cleanly: gets drain what is
//! left, then report it closed.
//!
//! # Examples
//!
//! A producer, three workers and a join:
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use greenlet::queue::Queue;
//!
//! let jobs = Queue::bounded(10);
//! let sum = Arc::new(AtomicUsize::new(0));
//! for _ in 0..3 {
//!     let (jobs, sum) = (jobs.clone(), sum.clone());
//!     drop(greenlet::spawn(move || {
//!         for n in &jobs {
//!             sum.fetch_add(n, Ordering::Relaxed);
//!             jobs.task_done().unwrap();
//!         }
//!     }));
//! }
//! for n in 1..=100 {
//!     jobs.put(n).unwrap();
//! }
//! jobs.join(); // every item processed
//! assert_eq!(sum.load(Ordering::Relaxed), 5050);
//! jobs.close(); // the workers' loops end
//! ```

mod channel;
mod error;
#[allow(clippy::module_inception)]
mod queue;

pub use channel::Channel;
pub use error::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TaskDoneError, TryGetError, TryPutError,
};
pub use queue::{
    Fifo, Iter, JoinableQueue, Lifo, LifoQueue, Order, Priority, PriorityQueue, Queue,
};
