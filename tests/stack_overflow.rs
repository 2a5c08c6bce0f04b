//! A greenlet that overflows its stack: may abandons it without unwinding; its joiners must
//! get an error instead of waiting forever, and the process must go on.

use std::time::Duration;

use greenlet::{Builder, JoinError};

/// Recurses with a 1 KiB frame until the stack runs out.
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth as u8; 1024]);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + u64::from(frame[0])
}

#[test]
fn overflow_is_an_error_not_a_hang() {
    const STACK: usize = 16 * 1024;
    let g = Builder::new()
        .name("deep")
        .stack_size(STACK)
        .spawn(|| recurse(0))
        .unwrap();
    let h = g.handle();
    assert!(
        h.join_timeout(Duration::from_secs(10)),
        "joiners were left waiting"
    );
    match g.get() {
        Err(JoinError::Panicked(msg)) => {
            assert!(msg.contains("overflowed its stack of 16384 bytes"), "{msg}")
        }
        other => panic!("expected an overflow error, got {other:?}"),
    }
    // The runtime carries on.
    assert_eq!(greenlet::spawn(|| 5).get(), Ok(5));
}
