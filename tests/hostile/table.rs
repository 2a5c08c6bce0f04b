//! The table harness of `hostile_timed.rs` and `hostile_servers.rs`: an API under test is a
//! function that makes a [`Case`] (fresh state, the timed wait, what satisfies it, the
//! invariants); [`table`] runs it over every deadline, context and mode, each case under the
//! watchdog, and checks issue 13's contract.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::hostile::{
    DEADLINES, HUGE, assert_not_early, assert_not_late, name_of, scaled, sleep_until, us,
};
use crate::support::watchdog::{bounded, in_greenlet};
use greenlet::queue::Queue;

/// How long one case may take before the watchdog calls it a hang.
pub const WATCH: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Satisfied before the call: must succeed, even with a zero deadline.
    Ready,
    /// Never satisfied while it waits: must time out, never early.
    Expires,
    /// Satisfied shortly before the deadline.
    Before,
    /// Satisfied shortly after the deadline.
    After,
    /// A deadline too far to represent (or very far): satisfied after 5 ms, must succeed.
    NoDeadline,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Ready => "satisfied-at-call",
            Mode::Expires => "expires",
            Mode::Before => "satisfied-before",
            Mode::After => "satisfied-after",
            Mode::NoDeadline => "satisfied-after-5ms",
        }
    }
}

pub use Mode::{After, Before, Expires, Ready};

pub const ALL: &[Mode] = &[Ready, Expires, Before, After];
pub const NO_READY: &[Mode] = &[Expires, Before, After];
pub const EXPIRES_ONLY: &[Mode] = &[Expires];
pub const READY_EXPIRES: &[Mode] = &[Ready, Expires];

/// When the satisfier of a `NoDeadline` case acts.
pub const NO_DEADLINE_AT: Duration = Duration::from_millis(5);

/// One case of one API: fresh state, the timed wait, what satisfies it, and the invariants.
pub struct Case {
    /// The timed wait with deadline `d`; `true` if it was satisfied (checks its own value).
    wait: Box<dyn FnOnce(Duration) -> bool + Send>,
    /// Makes the wait satisfiable. Returns `true` once the condition holds as the crate sees
    /// it, `false` when it cannot tell (then "satisfied before ⇒ success" is not checked).
    satisfy: Box<dyn FnOnce() -> bool + Send>,
    /// Invariants once both have run, given the wait's result and the mode.
    check: Box<dyn FnOnce(bool, Mode) + Send>,
}

impl Case {
    pub fn new(
        wait: impl FnOnce(Duration) -> bool + Send + 'static,
        satisfy: impl FnOnce() -> bool + Send + 'static,
    ) -> Case {
        Case {
            wait: Box::new(wait),
            satisfy: Box::new(satisfy),
            check: Box::new(|_, _| {}),
        }
    }

    pub fn check(mut self, check: impl FnOnce(bool, Mode) + Send + 'static) -> Case {
        self.check = Box::new(check);
        self
    }
}

/// A timed API under test.
pub struct Api {
    name: &'static str,
    make: fn() -> Case,
    modes: &'static [Mode],
    /// Whether a zero deadline is accepted (socket time-outs refuse it, as std's do).
    zero: bool,
    /// Whether the plain-thread context is run (the servers' and the HTTP client's
    /// time-outs belong to greenlets).
    on_threads: bool,
    /// `Duration::MAX` is left out of the no-deadline cases (a known bug, shown by
    /// `http_client_timeouts_of_duration_max_mean_no_deadline`).
    skip_max: bool,
}

impl Api {
    pub fn new(name: &'static str, make: fn() -> Case) -> Api {
        Api {
            name,
            make,
            modes: ALL,
            zero: true,
            on_threads: true,
            skip_max: false,
        }
    }

    pub fn modes(mut self, modes: &'static [Mode]) -> Api {
        self.modes = modes;
        self
    }

    pub fn no_zero(mut self) -> Api {
        self.zero = false;
        self
    }

    pub fn greenlets_only(mut self) -> Api {
        self.on_threads = false;
        self
    }

    pub fn skip_max(mut self) -> Api {
        self.skip_max = true;
        self
    }
}

/// What one case observed.
pub struct Report {
    ok: bool,
    elapsed: Duration,
    /// When the satisfier had finished, from the start of the wait (if it can tell).
    satisfied_at: Option<Duration>,
}

/// Runs the whole table for `api`.
pub fn table(api: Api) {
    let t = Instant::now();
    let mut cases = 0;
    for round in 0..scaled(2, 2) {
        for in_greenlet in [true, false] {
            if !in_greenlet && !api.on_threads {
                continue;
            }
            for d in DEADLINES {
                if d.is_zero() && !api.zero {
                    continue;
                }
                for &mode in api.modes {
                    run_case(&api, in_greenlet, d, mode, round);
                    cases += 1;
                }
            }
            if api.modes.contains(&Before) {
                for d in [Duration::MAX, HUGE] {
                    if d == Duration::MAX && api.skip_max {
                        continue;
                    }
                    run_case(&api, in_greenlet, d, Mode::NoDeadline, round);
                    cases += 1;
                }
            }
        }
    }
    eprintln!("{}: {cases} cases in {:?}", api.name, t.elapsed());
}

pub fn run_case(api: &Api, in_greenlet_: bool, d: Duration, mode: Mode, round: usize) {
    let by = if round.is_multiple_of(2) {
        "thread"
    } else {
        "greenlet"
    };
    let name = format!(
        "{} {} {} {} (satisfier: {by}, round {round})",
        api.name,
        name_of(d),
        if in_greenlet_ { "greenlet" } else { "thread" },
        mode.label()
    );
    let make = api.make;
    let satisfier_is_greenlet = !round.is_multiple_of(2);
    let case_name = name.clone();
    let body = move || one_case(&case_name, make, d, mode, satisfier_is_greenlet);
    let r = if in_greenlet_ {
        in_greenlet(&name, WATCH, body)
    } else {
        bounded(&name, WATCH, body)
    };
    validate(&name, d, mode, &r);
}

pub fn one_case(
    name: &str,
    make: fn() -> Case,
    d: Duration,
    mode: Mode,
    by_greenlet: bool,
) -> Report {
    let Case {
        wait,
        satisfy,
        check,
    } = make();
    let report = match mode {
        Ready => {
            satisfy();
            let start = Instant::now();
            let ok = wait(d);
            Report {
                ok,
                elapsed: start.elapsed(),
                satisfied_at: None,
            }
        }
        Expires => {
            let start = Instant::now();
            let ok = wait(d);
            let elapsed = start.elapsed();
            satisfy();
            Report {
                ok,
                elapsed,
                satisfied_at: None,
            }
        }
        Before | After | Mode::NoDeadline => {
            let offset = match mode {
                Before => d - (d / 2).min(us(500)),
                After => d + us(300),
                _ => NO_DEADLINE_AT,
            };
            // Greenlet-friendly hand-offs: a greenlet satisfier must not block its worker.
            let starts = Queue::<Instant>::unbounded();
            let done = Queue::<Option<Instant>>::unbounded();
            let (starts2, done2) = (starts.clone(), done.clone());
            let satisfier = move || {
                let start = starts2.get().expect("the start instant");
                sleep_until(start + offset);
                let ok = satisfy();
                let _ = done2.put(ok.then(Instant::now));
            };
            if by_greenlet {
                drop(greenlet::spawn(satisfier));
            } else {
                std::thread::spawn(satisfier);
            }
            let start = Instant::now();
            starts.put(start).unwrap();
            let ok = wait(d);
            let elapsed = start.elapsed();
            let satisfied = done
                .get_timeout(WATCH)
                .unwrap_or_else(|e| panic!("{name}: the satisfier did not finish: {e}"));
            Report {
                ok,
                elapsed,
                satisfied_at: satisfied.map(|t| t.saturating_duration_since(start)),
            }
        }
    };
    check(report.ok, mode);
    report
}

pub fn validate(name: &str, d: Duration, mode: Mode, r: &Report) {
    let took = r.elapsed;
    if mode == Mode::NoDeadline {
        assert!(r.ok, "{name}: no deadline, yet it timed out after {took:?}");
        assert!(
            took >= NO_DEADLINE_AT,
            "{name}: succeeded after {took:?}, before it was satisfied at {NO_DEADLINE_AT:?}"
        );
        assert_not_late(name, NO_DEADLINE_AT, took);
        return;
    }
    if !r.ok {
        assert_not_early(name, d, took);
    }
    assert_not_late(name, d, took);
    match mode {
        Ready => assert!(r.ok, "{name}: satisfied before the call, yet it timed out"),
        Expires => assert!(!r.ok, "{name}: never satisfied, yet it succeeded"),
        Before => {
            if let Some(at) = r.satisfied_at
                && at < d
            {
                assert!(
                    r.ok,
                    "{name}: satisfied {at:?} into its {d:?} wait, yet it timed out after {took:?}"
                );
            }
        }
        After => {
            if r.ok {
                assert!(
                    took >= d,
                    "{name}: succeeded after {took:?}, before it was satisfied (after {d:?})"
                );
            }
        }
        Mode::NoDeadline => unreachable!(),
    }
}

/// A loopback listener whose accept queue is full: a connect to it gets no answer (its SYN
/// is dropped), so `connect_timeout` must time out.
pub fn full_backlog() -> (socket2::Socket, SocketAddr, Vec<greenlet::net::TcpStream>) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.listen(0).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    // A connection that completes takes the one place in the queue.
    while fillers.is_empty() {
        if let Ok(c) = greenlet::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            fillers.push(c);
        }
    }
    (sock, addr, fillers)
}
