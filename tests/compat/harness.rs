//! How a row runs: the binary's one-time set-up, one row at a time, 50 greenlets under the
//! watchdog, and the timing verdict.

use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};
use std::time::{Duration, Instant};

use crate::support::watchdog::bounded;
use crate::support::{capture_log, logged};

/// Greenlets per row, each making one call.
pub const CALLS: usize = 50;
/// How long the server (or child process, or pipe writer) takes to answer each call.
pub const DELAY: Duration = Duration::from_millis(100);
/// A row is cooperative when its 50 calls all end within this; one after another they take
/// 5 s (2.5 s on two workers), cooperatively about one `DELAY`.
pub const COOPERATIVE: Duration = Duration::from_secs(2);
/// The watchdog of a row: past this it fails as a hang, with the greenlet dump.
pub const WATCHDOG: Duration = Duration::from_secs(60);
/// The blocked-worker monitor's threshold in these binaries.
pub const MAX_BLOCKING: Duration = Duration::from_millis(100);

/// Once per binary: the capturing logger, `configure`'s settings plus the monitor, then
/// `patch_all`. Returns the row lock: rows run one at a time, since a row that blocks its
/// workers (what some rows measure) would slow every greenlet of a row beside it.
pub fn setup(configure: fn(greenlet::Config) -> greenlet::Config) -> MutexGuard<'static, ()> {
    static ONCE: Once = Once::new();
    static ROWS: Mutex<()> = Mutex::new(());
    ONCE.call_once(|| {
        capture_log();
        // Only the monitor's reports matter here; the clients' debug logs would pile up.
        log::set_max_level(log::LevelFilter::Warn);
        configure(greenlet::config().monitor(MAX_BLOCKING))
            .apply()
            .expect("configured before the runtime starts");
        greenlet::monkey::patch_all();
    });
    ROWS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `call(i)` in `CALLS` greenlets at once (spawned from a plain thread, under the
/// watchdog), checks every call succeeded, prints the time, and asserts it was cooperative.
pub fn fifty<F>(row: &'static str, call: F) -> Duration
where
    F: Fn(usize) -> Result<(), String> + Send + Sync + 'static,
{
    let (took, failures) = bounded(row, WATCHDOG, move || {
        let call = Arc::new(call);
        let start = Instant::now();
        let greenlets: Vec<_> = (0..CALLS)
            .map(|i| {
                let call = Arc::clone(&call);
                greenlet::Builder::new()
                    .name(format!("{row} #{i}"))
                    .spawn(move || call(i))
                    .expect("spawn a greenlet")
            })
            .collect();
        let results = greenlet::joinall(greenlets);
        let took = start.elapsed();
        let failures: Vec<String> = results
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| match r {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("call {i}: {e}")),
                Err(e) => Some(format!("call {i}: its greenlet failed: {e}")),
            })
            .collect();
        (took, failures)
    });
    let sequential = format!("one call after another: {:?}", DELAY * CALLS as u32);
    verdict(row, took, COOPERATIVE, &failures, &sequential);
    took
}

/// Prints the row's time, then fails on any failed call or a time over `bound` (`slow` says
/// what a time over it means).
pub fn verdict(row: &str, took: Duration, bound: Duration, failures: &[String], slow: &str) {
    let workers = greenlet::settings().workers;
    eprintln!("compat row `{row}` ({workers} workers): {took:.2?}");
    assert!(
        failures.is_empty(),
        "{row}: {} of the calls failed, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(
        took < bound,
        "{row}: took {took:.2?} on {workers} workers, over the {bound:?} bound: not cooperative \
         ({slow})"
    );
}

/// Waits up to 2 s for the monitor's report (a `warn` or `error` record) that names the
/// greenlet `name` and contains one of `words`; returns it, or fails listing what was logged.
pub fn diagnosis(name: &str, words: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let reports: Vec<(log::Level, String)> = logged(name)
            .into_iter()
            .filter(|(level, _)| *level <= log::Level::Warn)
            .collect();
        if let Some((_, m)) = reports
            .iter()
            .find(|(_, m)| words.iter().any(|w| m.contains(w)))
        {
            return m.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the monitor did not diagnose greenlet `{name}` as blocked in {words:?}; its reports \
             naming it: {reports:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
