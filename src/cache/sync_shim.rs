//! The synchronisation primitives of the disk cache ([`super::disk_cache`]), from one place: `parking_lot`'s locks
//! and std's atomics normally; with the `shuttle` cargo feature, the [shuttle](https://docs.rs/shuttle) model
//! checker's, behind the same `parking_lot`-style API (`lock()`, `read()`, `write()` without `Result`), so that
//! `tests/content_claims_shuttle.rs` runs the real claim protocol under shuttle's scheduler. The pattern is
//! mountpoint-s3's `sync.rs` (<https://github.com/awslabs/mountpoint-s3>).
//!
//! The `shuttle` feature is for that test only (`cargo test --features shuttle --test content_claims_shuttle`):
//! with it, these locks work only inside a shuttle execution.

#[cfg(not(feature = "shuttle"))]
pub use parking_lot::{Mutex, RwLock};
#[cfg(not(feature = "shuttle"))]
pub use std::sync::atomic::{AtomicU64, AtomicUsize};

#[cfg(feature = "shuttle")]
pub use self::shuttle_primitives::{Mutex, RwLock};
#[cfg(feature = "shuttle")]
pub use shuttle::sync::atomic::{AtomicU64, AtomicUsize};

#[cfg(feature = "shuttle")]
mod shuttle_primitives {
    /// shuttle's mutex with `parking_lot`'s API (a poisoned lock is taken anyway, as `parking_lot` has none).
    #[derive(Debug, Default)]
    pub struct Mutex<T>(shuttle::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub fn new(value: T) -> Self {
            Mutex(shuttle::sync::Mutex::new(value))
        }

        pub fn lock(&self) -> shuttle::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    /// shuttle's reader-writer lock with `parking_lot`'s API.
    #[derive(Debug, Default)]
    pub struct RwLock<T>(shuttle::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub fn read(&self) -> shuttle::sync::RwLockReadGuard<'_, T> {
            self.0.read().unwrap_or_else(|e| e.into_inner())
        }

        pub fn try_read(&self) -> Option<shuttle::sync::RwLockReadGuard<'_, T>> {
            self.0.try_read().ok()
        }

        pub fn write(&self) -> shuttle::sync::RwLockWriteGuard<'_, T> {
            self.0.write().unwrap_or_else(|e| e.into_inner())
        }
    }
}
