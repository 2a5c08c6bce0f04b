//! Running out of address space for stacks: `Builder::spawn` returns an error (from `main` and
//! from inside a greenlet, where raw may hangs), nothing aborts, and spawning works again once
//! greenlets end. Runs in a child process (this test binary, re-run) under a lowered
//! `RLIMIT_AS`, so the limit does not touch the other tests.

use std::io::ErrorKind;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use greenlet::Builder;
use greenlet::sync::Event;

mod support;

const CHILD: &str = "GREENLET_EXHAUSTION_CHILD";
/// Spawns stop here if the limit somehow never bites.
const CAP: usize = 200_000;

fn vm_size() -> u64 {
    support::proc_status::status_bytes("VmSize").expect("VmSize in /proc/self/status") as u64
}

#[test]
fn stack_exhaustion_is_an_error_and_the_process_survives() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "stack_exhaustion_is_an_error_and_the_process_survives",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the child hung on exhaustion");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("EXHAUSTED after"), "{stdout}");
}

fn child() {
    // Start the runtime first, then leave it 512 MiB of address space to grow into.
    greenlet::spawn(|| ()).join();
    let limit = vm_size() + 512 * 1024 * 1024;
    rlimit::setrlimit(rlimit::Resource::AS, limit, rlimit::INFINITY).unwrap();

    // A greenlet parked on its own event: released after exhaustion to free exactly one stack.
    let spare_go = Arc::new(Event::new());
    let sg = spare_go.clone();
    let spare = greenlet::spawn(move || sg.wait());

    let park = Arc::new(Event::new());
    let mut parked = Vec::new();
    let err = loop {
        assert!(parked.len() < CAP, "the address-space limit never bit");
        let p = park.clone();
        match Builder::new().spawn(move || p.wait()) {
            Ok(g) => parked.push(g),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::OutOfMemory, "{err}");
    assert!(err.to_string().contains("vm.max_map_count"), "{err}");
    // `spawn`, the panicking form, says the same.
    let panic = std::panic::catch_unwind(|| greenlet::spawn(|| ())).unwrap_err();
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.starts_with("greenlet::spawn failed: cannot allocate"),
        "{msg}"
    );

    // From inside a greenlet (where raw may hangs): an error too. Free exactly one stack for
    // that greenlet, then have it ask for a stack far larger than what is left.
    spare_go.set();
    spare.join();
    // `join` returns when the greenlet is done; its coroutine gives its stack back a moment
    // later, as it exits.
    let t = Instant::now();
    let inner = loop {
        let spawned = Builder::new().spawn(|| {
            Builder::new()
                .stack_size(256 * 1024 * 1024)
                .spawn(|| ())
                .map(drop)
                .map_err(|e| e.kind())
        });
        match spawned {
            Ok(g) => break g,
            Err(e) if t.elapsed() < Duration::from_secs(5) => {
                assert_eq!(e.kind(), ErrorKind::OutOfMemory, "{e}");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("the spare greenlet's stack never came back: {e}"),
        }
    };
    assert!(
        inner.join_timeout(Duration::from_secs(30)),
        "spawn inside a greenlet hung"
    );
    assert_eq!(inner.get(), Ok(Err(ErrorKind::OutOfMemory)));

    // Release everything: spawning works again.
    let count = parked.len();
    park.set();
    assert!(greenlet::joinall(parked).into_iter().all(|r| r.is_ok()));
    assert_eq!(greenlet::spawn(|| 7).get(), Ok(7));
    println!("EXHAUSTED after {count} parked greenlets: {err}");
}
