//! The synchronization primitives of the cache, swapped for loom's under
//! `--cfg kuai_loom` so the loom models in `tests/loom.rs` explore every
//! interleaving of the shard locks and the lease table.

#[cfg(kuai_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64};
#[cfg(kuai_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

#[cfg(not(kuai_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64};
#[cfg(not(kuai_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
