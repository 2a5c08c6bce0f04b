//! `spawn`, `Greenlet` and `Builder`: results, panics, kills, links, identity.

mod support;

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use greenlet::net::{TcpListener, TcpStream};
use greenlet::{Builder, JoinError};
use support::ms;

const MANY: usize = 10_000;

/// Sets a flag when dropped: proves destructors ran during a kill.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn get_returns_the_value() {
    let g = greenlet::spawn(|| String::from("value"));
    assert_eq!(g.get(), Ok("value".to_owned()));
}

#[test]
fn panic_becomes_an_error_and_others_run_on() {
    let gs: Vec<_> = (0..100)
        .map(|i| {
            greenlet::spawn(move || {
                greenlet::sleep(ms(5));
                if i == 50 {
                    panic!("greenlet {i} failed");
                }
                i
            })
        })
        .collect();
    let results = greenlet::joinall(gs);
    for (i, r) in results.into_iter().enumerate() {
        if i == 50 {
            assert_eq!(r, Err(JoinError::Panicked("greenlet 50 failed".into())));
        } else {
            assert_eq!(r, Ok(i));
        }
    }
}

#[test]
fn panic_is_logged_once_with_name_and_location() {
    support::capture_log();
    let g = Builder::new()
        .name("logged-panicker")
        .spawn(|| -> () { panic!("unique-panic-text-7781") })
        .unwrap();
    assert!(g.get().unwrap_err().is_panic());
    let records = support::logged("unique-panic-text-7781");
    assert_eq!(records.len(), 1, "{records:?}");
    let (level, text) = &records[0];
    assert_eq!(*level, log::Level::Error);
    assert!(text.contains("logged-panicker"), "{text}");
    assert!(text.contains("tests/greenlet.rs:"), "{text}");
}

#[test]
fn non_string_panic_payload_is_reported() {
    let g = greenlet::spawn(|| std::panic::panic_any(42_u32));
    assert_eq!(
        g.get(),
        Err(JoinError::Panicked("<non-string panic payload>".into()))
    );
}

#[test]
fn kill_while_sleeping_runs_destructors() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let started = Arc::new(AtomicBool::new(false));
    let started2 = started.clone();
    let g = greenlet::spawn(move || {
        let _flag = flag;
        started2.store(true, Ordering::SeqCst);
        greenlet::sleep(Duration::from_secs(60));
    });
    while !started.load(Ordering::SeqCst) {
        greenlet::sleep(ms(1));
    }
    let t = Instant::now();
    assert!(g.kill(), "the kill ended it");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(dropped.load(Ordering::SeqCst));
    assert!(g.ready());
    assert!(!g.successful());
    assert_eq!(g.error(), Some(JoinError::Killed));
    assert_eq!(g.get(), Err(JoinError::Killed));
}

#[test]
fn kill_while_reading_a_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _client = TcpStream::connect(addr).unwrap(); // connects, never writes
    let (mut conn, _) = listener.accept().unwrap();
    let reading = Arc::new(AtomicBool::new(false));
    let reading2 = reading.clone();
    let g = greenlet::spawn(move || {
        reading2.store(true, Ordering::SeqCst);
        let mut buf = [0; 16];
        conn.read(&mut buf)
    });
    while !reading.load(Ordering::SeqCst) {
        greenlet::sleep(ms(1));
    }
    greenlet::sleep(ms(20)); // let it park in the read
    assert!(
        g.kill_timeout(Duration::from_secs(5)),
        "kill interrupts a read"
    );
    assert_eq!(g.get().unwrap_err(), JoinError::Killed);
}

#[test]
fn killing_a_finished_greenlet_does_nothing() {
    let g = greenlet::spawn(|| 5);
    g.join();
    assert!(!g.kill(), "too late: it had already finished");
    assert!(!g.kill_nowait());
    assert_eq!(g.get(), Ok(5));
}

#[test]
fn kill_lands_at_yield_now_in_a_busy_loop() {
    let spins = Arc::new(AtomicUsize::new(0));
    let spins2 = spins.clone();
    let g = greenlet::spawn(move || {
        loop {
            spins2.fetch_add(1, Ordering::Relaxed);
            greenlet::yield_now();
        }
    });
    while spins.load(Ordering::Relaxed) < 100 {
        greenlet::sleep(ms(1));
    }
    assert!(g.kill_timeout(Duration::from_secs(5)));
    assert_eq!(g.get(), Err(JoinError::Killed));
}

#[test]
fn kill_timeout_gives_up_on_a_greenlet_that_never_blocks() {
    let started = Arc::new(AtomicBool::new(false));
    let started2 = started.clone();
    let g = greenlet::spawn(move || {
        started2.store(true, Ordering::SeqCst);
        let end = Instant::now() + ms(300);
        while Instant::now() < end {
            std::hint::spin_loop();
        }
        "finished anyway"
    });
    while !started.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let t = Instant::now();
    assert!(!g.kill_timeout(ms(50)), "cannot interrupt a computation");
    assert!(t.elapsed() >= ms(50));
    // It returns without ever blocking, so the kill never lands.
    assert_eq!(g.get(), Ok("finished anyway"));
}

#[test]
fn self_kill_unwinds_at_the_next_blocking_point() {
    let g = greenlet::spawn(|| {
        let me = greenlet::current().unwrap();
        assert!(me.kill());
        greenlet::sleep(ms(10));
        "unreachable"
    });
    assert_eq!(g.get(), Err(JoinError::Killed));
}

#[test]
fn joining_yourself_is_a_documented_panic() {
    let g = greenlet::spawn(|| greenlet::current().unwrap().join());
    assert_eq!(
        g.get(),
        Err(JoinError::Panicked("a greenlet cannot join itself".into()))
    );
}

#[test]
fn join_timeout_waits_at_least_the_timeout() {
    let g = greenlet::spawn(|| greenlet::sleep(Duration::from_secs(60)));
    let t = Instant::now();
    assert!(!g.join_timeout(ms(50)));
    assert!(t.elapsed() >= ms(50));
    assert!(g.kill());
}

#[test]
fn join_from_inside_a_greenlet() {
    let outer = greenlet::spawn(|| {
        let inner = greenlet::spawn(|| {
            greenlet::sleep(ms(10));
            3
        });
        inner.join();
        assert!(inner.ready());
        inner.get().unwrap() * 2
    });
    assert_eq!(outer.get(), Ok(6));
}

#[test]
fn links_run_before_join_returns_and_survive_a_panicking_link() {
    let calls = Arc::new(AtomicUsize::new(0));
    let g = greenlet::spawn(|| {
        greenlet::sleep(ms(10));
        21
    });
    let c1 = calls.clone();
    g.link(|_| panic!("link panics"));
    g.link(move |r| {
        assert_eq!(*r, Ok(21));
        greenlet::sleep(ms(1)); // links may block
        c1.fetch_add(1, Ordering::SeqCst);
    });
    g.join();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A link added after the end runs at once, on the caller.
    let c2 = calls.clone();
    g.link(move |r| {
        assert_eq!(*r, Ok(21));
        c2.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(g.get(), Ok(21));
}

#[test]
fn links_see_kills_and_panics() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let killed = greenlet::spawn(|| greenlet::sleep(Duration::from_secs(60)));
    let panicked = greenlet::spawn(|| -> () { panic!("p") });
    for g in [&killed, &panicked] {
        let seen = seen.clone();
        g.link(move |r| seen.lock().unwrap().push(r.clone().unwrap_err()));
    }
    killed.kill();
    panicked.join();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by_key(|e| e.to_string());
    assert_eq!(
        seen,
        vec![JoinError::Panicked("p".into()), JoinError::Killed]
    );
}

#[test]
fn names_ids_and_current() {
    assert!(greenlet::current().is_none());
    let g = greenlet::spawn(|| {
        let me = greenlet::current().unwrap();
        (me.id(), me.name().to_owned())
    });
    let (id, name) = (g.id(), g.name().to_owned());
    assert_eq!(name, format!("Greenlet-{id}"));
    assert_eq!(g.get(), Ok((id, name)));
    let named = Builder::new().name("custom").spawn(|| ()).unwrap();
    assert_eq!(named.name(), "custom");
    assert_ne!(named.id(), id);
    assert!(format!("{named:?}").contains("custom"));
}

#[test]
fn handle_can_kill_and_join() {
    let g = greenlet::spawn(|| greenlet::sleep(Duration::from_secs(60)));
    let h = g.handle();
    assert_eq!(h.id(), g.id());
    assert!(!h.ready());
    assert!(h.kill());
    assert!(h.ready());
    assert!(h.join_timeout(ms(1)));
    assert_eq!(g.get(), Err(JoinError::Killed));
}

#[test]
fn spawn_later_waits_and_can_be_cancelled() {
    let t = Instant::now();
    let g = greenlet::spawn_later(ms(30), move || t.elapsed());
    assert!(g.get().unwrap() >= ms(30));

    let ran = Arc::new(AtomicBool::new(false));
    let ran2 = ran.clone();
    let g = greenlet::spawn_later(Duration::from_secs(60), move || {
        ran2.store(true, Ordering::SeqCst)
    });
    assert!(g.kill());
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn go_macro_spawns() {
    let g = greenlet::go!(|| 1);
    let h = greenlet::go!(String::from("named"), || 2);
    assert_eq!(h.name(), "named");
    assert_eq!(g.get().unwrap() + h.get().unwrap(), 3);
}

#[test]
fn ten_thousand_greenlets_sleep_concurrently() {
    let t = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let gs: Vec<_> = (0..MANY)
        .map(|i| {
            let done = done.clone();
            greenlet::spawn(move || {
                greenlet::sleep(ms(100));
                done.fetch_add(1, Ordering::Relaxed);
                i
            })
        })
        .collect();
    let results = greenlet::joinall(gs);
    assert_eq!(done.load(Ordering::Relaxed), MANY);
    assert!(results.iter().enumerate().all(|(i, r)| *r == Ok(i)));
    // Sequentially this is 1,000 s; concurrently about 0.1 s plus spawn costs.
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}

#[test]
fn fetches_run_concurrently() {
    const FETCHES: usize = 200;
    let server = support::DelayServer::start(ms(100));
    let addr = server.addr;
    let t = Instant::now();
    let gs: Vec<_> = (0..FETCHES)
        .map(|_| greenlet::spawn(move || support::fetch(addr)))
        .collect();
    for r in greenlet::joinall(gs) {
        assert_eq!(r.unwrap().unwrap(), "hello");
    }
    // 200 × 100 ms would take 20 s one after another.
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn unallocatable_stack_is_an_error_not_a_hang() {
    const HUGE: usize = 1 << 50; // 1 PiB: beyond any address space
    let err = Builder::new().stack_size(HUGE).spawn(|| ()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::OutOfMemory);
    assert!(err.to_string().contains("vm.max_map_count"), "{err}");

    // The same from inside a greenlet, where raw may hangs.
    let inner = greenlet::spawn(|| {
        Builder::new()
            .stack_size(HUGE)
            .spawn(|| ())
            .map(drop)
            .map_err(|e| e.kind())
    });
    assert_eq!(
        inner.get_timeout_for_test(),
        Ok(Err(std::io::ErrorKind::OutOfMemory))
    );
    // Spawning still works afterwards.
    assert_eq!(greenlet::spawn(|| 1).get(), Ok(1));
}

/// `get` with a generous bound, so a regression to a hang fails instead of blocking CI.
trait GetTimeout<T> {
    fn get_timeout_for_test(self) -> Result<T, JoinError>;
}

impl<T: Send + 'static> GetTimeout<T> for greenlet::Greenlet<T> {
    fn get_timeout_for_test(self) -> Result<T, JoinError> {
        assert!(self.join_timeout(Duration::from_secs(10)), "greenlet hung");
        self.get()
    }
}

#[test]
fn captures_are_released_before_join_returns_even_when_killed_before_start() {
    const ROUNDS: usize = 200;
    for _ in 0..ROUNDS {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let g = greenlet::spawn(move || drop(flag));
        g.kill();
        assert!(dropped.load(Ordering::SeqCst), "captures outlived join");
    }
}

#[test]
fn a_kill_that_never_lands_is_not_reported_as_ending_the_greenlet() {
    let g = greenlet::spawn(|| -> () {
        // Computes without blocking, then panics on its own: the kill never lands.
        let end = Instant::now() + ms(200);
        while Instant::now() < end {
            std::hint::spin_loop();
        }
        panic!("own failure");
    });
    greenlet::sleep(ms(30));
    assert!(
        !g.kill(),
        "the greenlet ended by its own panic, not by this kill"
    );
    assert_eq!(g.get(), Err(JoinError::Panicked("own failure".into())));
}
