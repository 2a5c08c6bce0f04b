//! Helpers shared by the benches.
#![allow(dead_code)] // each bench uses some of these

/// `GREENLET_BENCH_QUICK=1` asks for a short run.
pub fn quick() -> bool {
    std::env::var_os("GREENLET_BENCH_QUICK").is_some()
}

/// tokio's default multi-thread runtime, the peer every bench compares against.
pub fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
