//! Greenlet-local storage: the values behind [`greenlet_local!`](crate::greenlet_local).
//!
//! Each greenlet's values live in one map kept in its coroutine; a finished greenlet's map is
//! emptied before its coroutine runs another greenlet (`greenlet::warm`), so no value passes
//! from one greenlet to the next. On a plain thread the map is the thread's.
//!
//! # Examples
//!
//! ```
//! use std::cell::Cell;
//!
//! greenlet::greenlet_local! {
//!     static SEEN: Cell<u32> = Cell::new(0);
//! }
//!
//! let a = greenlet::spawn(|| { SEEN.with(|s| s.set(s.get() + 1)); SEEN.with(Cell::get) });
//! let b = greenlet::spawn(|| SEEN.with(Cell::get));
//! assert_eq!(a.get(), Ok(1));
//! assert_eq!(b.get(), Ok(0)); // its own value, never `a`'s
//! ```

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// One greenlet's (or thread's) values. A value is shared out as an `Rc` while `with` runs, so
/// the map is never borrowed while user code runs (an initialiser or a closure may use other
/// keys).
type Map = RefCell<HashMap<TypeId, Rc<dyn Any>>>;

may::coroutine_local!(static VALUES: Map = RefCell::new(HashMap::new()));

/// The key of a [`greenlet_local!`](crate::greenlet_local) value; `KEY.with(|v| ...)` reaches
/// the calling greenlet's copy (the calling thread's, off the greenlets).
///
/// Made by the macro; its fields are not part of the API.
///
/// # Examples
///
/// ```
/// use std::cell::RefCell;
///
/// greenlet::greenlet_local! {
///     static LOG: RefCell<Vec<&'static str>> = RefCell::new(Vec::new());
/// }
///
/// let g = greenlet::spawn(|| {
///     LOG.with(|l| l.borrow_mut().push("started"));
///     greenlet::yield_now();
///     LOG.with(|l| l.borrow().len())
/// });
/// assert_eq!(g.get(), Ok(1));
/// // A plain thread has its own value.
/// assert_eq!(LOG.with(|l| l.borrow().len()), 0);
/// ```
pub struct LocalKey<T: 'static> {
    #[doc(hidden)]
    pub __init: fn() -> T,
    #[doc(hidden)]
    pub __key: fn() -> TypeId,
}

impl<T: 'static> LocalKey<T> {
    /// Runs `f` with the calling greenlet's value, made by the key's initialiser on first use.
    ///
    /// # Panics
    ///
    /// If the initialiser or `f` panics.
    pub fn with<F, R>(&'static self, f: F) -> R
    where
        F: FnOnce(&T) -> R,
    {
        let key = (self.__key)();
        let found = VALUES.with(|m| m.borrow().get(&key).cloned());
        let value = match found {
            Some(v) => v,
            None => {
                // Made outside the borrow: the initialiser may use other keys. If it also set
                // this one, the first value made stays.
                let made: Rc<dyn Any> = Rc::new((self.__init)());
                VALUES.with(|m| m.borrow_mut().entry(key).or_insert(made).clone())
            }
        };
        match value.downcast_ref::<T>() {
            Some(v) => f(v),
            // The key's type id is made by the macro for this `T` alone.
            None => unreachable!("greenlet_local! key with two types"),
        }
    }
}

impl<T: 'static> std::fmt::Debug for LocalKey<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKey").finish_non_exhaustive()
    }
}

/// Drops the calling coroutine's values (its greenlet has ended). Values whose destructors
/// make new ones are dropped too, for a few rounds; returns `false` if some are still left
/// then (the coroutine must not run another greenlet, which would see them).
pub(crate) fn clear() -> bool {
    for _ in 0..8 {
        let old = VALUES.with(|m| std::mem::take(&mut *m.borrow_mut()));
        if old.is_empty() {
            return true;
        }
        drop(old);
    }
    let clean = VALUES.with(|m| m.borrow().is_empty());
    if !clean {
        log::warn!("greenlet-local destructors keep making values; their coroutine is not reused");
    }
    clean
}
