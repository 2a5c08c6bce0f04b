//! Warm greenlets (issue 18), from a hostile review: the `greenlet-warm` sweeper ending
//! carriers at the instant spawners take them. `keep_warm` of 1 ms: a tick every millisecond, carriers
//! ended after about 5 ms on the shelf, spawns spaced around that age.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::watchdog::bounded;

fn configure() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut c = greenlet::config().keep_warm(Duration::from_millis(1));
        if std::env::var_os("WARM_ONE_WORKER").is_some() {
            c = c.workers(1);
        }
        c.apply().expect("before the first spawn");
    });
}

/// Spawns `n` greenlets that each count themselves in `ran`, counting them in `expected`.
fn burst(n: u64, ran: &Arc<AtomicU64>, expected: &AtomicU64) -> Vec<greenlet::Greenlet<()>> {
    (0..n)
        .map(|_| {
            let ran = ran.clone();
            expected.fetch_add(1, Ordering::SeqCst);
            greenlet::spawn(move || {
                ran.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect()
}

#[test]
fn sweeper_racing_spawners() {
    configure();
    bounded("sweeper_racing_spawners", Duration::from_secs(120), || {
        let ran = Arc::new(AtomicU64::new(0));
        let expected = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..3u64)
            .map(|t| {
                let (ran, expected) = (ran.clone(), expected.clone());
                std::thread::spawn(move || {
                    for round in 0..600u64 {
                        // A burst (shelving several carriers), then a pause around their
                        // time to be ended, then a spawn that may take one being ended.
                        let gs = burst(1 + (round * 7 + t) % 8, &ran, &expected);
                        for g in gs {
                            let t0 = Instant::now();
                            if !g.join_timeout(Duration::from_secs(5)) {
                                panic!(
                                    "thread {t} round {round}: a greenlet did not run within \
                                     {:?} ({} of {} ran)",
                                    t0.elapsed(),
                                    ran.load(Ordering::SeqCst),
                                    expected.load(Ordering::SeqCst)
                                );
                            }
                        }
                        std::thread::sleep(Duration::from_micros(
                            3_000 + (round * 37 + t * 11) % 4_000,
                        ));
                    }
                })
            })
            .collect();
        // The same from a greenlet (spawns onto its own worker, direct unparks).
        let (ran2, expected2) = (ran.clone(), expected.clone());
        let inner = greenlet::spawn(move || {
            for round in 0..600u64 {
                let gs = burst(1 + (round * 5) % 8, &ran2, &expected2);
                for g in gs {
                    assert!(
                        g.join_timeout(Duration::from_secs(5)),
                        "greenlet spawner round {round}: a greenlet did not run"
                    );
                }
                greenlet::sleep(Duration::from_micros(3_000 + (round * 41) % 4_000));
            }
        });
        for t in threads {
            t.join().unwrap();
        }
        assert!(
            inner.join_timeout(Duration::from_secs(60)),
            "inner spawner hung"
        );
        inner.get().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), expected.load(Ordering::SeqCst));
        eprintln!(
            "sweeper_racing_spawners: {} greenlets ran",
            ran.load(Ordering::SeqCst)
        );
    });
}
