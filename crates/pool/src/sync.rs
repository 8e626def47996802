//! The synchronisation primitives the pools are built on: `std` normally,
//! `loom`'s model-checked versions under `--cfg kuai_loom` (after tokio's
//! `src/loom/mod.rs`), so the loom models in `tests/loom.rs` explore the real
//! code.

#[cfg(kuai_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(kuai_loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(kuai_loom)]
pub(crate) use loom::thread_local;

#[cfg(not(kuai_loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(not(kuai_loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// loom has no `Weak`: under loom a "weak" handle is a strong one (the
/// models flush thread caches before their threads end, so nothing leaks).
#[cfg(kuai_loom)]
pub(crate) struct Weak<T>(Arc<T>);

#[cfg(kuai_loom)]
impl<T> Weak<T> {
    pub(crate) fn upgrade(&self) -> Option<Arc<T>> {
        Some(Arc::clone(&self.0))
    }
    pub(crate) fn strong_count(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

/// `Arc::downgrade`, through the shim.
pub(crate) fn downgrade<T>(a: &Arc<T>) -> Weak<T> {
    #[cfg(kuai_loom)]
    return Weak(Arc::clone(a));
    #[cfg(not(kuai_loom))]
    return Arc::downgrade(a);
}
#[cfg(not(kuai_loom))]
pub(crate) use std::thread_local;

/// Locks `m`, ignoring poisoning: every critical section in this crate
/// leaves its data consistent before anything that could panic runs, so a
/// poisoned lock still guards valid data.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// [`lock`] for plain `std` mutexes (the thread and connection pools are
/// not loom-modelled: they block on condition variables and tokio).
pub(crate) fn std_lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A counter written by exactly one thread and read by any: a relaxed
/// load + store instead of a locked read-modify-write.
#[derive(Debug)]
pub(crate) struct SoloCounter(AtomicU64);

impl SoloCounter {
    pub(crate) fn new() -> Self {
        SoloCounter(AtomicU64::new(0))
    }

    #[inline]
    pub(crate) fn add(&self, by: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(by), Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn sub(&self, by: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_sub(by), Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
