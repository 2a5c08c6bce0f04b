//! A program that replaces the panic hook after the runtime started, without calling the
//! previous one (a silencing hook, a custom reporter): kills whose unwind may raises itself
//! (here at `yield_now`) still never abort when a destructor then blocks. Its own binary, as
//! the hook is per process.

mod support;

use std::time::Duration;

use greenlet::JoinError;
use support::watchdog::bounded;

struct SleepOnDrop;

impl Drop for SleepOnDrop {
    fn drop(&mut self) {
        greenlet::sleep(Duration::from_millis(5));
        assert_eq!(greenlet::spawn(|| 1).get(), Ok(1));
    }
}

#[test]
fn kills_work_under_a_replaced_panic_hook() {
    greenlet::spawn(|| ()).join(); // the runtime (and the crate's hook) starts
    std::panic::set_hook(Box::new(|_| {}));
    for round in 0..50 {
        bounded(
            &format!("kill at yield_now {round}"),
            Duration::from_secs(10),
            || {
                let g = greenlet::spawn(|| {
                    let _d = SleepOnDrop;
                    loop {
                        greenlet::yield_now();
                    }
                });
                greenlet::sleep(Duration::from_millis(2));
                assert!(g.kill_timeout(Duration::from_secs(5)));
                assert_eq!(g.get(), Err(JoinError::Killed));
            },
        );
    }
}
