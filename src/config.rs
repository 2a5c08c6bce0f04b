//! Runtime configuration (gevent's `gevent.config`), read once when the runtime starts.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

use crate::error::ConfigError;

/// may counts stack sizes in machine words; we count bytes.
const WORD: usize = std::mem::size_of::<usize>();
const PAGE: usize = 4096;
/// Smallest stack we hand to may: the guard page plus room for the greenlet's first frames.
pub(crate) const MIN_STACK_BYTES: usize = 8 * 1024;
/// 128 KiB, four times may's 32 KiB: a rustls handshake needs more than 48 KiB of stack in a
/// debug build (measured), and an overflow stops the greenlet and leaks its resources. Only the
/// pages a greenlet touches cost memory, so a parked greenlet's RSS does not grow with this.
const DEFAULT_STACK_BYTES: usize = 128 * 1024;
/// may's own pool of pre-made stacks is filled when the runtime starts (1,000 took 16-21 ms
/// here, delaying the first spawn); warm greenlets (`greenlet::warm`) replace it.
const DEFAULT_POOL_CAPACITY: usize = 0;
/// How long a finished greenlet's coroutine stays warm for the next spawn.
const DEFAULT_KEEP_WARM: Duration = Duration::from_secs(10);
/// gevent's resolver pool has 10 threads and its users hit that ceiling (gevent #1904);
/// threads here are started on demand and leave after 10 s idle, so a larger cap costs nothing.
const DEFAULT_THREADPOOL_SIZE: usize = 64;

// Our view of the settings; copied into may's `config()` when the runtime starts.
static WORKERS: AtomicUsize = AtomicUsize::new(0); // 0 = one per core
static STACK_BYTES: AtomicUsize = AtomicUsize::new(DEFAULT_STACK_BYTES);
static POOL_CAPACITY: AtomicUsize = AtomicUsize::new(DEFAULT_POOL_CAPACITY);
static KEEP_WARM_NS: AtomicU64 = AtomicU64::new(DEFAULT_KEEP_WARM.as_nanos() as u64);
static PIN_WORKERS: AtomicBool = AtomicBool::new(false);
static THREADPOOL_SIZE: AtomicUsize = AtomicUsize::new(DEFAULT_THREADPOOL_SIZE);
static MAX_GREENLETS: AtomicUsize = AtomicUsize::new(0); // 0 = no expectation stated
static MONITOR: Mutex<Option<Duration>> = Mutex::new(None); // None = off
/// Set once `Config::monitor` was applied: the environment variable no longer counts.
static MONITOR_SET: AtomicBool = AtomicBool::new(false);
/// Set at start when the monitor's setting was chosen, by `Config::monitor` or by a readable
/// [`MONITOR_ENV`] (off included): [`monitor_unless_chosen`] then leaves it alone.
static MONITOR_CHOSEN: AtomicBool = AtomicBool::new(false);

static STARTED: AtomicBool = AtomicBool::new(false);
static START: Once = Once::new();
/// Serialises [`Config::apply`] against the start of the runtime.
static LOCK: Mutex<()> = Mutex::new(());

/// Starts a configuration change. Set what you need, then call [`Config::apply`] before the
/// first greenlet is spawned.
///
/// # Examples
///
/// ```
/// greenlet::config()
///     .workers(2)
///     .stack_size(64 * 1024)
///     .apply()
///     .expect("called before the first spawn");
/// let g = greenlet::spawn(|| 1 + 1);
/// assert_eq!(g.get(), Ok(2));
/// assert_eq!(greenlet::settings().stack_size, 64 * 1024);
/// ```
#[doc(alias = "gevent.config")]
pub fn config() -> Config {
    Config::default()
}

/// A set of runtime settings to apply; fields left unset keep their current value.
///
/// Made by [`config()`]. Settings only take effect through [`Config::apply`].
#[derive(Debug, Clone, Default)]
#[must_use = "a Config does nothing until `apply` is called"]
pub struct Config {
    workers: Option<usize>,
    stack_size: Option<usize>,
    pool_capacity: Option<usize>,
    keep_warm: Option<Duration>,
    pin_workers: Option<bool>,
    threadpool_size: Option<usize>,
    max_greenlets: Option<usize>,
    monitor: Option<Duration>,
    #[cfg(feature = "tokio")]
    tokio_threads: Option<usize>,
    #[cfg(feature = "tokio")]
    tokio_handle: Option<tokio::runtime::Handle>,
}

impl Config {
    /// Number of worker threads that run greenlets. `0` means one per CPU core (the default).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Default stack size of a greenlet, in **bytes** (may itself counts words; we convert).
    ///
    /// Rounded up to a multiple of 4 KiB, and to at least 8 KiB. The default is 128 KiB (may's
    /// is 32 KiB; a TLS handshake in a debug build needs more than 48 KiB). Each stack is a
    /// memory mapping of this size plus a guard page; only the pages a greenlet touches cost
    /// memory. A greenlet that overflows its stack is stopped without unwinding (what it held
    /// is leaked and stays held; its stack stays mapped for good) and its result is a
    /// [`JoinError::Panicked`](crate::JoinError) saying so; size generously for deep recursion
    /// or large frames.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// How many stacks may keeps pre-made for new coroutines (default 0).
    ///
    /// Finished greenlets' coroutines are reused warm by later spawns (see
    /// [`keep_warm`](Self::keep_warm)), so this pool only serves spawns beyond them. It is
    /// filled when the runtime starts, which delays the first spawn (1,000 stacks took 16-21
    /// ms on a 2-core machine) and takes memory mappings.
    pub fn pool_capacity(mut self, n: usize) -> Self {
        self.pool_capacity = Some(n);
        self
    }

    /// How long a finished greenlet's coroutine, with its stack, stays parked for reuse by a
    /// later spawn (default 10 s; zero: not reused).
    ///
    /// A spawn onto a worker takes the most recently finished one there: no stack is mapped,
    /// and from a greenlet of the same worker no other thread is woken. Idle ones are ended
    /// after about this long (up to a quarter more), so memory follows the number of live
    /// greenlets once a burst is over; at most as many are kept as were alive at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// greenlet::config()
    ///     .keep_warm(Duration::from_secs(1))
    ///     .apply()
    ///     .expect("called before the first spawn");
    /// assert_eq!(greenlet::settings().keep_warm, Duration::from_secs(1));
    /// ```
    pub fn keep_warm(mut self, d: Duration) -> Self {
        self.keep_warm = Some(d);
        self
    }

    /// Pin each worker thread to a CPU core. Off by default: measured on a 2-core machine,
    /// pinning cost may's HTTP server about 20% throughput when a load generator shared the cores.
    pub fn pin_workers(mut self, pin: bool) -> Self {
        self.pin_workers = Some(pin);
        self
    }

    /// Most OS threads [`threadpool::spawn_blocking`](crate::threadpool::spawn_blocking) (and
    /// so name resolution) may run at once (default 64; at least 1). Threads start on demand
    /// and exit after 10 s idle.
    pub fn threadpool_size(mut self, n: usize) -> Self {
        self.threadpool_size = Some(n);
        self
    }

    /// How many greenlets the program expects to have alive at once (default: not stated).
    ///
    /// Each live greenlet takes two memory mappings (its stack and a guard page), and Linux
    /// limits a process to `vm.max_map_count` mappings (65,530 by default: about 32,000
    /// greenlets). When the runtime starts and the limit allows fewer than `n`, a warning is
    /// logged once with the `sysctl` command that raises it. Past the limit,
    /// [`Builder::spawn`](crate::Builder::spawn) returns an error (it never hangs).
    pub fn max_greenlets(mut self, n: usize) -> Self {
        self.max_greenlets = Some(n);
        self
    }

    /// Starts a monitor thread that logs at `warn` when a greenlet holds its worker thread for
    /// longer than `max_blocking` without switching (gevent's `max_blocking_time`). Off by
    /// default; `Duration::ZERO` turns it off. gevent's default threshold is 100 ms.
    ///
    /// Without a call to `monitor`, the environment variable `GREENLET_MAX_BLOCKING_MS` (a
    /// whole number of milliseconds, read when the runtime starts) switches it on, like
    /// gevent's `GEVENT_MAX_BLOCKING_TIME`, so an unchanged program can be checked. An
    /// unreadable value is logged at `warn` and ignored.
    ///
    /// A greenlet that calls a real blocking function (`std::net`, `std::thread::sleep`, a
    /// `std::sync::Mutex` held elsewhere) or computes without a blocking point stalls every
    /// greenlet queued on its thread. The report names the greenlet (name and id), the thread,
    /// how long, and (on Linux) whether it is in a system call or computing. Each incident is
    /// reported once; its end is logged at `debug`. A greenlet in a futex wait (a `std::sync`
    /// lock or channel, `thread::park`, crossbeam) is reported as such, with what to use
    /// instead and, on Linux with glibc, the Rust function that waited; when every worker is
    /// blocked at once, an `error` carries the [`dump`](crate::dump) (see [the crate
    /// docs](crate#std-channels-and-locks-inside-greenlets)).
    ///
    /// `monkey::patch_all()` switches the monitor on at 100 ms unless it was set here or by the
    /// variable; `monitor(Duration::ZERO)` (or `GREENLET_MAX_BLOCKING_MS=0`) keeps it off.
    ///
    /// The monitor sees the switches that pass through this crate's API (starts, ends and
    /// every blocking point of `greenlet`): checking costs a few relaxed atomic operations per
    /// blocking point while on (`cargo bench --bench monitor`). A greenlet waiting on may's
    /// primitives used directly (`may::sync`) is not seen to switch; on Linux the monitor then checks the thread's stack pointer and
    /// stays quiet about an idle thread, but a thread busy with such coroutines can be
    /// reported under the last greenlet it saw.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// greenlet::config()
    ///     .monitor(Duration::from_millis(100))
    ///     .apply()
    ///     .expect("before the first spawn");
    /// // Logs: greenlet sleepy (id 1) has held its worker thread (tid ...) for 100 ms ...
    /// let g = greenlet::Builder::new()
    ///     .name("sleepy")
    ///     .spawn(|| std::thread::sleep(Duration::from_millis(500)))
    ///     .unwrap();
    /// g.join();
    /// ```
    #[doc(alias = "max_blocking_time")]
    pub fn monitor(mut self, max_blocking: Duration) -> Self {
        self.monitor = Some(max_blocking);
        self
    }

    /// Threads of the tokio runtime that [`block_on`](crate::block_on) polls futures in,
    /// started with the greenlet runtime (feature `tokio`; default 2: they only run tokio's
    /// I/O driver, timers and the tasks futures spawn, while the futures themselves are polled
    /// in the greenlets). `0` means the default. Ignored when
    /// [`tokio_handle`](Self::tokio_handle) gives a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// greenlet::config()
    ///     .tokio_threads(4)
    ///     .apply()
    ///     .expect("before the first spawn");
    /// assert_eq!(greenlet::settings().tokio_threads, 4);
    /// ```
    #[cfg(feature = "tokio")]
    pub fn tokio_threads(mut self, n: usize) -> Self {
        self.tokio_threads = Some(n);
        self
    }

    /// The tokio runtime [`block_on`](crate::block_on) polls futures in, instead of a runtime
    /// of its own (feature `tokio`): for a program that already has one. It must be a
    /// multi-thread runtime, and outlive the greenlets' use of it: once it has shut down,
    /// tokio refuses its timers and sockets (a panic in the greenlet) for the rest of the
    /// process.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = tokio::runtime::Runtime::new().unwrap();
    /// greenlet::config()
    ///     .tokio_handle(rt.handle().clone())
    ///     .apply()
    ///     .expect("before the first spawn");
    /// let n = greenlet::spawn(|| greenlet::block_on(async { 1 + 1 })).get();
    /// assert_eq!(n, Ok(2));
    /// ```
    #[cfg(feature = "tokio")]
    pub fn tokio_handle(mut self, handle: tokio::runtime::Handle) -> Self {
        self.tokio_handle = Some(handle);
        self
    }

    /// Applies the settings.
    ///
    /// # Errors
    ///
    /// - [`ConfigError::Started`] when the runtime has already started: a greenlet was
    ///   spawned, or a socket, thread pool, HTTP client or `monkey` patch of the crate was
    ///   made (each starts it). may reads its settings once, so a late change would be silently
    ///   ignored. Code that uses `may` directly (not through this crate) starts may without
    ///   the crate knowing; configure before any such code runs.
    /// - [`ConfigError::StackSize`] when a stack of the requested size cannot be allocated now
    ///   (it is tried once): may would fail to start with it.
    /// - [`ConfigError::PoolCapacity`] when the pool, which may fills at start, would need
    ///   more memory mappings than `vm.max_map_count` allows.
    /// - [`ConfigError::Started`] also when a tokio setting is given after the async bridge
    ///   fixed its runtime (feature `tokio`: when the greenlet runtime started, or at a plain
    ///   thread's earlier `block_on` or `bridge::handle`).
    /// - [`ConfigError::TokioFlavor`] when `tokio_handle` (feature `tokio`) gives a
    ///   current-thread runtime.
    ///
    /// Nothing is changed when an error is returned.
    pub fn apply(self) -> Result<(), ConfigError> {
        let _guard = crate::sync::lock(&LOCK);
        if STARTED.load(Ordering::Acquire) {
            return Err(ConfigError::Started);
        }
        if let Some(bytes) = self.stack_size {
            probe_stack(bytes)?;
        }
        if let Some(requested) = self.pool_capacity {
            check_pool(requested)?;
        }
        // The last check, and the first change: the bridge's runtime may have been fixed by a
        // plain thread meanwhile.
        #[cfg(feature = "tokio")]
        if self
            .tokio_handle
            .as_ref()
            .is_some_and(|h| h.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread)
        {
            return Err(ConfigError::TokioFlavor);
        }
        #[cfg(feature = "tokio")]
        if (self.tokio_threads.is_some() || self.tokio_handle.is_some())
            && !crate::bridge::choose(self.tokio_handle, self.tokio_threads)
        {
            return Err(ConfigError::Started);
        }
        if let Some(n) = self.workers {
            WORKERS.store(n, Ordering::Relaxed);
        }
        if let Some(bytes) = self.stack_size {
            STACK_BYTES.store(round_stack(bytes), Ordering::Relaxed);
        }
        if let Some(n) = self.pool_capacity {
            POOL_CAPACITY.store(n, Ordering::Relaxed);
        }
        if let Some(d) = self.keep_warm {
            KEEP_WARM_NS.store(
                u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
        if let Some(pin) = self.pin_workers {
            PIN_WORKERS.store(pin, Ordering::Relaxed);
        }
        if let Some(n) = self.threadpool_size {
            THREADPOOL_SIZE.store(n.max(1), Ordering::Relaxed);
        }
        if let Some(n) = self.max_greenlets {
            MAX_GREENLETS.store(n, Ordering::Relaxed);
        }
        if let Some(d) = self.monitor {
            *crate::sync::lock(&MONITOR) = (!d.is_zero()).then_some(d);
            MONITOR_SET.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The settings in force (or that will be in force when the runtime starts).
///
/// # Examples
///
/// ```
/// let s = greenlet::settings();
/// assert!(s.workers >= 1);
/// assert!(!s.pin_workers);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// Worker threads (resolved: never 0).
    pub workers: usize,
    /// Default greenlet stack size in bytes.
    pub stack_size: usize,
    /// Stacks may keeps pre-made ([`Config::pool_capacity`]).
    pub pool_capacity: usize,
    /// How long a finished greenlet's coroutine stays warm for reuse ([`Config::keep_warm`]).
    pub keep_warm: Duration,
    /// Whether workers are pinned to cores.
    pub pin_workers: bool,
    /// Most threads of the blocking thread pool.
    pub threadpool_size: usize,
    /// Greenlets expected alive at once ([`Config::max_greenlets`]; 0: not stated).
    pub max_greenlets: usize,
    /// The blocked-worker monitor's threshold ([`Config::monitor`]); `None`: off.
    pub monitor: Option<Duration>,
    /// Whether the runtime has started (settings can no longer change).
    pub started: bool,
    /// Threads of the async bridge's own tokio runtime ([`Config::tokio_threads`]); 0 when
    /// the program gave one ([`Config::tokio_handle`]).
    #[cfg(feature = "tokio")]
    pub tokio_threads: usize,
}

/// Returns the current runtime settings.
pub fn settings() -> Settings {
    let workers = match WORKERS.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    Settings {
        workers,
        stack_size: STACK_BYTES.load(Ordering::Relaxed),
        pool_capacity: POOL_CAPACITY.load(Ordering::Relaxed),
        keep_warm: keep_warm(),
        pin_workers: PIN_WORKERS.load(Ordering::Relaxed),
        threadpool_size: THREADPOOL_SIZE.load(Ordering::Relaxed),
        max_greenlets: MAX_GREENLETS.load(Ordering::Relaxed),
        monitor: *crate::sync::lock(&MONITOR),
        started: STARTED.load(Ordering::Acquire),
        #[cfg(feature = "tokio")]
        tokio_threads: crate::bridge::threads(),
    }
}

/// How long a finished greenlet's coroutine stays warm ([`Config::keep_warm`]).
pub(crate) fn keep_warm() -> Duration {
    Duration::from_nanos(KEEP_WARM_NS.load(Ordering::Relaxed))
}

/// Tries to allocate (and frees) one stack of `bytes`, as may will at start.
fn probe_stack(bytes: usize) -> Result<(), ConfigError> {
    let words = stack_words(bytes);
    crate::panic::quietly(|| {
        std::panic::catch_unwind(|| drop(generator::Gn::<()>::new_opt(words, || ())))
    })
    .map_err(|payload| ConfigError::StackSize {
        bytes,
        reason: crate::panic::message(&*payload),
    })
}

/// The pool may pre-fills at start must fit in `vm.max_map_count` (two mappings a stack), with
/// half of the mappings left for everything else.
fn check_pool(requested: usize) -> Result<(), ConfigError> {
    let Some(max_maps) = max_map_count() else {
        return Ok(());
    };
    let max = max_maps / 4;
    if requested > max {
        return Err(ConfigError::PoolCapacity { requested, max });
    }
    Ok(())
}

/// Mappings a process typically uses besides greenlet stacks (libraries, heap, threads).
const OTHER_MAPPINGS: usize = 1_000;

/// How many live greenlets a `vm.max_map_count` of `max_maps` allows (two mappings each).
pub(crate) fn greenlets_allowed(max_maps: usize) -> usize {
    max_maps.saturating_sub(OTHER_MAPPINGS) / 2
}

/// Logs once, at start, when the mapping limit allows fewer greenlets than expected.
fn warn_if_map_count_is_low(expected: usize, max_maps: Option<usize>) {
    let Some(max_maps) = max_maps else { return };
    let allowed = greenlets_allowed(max_maps);
    if expected > allowed {
        let needed = expected * 2 + OTHER_MAPPINGS;
        log::warn!(
            "vm.max_map_count is {max_maps}: about {allowed} greenlets can be alive at once, \
             fewer than the {expected} expected (config().max_greenlets); each greenlet takes \
             two memory mappings. Raise it with `sysctl -w vm.max_map_count={needed}`"
        );
    }
}

/// The kernel's limit on memory mappings per process, where it can be read.
pub(crate) fn max_map_count() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Rounds a stack size in bytes to what we hand to may (whole pages, at least the minimum).
pub(crate) fn round_stack(bytes: usize) -> usize {
    bytes.max(MIN_STACK_BYTES).saturating_add(PAGE - 1) & !(PAGE - 1)
}

/// Converts a byte count into may's word count.
pub(crate) fn stack_words(bytes: usize) -> usize {
    round_stack(bytes) / WORD
}

/// Starts the runtime on first use: copies our settings into may's and installs the panic
/// hook that turns greenlet panics into log records.
#[inline]
pub(crate) fn ensure_started() {
    if !STARTED.load(Ordering::Acquire) {
        START.call_once(start);
    }
}

/// Turns the blocked-worker monitor on when [`Config::monitor`] was not called.
const MONITOR_ENV: &str = "GREENLET_MAX_BLOCKING_MS";

fn parse_millis(value: &str) -> Option<Duration> {
    value.trim().parse().ok().map(Duration::from_millis)
}

/// The monitor's setting from [`MONITOR_ENV`]: `None` when unset or unreadable (an
/// unreadable value is logged and ignored), `Some(None)` for 0 (off).
fn monitor_from_env() -> Option<Option<Duration>> {
    let value = std::env::var(MONITOR_ENV).ok()?;
    let threshold = parse_millis(&value);
    if threshold.is_none() {
        log::warn!("{MONITOR_ENV}={value:?} is not a whole number of milliseconds; ignored");
    }
    threshold.map(|d| (!d.is_zero()).then_some(d))
}

/// Starts the blocked-worker monitor with `max_blocking` unless its setting was chosen
/// ([`Config::monitor`], or [`MONITOR_ENV`]; off included) or it already runs; starts the
/// runtime first if needed. Returns whether it started the monitor.
pub(crate) fn monitor_unless_chosen(max_blocking: Duration) -> bool {
    ensure_started();
    let _guard = crate::sync::lock(&LOCK);
    if MONITOR_CHOSEN.load(Ordering::Relaxed) || crate::monitor::enabled() {
        return false;
    }
    *crate::sync::lock(&MONITOR) = Some(max_blocking);
    crate::monitor::start(max_blocking);
    log::debug!("monkey: blocked-worker monitor on by default ({max_blocking:?})");
    true
}

#[cold]
fn start() {
    let _guard = crate::sync::lock(&LOCK);
    let s = settings();
    let may = may::config();
    may.set_workers(s.workers);
    may.set_stack_size(s.stack_size / WORD);
    may.set_pool_capacity(s.pool_capacity.max(1));
    may.set_worker_pin(s.pin_workers);
    // The bridge's runtime first, on this thread: its workers enter it as they start, and
    // their helper coroutines' stacks (the configured size) are too small to build it.
    #[cfg(feature = "tokio")]
    crate::bridge::handle();
    crate::greenlet::run_first_coroutine();
    // After the first coroutine, so that generator's SIGSEGV handler is the one it replaces.
    crate::greenlet::overflow::install();
    crate::deadline::hop::learn_workers();
    crate::deadline::home::start_mailboxes();
    crate::greenlet::kill::reserve_spare_pipes();
    crate::panic::install_hook();
    STARTED.store(true, Ordering::Release);
    log::debug!("greenlet runtime started: {s:?}");
    warn_if_map_count_is_low(MAX_GREENLETS.load(Ordering::Relaxed), max_map_count());
    let chosen = if MONITOR_SET.load(Ordering::Relaxed) {
        Some(s.monitor)
    } else {
        monitor_from_env()
    };
    MONITOR_CHOSEN.store(chosen.is_some(), Ordering::Relaxed);
    let monitor = chosen.flatten();
    if let Some(max_blocking) = monitor {
        *crate::sync::lock(&MONITOR) = Some(max_blocking);
        crate::monitor::start(max_blocking);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_sizes_round_to_pages() {
        assert_eq!(round_stack(0), MIN_STACK_BYTES);
        assert_eq!(round_stack(MIN_STACK_BYTES + 1), MIN_STACK_BYTES + PAGE);
        assert_eq!(round_stack(64 * 1024), 64 * 1024);
        assert_eq!(stack_words(32 * 1024), 0x1000);
        // may treats an odd word count as "trace stack usage and print": never hand it one.
        assert_eq!(stack_words(12_345) % 2, 0);
        assert_eq!(round_stack(usize::MAX), usize::MAX & !(PAGE - 1));
    }

    #[test]
    fn monitor_threshold_from_the_environment() {
        assert_eq!(parse_millis("100"), Some(Duration::from_millis(100)));
        assert_eq!(parse_millis(" 5\n"), Some(Duration::from_millis(5)));
        assert_eq!(parse_millis("0.1"), None);
        assert_eq!(parse_millis("-3"), None);
        assert_eq!(parse_millis(""), None);
    }

    #[test]
    fn map_count_arithmetic() {
        assert_eq!(greenlets_allowed(65_530), 32_265);
        assert_eq!(greenlets_allowed(10), 0);
    }
}
