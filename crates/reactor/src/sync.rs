//! The loom shim: atomics come from `loom` under `--cfg kuai_loom`, from
//! `std` otherwise, so the lock-free budget is model-checked as compiled.

#[cfg(kuai_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(kuai_loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
