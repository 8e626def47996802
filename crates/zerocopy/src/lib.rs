//! `kuai-zerocopy`: mmap, sendfile/splice/tee and Bytes plumbing that never copies needlessly.
//!
//! This crate is being built; see the project's issue tracker for its scope.
//! Today it only re-exports the shared error type it will use.
//!
//! ```
//! let _kind = kuai_zerocopy::Error::closed("not built yet").kind();
//! ```
#![forbid(unsafe_code)]

pub use kuai_core::Error;
