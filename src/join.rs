//! Waiting on many greenlets: `joinall`, `joinall_timeout`, `iwait`, `killall`.

use std::fmt;
use std::iter::FusedIterator;
use std::time::{Duration, Instant};

use crate::error::JoinError;
use crate::greenlet::Greenlet;

/// Waits for every greenlet and returns their results in the order given (gevent's
/// `joinall`). Failures are values in the list, never a panic of the caller.
///
/// # Kill safety
///
/// If the caller is killed while waiting, the greenlets run on (detached).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let gs: Vec<_> = [30, 10, 20]
///     .into_iter()
///     .map(|ms| greenlet::spawn(move || { greenlet::sleep(Duration::from_millis(ms)); ms }))
///     .collect();
/// let results = greenlet::joinall(gs);
/// assert_eq!(results, vec![Ok(30), Ok(10), Ok(20)]);
/// ```
pub fn joinall<T, I>(greenlets: I) -> Vec<Result<T, JoinError>>
where
    I: IntoIterator<Item = Greenlet<T>>,
    T: Send + 'static,
{
    greenlets.into_iter().map(Greenlet::get).collect()
}

/// Waits until every greenlet has finished or `d` has passed, and returns how many have
/// finished. The handles stay usable.
///
/// Time-out contract (see [the crate docs](crate#time-outs-never-hang)): never returns before
/// its deadline, never hangs; zero checks once, `Duration::MAX` means no deadline.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let gs = vec![
///     greenlet::spawn(|| ()),
///     greenlet::spawn(|| greenlet::sleep(Duration::from_secs(10))),
/// ];
/// assert_eq!(greenlet::joinall_timeout(&gs, Duration::from_millis(50)), 1);
/// greenlet::killall(&gs);
/// ```
pub fn joinall_timeout<T: Send + 'static>(greenlets: &[Greenlet<T>], d: Duration) -> usize {
    let deadline = Instant::now().checked_add(d);
    greenlets
        .iter()
        .filter(|g| match deadline {
            Some(deadline) => g.join_timeout(deadline.saturating_duration_since(Instant::now())),
            None => {
                g.join();
                true
            }
        })
        .count()
}

/// Yields `(index, result)` for each greenlet as it finishes, in finishing order (gevent's
/// `iwait`). `index` is the greenlet's position in the input.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let gs: Vec<_> = [40, 10, 25]
///     .into_iter()
///     .map(|ms| greenlet::spawn(move || greenlet::sleep(Duration::from_millis(ms))))
///     .collect();
/// let order: Vec<usize> = greenlet::iwait(gs).map(|(i, _)| i).collect();
/// assert_eq!(order, vec![1, 2, 0]);
/// ```
pub fn iwait<T, I>(greenlets: I) -> Iwait<T>
where
    I: IntoIterator<Item = Greenlet<T>>,
    T: Send + 'static,
{
    let finished = crate::queue::Queue::unbounded();
    let greenlets: Vec<Option<Greenlet<T>>> = greenlets.into_iter().map(Some).collect();
    for (i, g) in greenlets.iter().enumerate() {
        let finished = finished.clone();
        if let Some(g) = g {
            // An unbounded queue never blocks the finishing greenlet.
            g.on_done(Box::new(move || {
                let _ = finished.put(i);
            }));
        }
    }
    Iwait {
        left: greenlets.len(),
        greenlets,
        finished,
    }
}

/// The iterator returned by [`iwait`].
pub struct Iwait<T> {
    greenlets: Vec<Option<Greenlet<T>>>,
    finished: crate::queue::Queue<usize>,
    left: usize,
}

impl<T: Send + 'static> Iterator for Iwait<T> {
    type Item = (usize, Result<T, JoinError>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let i = self.finished.get().ok()?;
        let g = self.greenlets.get_mut(i)?.take()?;
        self.left -= 1;
        Some((i, g.get()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<T: Send + 'static> ExactSizeIterator for Iwait<T> {}
impl<T: Send + 'static> FusedIterator for Iwait<T> {}

impl<T> fmt::Debug for Iwait<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iwait").field("left", &self.left).finish()
    }
}

/// Kills every greenlet and waits until all are gone (gevent's `killall`). Greenlets that
/// have not started yet never run their body. The calling greenlet, if listed, is asked to
/// unwind at its next blocking point but not waited for.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let gs: Vec<_> = (0..3)
///     .map(|_| greenlet::spawn(|| greenlet::sleep(Duration::from_secs(60))))
///     .collect();
/// greenlet::killall(&gs);
/// assert!(gs.iter().all(|g| g.ready()));
/// ```
pub fn killall<T: Send + 'static>(greenlets: &[Greenlet<T>]) {
    for g in greenlets {
        g.kill_nowait();
    }
    for g in greenlets {
        if !g.is_current() {
            g.join();
        }
    }
}
