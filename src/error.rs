//! Errors used crate-wide: how a greenlet ended, a deadline that passed, a late configuration.

use std::fmt;
use std::io;
use std::time::Duration;

/// Why a greenlet produced no value.
///
/// Returned by [`Greenlet::get`](crate::Greenlet::get), [`joinall`](crate::joinall) and
/// [`iwait`](crate::iwait). A greenlet's failure never takes the process down: it is stored
/// here, reported once through [`log`], and the other greenlets run on.
///
/// # Examples
///
/// ```
/// use greenlet::JoinError;
///
/// let g = greenlet::spawn(|| -> u32 { panic!("boom") });
/// match g.get() {
///     Err(JoinError::Panicked(msg)) => assert_eq!(msg, "boom"),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinError {
    /// The greenlet panicked; this is the panic message (`"<non-string panic payload>"` when the
    /// payload was neither a `&str` nor a `String`).
    Panicked(String),
    /// The greenlet was ended by [`Greenlet::kill`](crate::Greenlet::kill) (or
    /// [`killall`](crate::killall)) before it returned a value. Its destructors ran.
    Killed,
    /// The greenlet was ended because a [`Timeout`](crate::Timeout) it started expired.
    TimedOut,
}

impl JoinError {
    /// Returns `true` for [`JoinError::Panicked`].
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panicked(_))
    }

    /// Returns `true` for [`JoinError::Killed`].
    pub fn is_killed(&self) -> bool {
        matches!(self, JoinError::Killed)
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(msg) => write!(f, "greenlet panicked: {msg}"),
            JoinError::Killed => f.write_str("greenlet was killed"),
            JoinError::TimedOut => f.write_str("greenlet was interrupted by its timeout"),
        }
    }
}

impl std::error::Error for JoinError {}

/// The deadline of [`with_timeout`](crate::with_timeout) passed before the work finished.
///
/// Converts into an [`io::Error`] of kind [`io::ErrorKind::TimedOut`], so it can be returned
/// with `?` from functions that return `io::Result`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let r = greenlet::with_timeout(Duration::from_millis(10), || {
///     greenlet::sleep(Duration::from_secs(5));
/// });
/// let err = r.unwrap_err();
/// assert_eq!(err.duration(), Duration::from_millis(10));
/// assert_eq!(std::io::Error::from(err).kind(), std::io::ErrorKind::TimedOut);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed {
    duration: Duration,
}

impl Elapsed {
    pub(crate) fn new(duration: Duration) -> Self {
        Elapsed { duration }
    }

    /// The time-out that expired.
    pub fn duration(&self) -> Duration {
        self.duration
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deadline of {:?} elapsed", self.duration)
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for io::Error {
    fn from(e: Elapsed) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, e)
    }
}

/// [`Config::apply`](crate::Config::apply) refused a change.
///
/// may reads its settings once, when the first greenlet is spawned, and pre-allocates its
/// stack pool then; a late change would be silently ignored, and a stack that cannot be
/// allocated would leave the runtime unable to start, so both are refused up front.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The runtime has already started (a greenlet was spawned).
    Started,
    /// A stack of this many bytes could not be allocated.
    StackSize {
        /// The requested size in bytes.
        bytes: usize,
        /// What the allocation reported.
        reason: String,
    },
    /// may pre-allocates the whole stack pool at start, two memory mappings per stack, and the
    /// kernel's `vm.max_map_count` leaves room for at most `max` of them.
    PoolCapacity {
        /// The requested capacity.
        requested: usize,
        /// The largest capacity the current `vm.max_map_count` allows.
        max: usize,
    },
    /// The tokio runtime given to the async bridge ([`Config::tokio_handle`]) is not a
    /// multi-thread one: a current-thread runtime drives its timers and sockets only inside
    /// its own `block_on`, so greenlets waiting on them would wait for good.
    ///
    /// [`Config::tokio_handle`]: crate::Config
    TokioFlavor,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Started => f.write_str(
                "the greenlet runtime has already started; configure it before the first spawn",
            ),
            ConfigError::StackSize { bytes, reason } => {
                write!(
                    f,
                    "cannot allocate a greenlet stack of {bytes} bytes: {reason}"
                )
            }
            ConfigError::PoolCapacity { requested, max } => write!(
                f,
                "a stack pool of {requested} exceeds the {max} that vm.max_map_count allows"
            ),
            ConfigError::TokioFlavor => f.write_str(
                "the async bridge needs a multi-thread tokio runtime (a current-thread one \
                 drives its timers and sockets only inside its own block_on)",
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lowercase_without_period() {
        for s in [
            JoinError::Panicked("x".into()).to_string(),
            JoinError::Killed.to_string(),
            JoinError::TimedOut.to_string(),
            Elapsed::new(Duration::from_millis(5)).to_string(),
            ConfigError::Started.to_string(),
        ] {
            assert!(s.starts_with(|c: char| c.is_lowercase()), "{s}");
            assert!(!s.ends_with('.'), "{s}");
        }
    }
}
