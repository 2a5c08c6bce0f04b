//! `config().max_greenlets(n)`: a warning at start when `vm.max_map_count` allows fewer.
//! Own test binary: it configures the runtime and installs a logger.

use std::sync::Mutex;

static RECORDS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Captured;

impl log::Log for Captured {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        RECORDS
            .lock()
            .unwrap()
            .push((r.level(), r.args().to_string()));
    }
    fn flush(&self) {}
}

#[test]
fn an_expectation_above_the_mapping_limit_is_warned_once() {
    log::set_logger(&Captured).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    let Ok(limit) = std::fs::read_to_string("/proc/sys/vm/max_map_count") else {
        return; // not Linux: nothing to check
    };
    let limit: usize = limit.trim().parse().unwrap();
    let expected = limit; // always more than limit / 2 greenlets
    greenlet::config().max_greenlets(expected).apply().unwrap();
    greenlet::spawn(|| ()).join();
    greenlet::spawn(|| ()).join();
    let warnings: Vec<_> = RECORDS
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, m)| *l == log::Level::Warn && m.contains("vm.max_map_count"))
        .cloned()
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let text = &warnings[0].1;
    assert!(text.contains(&format!("is {limit}")), "{text}");
    assert!(text.contains("sysctl -w vm.max_map_count="), "{text}");
}
