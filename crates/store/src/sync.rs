//! The loom shim: loom's atomics under `--cfg kuai_loom`, std's otherwise.

#[cfg(kuai_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(kuai_loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
