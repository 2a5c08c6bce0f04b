//! Warm greenlets (issue 18), from a hostile review: cases that can end the process, each
//! run in a child process of this test binary (selected by `WARM_CHILD`), so that the parent can report
//! how the child ended.

mod support;

use std::cell::RefCell;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CHILD: &str = "WARM_CHILD";

/// Runs this binary's test `name` in a child with `WARM_CHILD=1` and `envs`; returns its
/// status and output. Fails if it has not ended within `bound`.
fn child(name: &str, envs: &[(&str, &str)], bound: Duration) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut c = cmd.spawn().unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > bound {
            let _ = c.kill();
            let _ = c.wait();
            panic!("child {name} did not end within {bound:?} (hang)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    use std::io::Read;
    let _ = c.stdout.take().unwrap().read_to_string(&mut out);
    let _ = c.stderr.take().unwrap().read_to_string(&mut out);
    (status, out)
}

fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Recurses with a 1 KiB frame until the stack runs out (as tests/overflow/cases.rs).
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth as u8; 1024]);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + u64::from(frame[0])
}

/// Recurses `n` times with a 1 KiB frame (a deep, but finite, destructor).
fn recurse_n(n: u64) -> u64 {
    let frame = std::hint::black_box([n as u8; 1024]);
    if n == 0 {
        return 0;
    }
    recurse_n(n - 1) + u64::from(frame[0])
}

// ---------------------------------------------------------------------------------------------
// 1. A stack overflow in a greenlet-local's destructor, which runs on the greenlet's (128 KiB)
//    stack after its body, and must still be caught by the crate (the stack record is kept
//    until the destructors have run).
// ---------------------------------------------------------------------------------------------

const PATTERN: u64 = 0x5EED_5EED_5EED_5EED;

struct ScopedDeep {
    reads: Arc<AtomicU64>,
    bad: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Drop for ScopedDeep {
    fn drop(&mut self) {
        // The same reproduction as tests/overflow/cases.rs `scoped_borrow`, but in the
        // destructor of a greenlet-local instead of the greenlet's body.
        let local = std::hint::black_box([PATTERN; 16]);
        let (reads, bad, stop) = (&self.reads, &self.bad, &self.stop);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let seen = std::hint::black_box(&local);
                    if seen.iter().any(|&w| w != PATTERN) {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                    std::thread::yield_now();
                }
            });
            recurse(0)
        });
    }
}

greenlet::greenlet_local! {
    static SCOPED: RefCell<Option<ScopedDeep>> = RefCell::new(None);
}

#[test]
fn child_overflow_in_local_destructor() {
    if !in_child() {
        return;
    }
    configure();
    let reads = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (r, b, s) = (reads.clone(), bad.clone(), stop.clone());
    let g = greenlet::spawn(move || {
        SCOPED.with(|v| {
            *v.borrow_mut() = Some(ScopedDeep {
                reads: r,
                bad: b,
                stop: s,
            })
        });
        1
    });
    assert_eq!(g.get(), Ok(1));
    // Wait until the scoped thread reads.
    let t0 = Instant::now();
    while reads.load(Ordering::Relaxed) == 0 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!(
        "CHILD: scoped thread reading: {}",
        reads.load(Ordering::Relaxed)
    );
    // New greenlets writing over their whole stacks (as in the crate's own test).
    for _ in 0..10 {
        let batch: Vec<_> = (0..500)
            .map(|i| {
                greenlet::spawn(move || {
                    let fill = std::hint::black_box([i as u8 | 1; 24 * 1024]);
                    greenlet::sleep(Duration::from_millis(1));
                    fill[7]
                })
            })
            .collect();
        for r in greenlet::joinall(batch) {
            assert!(r.is_ok());
        }
    }
    let before = reads.load(Ordering::Relaxed);
    let t0 = Instant::now();
    while reads.load(Ordering::Relaxed) == before && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    eprintln!(
        "CHILD: reads {} bad {}",
        reads.load(Ordering::Relaxed),
        bad.load(Ordering::Relaxed)
    );
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "borrowed stack memory changed"
    );
    eprintln!("CHILD OK");
}

/// The crate promises (docs/soundness.md) that an overflow stops the greenlet, keeps its
/// stack for good, and the process goes on: in its body (tests/stack_overflow.rs), and in a
/// greenlet-local's destructor, where a scoped thread still reads a borrowed local.
#[test]
fn overflow_in_a_greenlet_local_destructor() {
    if in_child() {
        return;
    }
    let (status, out) = child(
        "child_overflow_in_local_destructor",
        &[],
        Duration::from_secs(120),
    );
    assert!(
        status.success() && out.contains("CHILD OK"),
        "child ended with {status:?}\n---- child output (tail) ----\n{}",
        tail(&out, 40)
    );
}

// ---------------------------------------------------------------------------------------------
// 2. A deep but finite destructor of a greenlet-local: it runs on the greenlet's 128 KiB
//    stack (it ran on the worker thread's 2 MiB stack when may dropped coroutine-locals in
//    `Done::drop_coroutine`).
// ---------------------------------------------------------------------------------------------

struct DeepDrop(u64);

static DEEP_DONE: AtomicBool = AtomicBool::new(false);

impl Drop for DeepDrop {
    fn drop(&mut self) {
        eprintln!("CHILD: DeepDrop({}) starts", self.0);
        std::hint::black_box(recurse_n(self.0));
        eprintln!("CHILD: DeepDrop({}) done", self.0);
        DEEP_DONE.store(true, Ordering::SeqCst);
    }
}

greenlet::greenlet_local! {
    static DEEP: RefCell<Option<DeepDrop>> = RefCell::new(None);
}

#[test]
fn child_deep_local_destructor() {
    if !in_child() {
        return;
    }
    configure();
    let depth: u64 = std::env::var("WARM_DEPTH").unwrap().parse().unwrap();
    let g = greenlet::spawn(move || {
        DEEP.with(|v| *v.borrow_mut() = Some(DeepDrop(depth)));
        1
    });
    assert_eq!(g.get(), Ok(1));
    // The locals are dropped on the greenlet's own 128 KiB stack, which this destructor
    // overflows: the crate stops it there (its stack stays mapped), and the runtime goes on.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !DEEP_DONE.load(Ordering::SeqCst),
        "a 300 KiB destructor finished on a 128 KiB stack?"
    );
    runtime_goes_on();
}

/// A greenlet-local whose destructor needs ~300 KiB of stack (a recursive drop of a long
/// list, say) overflows the greenlet's stack, where it runs: the crate stops it and logs it,
/// and the process goes on, with warm greenlets or without (`keep_warm` 0).
#[test]
fn deep_greenlet_local_destructor() {
    if !in_child() {
        survives_with_and_without_warm("child_deep_local_destructor");
    }
}

/// Runs the child case `name` (a 300 KiB destructor) without warm greenlets and with them;
/// both must end well.
fn survives_with_and_without_warm(name: &str) {
    for (keep, what) in [
        (Some("0"), "without warm greenlets (keep_warm 0)"),
        (None, "with warm greenlets"),
    ] {
        let mut envs = vec![("WARM_DEPTH", "300")];
        envs.extend(keep.map(|k| ("WARM_KEEP_WARM_MS", k)));
        let (status, out) = child(name, &envs, Duration::from_secs(60));
        assert!(
            status.success() && out.contains("CHILD OK"),
            "{what} the child ended with {status:?}\n---- child output (tail) ----\n{}",
            tail(&out, 30)
        );
    }
}

/// In a child: the runtime still spawns and joins greenlets; then says so.
fn runtime_goes_on() {
    let sum: u64 = greenlet::joinall((0..100u64).map(|i| greenlet::spawn(move || i)))
        .into_iter()
        .map(Result::unwrap)
        .sum();
    assert_eq!(sum, 4950);
    eprintln!("CHILD OK");
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<_> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Applies `WARM_KEEP_WARM_MS` (if set) before the first spawn of a child.
fn configure() {
    if let Ok(ms) = std::env::var("WARM_KEEP_WARM_MS") {
        greenlet::config()
            .keep_warm(Duration::from_millis(ms.parse().unwrap()))
            .apply()
            .expect("before the first spawn");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. The same with no greenlet-local at all: the result of a detached greenlet, dropped by
//    `reset_coroutine_state` (its last handle is the CURRENT entry).
// ---------------------------------------------------------------------------------------------

#[test]
fn child_deep_detached_result() {
    if !in_child() {
        return;
    }
    configure();
    let depth: u64 = std::env::var("WARM_DEPTH").unwrap().parse().unwrap();
    let go = Arc::new(AtomicBool::new(false));
    let go2 = go.clone();
    let g = greenlet::spawn(move || {
        while !go2.load(Ordering::SeqCst) {
            greenlet::sleep(Duration::from_millis(1));
        }
        DeepDrop(depth)
    });
    drop(g); // detached: its result is dropped where its last handle goes
    go.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    // Dropped on the greenlet's own stack, which it overflows: stopped there, and the
    // runtime goes on.
    assert!(
        !DEEP_DONE.load(Ordering::SeqCst),
        "a 300 KiB destructor finished on a 128 KiB stack?"
    );
    runtime_goes_on();
}

/// A detached greenlet whose result's destructor needs ~300 KiB of stack: as above.
#[test]
fn deep_detached_result_destructor() {
    if !in_child() {
        survives_with_and_without_warm("child_deep_detached_result");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Shelved carriers keep their stacks mapped (address space and two mappings each) for up
//    to `keep_warm`: a spawn that finds no room for a new stack (here a `Builder::stack_size`
//    one, under an address-space limit, RLIMIT_AS) ends them and tries again. (The shelves
//    together hold at most seven eighths of what vm.max_map_count allows.)
// ---------------------------------------------------------------------------------------------

fn vm_size_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmSize:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn child_shelved_carriers_hold_address_space() {
    if !in_child() {
        return;
    }
    configure();
    const N: usize = 1200;
    assert_eq!(greenlet::spawn(|| 1).get(), Ok(1)); // the runtime is up
    // RLIMIT_AS limits the heap too, and an allocation that fails aborts the process: give
    // the heap room it keeps (no trimming) before the limit, so that only stacks run out.
    // SAFETY: mallopt only sets a glibc malloc parameter.
    unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) };
    let room: Vec<Vec<u8>> = (0..4096).map(|_| vec![1u8; 16 * 1024]).collect();
    drop(room);
    let base = vm_size_kib();
    let limit = (base + 256 * 1024) * 1024;
    let rl = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: sets this (child) process's address-space limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) }, 0);
    // Phase 1: N default greenlets alive at once, then all finished.
    let gs: Vec<_> = (0..N)
        .map(|_| greenlet::spawn(|| greenlet::sleep(Duration::from_millis(300))))
        .collect();
    for r in greenlet::joinall(gs) {
        r.unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    eprintln!(
        "CHILD: after phase 1: {} idle carriers, VmSize {} MiB over the base",
        greenlet::__warm_idle(),
        (vm_size_kib() - base) / 1024
    );
    // Phase 2: as many greenlets with a stack size of their own; none of phase 1 is alive.
    let mut ok = Vec::new();
    let mut failed = 0;
    let mut first_err = None;
    for _ in 0..N {
        match greenlet::Builder::new()
            .stack_size(128 * 1024)
            .spawn(|| greenlet::sleep(Duration::from_millis(300)))
        {
            Ok(g) => ok.push(g),
            Err(e) => {
                failed += 1;
                first_err.get_or_insert(e.to_string());
            }
        }
    }
    let spawned = ok.len();
    greenlet::joinall(ok);
    eprintln!("CHILD: phase 2: {spawned} spawned, {failed} failed: {first_err:?}");
    assert_eq!(failed, 0, "spawns failed with no greenlet alive");
    eprintln!("CHILD OK");
}

#[test]
fn shelved_carriers_hold_address_space() {
    if in_child() {
        return;
    }
    let envs = [("MALLOC_ARENA_MAX", "1"), ("WARM_KEEP_WARM_MS", "0")];
    let (cold, cold_out) = child(
        "child_shelved_carriers_hold_address_space",
        &envs,
        Duration::from_secs(60),
    );
    let (warm, warm_out) = child(
        "child_shelved_carriers_hold_address_space",
        &envs[..1],
        Duration::from_secs(60),
    );
    assert!(
        cold.success() && cold_out.contains("CHILD OK"),
        "without warm greenlets (keep_warm 0) the child ended with {cold:?}\n{}",
        tail(&cold_out, 30)
    );
    assert!(
        warm.success() && warm_out.contains("CHILD OK"),
        "with warm carriers the child ended with {warm:?}\n---- child output (tail) ----\n{}",
        tail(&warm_out, 30)
    );
}

// ---------------------------------------------------------------------------------------------
// 5. A greenlet-local destructor that panics after its greenlet ended: reported in the log
//    (the crate's hook keeps it off stderr), and that coroutine is not reused.
// ---------------------------------------------------------------------------------------------

struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("boom-in-local-drop");
    }
}

greenlet::greenlet_local! {
    static PANICKY: RefCell<Option<PanicsOnDrop>> = RefCell::new(None);
}

#[test]
fn child_panicking_local_destructor() {
    if !in_child() {
        return;
    }
    support::capture_log();
    configure();
    let g = greenlet::spawn(|| {
        PANICKY.with(|p| *p.borrow_mut() = Some(PanicsOnDrop));
        1
    });
    assert_eq!(g.get(), Ok(1));
    std::thread::sleep(Duration::from_millis(300));
    let sum: u64 = greenlet::joinall((0..100u64).map(|i| greenlet::spawn(move || i)))
        .into_iter()
        .map(Result::unwrap)
        .sum();
    assert_eq!(sum, 4950);
    eprintln!("CHILD: logged {:?}", support::logged("boom"));
    eprintln!("CHILD OK");
}

/// The panic must be reported somewhere (the log, as for a greenlet's own panic, or stderr).
#[test]
fn panicking_local_destructor_is_reported() {
    if in_child() {
        return;
    }
    // With warm greenlets and without. (Before issue 18, the panic unwound out of may's
    // `Done::drop_coroutine` on the worker thread, which died, and the process hung.)
    for keep in ["0", "10000"] {
        let (status, out) = child(
            "child_panicking_local_destructor",
            &[("WARM_KEEP_WARM_MS", keep)],
            Duration::from_secs(60),
        );
        eprintln!("keep_warm {keep} ms: {status:?}\n{}\n----", tail(&out, 12));
        let reported = out.contains("boom-in-local-drop");
        assert!(
            reported,
            "keep_warm {keep} ms: the destructor's panic was not reported anywhere \
             ({status:?})"
        );
    }
}
