//! `joinall`, `joinall_timeout`, `iwait` and `killall`.

mod support;

use std::time::{Duration, Instant};

use greenlet::JoinError;
use support::ms;

fn sleeper(ms_: u64) -> greenlet::Greenlet<u64> {
    greenlet::spawn(move || {
        greenlet::sleep(ms(ms_));
        ms_
    })
}

#[test]
fn joinall_keeps_spawn_order() {
    let gs = vec![sleeper(40), sleeper(0), sleeper(20)];
    assert_eq!(greenlet::joinall(gs), vec![Ok(40), Ok(0), Ok(20)]);
}

#[test]
fn joinall_takes_as_long_as_the_slowest() {
    let t = Instant::now();
    let gs: Vec<_> = (0..50).map(|_| sleeper(100)).collect();
    assert_eq!(greenlet::joinall(gs).len(), 50);
    assert!(t.elapsed() >= ms(100));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn joinall_reports_every_failure_in_place() {
    let gs = vec![
        greenlet::spawn(|| 1),
        greenlet::spawn(|| -> i32 { panic!("second") }),
        greenlet::spawn(|| {
            greenlet::sleep(Duration::from_secs(60));
            3
        }),
    ];
    gs[2].kill_nowait();
    let results = greenlet::joinall(gs);
    assert_eq!(
        results,
        vec![
            Ok(1),
            Err(JoinError::Panicked("second".into())),
            Err(JoinError::Killed)
        ]
    );
}

#[test]
fn joinall_of_nothing_is_empty() {
    let none: Vec<greenlet::Greenlet<()>> = Vec::new();
    assert!(greenlet::joinall(none).is_empty());
    assert_eq!(
        greenlet::iwait(Vec::<greenlet::Greenlet<()>>::new()).count(),
        0
    );
}

#[test]
fn joinall_timeout_counts_the_finished() {
    let gs = vec![sleeper(0), sleeper(10), sleeper(60_000)];
    let t = Instant::now();
    assert_eq!(greenlet::joinall_timeout(&gs, ms(300)), 2);
    assert!(t.elapsed() >= ms(300));
    greenlet::killall(&gs);
    assert_eq!(greenlet::joinall_timeout(&gs, Duration::ZERO), 3);
}

#[test]
fn iwait_yields_in_finishing_order() {
    let gs = vec![sleeper(150), sleeper(10), sleeper(80)];
    let got: Vec<_> = greenlet::iwait(gs).collect();
    assert_eq!(got, vec![(1, Ok(10)), (2, Ok(80)), (0, Ok(150))]);
}

#[test]
fn iwait_includes_failures_and_reports_its_length() {
    let gs = vec![
        greenlet::spawn(|| -> u8 { panic!("x") }),
        greenlet::spawn(|| {
            greenlet::sleep(ms(30));
            2
        }),
    ];
    let mut it = greenlet::iwait(gs);
    assert_eq!(it.len(), 2);
    assert_eq!(it.next(), Some((0, Err(JoinError::Panicked("x".into())))));
    assert_eq!(it.len(), 1);
    assert_eq!(it.next(), Some((1, Ok(2))));
    assert_eq!(it.next(), None);
    assert_eq!(it.next(), None);
}

#[test]
fn dropping_iwait_early_leaves_the_rest_running() {
    let gs = vec![sleeper(0), sleeper(50)];
    let mut it = greenlet::iwait(gs);
    assert_eq!(it.next(), Some((0, Ok(0))));
    drop(it);
    greenlet::sleep(ms(100)); // the second greenlet's completion finds no receiver: no panic
}

#[test]
fn iwait_inside_a_greenlet() {
    let g = greenlet::spawn(|| {
        let gs = vec![sleeper(30), sleeper(5)];
        greenlet::iwait(gs).map(|(i, _)| i).collect::<Vec<_>>()
    });
    assert_eq!(g.get(), Ok(vec![1, 0]));
}

#[test]
fn killall_kills_and_waits() {
    let gs: Vec<_> = (0..100).map(|_| sleeper(60_000)).collect();
    let t = Instant::now();
    greenlet::killall(&gs);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(gs.iter().all(|g| g.ready()));
    assert!(
        greenlet::joinall(gs)
            .into_iter()
            .all(|r| r == Err(JoinError::Killed))
    );
}
