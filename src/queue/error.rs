//! Queue errors, as crossbeam-channel's: a put that fails gives the item back, and `Debug`
//! does not require `T: Debug`.

use std::fmt;

macro_rules! item_error {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $msg:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(PartialEq, Eq, Clone, Copy)]
        pub enum $name<T> {
            $($(#[$vm])* $variant(T),)*
        }

        impl<T> $name<T> {
            /// The item that was not delivered.
            pub fn into_inner(self) -> T {
                match self {
                    $($name::$variant(t) => t,)*
                }
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$variant(_) => f.write_str(concat!(stringify!($variant), "(..)")),)*
                }
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$variant(_) => f.write_str($msg),)*
                }
            }
        }

        impl<T> std::error::Error for $name<T> {}
    };
}

/// [`put`](super::Queue::put) on a closed queue; the item comes back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct PutError<T>(pub T);

impl<T> PutError<T> {
    /// The item that was not delivered.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PutError(..)")
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("putting into a closed queue")
    }
}

impl<T> std::error::Error for PutError<T> {}

item_error! {
    /// [`try_put`](super::Queue::try_put) failed; the item comes back.
    TryPutError {
        /// The queue is at capacity (or, for a [`Channel`](super::Channel), no getter waits).
        Full => "putting into a full queue",
        /// The queue is closed.
        Closed => "putting into a closed queue",
    }
}

item_error! {
    /// [`put_timeout`](super::Queue::put_timeout) failed; the item comes back.
    PutTimeoutError {
        /// No room (no getter, for a channel) before the time-out.
        Timeout => "timed out putting into a queue",
        /// The queue is closed.
        Closed => "putting into a closed queue",
    }
}

impl<T> From<PutError<T>> for TryPutError<T> {
    fn from(e: PutError<T>) -> Self {
        TryPutError::Closed(e.0)
    }
}

impl<T> From<PutError<T>> for PutTimeoutError<T> {
    fn from(e: PutError<T>) -> Self {
        PutTimeoutError::Closed(e.0)
    }
}

/// [`get`](super::Queue::get) on a queue that is closed and empty.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct GetError;

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("getting from a closed and empty queue")
    }
}

impl std::error::Error for GetError {}

/// [`try_get`](super::Queue::try_get) found nothing.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum TryGetError {
    /// The queue is empty (and open).
    Empty,
    /// The queue is closed and empty.
    Closed,
}

impl fmt::Display for TryGetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryGetError::Empty => "getting from an empty queue",
            TryGetError::Closed => "getting from a closed and empty queue",
        })
    }
}

impl std::error::Error for TryGetError {}

/// [`get_timeout`](super::Queue::get_timeout) got nothing.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum GetTimeoutError {
    /// Nothing arrived before the time-out.
    Timeout,
    /// The queue is closed and empty.
    Closed,
}

impl fmt::Display for GetTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GetTimeoutError::Timeout => "timed out getting from a queue",
            GetTimeoutError::Closed => "getting from a closed and empty queue",
        })
    }
}

impl std::error::Error for GetTimeoutError {}

impl From<GetError> for TryGetError {
    fn from(_: GetError) -> Self {
        TryGetError::Closed
    }
}

impl From<GetError> for GetTimeoutError {
    fn from(_: GetError) -> Self {
        GetTimeoutError::Closed
    }
}

/// [`task_done`](super::Queue::task_done) was called more times than items were put.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct TaskDoneError;

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done called more times than items were put")
    }
}

impl std::error::Error for TaskDoneError {}
