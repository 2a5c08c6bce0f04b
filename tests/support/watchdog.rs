//! A watchdog for tests that must fail, never hang: the case runs on a plain thread (which
//! spawns its greenlets), watched from the test's thread with a bound. On expiry the test fails
//! with the case's name and `greenlet::dump()` (wait tracking is switched on first).

use std::sync::mpsc;
use std::time::Duration;

/// Runs `case` and returns its value; panics with `name` and the greenlet dump if it has not
/// finished within `bound`, or re-raises its panic.
pub fn bounded<R, F>(name: &str, bound: Duration, case: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    greenlet::track_waits(true);
    let (tx, rx) = mpsc::channel();
    let runner = std::thread::Builder::new()
        .name(format!("case {name}"))
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(case));
            let _ = tx.send(r);
        })
        .expect("spawn the case's thread");
    match rx.recv_timeout(bound) {
        Ok(Ok(v)) => {
            let _ = runner.join();
            v
        }
        Ok(Err(payload)) => std::panic::resume_unwind(payload),
        Err(_) => panic!(
            "case `{name}` did not finish within {bound:?} (it hangs)\n{}{}",
            greenlet::dump(),
            thread_stacks()
        ),
    }
}

/// With `GREENLET_TEST_GDB=1` (and gdb installed): every thread's stack, for a hang's report.
fn thread_stacks() -> String {
    if std::env::var_os("GREENLET_TEST_GDB").is_none() {
        return String::new();
    }
    let out = std::process::Command::new("gdb")
        .args(["-p", &std::process::id().to_string(), "-batch"])
        .args(["-ex", "thread apply all bt 25"])
        .output();
    match out {
        Ok(o) => format!("\nthread stacks:\n{}", String::from_utf8_lossy(&o.stdout)),
        Err(e) => format!("\n(no thread stacks: {e})"),
    }
}

/// Runs `case` inside a greenlet, watched as [`bounded`].
pub fn in_greenlet<R, F>(name: &str, bound: Duration, case: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let name_owned = name.to_owned();
    bounded(name, bound, move || {
        match greenlet::Builder::new().name(name_owned).spawn(case) {
            Ok(g) => match g.get() {
                Ok(v) => v,
                Err(e) => panic!("the case's greenlet failed: {e}"),
            },
            Err(e) => panic!("cannot spawn the case's greenlet: {e}"),
        }
    })
}
