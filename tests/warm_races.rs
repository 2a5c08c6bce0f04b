//! Warm greenlets (issue 18), from a hostile review: races between the end of a greenlet
//! (its carrier being reused) and kills, `Timeout`s and spawns from other threads. Every round checks that the
//! greenlet run next on the same carrier is untouched. Bounded by the watchdog.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use greenlet::{JoinError, Timeout};
use support::watchdog::{bounded, in_greenlet};

const BOUND: Duration = Duration::from_secs(120);

/// `WARM_ONE_WORKER=1`: one worker.
fn configure() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("WARM_ONE_WORKER").is_some() {
            greenlet::config()
                .workers(1)
                .apply()
                .expect("before the first spawn");
        }
    });
}

#[inline(never)]
fn frame_address() -> usize {
    let x = 0u8;
    std::hint::black_box(&x) as *const u8 as usize
}

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// A `Timeout` that fires (its interrupt is requested: may's cancel flag set) while the
/// greenlet is queued to run, and that the greenlet then drops before a blocking point
/// (`withdraw_timeout`): the only path on which a cancel was sent and the carrier is still
/// reused. The next greenlet on that carrier must run normally.
#[test]
fn withdrawn_timeouts_then_reuse() {
    configure();
    let stats = in_greenlet("withdrawn_timeouts_then_reuse", BOUND, || {
        let (mut ok, mut timed_out, mut same, mut expired_ok) = (0u32, 0u32, 0u32, 0u32);
        for round in 0..3_000u32 {
            // The sleep's deadline just before the time-out's: the timer takes both in one
            // pass, so the interrupt is requested while the greenlet is queued to run.
            let sleep = Duration::from_micros(300);
            let d = sleep + Duration::from_micros(u64::from(round % 6) * 4);
            let g = greenlet::spawn(move || {
                let t = Timeout::start(d);
                greenlet::sleep(sleep);
                if round % 3 == 0 {
                    spin(Duration::from_micros(100));
                }
                let expired = t.is_expired();
                drop(t);
                (frame_address(), expired)
            });
            let at = match g.get() {
                Ok((at, expired)) => {
                    ok += 1;
                    if expired {
                        expired_ok += 1;
                    }
                    Some(at)
                }
                Err(JoinError::TimedOut) => {
                    timed_out += 1;
                    None
                }
                Err(e) => panic!("round {round}: {e:?}"),
            };
            let h = greenlet::spawn(move || {
                greenlet::sleep(Duration::from_micros(300));
                greenlet::yield_now();
                frame_address()
            });
            match h.get() {
                Ok(at2) => {
                    if at.is_some_and(|a| a.abs_diff(at2) < 64 * 1024) {
                        same += 1;
                    }
                }
                Err(e) => panic!("round {round}: the next greenlet ended with {e:?}"),
            }
        }
        (ok, timed_out, expired_ok, same)
    });
    eprintln!(
        "withdrawn_timeouts_then_reuse: ok/timed_out/ok-past-deadline/reused-same-carrier \
         {stats:?}"
    );
}

/// Kills from plain threads (other OS threads: the cancel goes through the home mailbox)
/// racing the end of the greenlet, on every worker at once, with the next greenlet spawned
/// from a plain thread right away (taking the carrier through the mailbox too).
#[test]
fn plain_thread_kills_racing_the_end() {
    configure();
    bounded("plain_thread_kills_racing_the_end", BOUND, || {
        let threads: Vec<_> = (0..3u64)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut killed = 0;
                    for round in 0..1_500u64 {
                        let g = greenlet::spawn(move || {
                            if round % 2 == 0 {
                                greenlet::yield_now();
                            }
                            spin(Duration::from_micros(round % 4 * 10));
                            round
                        });
                        if (round + t) % 3 == 0 {
                            std::thread::yield_now();
                        }
                        g.kill_nowait();
                        match g.get() {
                            Ok(v) => assert_eq!(v, round),
                            Err(JoinError::Killed) => killed += 1,
                            Err(e) => panic!("round {round}: {e:?}"),
                        }
                        let h = greenlet::spawn(move || {
                            greenlet::sleep(Duration::from_micros(100));
                            greenlet::yield_now();
                            round + 1
                        });
                        assert_eq!(
                            h.get(),
                            Ok(round + 1),
                            "thread {t} round {round}: the next greenlet was hit"
                        );
                    }
                    killed
                })
            })
            .collect();
        let killed: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        eprintln!("plain_thread_kills_racing_the_end: {killed} killed");
    });
}

/// A greenlet's own `Timeout` fires just as it ends (no blocking point in between), on a
/// greenlet spawned from a plain thread; then a burst of greenlets reuses the carriers.
#[test]
fn timeouts_firing_at_the_end() {
    configure();
    bounded("timeouts_firing_at_the_end", BOUND, || {
        for round in 0..400u64 {
            let gs: Vec<_> = (0..16u64)
                .map(|i| {
                    greenlet::spawn(move || {
                        let t = Timeout::start(Duration::from_micros(50 + (i * 13 + round) % 90));
                        spin(Duration::from_micros((i * 7 + round) % 100));
                        std::mem::forget(t); // left armed: fires after the end
                        i
                    })
                })
                .collect();
            for (i, r) in greenlet::joinall(gs).into_iter().enumerate() {
                match r {
                    Ok(v) => assert_eq!(v, i as u64),
                    Err(e) => panic!("round {round}: {e:?}"),
                }
            }
            // The next ones take the same carriers while those time-outs fire.
            let next: Vec<_> = (0..16u64)
                .map(|i| {
                    greenlet::spawn(move || {
                        for _ in 0..3 {
                            greenlet::sleep(Duration::from_micros(60));
                        }
                        i
                    })
                })
                .collect();
            for (i, r) in greenlet::joinall(next).into_iter().enumerate() {
                assert_eq!(r, Ok(i as u64), "round {round}: next greenlet {i}");
            }
        }
    });
}

/// Spawns from greenlets on one worker and plain threads at once onto the same worker's
/// shelf; every job runs exactly once.
#[test]
fn mixed_spawners_every_job_runs_once() {
    configure();
    bounded("mixed_spawners_every_job_runs_once", BOUND, || {
        let ran = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        const PER: u64 = 4_000;
        let plain: Vec<_> = (0..2)
            .map(|_| {
                let ran = ran.clone();
                std::thread::spawn(move || {
                    for i in 0..PER {
                        let ran = ran.clone();
                        let g = greenlet::spawn(move || {
                            if i % 5 == 0 {
                                greenlet::yield_now();
                            }
                            ran.fetch_add(1, Ordering::SeqCst);
                        });
                        if i % 2 == 0 {
                            g.join();
                        }
                    }
                })
            })
            .collect();
        let ran2 = ran.clone();
        let stop2 = stop.clone();
        let inner = greenlet::spawn(move || {
            let mut n = 0u64;
            while n < PER {
                let ran = ran2.clone();
                let g = greenlet::spawn(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                });
                if n.is_multiple_of(3) {
                    g.join();
                }
                n += 1;
            }
            let _ = stop2;
        });
        for t in plain {
            t.join().unwrap();
        }
        inner.join();
        let t0 = Instant::now();
        while ran.load(Ordering::SeqCst) < 3 * PER {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{} of {} jobs ran (lost spawns)",
                ran.load(Ordering::SeqCst),
                3 * PER
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::SeqCst);
        assert_eq!(ran.load(Ordering::SeqCst), 3 * PER);
    });
}

/// Kills sent the instant after the spawn (the job is stored in a warm carrier, its wake-up
/// and the kill's cancel both posted to the home mailbox), from a plain thread and from a
/// greenlet on another worker; zero-length `Timeout`s; then the next greenlets.
#[test]
fn kills_right_after_spawn_and_zero_timeouts() {
    configure();
    bounded("kills_right_after_spawn_and_zero_timeouts", BOUND, || {
        let workers = greenlet::settings().workers;
        for round in 0..2_000u64 {
            let g = greenlet::spawn(move || {
                if round % 4 == 1 {
                    let _t = Timeout::start(Duration::ZERO);
                    spin(Duration::from_micros(round % 3 * 20));
                }
                round
            });
            if round % 2 == 0 {
                g.kill_nowait();
            } else {
                // From a greenlet (its worker is round robin: often another one).
                let h = g.handle();
                greenlet::spawn(move || {
                    h.kill_nowait();
                })
                .join();
            }
            match g.get() {
                Ok(v) => assert_eq!(v, round),
                Err(JoinError::Killed | JoinError::TimedOut) => {}
                Err(e) => panic!("round {round}: {e:?}"),
            }
            let next: Vec<_> = (0..workers as u64 * 2)
                .map(|i| {
                    greenlet::spawn(move || {
                        greenlet::sleep(Duration::from_micros(50));
                        greenlet::yield_now();
                        i
                    })
                })
                .collect();
            for (i, r) in greenlet::joinall(next).into_iter().enumerate() {
                assert_eq!(
                    r,
                    Ok(i as u64),
                    "round {round}: the next greenlet {i} was hit"
                );
            }
        }
    });
}
