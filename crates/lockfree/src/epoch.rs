//! Memory reclamation: crossbeam-epoch in normal builds, a leaking stand-in
//! under loom.
//!
//! Every structure in this crate unlinks a node with a CAS and then hands it
//! to [`retire`], which frees it once every thread that was pinned at that
//! moment has unpinned. A thread must hold a [`Guard`] (from [`pin`]) for as
//! long as it dereferences a pointer it loaded from a shared structure.
//!
//! Under `--cfg kuai_loom` crossbeam-epoch's own atomics are invisible to
//! loom, so the models use a guard that does nothing and a `retire` that
//! leaks: the models check the structures' atomics and orderings, the drop
//! counting stress tests check reclamation.

#[cfg(not(kuai_loom))]
pub use crossbeam_epoch::{Guard, pin};

/// Frees `ptr` (as a `Box<T>`) once no thread pinned now can still read it.
///
/// # Safety
///
/// `ptr` came from `Box::into_raw`, has been unlinked from every shared
/// location (no thread that pins after this call can load it), and is retired
/// exactly once.
#[cfg(not(kuai_loom))]
#[inline]
pub(crate) unsafe fn retire<T>(guard: &Guard, ptr: *mut T) {
    // SAFETY: the caller guarantees `ptr` is an unlinked, uniquely retired
    // `Box<T>`; crossbeam-epoch runs the closure only after every guard that
    // could have loaded `ptr` is gone, so the `Box` is rebuilt exactly once
    // with no reader left. The closure is not `Send`, which is sound because
    // it only frees memory the caller exclusively gave away; `T: Send` is
    // required by the structures' `Send`/`Sync` impls for cross-thread drops.
    unsafe { guard.defer_unchecked(move || drop(Box::from_raw(ptr))) }
}

/// Like [`retire`], for memory that `free` (rather than `Box`) releases.
///
/// # Safety
///
/// As for [`retire`]; `free(ptr)` must be sound to call once no reader is
/// left.
#[cfg(not(kuai_loom))]
#[inline]
pub(crate) unsafe fn retire_with<T>(guard: &Guard, ptr: *mut T, free: unsafe fn(*mut T)) {
    // SAFETY: as in `retire`; the caller vouches for `free`.
    unsafe { guard.defer_unchecked(move || free(ptr)) }
}

/// A pinned epoch (loom stand-in: pins nothing).
#[cfg(kuai_loom)]
#[derive(Debug)]
pub struct Guard {
    _private: (),
}

/// Pins the current thread (loom stand-in: does nothing).
#[cfg(kuai_loom)]
pub fn pin() -> Guard {
    Guard { _private: () }
}

/// Loom stand-in for retirement: leaks `ptr` (see the module docs).
///
/// # Safety
///
/// Same contract as the crossbeam-epoch version.
#[cfg(kuai_loom)]
#[inline]
pub(crate) unsafe fn retire<T>(_guard: &Guard, ptr: *mut T) {
    let _ = ptr;
}

/// Loom stand-in for [`retire_with`]: leaks `ptr`.
///
/// # Safety
///
/// Same contract as the crossbeam-epoch version.
#[cfg(kuai_loom)]
#[inline]
pub(crate) unsafe fn retire_with<T>(_guard: &Guard, ptr: *mut T, free: unsafe fn(*mut T)) {
    let _ = (ptr, free);
}
