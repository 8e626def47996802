//! `kuai-cache`: Concurrent in-process cache, eviction policies, loaders, defences and L1+L2.
//!
//! This crate is being built; see the project's issue tracker for its scope.
//! Today it only re-exports the shared error type it will use.
//!
//! ```
//! let _kind = kuai_cache::Error::closed("not built yet").kind();
//! ```
#![forbid(unsafe_code)]

pub use kuai_core::Error;
