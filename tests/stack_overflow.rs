//! The cases of `overflow/cases.rs` on the default workers.

#[path = "overflow/cases.rs"]
mod cases;
mod support;

/// The runtime's configuration for these cases: the defaults.
fn configure() {}
