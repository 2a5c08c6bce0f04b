//! `queue`: ordering, capacity, closing, joining, time-outs, kills, and many producers.

mod support;

use std::cmp::Reverse;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use greenlet::JoinError;
use greenlet::queue::{
    Channel, GetTimeoutError, LifoQueue, PriorityQueue, PutTimeoutError, Queue, TryGetError,
    TryPutError,
};
use support::ms;

const PRODUCERS: usize = 1_000;
const PER_PRODUCER: usize = 10;

#[test]
fn every_item_is_delivered_exactly_once() {
    let q = Queue::bounded(64);
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let consumers: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let (q, seen) = (q.clone(), seen.clone());
            greenlet::spawn(move || {
                for item in &q {
                    assert!(seen.lock().unwrap().insert(item), "{item} twice");
                }
            })
        })
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = q.clone();
            greenlet::spawn(move || {
                for i in 0..PER_PRODUCER {
                    q.put(p * PER_PRODUCER + i).unwrap();
                }
            })
        })
        .collect();
    assert!(greenlet::joinall(producers).iter().all(Result::is_ok));
    q.close();
    assert!(greenlet::joinall(consumers).iter().all(Result::is_ok));
    assert_eq!(seen.lock().unwrap().len(), PRODUCERS * PER_PRODUCER);
}

#[test]
fn try_forms_report_full_empty_and_closed_with_the_item() {
    let q = Queue::bounded(1);
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
    q.try_put(1).unwrap();
    assert!(q.is_full());
    let e = q.try_put(2).unwrap_err();
    assert!(matches!(e, TryPutError::Full(2)));
    assert_eq!(format!("{e:?}"), "Full(..)");
    q.close();
    assert_eq!(q.put(3).unwrap_err().into_inner(), 3);
    assert!(matches!(q.try_put(4), Err(TryPutError::Closed(4))));
    assert_eq!(q.get(), Ok(1), "close drains what is left");
    assert_eq!(q.try_get(), Err(TryGetError::Closed));
    assert!(q.get().is_err());
}

#[test]
fn timeouts_never_end_early_and_return_the_item() {
    let q = Queue::bounded(1);
    let t = Instant::now();
    assert_eq!(q.get_timeout(ms(40)), Err(GetTimeoutError::Timeout));
    assert!(t.elapsed() >= ms(40));
    q.put("a").unwrap();
    let t = Instant::now();
    assert!(matches!(
        q.put_timeout("b", ms(40)),
        Err(PutTimeoutError::Timeout("b"))
    ));
    assert!(t.elapsed() >= ms(40));
    let g = {
        let q = q.clone();
        greenlet::spawn(move || q.get_timeout(Duration::from_secs(5)))
    };
    assert_eq!(g.get(), Ok(Ok("a")));
}

#[test]
fn close_wakes_waiting_getters_and_putters() {
    let q: Queue<u8> = Queue::bounded(1);
    let getter = {
        let q = q.clone();
        greenlet::spawn(move || q.get())
    };
    greenlet::sleep(ms(20));
    q.close();
    assert!(getter.get().unwrap().is_err());

    let full = Queue::bounded(1);
    full.put(1).unwrap();
    let putter = {
        let q = full.clone();
        greenlet::spawn(move || q.put(2).map_err(|e| e.into_inner()))
    };
    greenlet::sleep(ms(20));
    full.close();
    assert_eq!(putter.get(), Ok(Err(2)));
}

#[test]
fn lifo_and_priority_orders() {
    let lifo = LifoQueue::unbounded();
    let prio = PriorityQueue::bounded(10);
    for i in [3, 1, 2] {
        lifo.put(i).unwrap();
        prio.put(Reverse(i)).unwrap();
    }
    assert_eq!((lifo.get(), lifo.get(), lifo.get()), (Ok(2), Ok(1), Ok(3)));
    assert_eq!(prio.get(), Ok(Reverse(1)));
    assert_eq!(prio.len(), 2);
}

#[test]
fn join_waits_for_task_done() {
    let q = Queue::unbounded();
    for i in 0..5 {
        q.put(i).unwrap();
    }
    assert!(!q.join_timeout(ms(20)));
    let worker = {
        let q = q.clone();
        greenlet::spawn(move || {
            while let Ok(_item) = q.try_get() {
                greenlet::sleep(ms(2));
                q.task_done().unwrap();
            }
        })
    };
    q.join();
    worker.join();
    assert!(q.task_done().is_err(), "more task_done calls than items");
}

#[test]
fn killed_getter_takes_nothing_and_killed_putter_puts_nothing() {
    let q: Queue<u32> = Queue::bounded(1);
    let getter = {
        let q = q.clone();
        greenlet::spawn(move || q.get())
    };
    greenlet::sleep(ms(20));
    assert!(getter.kill());
    q.put(7).unwrap();
    assert_eq!(
        q.try_get(),
        Ok(7),
        "the item was not lost to the dead getter"
    );

    q.put(1).unwrap();
    let putter = {
        let q = q.clone();
        greenlet::spawn(move || q.put(2))
    };
    greenlet::sleep(ms(20));
    assert!(putter.kill());
    assert_eq!(putter.get().unwrap_err(), JoinError::Killed);
    assert_eq!(q.get(), Ok(1));
    assert_eq!(
        q.try_get(),
        Err(TryGetError::Empty),
        "the killed put stored nothing"
    );
}

#[test]
#[should_panic(expected = "use Channel")]
fn zero_capacity_queue_is_a_documented_panic() {
    let _ = Queue::<u8>::bounded(0);
}

#[test]
fn channel_hands_over_only_to_a_taker() {
    let ch = Channel::new();
    assert!(matches!(ch.try_put(1), Err(TryPutError::Full(1))));
    let t = Instant::now();
    assert!(matches!(
        ch.put_timeout(2, ms(30)),
        Err(PutTimeoutError::Timeout(2))
    ));
    assert!(t.elapsed() >= ms(30));
    let taker = {
        let ch = ch.clone();
        greenlet::spawn(move || ch.get())
    };
    let t = Instant::now();
    ch.put(3).unwrap();
    assert_eq!(taker.get(), Ok(Ok(3)));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(ch.try_get(), Err(TryGetError::Empty));

    // A waiting getter lets try_put succeed.
    let taker = {
        let ch = ch.clone();
        greenlet::spawn(move || ch.get_timeout(Duration::from_secs(5)))
    };
    greenlet::sleep(ms(20));
    ch.try_put(4).unwrap();
    assert_eq!(taker.get(), Ok(Ok(4)));
}

#[test]
fn killed_channel_putter_withdraws_its_item() {
    let ch = Channel::new();
    let putter = {
        let ch = ch.clone();
        greenlet::spawn(move || ch.put(9))
    };
    greenlet::sleep(ms(20));
    assert!(putter.kill());
    assert_eq!(ch.try_get(), Err(TryGetError::Empty));
    ch.close();
    assert!(ch.get().is_err());
    assert!(ch.put(1).is_err());
}
