//! A Unix socket is a path that starts the runtime: `config().apply()` afterwards is refused,
//! and `settings()` says the runtime started (may's own `UnixListener`, re-exported before,
//! started may underneath, and a later `apply(workers(1))` returned `Ok` with no effect).
//! One test function: the runtime starts once per process.

#[test]
fn apply_after_a_unix_bind_is_refused() {
    let dir = std::env::temp_dir().join(format!("greenlet-cfg-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sock");
    let _ = std::fs::remove_file(&path);
    assert!(!greenlet::settings().started);
    let _listener = greenlet::net::UnixListener::bind(&path).unwrap();
    assert!(greenlet::settings().started);
    let err = greenlet::config().workers(1).apply().unwrap_err();
    assert!(err.to_string().contains("already started"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
