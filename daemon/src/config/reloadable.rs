//! [`Reloadable`]: a setting that SIGHUP may replace while every reader keeps a consistent value.

use std::sync::{Arc, RwLock};

/// A value readers take a snapshot of (an `Arc`), which a reload swaps whole. A reader never sees half of
/// an update, and a lock poisoned by a panicking writer still holds a whole value (writers only swap the
/// `Arc`), so it is used as it is.
#[derive(Debug, Default)]
pub struct Reloadable<T>(RwLock<Arc<T>>);

impl<T> Reloadable<T> {
    pub fn new(value: T) -> Reloadable<T> {
        Reloadable(RwLock::new(Arc::new(value)))
    }

    /// The value in force.
    pub fn get(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Puts `value` in force; readers holding the old one keep it until they read again.
    pub fn replace(&self, value: T) {
        *self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(value);
    }
}
