//! `Greenlet<T>` as a future: `greenlet.await` from async code waits without blocking the
//! executor's thread.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::Greenlet;
use crate::error::JoinError;
use crate::sync::waiters::FlagFuture;

/// The future of a [`Greenlet`] (its [`IntoFuture`]): resolves to the greenlet's result, as
/// [`Greenlet::get`] returns it, once the greenlet has finished.
///
/// Awaiting never blocks the executor's thread: the task is woken when the greenlet finishes
/// (after its links ran). Dropping the future detaches the greenlet, as dropping the
/// `Greenlet` does: it runs on.
///
/// # Examples
///
/// With tokio (any executor works; this example runs with the `tokio` feature):
///
/// ```
/// # #[cfg(feature = "tokio")] {
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let out = rt.block_on(async {
///     let g = greenlet::spawn(|| {
///         greenlet::sleep(std::time::Duration::from_millis(5)); // blocking-style code
///         "done"
///     });
///     g.await
/// });
/// assert_eq!(out, Ok("done"));
/// # }
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct GreenletFuture<T>(FlagFuture<Greenlet<T>>);

impl<T: Send + 'static> IntoFuture for Greenlet<T> {
    type Output = Result<T, JoinError>;
    type IntoFuture = GreenletFuture<T>;

    fn into_future(self) -> GreenletFuture<T> {
        GreenletFuture(FlagFuture::new(self, |g| &g.inner.meta.done))
    }
}

impl<T: Send + 'static> Future for GreenletFuture<T> {
    type Output = Result<T, JoinError>;

    /// # Panics
    ///
    /// When polled again after it returned `Ready`.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Done, and its links have given the result back: `get` does not wait.
        self.get_mut().0.poll(cx, Greenlet::get)
    }
}

impl<T> std::fmt::Debug for GreenletFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GreenletFuture")
            .field("id", &self.0.held().map(|g| g.inner.meta.id))
            .finish()
    }
}
