//! Warm greenlets (issue 18), from a hostile review: a greenlet-local value made again and again
//! while the finished greenlet's values are cleared (`local::clear` gives up after 8 rounds)
//! must not be seen by the next greenlet: that coroutine is not reused.

mod support;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use support::watchdog::in_greenlet;

static INITS: AtomicU64 = AtomicU64::new(0);

/// A value that remembers which greenlet made it; its destructor uses its own key again (a
/// flush through a helper that reads the key, say), which makes a new value.
struct Ctx {
    made_in: Option<u64>,
}

impl Drop for Ctx {
    fn drop(&mut self) {
        CTX.with(|_| ());
    }
}

greenlet::greenlet_local! {
    static CTX: RefCell<Ctx> = {
        INITS.fetch_add(1, Ordering::SeqCst);
        RefCell::new(Ctx { made_in: greenlet::current().map(|g| g.id()) })
    };
}

#[inline(never)]
fn frame_address() -> usize {
    let x = 0u8;
    std::hint::black_box(&x) as *const u8 as usize
}

#[test]
fn a_value_made_during_the_clear_passes_to_the_next_greenlet() {
    in_greenlet("locals", Duration::from_secs(30), || {
        let (at1, id1) = greenlet::spawn(|| {
            CTX.with(|c| assert_eq!(c.borrow().made_in, greenlet::current().map(|g| g.id())));
            (frame_address(), greenlet::current().unwrap().id())
        })
        .get()
        .unwrap();
        greenlet::sleep(Duration::from_millis(10));
        let (at2, id2, made_in) = greenlet::spawn(|| {
            let made_in = CTX.with(|c| c.borrow().made_in);
            (frame_address(), greenlet::current().unwrap().id(), made_in)
        })
        .get()
        .unwrap();
        assert!(
            at1.abs_diff(at2) < 4096,
            "not the same carrier: test inconclusive"
        );
        assert_eq!(
            made_in,
            Some(id2),
            "the second greenlet (id {id2}) found a value of CTX it did not make (made in \
             {made_in:?}; the first greenlet was {id1}): it was made while the carrier cleared \
             the first one's values and kept"
        );
    });
}
