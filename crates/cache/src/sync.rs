//! The synchronization primitives of the cache, swapped for loom's under
//! `--cfg kuai_loom` so the loom models in `tests/loom.rs` explore every
//! interleaving of the shard locks, the read buffers and the lease table.

#[cfg(kuai_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64};
#[cfg(kuai_loom)]
pub(crate) use loom::sync::{Mutex, RwLockReadGuard, RwLockWriteGuard};

#[cfg(not(kuai_loom))]
pub(crate) use parking_lot::{RwLockReadGuard, RwLockWriteGuard};
#[cfg(not(kuai_loom))]
pub(crate) use std::sync::Mutex;
#[cfg(not(kuai_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64};

/// A reader-writer lock without poisoning (a panic inside the cache's short
/// critical sections leaves no broken invariant a later caller could see
/// worse than the panic itself). parking_lot's, or loom's under loom.
#[derive(Debug, Default)]
pub(crate) struct RwLock<T> {
    #[cfg(not(kuai_loom))]
    inner: parking_lot::RwLock<T>,
    #[cfg(kuai_loom)]
    inner: loom::sync::RwLock<T>,
}

impl<T> RwLock<T> {
    pub(crate) fn new(value: T) -> Self {
        RwLock {
            #[cfg(not(kuai_loom))]
            inner: parking_lot::RwLock::new(value),
            #[cfg(kuai_loom)]
            inner: loom::sync::RwLock::new(value),
        }
    }

    #[inline(always)]
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
        #[cfg(not(kuai_loom))]
        return self.inner.read();
        #[cfg(kuai_loom)]
        return self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }

    #[inline(always)]
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
        #[cfg(not(kuai_loom))]
        return self.inner.write();
        #[cfg(kuai_loom)]
        return self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }

    #[inline(always)]
    pub(crate) fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        #[cfg(not(kuai_loom))]
        return self.inner.try_write();
        #[cfg(kuai_loom)]
        return match self.inner.try_write() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
    }
}
