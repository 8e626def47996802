//! The loom shim: every atomic, cell and spin hint the structures use comes
//! from here, so `--cfg kuai_loom` swaps the whole crate onto loom's model
//! checker without touching the algorithms.

#[cfg(kuai_loom)]
pub(crate) use loom::sync::atomic::{AtomicIsize, AtomicPtr, AtomicUsize, Ordering, fence};
#[cfg(not(kuai_loom))]
pub(crate) use std::sync::atomic::{AtomicIsize, AtomicPtr, AtomicUsize, Ordering, fence};

/// A cell whose accesses loom can track; under std it is a plain
/// `core::cell::UnsafeCell` with the same closure-based API as loom's.
#[cfg(kuai_loom)]
pub(crate) use loom::cell::UnsafeCell;

/// A cell whose accesses loom can track; under std it is a plain
/// `core::cell::UnsafeCell` with the same closure-based API as loom's.
#[cfg(not(kuai_loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(kuai_loom))]
impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    pub(crate) const fn new(value: T) -> Self {
        UnsafeCell(core::cell::UnsafeCell::new(value))
    }

    /// Gives `f` a shared raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Gives `f` a mutable raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Tells the CPU (or loom's scheduler) that this thread is waiting for
/// another one: loom must be allowed to run the other thread, or a spin loop
/// would never end inside a model.
#[inline(always)]
pub(crate) fn spin_hint() {
    #[cfg(kuai_loom)]
    loom::thread::yield_now();
    #[cfg(not(kuai_loom))]
    core::hint::spin_loop();
}

/// A small per-thread pseudo-random generator (xorshift64*), used for skip
/// list tower heights and counter shard choice. Deterministic under loom.
pub(crate) fn next_random() -> u64 {
    #[cfg(kuai_loom)]
    loom::thread_local! {
        static STATE: core::cell::Cell<u64> = core::cell::Cell::new(0x9E37_79B9_7F4A_7C15);
    }
    #[cfg(not(kuai_loom))]
    std::thread_local! {
        static STATE: core::cell::Cell<u64> = core::cell::Cell::new(seed());
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// A non-zero per-thread seed from the address of a stack local and the
/// std hasher's random keys.
#[cfg(not(kuai_loom))]
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let local = 0u8;
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(core::ptr::addr_of!(local) as usize);
    h.finish() | 1
}
