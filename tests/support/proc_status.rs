//! Reads this process's memory figures from `/proc/self/status` (Linux). One file shared by
//! the tests (`support`), the `memory` bench and the `million` example, through `#[path]`.

/// The `field` line of `/proc/self/status` (such as `VmRSS`, `VmSize`), in bytes; `None` where
/// the file or the line cannot be read.
pub fn status_bytes(field: &str) -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map(|kb| kb * 1024)
}
