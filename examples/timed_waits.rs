//! How the crate's timed waits behave, measured: each case of issue 13's report (queues drained
//! with time-outs, sub-millisecond and zero deadlines, socket read time-outs, timers beside a
//! computing greenlet, a kill through a guard whose `Drop` kills, `Duration::MAX`) runs in a
//! child process watched for 15 s, and prints what it saw.
//!
//! ```text
//! cargo run --release --example timed_waits
//! ```
use std::io::Read;
use std::time::{Duration, Instant};

use greenlet::queue::Queue;
use greenlet::sync::Event;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

fn case(name: &str) {
    let t = Instant::now();
    match name {
        "drain" => {
            let q: Queue<u32> = Queue::bounded(16);
            let consumers: Vec<_> = (0..8)
                .map(|_| {
                    let q = q.clone();
                    greenlet::spawn(move || {
                        let mut n = 0u32;
                        while q.get_timeout(Duration::from_secs(1)).is_ok() {
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            let producers: Vec<_> = (0..20)
                .map(|_| {
                    let q = q.clone();
                    greenlet::spawn(move || {
                        for i in 0..1000 {
                            q.put(i).unwrap();
                        }
                    })
                })
                .collect();
            for p in producers {
                p.join();
            }
            let total: u32 = consumers.into_iter().map(|c| c.get().unwrap()).sum();
            println!(
                "drain: {total} items, consumers done after {:?} (includes their final 1 s time-out)",
                t.elapsed()
            );
        }
        "fresh_get_timeout" => {
            let g = greenlet::spawn(|| {
                let t = Instant::now();
                let r = Queue::<u8>::unbounded().get_timeout(ms(100)).is_err();
                (r, t.elapsed())
            });
            let (r, d) = g.get().unwrap();
            println!("fresh get_timeout(100 ms) in a greenlet: timed out={r} after {d:?}");
        }
        "event_sub_ms" => {
            let g = greenlet::spawn(|| {
                let mut worst = Duration::ZERO;
                for d in [1, 200, 500, 999] {
                    let e = Event::new();
                    let t = Instant::now();
                    assert!(!e.wait_timeout(us(d)));
                    let el = t.elapsed();
                    assert!(el >= us(d));
                    worst = worst.max(el - us(d));
                }
                worst
            });
            println!(
                "Event::wait_timeout(1/200/500/999 us) in a greenlet: all returned false, worst lateness {:?}",
                g.get().unwrap()
            );
        }
        "join_zero" => {
            let g = greenlet::spawn(|| {
                let s = greenlet::spawn(|| greenlet::sleep(Duration::from_secs(2)));
                let t = Instant::now();
                let r = s.join_timeout(Duration::ZERO);
                s.kill();
                (r, t.elapsed())
            });
            println!(
                "join_timeout(ZERO) on a sleeping greenlet: {:?}",
                g.get().unwrap()
            );
        }
        "with_timeout_zero" => {
            let g = greenlet::spawn(|| {
                let t = Instant::now();
                let r = greenlet::with_timeout(Duration::ZERO, || {
                    greenlet::sleep(Duration::from_secs(2))
                })
                .is_err();
                (r, t.elapsed())
            });
            println!(
                "with_timeout(ZERO, sleep 2 s): elapsed={:?}",
                g.get().unwrap()
            );
        }
        "with_timeout_999us" => {
            let g = greenlet::spawn(|| {
                let t = Instant::now();
                let r = greenlet::with_timeout(us(999), || greenlet::sleep(Duration::from_secs(1)))
                    .is_err();
                (r, t.elapsed())
            });
            println!(
                "with_timeout(999 us, sleep 1 s): elapsed={:?}",
                g.get().unwrap()
            );
        }
        "read_timeouts" => {
            let l = greenlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let a = l.local_addr().unwrap();
            let g = greenlet::spawn(move || {
                let _keep = greenlet::spawn(move || {
                    let c = l.accept();
                    greenlet::sleep(Duration::from_secs(5));
                    drop(c)
                });
                let mut s = greenlet::net::TcpStream::connect(a).unwrap();
                let mut out = Vec::new();
                for d in [us(1), us(500), us(999), us(1500)] {
                    s.set_read_timeout(Some(d)).unwrap();
                    let t = Instant::now();
                    let e = s.read(&mut [0u8; 8]).unwrap_err();
                    out.push((d, e.kind(), t.elapsed()));
                }
                out
            });
            for (d, k, el) in g.get().unwrap() {
                println!("read with read_timeout {d:?}: {k:?} after {el:?}");
            }
        }
        "timer_thread" => {
            let a = greenlet::spawn(|| {
                greenlet::sleep(ms(10));
                let t = Instant::now();
                while t.elapsed() < Duration::from_secs(1) {
                    std::hint::spin_loop();
                }
            });
            let b = greenlet::spawn(|| {
                let t = Instant::now();
                greenlet::sleep(ms(50));
                t.elapsed()
            });
            let c = greenlet::spawn(|| {
                let t = Instant::now();
                let _ = Queue::<u8>::unbounded().get_timeout(ms(60));
                t.elapsed()
            });
            println!(
                "B's sleep(50 ms) beside A computing 1 s: {:?}; a 60 ms get_timeout: {:?}",
                b.get().unwrap(),
                c.get().unwrap()
            );
            a.join();
        }
        "kill_guard" => {
            struct KillOnDrop(Option<greenlet::Greenlet<()>>);
            impl Drop for KillOnDrop {
                fn drop(&mut self) {
                    if let Some(g) = self.0.take() {
                        g.kill();
                    }
                }
            }
            let parent = greenlet::spawn(|| {
                let _g = KillOnDrop(Some(greenlet::spawn(|| {
                    greenlet::sleep(Duration::from_secs(10))
                })));
                greenlet::sleep(Duration::from_secs(10));
            });
            greenlet::sleep(ms(20));
            let killed = parent.kill();
            println!(
                "kill of a greenlet whose guard kills its child in Drop: kill returned {killed}, result {:?}, process alive",
                parent.get().err()
            );
        }
        "huge" => {
            let g = greenlet::spawn(|| {
                let t = Instant::now();
                let r = greenlet::with_timeout(Duration::MAX, || {
                    greenlet::sleep(ms(20));
                    7
                });
                (r.is_ok(), t.elapsed())
            });
            println!(
                "with_timeout(Duration::MAX, sleep 20 ms): ok={:?}",
                g.get().unwrap()
            );
            let g = greenlet::spawn(|| {
                let s = greenlet::spawn(|| greenlet::sleep(ms(30)));
                let t = Instant::now();
                (s.join_timeout(Duration::MAX), t.elapsed())
            });
            println!(
                "join_timeout(Duration::MAX) on a 30 ms greenlet: {:?}",
                g.get().unwrap()
            );
            let s = greenlet::spawn(|| greenlet::sleep(Duration::MAX));
            let g = greenlet::spawn(|| {
                let t = Instant::now();
                greenlet::sleep(ms(20));
                t.elapsed()
            });
            println!(
                "sleep(20 ms) beside a sleep(Duration::MAX): {:?}",
                g.get().unwrap()
            );
            s.kill();
        }
        _ => unreachable!(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() > 1 {
        case(&args[1]);
        return;
    }
    for name in [
        "drain",
        "fresh_get_timeout",
        "event_sub_ms",
        "join_zero",
        "with_timeout_zero",
        "with_timeout_999us",
        "read_timeouts",
        "timer_thread",
        "kill_guard",
        "huge",
    ] {
        let mut child = std::process::Command::new(&args[0])
            .arg(name)
            .spawn()
            .unwrap();
        let t = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                if !st.success() {
                    println!("{name}: child exited with {st}");
                }
                break;
            }
            if t.elapsed() > Duration::from_secs(15) {
                child.kill().unwrap();
                println!("{name}: HUNG (killed after 15 s)");
                break;
            }
            std::thread::sleep(ms(5));
        }
    }
}
