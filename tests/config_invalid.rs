//! Settings that would leave may unable to start are refused by `apply`, and change nothing.
//! Own test binary: it configures the runtime.

use greenlet::ConfigError;

/// Far beyond any address space, so the stack cannot be allocated.
const IMPOSSIBLE_STACK: usize = 1 << 50;

#[test]
fn impossible_settings_are_refused_and_the_runtime_still_starts() {
    let before = greenlet::settings();

    let err = greenlet::config()
        .workers(1)
        .stack_size(IMPOSSIBLE_STACK)
        .apply()
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::StackSize {
                bytes: IMPOSSIBLE_STACK,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("cannot allocate a greenlet stack"),
        "{err}"
    );

    let err = greenlet::config()
        .pool_capacity(usize::MAX)
        .apply()
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::PoolCapacity {
                requested: usize::MAX,
                ..
            }
        ),
        "{err:?}"
    );

    assert_eq!(
        greenlet::settings(),
        before,
        "a refused apply changes nothing"
    );
    assert!(!before.started);

    // A sane stack size probes fine, and the runtime starts with it.
    greenlet::config().stack_size(128 * 1024).apply().unwrap();
    let g = greenlet::spawn(|| 7);
    assert_eq!(g.get(), Ok(7));
    assert_eq!(greenlet::settings().stack_size, 128 * 1024);
}
