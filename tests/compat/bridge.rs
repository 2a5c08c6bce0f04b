//! The async bridge (feature `tokio`): `greenlet::block_on` inside greenlets and on plain
//! threads, with tokio's timers, reqwest and tokio-postgres against real loopback servers;
//! kills and time-outs that drop the future; greenlets and pool tasks awaited by tokio tasks.
#![cfg(feature = "tokio")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use greenlet::{JoinError, block_on};

#[allow(dead_code)]
mod pq;
#[allow(dead_code)]
mod services;
#[path = "../support/mod.rs"]
mod support;

use support::ms;
use support::watchdog::{bounded, in_greenlet};

/// Counts its drops: a future holding one was dropped (cancelled) when the count moves.
struct DropGuard(Arc<AtomicUsize>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_thousand_greenlets_sleep_together_through_tokio() {
    bounded("1,000 tokio sleeps", Duration::from_secs(30), || {
        let start = Instant::now();
        let gs: Vec<_> = (0..1000)
            .map(|_| greenlet::spawn(|| block_on(tokio::time::sleep(ms(100)))))
            .collect();
        for r in greenlet::joinall(gs) {
            r.unwrap();
        }
        let took = start.elapsed();
        assert!(took >= ms(100), "{took:?}");
        assert!(took < ms(1000), "1,000 sleeps of 100 ms took {took:?}");
    });
}

#[test]
fn two_hundred_reqwest_fetches_run_at_once() {
    bounded("200 reqwest fetches", Duration::from_secs(30), || {
        let server = support::DelayServer::start(ms(100));
        let url = format!("http://{}/", server.addr);
        let client = reqwest::Client::new();
        let start = Instant::now();
        let gs: Vec<_> = (0..200)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                greenlet::spawn(move || {
                    block_on(async {
                        let resp = client.get(&url).send().await?;
                        resp.text().await
                    })
                })
            })
            .collect();
        for r in greenlet::joinall(gs) {
            assert_eq!(r.unwrap().unwrap(), "hello");
        }
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "200 fetches of 100 ms took {took:?}"
        );
    });
}

#[test]
fn fifty_greenlets_query_postgres_through_a_small_pool() {
    let conninfo = services::postgres();
    bounded("50 pg_sleep(0.1)", Duration::from_secs(60), move || {
        // A server runs one query of a connection at a time: ten connections, shared.
        let pool: Vec<_> = (0..10)
            .map(|_| {
                let (client, connection) =
                    block_on(tokio_postgres::connect(conninfo, tokio_postgres::NoTls)).unwrap();
                // The connection task drives the socket; greenlets share the client.
                greenlet::bridge::handle().spawn(connection);
                Arc::new(client)
            })
            .collect();
        let start = Instant::now();
        let gs: Vec<_> = (0..50)
            .map(|i| {
                let client = pool[i % pool.len()].clone();
                greenlet::spawn(move || {
                    block_on(client.query_one("SELECT pg_sleep(0.1), $1::INT", &[&(i as i32)]))
                        .map(|row| row.get::<_, i32>(1))
                })
            })
            .collect();
        for (i, r) in greenlet::joinall(gs).into_iter().enumerate() {
            assert_eq!(r.unwrap().unwrap(), i as i32);
        }
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "50 queries of 100 ms took {took:?}"
        );
    });
}

#[test]
fn a_kill_drops_the_future() {
    bounded("kill during block_on", Duration::from_secs(20), || {
        for _ in 0..50 {
            let drops = Arc::new(AtomicUsize::new(0));
            let d = DropGuard(drops.clone());
            let g = greenlet::spawn(move || {
                block_on(async move {
                    let _d = d;
                    tokio::time::sleep(Duration::from_secs(60)).await;
                })
            });
            greenlet::sleep(ms(2));
            assert!(g.kill());
            assert_eq!(g.get(), Err(JoinError::Killed));
            assert_eq!(
                drops.load(Ordering::SeqCst),
                1,
                "the future was not dropped"
            );
        }
    });
}

#[test]
fn a_timeout_drops_the_future() {
    in_greenlet(
        "with_timeout around block_on",
        Duration::from_secs(20),
        || {
            for d in [Duration::ZERO, Duration::from_micros(300), ms(1), ms(20)] {
                let drops = Arc::new(AtomicUsize::new(0));
                let guard = DropGuard(drops.clone());
                let start = Instant::now();
                let r = greenlet::with_timeout(d, move || {
                    block_on(async move {
                        let _g = guard;
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    })
                });
                assert!(r.is_err(), "{d:?}: the sleep finished");
                assert!(start.elapsed() >= d);
                assert!(start.elapsed() < d + Duration::from_secs(1), "{d:?}");
                assert_eq!(
                    drops.load(Ordering::SeqCst),
                    1,
                    "{d:?}: the future was not dropped"
                );
            }
            // Satisfied before the deadline: the future's value comes back.
            let r = greenlet::with_timeout(ms(200), || block_on(async { 5 }));
            assert_eq!(r.ok(), Some(5));
            let r = greenlet::with_timeout(ms(200), || {
                block_on(async {
                    tokio::time::sleep(ms(1)).await;
                    6
                })
            });
            assert_eq!(r.ok(), Some(6));
        },
    );
}

#[test]
fn a_timeout_inside_the_future_is_tokios() {
    in_greenlet(
        "tokio::time::timeout in block_on",
        Duration::from_secs(20),
        || {
            for d in [Duration::ZERO, Duration::from_micros(500), ms(1), ms(10)] {
                let r = block_on(tokio::time::timeout(d, tokio::time::sleep(ms(500))));
                assert!(r.is_err(), "{d:?}");
            }
        },
    );
}

#[test]
fn a_panic_in_the_future_is_the_greenlets() {
    bounded("panic in the future", Duration::from_secs(20), || {
        let g = greenlet::spawn(|| {
            block_on(async {
                tokio::task::yield_now().await;
                panic!("boom in a future");
            })
        });
        match g.get() {
            Err(JoinError::Panicked(msg)) => assert!(msg.contains("boom in a future"), "{msg}"),
            other => panic!("expected the future's panic, got {other:?}"),
        }
    });
}

#[test]
fn block_on_works_on_plain_threads_and_borrows() {
    bounded("block_on on plain threads", Duration::from_secs(20), || {
        // On this (plain) thread, borrowing from it.
        let local = [1, 2, 3];
        let sum = block_on(async {
            tokio::time::sleep(ms(5)).await;
            local.iter().sum::<i32>()
        });
        assert_eq!(sum, 6);
        // On another thread, woken by a tokio task.
        let t = std::thread::spawn(|| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            greenlet::bridge::handle().spawn(async move {
                tokio::time::sleep(ms(5)).await;
                tx.send(7).unwrap();
            });
            block_on(rx).unwrap()
        });
        assert_eq!(t.join().unwrap(), 7);
    });
}

/// `block_on` inside a tokio task (on the bridge runtime's own threads) panics, as tokio's own
/// `block_on` does, instead of blocking a thread the future may need.
#[test]
fn block_on_inside_a_tokio_task_panics_instead_of_hanging() {
    bounded("block_on in a tokio task", Duration::from_secs(20), || {
        let task = greenlet::bridge::handle()
            .spawn(async { block_on(async { tokio::time::sleep(ms(10)).await }) });
        let r = block_on(task);
        let err = r.expect_err("block_on inside a task returned");
        assert!(err.is_panic(), "{err:?}");
    });
}

#[test]
fn block_on_of_a_non_send_future_in_a_greenlet() {
    in_greenlet("a !Send future", Duration::from_secs(20), || {
        let rc = std::rc::Rc::new(std::cell::Cell::new(1));
        let r2 = rc.clone();
        block_on(async move {
            tokio::task::yield_now().await;
            r2.set(r2.get() + 1);
        });
        assert_eq!(rc.get(), 2);
    });
}

#[test]
fn ten_thousand_tokio_tasks_await_greenlets() {
    bounded(
        "10,000 tasks awaiting greenlets",
        Duration::from_secs(60),
        || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let sum = rt.block_on(async {
                let tasks: Vec<_> = (0..10_000u64)
                    .map(|i| {
                        tokio::spawn(async move {
                            // Spawned from an async task; awaited without blocking its thread.
                            greenlet::spawn(move || {
                                greenlet::sleep(ms(i % 20));
                                i
                            })
                            .await
                            .unwrap()
                        })
                    })
                    .collect();
                let mut sum = 0;
                for t in tasks {
                    sum += t.await.unwrap();
                }
                sum
            });
            assert_eq!(sum, (0..10_000u64).sum::<u64>());
        },
    );
}

#[test]
fn awaited_greenlets_report_kills_panics_and_finished_ones() {
    bounded("awaited greenlets", Duration::from_secs(20), || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let done = greenlet::spawn(|| 1);
            done.handle().join(); // finished before the await
            assert_eq!(done.await, Ok(1));
            let panicking = greenlet::spawn(|| -> u8 { panic!("awaited panic") });
            assert!(matches!(panicking.await, Err(JoinError::Panicked(_))));
            let sleeper = greenlet::spawn(|| greenlet::sleep(Duration::from_secs(60)));
            let h = sleeper.handle();
            let killer = tokio::spawn(async move {
                tokio::time::sleep(ms(5)).await;
                h.kill_nowait();
            });
            assert_eq!(sleeper.await, Err(JoinError::Killed));
            killer.await.unwrap();
            // A future dropped before the greenlet ends leaves it running (detached).
            let g = greenlet::spawn(|| greenlet::sleep(ms(20)));
            let h = g.handle();
            let r = tokio::time::timeout(ms(1), g).await;
            assert!(r.is_err());
            assert!(!h.ready());
            h.join();
            // Pool tasks too.
            let t = greenlet::threadpool::spawn_blocking(|| {
                std::thread::sleep(ms(5));
                9
            });
            assert_eq!(t.await, Ok(9));
        });
    });
}

#[test]
fn a_greenlet_round_trip_through_a_tokio_task() {
    bounded(
        "greenlet -> tokio -> greenlet",
        Duration::from_secs(20),
        || {
            let g = greenlet::spawn(|| {
                let mut total = 0;
                for i in 0..1000 {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    greenlet::bridge::handle().spawn(async move { tx.send(i).unwrap() });
                    total += block_on(rx).unwrap();
                }
                total
            });
            assert_eq!(g.get(), Ok((0..1000).sum()));
        },
    );
}

#[test]
fn a_timeout_inside_the_future_on_a_plain_thread() {
    bounded("tokio timeout on a thread", Duration::from_secs(20), || {
        for d in [Duration::ZERO, Duration::from_micros(500), ms(1), ms(10)] {
            let start = Instant::now();
            let r = block_on(async { tokio::time::timeout(d, tokio::time::sleep(ms(500))).await });
            assert!(r.is_err(), "{d:?}");
            assert!(start.elapsed() < ms(400), "{d:?}: {:?}", start.elapsed());
        }
        // Satisfied just before its deadline.
        let r = block_on(async { tokio::time::timeout(ms(50), async { 3 }).await });
        assert_eq!(r.ok(), Some(3));
    });
}

/// Rounds of a wake-up (a tokio task completing the oneshot) racing a kill of the greenlet
/// parked in `block_on`, at about the same instant: each round ends with the value or with
/// `Killed` (the future dropped), never hangs.
#[test]
fn a_wake_racing_a_kill_in_block_on() {
    bounded("wake vs kill in block_on", Duration::from_secs(120), || {
        let (mut got, mut killed, mut killed_inside) = (0, 0, 0);
        for round in 0..2000u64 {
            let polled = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let p = polled.clone();
            let (tx, rx) = tokio::sync::oneshot::channel::<u64>();
            let drops = Arc::new(AtomicUsize::new(0));
            let d = DropGuard(drops.clone());
            let g = greenlet::spawn(move || {
                block_on(async move {
                    let _d = d;
                    p.store(true, Ordering::SeqCst);
                    rx.await.ok()
                })
            });
            let h = g.handle();
            let spin = Duration::from_micros(round % 50);
            greenlet::bridge::handle().spawn(async move {
                let t = Instant::now();
                while t.elapsed() < spin {
                    std::hint::spin_loop();
                }
                let _ = tx.send(round);
            });
            let t = Instant::now();
            while t.elapsed() < Duration::from_micros(round % 37) {
                std::hint::spin_loop();
            }
            h.kill_nowait();
            match g.get() {
                Ok(v) => {
                    assert!(v.is_none() || v == Some(round));
                    got += 1;
                }
                Err(JoinError::Killed) => {
                    killed += 1;
                    killed_inside += usize::from(polled.load(Ordering::SeqCst));
                }
                Err(e) => panic!("round {round}: {e}"),
            }
            assert_eq!(
                drops.load(Ordering::SeqCst),
                1,
                "round {round}: future not dropped"
            );
        }
        // Each way must have happened: a kill of a greenlet parked in `block_on` (not only
        // before its first switch), and a value.
        assert!(
            killed_inside > 0,
            "no kill reached a greenlet inside block_on ({killed} kills)"
        );
        assert!(got > 0, "no round got its value");
    });
}

/// Blocking inside a future that `block_on` polls (a greenlet sleep, a nested `block_on`),
/// in many greenlets of the same workers at once: works (greenlets hold no tokio context
/// guard of their own, so nothing is left out of order).
#[test]
fn blocking_inside_a_polled_future_in_many_greenlets() {
    bounded("blocking inside block_on", Duration::from_secs(20), || {
        let gs: Vec<_> = (0..50u64)
            .map(|i| {
                greenlet::spawn(move || {
                    block_on(async move {
                        greenlet::sleep(ms(i % 5));
                        let inner = block_on(async move {
                            tokio::time::sleep(ms(1)).await;
                            i
                        });
                        tokio::task::yield_now().await;
                        inner * 2
                    })
                })
            })
            .collect();
        let sum: u64 = greenlet::joinall(gs).into_iter().map(Result::unwrap).sum();
        assert_eq!(sum, (0..50u64).map(|i| i * 2).sum::<u64>());
    });
}
