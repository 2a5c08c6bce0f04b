//! The cases of `monkey/waits.rs` on the default workers.
#![cfg(all(feature = "monkey", target_os = "linux"))]

#[path = "monkey/edges.rs"]
mod edges;
mod support;
#[path = "monkey/waits.rs"]
mod waits;

/// The runtime's configuration for these cases: the defaults.
fn configure() {}
