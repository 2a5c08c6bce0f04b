//! Panic plumbing: a process-wide hook that keeps greenlet panics off stderr (they are reported
//! through `log` by the greenlet that caught them), and payload → message conversion.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic;

thread_local! {
    /// The message and location of the last panic raised inside a coroutine (or a managed
    /// thread) on this thread, left by the hook for the code that catches it.
    static LAST: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
    /// Set while we probe may's spawn, whose stack allocation failure is a panic we turn
    /// into an `io::Error`.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// Set on the crate's own threads (the blocking pool), whose panics are caught and
    /// reported like a greenlet's.
    static MANAGED: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as one whose panics the crate catches and reports.
pub(crate) fn mark_managed_thread() {
    MANAGED.with(|m| m.set(true));
}

/// Installs the hook once. Panics outside coroutines still go to the previous hook (by
/// default: printed to stderr), so nothing changes for plain threads.
pub(crate) fn install_hook() {
    let prev = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if QUIET.with(Cell::get) {
            return;
        }
        if !may::coroutine::is_coroutine() && !MANAGED.with(Cell::get) {
            return prev(info);
        }
        // may's kill is an unwind with this payload: not an error, nothing to report. Its
        // unwind starts here: the kill is delivered, once (see `greenlet::kill`).
        if let Some(e) = info.payload().downcast_ref::<generator::Error>() {
            if matches!(e, generator::Error::Cancel) && may::coroutine::is_coroutine() {
                crate::greenlet::kill::unwind_started();
            }
            return;
        }
        if may::coroutine::is_coroutine() {
            crate::greenlet::kill::panic_started();
        }
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let message = message(info.payload());
        // `try_with`/`try_borrow_mut`: a hook must never panic itself.
        let _ = LAST.try_with(|last| {
            if let Ok(mut last) = last.try_borrow_mut() {
                *last = Some((message, location));
            }
        });
    }));
}

/// Where the panic with this message was raised, if the hook saw it on this thread.
pub(crate) fn take_location(message: &str) -> Option<String> {
    let (m, loc) = LAST.try_with(|l| l.borrow_mut().take()).ok()??;
    (m == message).then_some(loc)
}

/// Runs `f` with the hook silenced on this thread.
pub(crate) fn quietly<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            QUIET.with(|q| q.set(self.0));
        }
    }
    let _reset = Reset(QUIET.with(|q| q.replace(true)));
    f()
}

/// The text of a panic payload.
pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

/// Whether a payload is may's kill (cancel) unwind rather than a real panic.
pub(crate) fn is_cancel(payload: &(dyn Any + Send)) -> bool {
    matches!(
        payload.downcast_ref::<generator::Error>(),
        Some(generator::Error::Cancel)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_messages() {
        assert_eq!(message(&"a"), "a");
        assert_eq!(message(&String::from("b")), "b");
        assert_eq!(message(&42_u8), "<non-string panic payload>");
        assert!(is_cancel(&generator::Error::Cancel));
        assert!(!is_cancel(&"x"));
    }
}
